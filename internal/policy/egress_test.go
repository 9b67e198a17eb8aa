package policy_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/policy"
)

// The seed resource with egress to the object store only: the default-deny
// covers both directions, DNS stays allowed, and the object store is reached
// on the preset's port.
const egressPolicies = `
- metadata: {name: local-ai-default-deny}
  spec:
    policyTypes: [Ingress, Egress]
- metadata: {name: local-ai-allow-nginx}
  spec:
    policyTypes: [Ingress]
- metadata: {name: local-ai-dns, labels: {isolation.isolator.dev/rule: dns}}
  spec:
    policyTypes: [Egress]
    egress:
    - to:
      - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}
        podSelector: {matchLabels: {k8s-app: kube-dns}}
      - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}
        podSelector: {matchLabels: {k8s-app: node-local-dns}}
      - ipBlock: {cidr: 169.254.20.10/32}
      ports:
      - {protocol: UDP, port: 53}
      - {protocol: TCP, port: 53}
- metadata: {name: local-ai-egress-models, labels: {isolation.isolator.dev/rule: egress-models}}
  spec:
    policyTypes: [Egress]
    egress:
    - to:
      - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: minio}}
        podSelector: {matchLabels: {app.kubernetes.io/name: minio}}
      ports:
      - {protocol: TCP, port: 9000}
`

func seedWithEgress(egress ...isolationv1alpha1.EgressRule) *isolationv1alpha1.WorkloadIsolation {
	wi := isolation("local-ai", isolationv1alpha1.IngressRule{
		Name:  "nginx",
		From:  []isolationv1alpha1.IngressPeer{{Preset: "ingress-nginx"}},
		Ports: []isolationv1alpha1.Port{{Protocol: corev1.ProtocolTCP, Port: ptr.To(intstr.FromInt32(8080))}},
	})
	wi.Spec.Egress = egress
	if wi.Spec.Egress == nil {
		wi.Spec.Egress = []isolationv1alpha1.EgressRule{}
	}
	return wi
}

func TestBuildEgress(t *testing.T) {
	wi := seedWithEgress(isolationv1alpha1.EgressRule{Name: "models", To: []isolationv1alpha1.EgressPeer{{Preset: "minio"}}})
	got, err := policy.Build(wi, localAI, catalog(t))
	if err != nil {
		t.Fatal(err)
	}
	var want []networkingv1.NetworkPolicy
	if err := yaml.UnmarshalStrict([]byte(egressPolicies), &want); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("got %d policies %v, want %d", len(got), policyNames(got), len(want))
	}
	for i := range want {
		g := got[i]
		if g.Name != want[i].Name {
			t.Errorf("policy %d is %s, want %s", i, g.Name, want[i].Name)
		}
		if diff := cmp.Diff(want[i].Spec.PolicyTypes, g.Spec.PolicyTypes); diff != "" {
			t.Errorf("%s policyTypes (-want +got):\n%s", g.Name, diff)
		}
		if want[i].Spec.Egress != nil {
			if diff := cmp.Diff(want[i].Spec.Egress, g.Spec.Egress); diff != "" {
				t.Errorf("%s egress (-want +got):\n%s", g.Name, diff)
			}
		}
		if label := want[i].Labels[policy.LabelRule]; label != "" && g.Labels[policy.LabelRule] != label {
			t.Errorf("%s rule label %q, want %q", g.Name, g.Labels[policy.LabelRule], label)
		}
		if !equalSelector(g, localAI.MatchLabels) || g.Spec.Ingress != nil && g.Spec.Egress != nil {
			t.Errorf("%s selects %v, ingress %v egress %v", g.Name, g.Spec.PodSelector, g.Spec.Ingress, g.Spec.Egress)
		}
		if g.OwnerReferences[0].UID != "uid-1" || !*g.OwnerReferences[0].Controller {
			t.Errorf("%s is not controlled by the WorkloadIsolation", g.Name)
		}
	}
	if generated := policy.GeneratedNames(wi); !slices.Equal(generated, policyNames(got)) {
		t.Errorf("GeneratedNames = %v, want the built names %v", generated, policyNames(got))
	}
}

func policyNames(nps []networkingv1.NetworkPolicy) []string {
	var out []string
	for _, np := range nps {
		out = append(out, np.Name)
	}
	return out
}

