package ciliumpolicy_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/ciliumpolicy"
	"github.com/isolator-dev/isolator/internal/intent"
	"github.com/isolator-dev/isolator/internal/policy"
)

func hostsIsolation(dns string, rules ...isolationv1alpha1.EgressRule) *isolationv1alpha1.WorkloadIsolation {
	return &isolationv1alpha1.WorkloadIsolation{
		ObjectMeta: metav1.ObjectMeta{Name: "local-ai", Namespace: "ai", UID: "uid-1"},
		Spec:       isolationv1alpha1.WorkloadIsolationSpec{Egress: rules, DNS: dns},
	}
}

func TestHostsRenderFQDNRulesWithTheirDNSLookupsSeen(t *testing.T) {
	wi := hostsIsolation("",
		isolationv1alpha1.EgressRule{Name: "models", To: []isolationv1alpha1.EgressPeer{{Preset: "huggingface"}}},
		isolationv1alpha1.EgressRule{Name: "mixed", To: []isolationv1alpha1.EgressPeer{
			{Hosts: []string{"api.example.com", "*.example.com", "api.example.com"}},
			{Preset: "minio"},
		}, Ports: []isolationv1alpha1.Port{{Port: ptr.To(intstr.FromInt32(9000))}}},
	)
	in, err := intent.FromSpec(wi, metav1.LabelSelector{MatchLabels: map[string]string{"app": "local-ai"}}, catalog(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"api.example.com", "*.example.com"}, in.Egress.Rules[1].Hosts); diff != "" {
		t.Errorf("hosts are kept once, in order (-want +got):\n%s", diff)
	}
	// The hosts-only rule has no NetworkPolicy: one without peers would
	// allow every destination. The mixed rule keeps its peers.
	var names []string
	for _, np := range policy.NetworkPolicies(in) {
		names = append(names, np.Name)
		if np.Name == "local-ai-egress-mixed" && len(np.Spec.Egress[0].To) != 1 {
			t.Errorf("mixed rule peers = %v, want only minio", np.Spec.Egress[0].To)
		}
	}
	if diff := cmp.Diff([]string{"local-ai-default-deny", "local-ai-dns", "local-ai-egress-mixed"}, names); diff != "" {
		t.Errorf("NetworkPolicies (-want +got):\n%s", diff)
	}

	u, err := ciliumpolicy.Hosts(in)
	if err != nil || u == nil {
		t.Fatalf("Hosts = %v, %v", u, err)
	}
	if u.GetName() != "local-ai-egress-hosts" {
		t.Errorf("name = %s", u.GetName())
	}
	egress, _, _ := unstructured.NestedSlice(u.Object, "spec", "egress")
	dnsRule := []any{map[string]any{"matchPattern": "*"}}
	dnsPorts := []any{map[string]any{"port": "53", "protocol": "UDP"}, map[string]any{"port": "53", "protocol": "TCP"}}
	want := []any{
		map[string]any{"toEndpoints": []any{
			map[string]any{"matchLabels": map[string]any{"k8s:k8s-app": "kube-dns", "k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name": "kube-system"},
				"matchExpressions": []any{map[string]any{"key": "k8s:io.kubernetes.pod.namespace", "operator": "Exists"}}},
			map[string]any{"matchLabels": map[string]any{"k8s:k8s-app": "node-local-dns", "k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name": "kube-system"},
				"matchExpressions": []any{map[string]any{"key": "k8s:io.kubernetes.pod.namespace", "operator": "Exists"}}},
		}, "toPorts": []any{map[string]any{"ports": dnsPorts, "rules": map[string]any{"dns": dnsRule}}}},
		// NodeLocal DNSCache's link-local address is the node's.
		map[string]any{"toEntities": []any{"host"}, "toPorts": []any{map[string]any{"ports": dnsPorts, "rules": map[string]any{"dns": dnsRule}}}},
		map[string]any{"toFQDNs": []any{
			map[string]any{"matchName": "huggingface.co"}, map[string]any{"matchPattern": "*.huggingface.co"},
			map[string]any{"matchName": "hf.co"}, map[string]any{"matchPattern": "*.hf.co"}, map[string]any{"matchPattern": "*.xethub.hf.co"},
		}, "toPorts": []any{map[string]any{"ports": []any{map[string]any{"port": "443", "protocol": "TCP"}}}}},
		map[string]any{"toFQDNs": []any{map[string]any{"matchName": "api.example.com"}, map[string]any{"matchPattern": "*.example.com"}},
			"toPorts": []any{map[string]any{"ports": []any{map[string]any{"port": "9000", "protocol": "TCP"}}}}},
	}
	if diff := cmp.Diff(want, egress); diff != "" {
		t.Errorf("egress (-want +got):\n%s", diff)
	}

	// A port without number is every port of its protocol: Cilium's 0.
	wi.Spec.Egress[1].Ports = []isolationv1alpha1.Port{{Protocol: "UDP"}}
	in, err = intent.FromSpec(wi, metav1.LabelSelector{MatchLabels: map[string]string{"app": "local-ai"}}, catalog(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	if u, err = ciliumpolicy.Hosts(in); err != nil {
		t.Fatalf("a protocol without port: %v", err)
	}
	egress, _, _ = unstructured.NestedSlice(u.Object, "spec", "egress")
	if diff := cmp.Diff([]any{map[string]any{"ports": []any{map[string]any{"port": "0", "protocol": "UDP"}}}}, egress[3].(map[string]any)["toPorts"]); diff != "" {
		t.Errorf("toPorts (-want +got):\n%s", diff)
	}

	none, err := ciliumpolicy.Hosts(&intent.Intent{Name: "x", Namespace: "ai"})
	if none != nil || err != nil {
		t.Errorf("Hosts without host rules = %v, %v", none, err)
	}
}

func TestHostsSpecErrors(t *testing.T) {
	tests := []struct {
		name string
		wi   *isolationv1alpha1.WorkloadIsolation
		text string
	}{
		{"dns None", hostsIsolation("None", isolationv1alpha1.EgressRule{Name: "m", To: []isolationv1alpha1.EgressPeer{{Preset: "huggingface"}}}), "dns None leaves them unreachable"},
		{"a bare wildcard", hostsIsolation("", isolationv1alpha1.EgressRule{Name: "m", To: []isolationv1alpha1.EgressPeer{{Hosts: []string{"*"}}}}), "lower-case DNS name"},
		{"upper case", hostsIsolation("", isolationv1alpha1.EgressRule{Name: "m", To: []isolationv1alpha1.EgressPeer{{Hosts: []string{"HF.co"}}}}), "lower-case DNS name"},
		{"a hosts preset as DNS", hostsIsolation("huggingface", isolationv1alpha1.EgressRule{Name: "m", To: []isolationv1alpha1.EgressPeer{{Preset: "minio"}}}), "names hosts"},
		{"a long label", hostsIsolation("", isolationv1alpha1.EgressRule{Name: "m", To: []isolationv1alpha1.EgressPeer{{Hosts: []string{strings.Repeat("a", 64) + ".com"}}}}), "63"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := intent.FromSpec(tt.wi, metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}}, catalog(t, ""))
			var specErr *intent.SpecError
			if !errors.As(err, &specErr) || specErr.Reason != isolationv1alpha1.ReasonInvalidSpec || !strings.Contains(err.Error(), tt.text) {
				t.Errorf("FromSpec error = %v, want InvalidSpec containing %q", err, tt.text)
			}
		})
	}
}
