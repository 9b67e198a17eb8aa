package ciliumpolicy_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/ciliumpolicy"
	"github.com/isolator-dev/isolator/internal/intent"
	"github.com/isolator-dev/isolator/internal/preset"
)

func catalog(t *testing.T, extra string) preset.Catalog {
	t.Helper()
	builtin, err := preset.Parse(preset.BuiltinYAML())
	if err != nil {
		t.Fatal(err)
	}
	admin, err := preset.Parse([]byte(extra))
	if err != nil {
		t.Fatal(err)
	}
	c, err := preset.NewCatalog(builtin, admin)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const adminDNS = `presets:
- name: pods-only-dns
  to:
  - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: dns}}
  ports: [{protocol: UDP, port: 53}]
- name: portless-dns
  to:
  - ipBlock: {cidr: 169.254.20.10/32}
- name: corp-dns
  to:
  - ipBlock: {cidr: 10.0.0.53/32}
  ports: [{protocol: UDP, port: 53}]
`

func TestDNSHost(t *testing.T) {
	target := metav1.LabelSelector{
		MatchLabels:      map[string]string{"app.kubernetes.io/name": "local-ai"},
		MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpIn, Values: []string{"api"}}},
	}
	wi := func(egress []isolationv1alpha1.EgressRule, dns string) *isolationv1alpha1.WorkloadIsolation {
		return &isolationv1alpha1.WorkloadIsolation{
			ObjectMeta: metav1.ObjectMeta{Name: "local-ai", Namespace: "local-ai", UID: "uid-1"},
			Spec:       isolationv1alpha1.WorkloadIsolationSpec{Egress: egress, DNS: dns},
		}
	}
	tests := []struct {
		name string
		wi   *isolationv1alpha1.WorkloadIsolation
		want bool
	}{
		{"egress not isolated: nothing for Cilium", wi(nil, ""), false},
		{"egress isolated with cluster-dns: NodeLocal DNSCache on the host", wi([]isolationv1alpha1.EgressRule{}, ""), true},
		{"dns None: no DNS, not even on the host", wi([]isolationv1alpha1.EgressRule{}, "None"), false},
		{"a DNS preset without addresses cannot point at the host", wi([]isolationv1alpha1.EgressRule{}, "pods-only-dns"), false},
		{"a DNS preset without ports would open every port of the host", wi([]isolationv1alpha1.EgressRule{}, "portless-dns"), false},
		{"a DNS server at a routable address is reached as itself, not as the host", wi([]isolationv1alpha1.EgressRule{}, "corp-dns"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, err := intent.FromSpec(tt.wi, target, catalog(t, adminDNS))
			if err != nil {
				t.Fatal(err)
			}
			got, err := ciliumpolicy.DNSHost(in)
			if err != nil {
				t.Fatal(err)
			}
			if (got != nil) != tt.want {
				t.Fatalf("DNSHost = %v, want an object: %t", got, tt.want)
			}
			if got == nil {
				return
			}
			if got.GetName() != "local-ai-dns-host" || got.GetNamespace() != "local-ai" || got.GetKind() != "CiliumNetworkPolicy" || got.GetAPIVersion() != "cilium.io/v2" {
				t.Errorf("object %s %s/%s", got.GetAPIVersion()+"/"+got.GetKind(), got.GetNamespace(), got.GetName())
			}
			if refs := got.GetOwnerReferences(); len(refs) != 1 || refs[0].UID != "uid-1" || refs[0].Controller == nil || !*refs[0].Controller {
				t.Errorf("owner references %+v", refs)
			}
			wantSpec := map[string]any{
				"endpointSelector": map[string]any{
					"matchLabels":      map[string]any{"app.kubernetes.io/name": "local-ai"},
					"matchExpressions": []any{map[string]any{"key": "tier", "operator": "In", "values": []any{"api"}}},
				},
				"egress": []any{map[string]any{
					"toEntities": []any{"host"},
					"toPorts": []any{map[string]any{"ports": []any{
						map[string]any{"port": "53", "protocol": "UDP"},
						map[string]any{"port": "53", "protocol": "TCP"},
					}}},
				}},
			}
			spec, _, _ := unstructured.NestedMap(got.Object, "spec")
			delete(spec, "description")
			if diff := cmp.Diff(wantSpec, spec); diff != "" {
				t.Errorf("spec (-want +got):\n%s", diff)
			}
		})
	}
}