func equalSelector(np networkingv1.NetworkPolicy, labels map[string]string) bool {
	return cmp.Equal(np.Spec.PodSelector.MatchLabels, labels) && len(np.Spec.PodSelector.MatchExpressions) == 0
}

func TestBuildEgressVariants(t *testing.T) {
	tcp := func(port int32) isolationv1alpha1.Port {
		return isolationv1alpha1.Port{Protocol: corev1.ProtocolTCP, Port: ptr.To(intstr.FromInt32(port))}
	}
	tests := []struct {
		name      string
		wi        *isolationv1alpha1.WorkloadIsolation
		wantNames []string
		check     func(t *testing.T, got []networkingv1.NetworkPolicy)
	}{{
		name:      "empty egress: deny all egress but DNS",
		wi:        seedWithEgress(),
		wantNames: []string{"local-ai-default-deny", "local-ai-allow-nginx", "local-ai-dns"},
	}, {
		name: "dns None: no name resolution either",
		wi: func() *isolationv1alpha1.WorkloadIsolation {
			wi := seedWithEgress()
			wi.Spec.DNS = "None"
			return wi
		}(),
		wantNames: []string{"local-ai-default-deny", "local-ai-allow-nginx"},
		check: func(t *testing.T, got []networkingv1.NetworkPolicy) {
			if !slices.Contains(got[0].Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
				t.Errorf("default-deny does not deny egress: %v", got[0].Spec.PolicyTypes)
			}
		},
	}, {
		name: "explicit ports win over the preset's",
		wi: seedWithEgress(isolationv1alpha1.EgressRule{Name: "models", To: []isolationv1alpha1.EgressPeer{{Preset: "minio", PresetNamespace: "storage"}},
			Ports: []isolationv1alpha1.Port{tcp(9443)}}),
		wantNames: []string{"local-ai-default-deny", "local-ai-allow-nginx", "local-ai-dns", "local-ai-egress-models"},
		check: func(t *testing.T, got []networkingv1.NetworkPolicy) {
			rule := got[3].Spec.Egress[0]
			if len(rule.Ports) != 1 || rule.Ports[0].Port.IntVal != 9443 {
				t.Errorf("ports %v, want only 9443", rule.Ports)
			}
			if ns := rule.To[0].NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"]; ns != "storage" {
				t.Errorf("presetNamespace not applied: %v", rule.To[0].NamespaceSelector)
			}
		},
	}, {
		name: "a preset among other destinations with the rule's own ports",
		wi: seedWithEgress(isolationv1alpha1.EgressRule{Name: "mixed", To: []isolationv1alpha1.EgressPeer{
			{Preset: "minio"}, {IPBlock: &isolationv1alpha1.IPBlock{CIDR: "203.0.113.0/24"}},
		}, Ports: []isolationv1alpha1.Port{tcp(443)}}),
		wantNames: []string{"local-ai-default-deny", "local-ai-allow-nginx", "local-ai-dns", "local-ai-egress-mixed"},
		check: func(t *testing.T, got []networkingv1.NetworkPolicy) {
			if rule := got[3].Spec.Egress[0]; len(rule.Ports) != 1 || rule.Ports[0].Port.IntVal != 443 || len(rule.To) != 2 {
				t.Errorf("got %+v", rule)
			}
		},
	}, {
		name: "the longest egress rule name still gives a valid rule label",
		wi: seedWithEgress(isolationv1alpha1.EgressRule{Name: strings.Repeat("m", 63), To: []isolationv1alpha1.EgressPeer{
			{IPBlock: &isolationv1alpha1.IPBlock{CIDR: "203.0.113.0/24"}},
		}}),
		wantNames: []string{"local-ai-default-deny", "local-ai-allow-nginx", "local-ai-dns", policy.EgressName("local-ai", strings.Repeat("m", 63))},
		check: func(t *testing.T, got []networkingv1.NetworkPolicy) {
			for k, v := range got[3].Labels {
				if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
					t.Errorf("label %s=%q: %v", k, v, errs)
				}
			}
		},
	}, {
		name: "a dns preset an administrator defined",
		wi: func() *isolationv1alpha1.WorkloadIsolation {
			wi := seedWithEgress()
			wi.Spec.DNS = "minio"
			return wi
		}(),
		wantNames: []string{"local-ai-default-deny", "local-ai-allow-nginx", "local-ai-dns"},
		check: func(t *testing.T, got []networkingv1.NetworkPolicy) {
			if p := got[2].Spec.Egress[0].Ports; len(p) != 1 || p[0].Port.IntVal != 9000 {
				t.Errorf("dns policy ports %v", p)
			}
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := policy.Build(tt.wi, localAI, catalog(t))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(policyNames(got), tt.wantNames) {
				t.Fatalf("policies %v, want %v", policyNames(got), tt.wantNames)
			}
			if generated := policy.GeneratedNames(tt.wi); !slices.Equal(generated, tt.wantNames) {
				t.Errorf("GeneratedNames = %v, want %v", generated, tt.wantNames)
			}
			if tt.check != nil {
				tt.check(t, got)
			}
		})
	}
}

