package policy_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/policy"
	"github.com/isolator-dev/isolator/internal/preset"
)

func catalog(t *testing.T) preset.Catalog {
	t.Helper()
	builtin, err := preset.Parse(preset.BuiltinYAML())
	if err != nil {
		t.Fatal(err)
	}
	c, err := preset.NewCatalog(builtin)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func isolation(name string, rules ...isolationv1alpha1.IngressRule) *isolationv1alpha1.WorkloadIsolation {
	return &isolationv1alpha1.WorkloadIsolation{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "local-ai", UID: "uid-1"},
		Spec:       isolationv1alpha1.WorkloadIsolationSpec{Ingress: rules},
	}
}

var localAI = metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": "local-ai"}}

// The seed case must produce the walkthrough's two policies, field for field.
const seedPolicies = `
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata:
    name: local-ai-default-deny
    namespace: local-ai
    labels:
      app.kubernetes.io/managed-by: isolator
      isolation.isolator.dev/workloadisolation: local-ai
      isolation.isolator.dev/rule: default-deny
    ownerReferences:
    - {apiVersion: isolation.isolator.dev/v1alpha1, kind: WorkloadIsolation, name: local-ai, uid: uid-1, controller: true, blockOwnerDeletion: true}
  spec:
    podSelector:
      matchLabels:
        app.kubernetes.io/name: local-ai
    policyTypes: [Ingress]
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata:
    name: local-ai-allow-nginx
    namespace: local-ai
    labels:
      app.kubernetes.io/managed-by: isolator
      isolation.isolator.dev/workloadisolation: local-ai
      isolation.isolator.dev/rule: nginx
    ownerReferences:
    - {apiVersion: isolation.isolator.dev/v1alpha1, kind: WorkloadIsolation, name: local-ai, uid: uid-1, controller: true, blockOwnerDeletion: true}
  spec:
    podSelector:
      matchLabels:
        app.kubernetes.io/name: local-ai
    policyTypes: [Ingress]
    ingress:
    - from:
      - namespaceSelector:
          matchLabels:
            kubernetes.io/metadata.name: nginx
        podSelector:
          matchLabels:
            app.kubernetes.io/name: ingress-nginx
      ports:
      - protocol: TCP
        port: 8080
`

func TestBuildSeedCase(t *testing.T) {
	wi := isolation("local-ai", isolationv1alpha1.IngressRule{
		Name:  "nginx",
		From:  []isolationv1alpha1.IngressPeer{{Preset: "ingress-nginx"}},
		Ports: []isolationv1alpha1.Port{{Protocol: corev1.ProtocolTCP, Port: ptr.To(intstr.FromInt32(8080))}},
	})
	got, err := policy.Build(wi, localAI, catalog(t))
	if err != nil {
		t.Fatal(err)
	}
	var want []networkingv1.NetworkPolicy
	if err := yaml.UnmarshalStrict([]byte(seedPolicies), &want); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("seed policies differ (-want +got):\n%s", diff)
	}
}