func TestBuildEgressErrors(t *testing.T) {
	tests := []struct {
		name       string
		wi         *isolationv1alpha1.WorkloadIsolation
		wantReason string
		wantMsg    string
	}{{
		name:       "unknown egress preset lists the egress presets",
		wi:         seedWithEgress(isolationv1alpha1.EgressRule{Name: "x", To: []isolationv1alpha1.EgressPeer{{Preset: "s3"}}}),
		wantReason: isolationv1alpha1.ReasonUnknownPreset,
		wantMsg:    `unknown preset "s3" (known presets: [cluster-dns huggingface minio])`,
	}, {
		name:       "a sources-only preset cannot be a destination",
		wi:         seedWithEgress(isolationv1alpha1.EgressRule{Name: "x", To: []isolationv1alpha1.EgressPeer{{Preset: "ingress-nginx"}}}),
		wantReason: isolationv1alpha1.ReasonInvalidSpec,
		wantMsg:    `preset "ingress-nginx" lists sources (from) only: use it in ingress`,
	}, {
		name: "a preset's ports cannot silently become all ports of several destinations",
		wi: seedWithEgress(isolationv1alpha1.EgressRule{Name: "x", To: []isolationv1alpha1.EgressPeer{
			{Preset: "minio"}, {Preset: "minio", PresetNamespace: "minio2"},
		}}),
		wantReason: isolationv1alpha1.ReasonInvalidSpec,
		wantMsg:    "spec.egress[0].to[0]: preset minio declares ports, which cannot apply to the rule's other destinations",
	}, {
		name: "unknown dns preset",
		wi: func() *isolationv1alpha1.WorkloadIsolation {
			wi := seedWithEgress()
			wi.Spec.DNS = "corp-dns"
			return wi
		}(),
		wantReason: isolationv1alpha1.ReasonUnknownPreset,
		wantMsg:    `unknown preset "corp-dns"`,
	}, {
		name: "invalid label value in a destination",
		wi: seedWithEgress(isolationv1alpha1.EgressRule{Name: "x", To: []isolationv1alpha1.EgressPeer{{
			PodSelector: &isolationv1alpha1.LabelSelector{MatchLabels: map[string]string{"app": "-bad-"}},
		}}}),
		wantReason: isolationv1alpha1.ReasonInvalidSpec,
		wantMsg:    "spec.egress[0].to[0].podSelector.matchLabels",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := policy.Build(tt.wi, localAI, catalog(t))
			var specErr *policy.SpecError
			if !errors.As(err, &specErr) {
				t.Fatalf("error %v, want a SpecError", err)
			}
			if specErr.Reason != tt.wantReason || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("got %s: %v, want %s containing %q", specErr.Reason, err, tt.wantReason, tt.wantMsg)
			}
		})
	}
}

func TestNoEgressKeepsIngressOnly(t *testing.T) {
	wi := seedWithEgress()
	wi.Spec.Egress = nil
	got, err := policy.Build(wi, localAI, catalog(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, np := range got {
		if slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) || np.Spec.Egress != nil {
			t.Errorf("%s restricts egress although the spec declares none", np.Name)
		}
	}
}

func TestMissingNamespacesCoversEgress(t *testing.T) {
	wi := seedWithEgress(isolationv1alpha1.EgressRule{Name: "models", To: []isolationv1alpha1.EgressPeer{{Preset: "minio", PresetNamespace: "storage"}}})
	wi.Spec.Ingress[0].From[0].PresetNamespace = "ingress"
	got := policy.MissingNamespaces(wi, func(ns string) bool { return ns == "ingress" })
	want := []string{"egress rule models: preset minio points at namespace storage, which does not exist"}
	if !slices.Equal(got, want) {
		t.Errorf("MissingNamespaces = %q, want %q", got, want)
	}
}