func TestBuildRules(t *testing.T) {
	sel := func(kv ...string) *isolationv1alpha1.LabelSelector {
		return &isolationv1alpha1.LabelSelector{MatchLabels: map[string]string{kv[0]: kv[1]}}
	}
	metaSel := func(kv ...string) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchLabels: map[string]string{kv[0]: kv[1]}}
	}
	tests := []struct {
		name      string
		rule      isolationv1alpha1.IngressRule
		wantRule  networkingv1.NetworkPolicyIngressRule
		wantError string
	}{{
		name: "preset pointed at another namespace",
		rule: isolationv1alpha1.IngressRule{Name: "r", From: []isolationv1alpha1.IngressPeer{{Preset: "ingress-nginx", PresetNamespace: "ingress"}}},
		wantRule: networkingv1.NetworkPolicyIngressRule{From: []networkingv1.NetworkPolicyPeer{{
			NamespaceSelector: metaSel("kubernetes.io/metadata.name", "ingress"),
			PodSelector:       metaSel("app.kubernetes.io/name", "ingress-nginx"),
		}}},
	}, {
		name: "pods of the same namespace, all ports",
		rule: isolationv1alpha1.IngressRule{Name: "r", From: []isolationv1alpha1.IngressPeer{{PodSelector: sel("app", "client")}}},
		wantRule: networkingv1.NetworkPolicyIngressRule{From: []networkingv1.NetworkPolicyPeer{{
			PodSelector: metaSel("app", "client"),
		}}},
	}, {
		name: "namespaces and pods in one peer, several sources, named and ranged ports",
		rule: isolationv1alpha1.IngressRule{Name: "r",
			From: []isolationv1alpha1.IngressPeer{
				{NamespaceSelector: sel("team", "ml"), PodSelector: sel("app", "gateway")},
				{NamespaceSelector: &isolationv1alpha1.LabelSelector{MatchExpressions: []isolationv1alpha1.LabelSelectorRequirement{
					{Key: "env", Operator: metav1.LabelSelectorOpIn, Values: []string{"prod", "staging"}},
				}}},
			},
			Ports: []isolationv1alpha1.Port{
				{Port: ptr.To(intstr.FromString("http"))},
				{Protocol: corev1.ProtocolUDP, Port: ptr.To(intstr.FromInt32(9000)), EndPort: ptr.To[int32](9100)},
			},
		},
		wantRule: networkingv1.NetworkPolicyIngressRule{
			From: []networkingv1.NetworkPolicyPeer{
				{NamespaceSelector: metaSel("team", "ml"), PodSelector: metaSel("app", "gateway")},
				{NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
					{Key: "env", Operator: metav1.LabelSelectorOpIn, Values: []string{"prod", "staging"}},
				}}},
			},
			Ports: []networkingv1.NetworkPolicyPort{
				{Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(intstr.FromString("http"))},
				{Protocol: ptr.To(corev1.ProtocolUDP), Port: ptr.To(intstr.FromInt32(9000)), EndPort: ptr.To[int32](9100)},
			},
		},
	}, {
		name: "ipBlock with except",
		rule: isolationv1alpha1.IngressRule{Name: "r", From: []isolationv1alpha1.IngressPeer{{IPBlock: &isolationv1alpha1.IPBlock{CIDR: "10.0.0.0/8", Except: []string{"10.1.0.0/16"}}}}},
		wantRule: networkingv1.NetworkPolicyIngressRule{From: []networkingv1.NetworkPolicyPeer{{
			IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8", Except: []string{"10.1.0.0/16"}},
		}}},
	}, {
		name:      "unknown preset",
		rule:      isolationv1alpha1.IngressRule{Name: "r", From: []isolationv1alpha1.IngressPeer{{Preset: "nginx"}}},
		wantError: isolationv1alpha1.ReasonUnknownPreset + `: unknown preset "nginx" (known presets: [ingress-nginx])`,
	}, {
		name:      "invalid label value in a selector",
		rule:      isolationv1alpha1.IngressRule{Name: "r", From: []isolationv1alpha1.IngressPeer{{PodSelector: sel("app", "not a value")}}},
		wantError: isolationv1alpha1.ReasonInvalidSpec + `: spec.ingress[0].from[0].podSelector.matchLabels: Invalid value: "not a value"`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := policy.Build(isolation("wi", tt.rule), localAI, catalog(t))
			if tt.wantError != "" {
				var specErr *policy.SpecError
				if !errors.As(err, &specErr) {
					t.Fatalf("want a SpecError, got %v", err)
				}
				if msg := specErr.Reason + ": " + specErr.Error(); !strings.HasPrefix(msg, tt.wantError) {
					t.Fatalf("error\n got %s\nwant %s...", msg, tt.wantError)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 2 {
				t.Fatalf("want default-deny and one allow policy, got %d", len(got))
			}
			if diff := cmp.Diff([]networkingv1.NetworkPolicyIngressRule{tt.wantRule}, got[1].Spec.Ingress); diff != "" {
				t.Errorf("ingress (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBuildDenyAll(t *testing.T) {
	got, err := policy.Build(isolation("wi"), localAI, catalog(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Name != "wi-default-deny" || len(got[0].Spec.Ingress) != 0 {
		t.Fatalf("want only an empty default-deny policy, got %+v", got)
	}
}

func TestBuildRejectsInvalidTarget(t *testing.T) {
	target := metav1.LabelSelector{MatchLabels: map[string]string{"app": "-bad-"}}
	_, err := policy.Build(isolation("wi"), target, catalog(t))
	var specErr *policy.SpecError
	if !errors.As(err, &specErr) || specErr.Reason != isolationv1alpha1.ReasonInvalidSpec {
		t.Fatalf("want an InvalidSpec error, got %v", err)
	}
}

func TestNames(t *testing.T) {
	long := strings.Repeat("a", 253)
	if got := policy.AllowName("local-ai", "nginx"); got != "local-ai-allow-nginx" {
		t.Errorf("AllowName = %q", got)
	}
	exact := strings.Repeat("b", policy.MaxNameLength-len("a-allow-"))
	if got := policy.AllowName("a", exact); got != "a-allow-"+exact {
		t.Errorf("a name of exactly %d characters must stay as is, got %q", policy.MaxNameLength, got)
	}
	if got := policy.AllowName("a", exact+"b"); len(got) != policy.MaxNameLength || !strings.HasPrefix(got, "a-allow-bbbb") {
		t.Errorf("a name one character over the limit must be cut to %d with a hash suffix, got %q", policy.MaxNameLength, got)
	}
	seen := map[string]string{}
	for _, in := range [][2]string{
		{long, "nginx"}, {long, "nginx2"}, {long[:60], "x"}, {long[:61], "x"}, {"local-ai", strings.Repeat("r", 63)},
		{strings.Repeat("a-", 40), "x"},
	} {
		got := policy.AllowName(in[0], in[1])
		if errs := validation.IsDNS1123Label(got); len(errs) > 0 {
			t.Errorf("AllowName(%d chars, %q) = %q is not a DNS label: %v", len(in[0]), in[1], got, errs)
		}
		if again := policy.AllowName(in[0], in[1]); again != got {
			t.Errorf("AllowName is not stable: %q then %q", got, again)
		}
		if prev, dup := seen[got]; dup {
			t.Errorf("AllowName gives %q for both %q and %q", got, prev, in)
		}
		seen[got] = in[0] + "/" + in[1]
	}
	if got := policy.DefaultDenyName("local-ai"); got != "local-ai-default-deny" {
		t.Errorf("DefaultDenyName = %q", got)
	}
	if got := policy.OwnerLabelValue(long); len(validation.IsValidLabelValue(got)) > 0 {
		t.Errorf("OwnerLabelValue(253 chars) = %q is not a label value", got)
	}
}

func TestUpToDate(t *testing.T) {
	wi := isolation("local-ai", isolationv1alpha1.IngressRule{
		Name: "nginx", From: []isolationv1alpha1.IngressPeer{{Preset: "ingress-nginx"}},
		Ports: []isolationv1alpha1.Port{{Port: ptr.To(intstr.FromInt32(8080))}},
	})
	desired, err := policy.Build(wi, localAI, catalog(t))
	if err != nil {
		t.Fatal(err)
	}
	want := &desired[1]
	tests := []struct {
		name   string
		change func(*networkingv1.NetworkPolicy)
		want   bool
	}{
		{"identical", func(*networkingv1.NetworkPolicy) {}, true},
		{"extra label and annotation from someone else", func(np *networkingv1.NetworkPolicy) {
			np.Labels["team"] = "ml"
			np.Annotations = map[string]string{"note": "x"}
		}, true},
		{"empty instead of nil slices", func(np *networkingv1.NetworkPolicy) {
			np.Spec.PodSelector.MatchExpressions = []metav1.LabelSelectorRequirement{}
		}, true},
		{"port changed", func(np *networkingv1.NetworkPolicy) {
			np.Spec.Ingress[0].Ports[0].Port = ptr.To(intstr.FromInt32(9090))
		}, false},
		{"source added", func(np *networkingv1.NetworkPolicy) {
			np.Spec.Ingress[0].From = append(np.Spec.Ingress[0].From, networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{}})
		}, false},
		{"rule added", func(np *networkingv1.NetworkPolicy) {
			np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{})
		}, false},
		{"egress type added", func(np *networkingv1.NetworkPolicy) {
			np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
		}, false},
		{"target widened", func(np *networkingv1.NetworkPolicy) { np.Spec.PodSelector = metav1.LabelSelector{} }, false},
		{"generated label removed", func(np *networkingv1.NetworkPolicy) { delete(np.Labels, policy.LabelManagedBy) }, false},
		{"owner reference removed", func(np *networkingv1.NetworkPolicy) { np.OwnerReferences = nil }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			have := want.DeepCopy()
			tt.change(have)
			if got := policy.UpToDate(have, want); got != tt.want {
				t.Errorf("UpToDate = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestApplyObjectOwnsTheWholeSpec(t *testing.T) {
	desired, err := policy.Build(isolation("wi"), localAI, catalog(t))
	if err != nil {
		t.Fatal(err)
	}
	have := desired[0].DeepCopy()
	have.ResourceVersion = "42"
	u, err := policy.ApplyObject(&desired[0], have)
	if err != nil {
		t.Fatal(err)
	}
	for _, list := range []string{"ingress", "egress"} {
		rules, found, _ := unstructured.NestedSlice(u.Object, "spec", list)
		if !found || len(rules) != 0 {
			t.Fatalf("default-deny apply body must carry spec.%s: [], got found=%v %v", list, found, rules)
		}
	}
	if u.GetResourceVersion() != "42" {
		t.Errorf("apply body must carry the read resourceVersion as a precondition, got %q", u.GetResourceVersion())
	}
	if _, found := u.Object["status"]; found {
		t.Error("apply body must not carry status")
	}
	if _, found := u.Object["metadata"].(map[string]any)["creationTimestamp"]; found {
		t.Error("apply body must not carry creationTimestamp")
	}
}
