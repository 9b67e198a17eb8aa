package ciliumpolicy_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/ciliumpolicy"
	"github.com/isolator-dev/isolator/internal/intent"
	"github.com/isolator-dev/isolator/internal/policy"
	"github.com/isolator-dev/isolator/internal/preset"
)

const adminHTTP = `presets:
- name: health
  http:
  - {method: GET, path: /healthz}
  - {method: POST, path: /v1/chat/completions}
`

func httpIsolation(rules ...isolationv1alpha1.IngressRule) *isolationv1alpha1.WorkloadIsolation {
	return &isolationv1alpha1.WorkloadIsolation{
		ObjectMeta: metav1.ObjectMeta{Name: "local-ai", Namespace: "ai", UID: "uid-1"},
		Spec:       isolationv1alpha1.WorkloadIsolationSpec{Ingress: rules},
	}
}

var port8080 = []isolationv1alpha1.Port{{Port: ptr.To(intstr.FromInt32(8080))}}

func TestHTTPRendersOnePolicyPerRuleAndNoNetworkPolicy(t *testing.T) {
	wi := httpIsolation(
		isolationv1alpha1.IngressRule{Name: "gateway", From: []isolationv1alpha1.IngressPeer{
			{Preset: "ingress-nginx"},
			{IPBlock: &isolationv1alpha1.IPBlock{CIDR: "10.0.0.0/8", Except: []string{"10.1.0.0/16"}}},
		}, Ports: port8080, HTTP: &isolationv1alpha1.HTTPAllow{
			Presets:  []string{"health", "openai-inference"},
			Requests: []isolationv1alpha1.HTTPRequest{{Method: "GET", Path: "/healthz"}, {Path: "/v1/files"}},
		}},
		isolationv1alpha1.IngressRule{Name: "monitoring", From: []isolationv1alpha1.IngressPeer{
			{PodSelector: &isolationv1alpha1.LabelSelector{MatchLabels: map[string]string{"app": "prometheus"}}},
		}, Ports: []isolationv1alpha1.Port{{Port: ptr.To(intstr.FromInt32(9090))}}},
	)
	in, err := intent.FromSpec(wi, metav1.LabelSelector{MatchLabels: map[string]string{"app": "local-ai"}}, catalog(t, adminHTTP))
	if err != nil {
		t.Fatal(err)
	}
	// Repeats across presets and requests are dropped, spec order kept.
	got := in.Ingress[0].HTTP
	if len(got) != 2+16+1 || got[0] != (isolationv1alpha1.HTTPRequest{Method: "GET", Path: "/healthz"}) ||
		got[len(got)-1] != (isolationv1alpha1.HTTPRequest{Path: "/v1/files"}) {
		t.Errorf("resolved requests = %v", got)
	}

	var names []string
	for _, np := range policy.NetworkPolicies(in) {
		names = append(names, np.Name)
	}
	if diff := cmp.Diff([]string{"local-ai-default-deny", "local-ai-allow-monitoring"}, names); diff != "" {
		t.Errorf("NetworkPolicies (-want +got):\n%s", diff)
	}

	objs, err := ciliumpolicy.HTTP(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 1 || objs[0].GetName() != "local-ai-http-gateway" || objs[0].GetLabels()[policy.LabelRule] != "http-gateway" {
		t.Fatalf("HTTP = %v", objs)
	}
	ingress, _, _ := unstructured.NestedSlice(objs[0].Object, "spec", "ingress")
	if len(ingress) != 2 {
		t.Fatalf("ingress = %v, want one rule for endpoints and one for CIDRs", ingress)
	}
	cidrs := ingress[1].(map[string]any)["fromCIDRSet"]
	if diff := cmp.Diff([]any{map[string]any{"cidr": "10.0.0.0/8", "except": []any{"10.1.0.0/16"}}}, cidrs); diff != "" {
		t.Errorf("fromCIDRSet (-want +got):\n%s", diff)
	}
	for _, rule := range ingress {
		toPorts := rule.(map[string]any)["toPorts"].([]any)[0].(map[string]any)
		if diff := cmp.Diff([]any{map[string]any{"port": "8080", "protocol": "TCP"}}, toPorts["ports"]); diff != "" {
			t.Errorf("ports (-want +got):\n%s", diff)
		}
		http := toPorts["rules"].(map[string]any)["http"].([]any)
		if len(http) != 19 {
			t.Errorf("%d HTTP rules, want 19", len(http))
		}
		if diff := cmp.Diff(map[string]any{"path": `^/v1/files(\?.*)?$`}, http[18]); diff != "" {
			t.Errorf("a request without method admits every method (-want +got):\n%s", diff)
		}
	}
}

func TestHTTPPeersSayTheirNamespace(t *testing.T) {
	wi := httpIsolation(isolationv1alpha1.IngressRule{Name: "r", From: []isolationv1alpha1.IngressPeer{
		{PodSelector: &isolationv1alpha1.LabelSelector{}},
		{NamespaceSelector: &isolationv1alpha1.LabelSelector{}},
	}, Ports: port8080, HTTP: &isolationv1alpha1.HTTPAllow{Presets: []string{"openai-inference"}}})
	in, err := intent.FromSpec(wi, metav1.LabelSelector{MatchLabels: map[string]string{"app": "local-ai"}}, catalog(t, adminHTTP))
	if err != nil {
		t.Fatal(err)
	}
	objs, err := ciliumpolicy.HTTP(in)
	if err != nil {
		t.Fatal(err)
	}
	endpoints, _, _ := unstructured.NestedSlice(objs[0].Object, "spec", "ingress")
	want := []any{
		// Every pod of the policy's namespace.
		map[string]any{"matchLabels": map[string]any{"k8s:io.kubernetes.pod.namespace": "ai"}},
		// Every pod of every namespace.
		map[string]any{"matchLabels": map[string]any{}, "matchExpressions": []any{
			map[string]any{"key": "k8s:io.kubernetes.pod.namespace", "operator": "Exists"}}},
	}
	if diff := cmp.Diff(want, endpoints[0].(map[string]any)["fromEndpoints"]); diff != "" {
		t.Errorf("fromEndpoints (-want +got):\n%s", diff)
	}
}

func TestHTTPSpecErrors(t *testing.T) {
	tcp := []isolationv1alpha1.Port{{Protocol: corev1.ProtocolTCP, Port: ptr.To(intstr.FromInt32(8080))}}
	tests := []struct {
		name   string
		ports  []isolationv1alpha1.Port
		http   isolationv1alpha1.HTTPAllow
		reason string
		text   string
	}{
		{"unknown preset", tcp, isolationv1alpha1.HTTPAllow{Presets: []string{"nope"}}, isolationv1alpha1.ReasonUnknownPreset, "health"},
		{"a preset without requests", tcp, isolationv1alpha1.HTTPAllow{Presets: []string{"ingress-nginx"}}, isolationv1alpha1.ReasonInvalidSpec, "lists no HTTP requests"},
		{"no ports", nil, isolationv1alpha1.HTTPAllow{Presets: []string{"health"}}, isolationv1alpha1.ReasonInvalidSpec, "http needs ports"},
		{"UDP", []isolationv1alpha1.Port{{Protocol: corev1.ProtocolUDP, Port: ptr.To(intstr.FromInt32(53))}}, isolationv1alpha1.HTTPAllow{Presets: []string{"health"}}, isolationv1alpha1.ReasonInvalidSpec, "http needs ports"},
		{"a port range", []isolationv1alpha1.Port{{Port: ptr.To(intstr.FromInt32(80)), EndPort: ptr.To(int32(90))}}, isolationv1alpha1.HTTPAllow{Presets: []string{"health"}}, isolationv1alpha1.ReasonInvalidSpec, "http needs ports"},
		{"a path with a query", tcp, isolationv1alpha1.HTTPAllow{Requests: []isolationv1alpha1.HTTPRequest{{Path: "/v1/models?x=1"}}}, isolationv1alpha1.ReasonInvalidSpec, "exact path"},
		{"a lower-case method", tcp, isolationv1alpha1.HTTPAllow{Requests: []isolationv1alpha1.HTTPRequest{{Method: "get", Path: "/"}}}, isolationv1alpha1.ReasonInvalidSpec, "method"},
		{"nothing", tcp, isolationv1alpha1.HTTPAllow{}, isolationv1alpha1.ReasonInvalidSpec, "at least one"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			http := tt.http
			wi := httpIsolation(isolationv1alpha1.IngressRule{Name: "r", From: []isolationv1alpha1.IngressPeer{{Preset: "ingress-nginx"}}, Ports: tt.ports, HTTP: &http})
			_, err := intent.FromSpec(wi, metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}}, catalog(t, adminHTTP))
			var specErr *intent.SpecError
			if !errors.As(err, &specErr) || specErr.Reason != tt.reason || !strings.Contains(err.Error(), tt.text) {
				t.Errorf("FromSpec error = %v, want reason %s containing %q", err, tt.reason, tt.text)
			}
		})
	}
}

func TestHTTPPresetsAreValidated(t *testing.T) {
	bad := []preset.Preset{{Name: "bad", HTTP: []isolationv1alpha1.HTTPRequest{{Method: "TRACE", Path: "/"}, {Path: "no-slash"}}}}
	_, err := preset.NewCatalog(bad)
	if err == nil || !strings.Contains(err.Error(), "TRACE") || !strings.Contains(err.Error(), "no-slash") {
		t.Errorf("NewCatalog = %v, want both requests refused", err)
	}
}

// Cilium joins rules that admit the same sources on the same port: a rule
// without http would admit every request from the sources of one with it.
func TestHTTPRulesMustStandApartFromOtherRules(t *testing.T) {
	gateway := isolationv1alpha1.IngressRule{Name: "gateway", From: []isolationv1alpha1.IngressPeer{{Preset: "ingress-nginx"}},
		Ports: port8080, HTTP: &isolationv1alpha1.HTTPAllow{Presets: []string{"openai-inference"}}}
	ns := func(name string) *isolationv1alpha1.LabelSelector {
		return &isolationv1alpha1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": name}}
	}
	tests := []struct {
		name  string
		other isolationv1alpha1.IngressRule
		ok    bool
	}{
		{"every namespace on the same port", isolationv1alpha1.IngressRule{Name: "all", From: []isolationv1alpha1.IngressPeer{{NamespaceSelector: &isolationv1alpha1.LabelSelector{}}}, Ports: port8080}, false},
		{"every namespace on every port", isolationv1alpha1.IngressRule{Name: "all", From: []isolationv1alpha1.IngressPeer{{NamespaceSelector: &isolationv1alpha1.LabelSelector{}}}}, false},
		{"a namespace label nginx may carry", isolationv1alpha1.IngressRule{Name: "team", From: []isolationv1alpha1.IngressPeer{{NamespaceSelector: &isolationv1alpha1.LabelSelector{MatchLabels: map[string]string{"team": "web"}}}}, Ports: port8080}, false},
		{"another namespace", isolationv1alpha1.IngressRule{Name: "monitoring", From: []isolationv1alpha1.IngressPeer{{NamespaceSelector: ns("monitoring")}}, Ports: port8080}, true},
		{"pods of the own namespace", isolationv1alpha1.IngressRule{Name: "local", From: []isolationv1alpha1.IngressPeer{{PodSelector: &isolationv1alpha1.LabelSelector{}}}, Ports: port8080}, true},
		{"another port", isolationv1alpha1.IngressRule{Name: "metrics", From: []isolationv1alpha1.IngressPeer{{NamespaceSelector: &isolationv1alpha1.LabelSelector{}}}, Ports: []isolationv1alpha1.Port{{Port: ptr.To(intstr.FromInt32(9090))}}}, true},
		{"a named port", isolationv1alpha1.IngressRule{Name: "named", From: []isolationv1alpha1.IngressPeer{{NamespaceSelector: &isolationv1alpha1.LabelSelector{}}}, Ports: []isolationv1alpha1.Port{{Port: ptr.To(intstr.FromString("metrics"))}}}, false},
		{"addresses", isolationv1alpha1.IngressRule{Name: "lan", From: []isolationv1alpha1.IngressPeer{{IPBlock: &isolationv1alpha1.IPBlock{CIDR: "0.0.0.0/0"}}}, Ports: port8080}, true},
		{"another rule with http", isolationv1alpha1.IngressRule{Name: "admin", From: []isolationv1alpha1.IngressPeer{{Preset: "ingress-nginx"}}, Ports: port8080,
			HTTP: &isolationv1alpha1.HTTPAllow{Requests: []isolationv1alpha1.HTTPRequest{{Method: "GET", Path: "/healthz"}}}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := intent.FromSpec(httpIsolation(gateway, tt.other), metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}}, catalog(t, adminHTTP))
			var specErr *intent.SpecError
			switch {
			case tt.ok && err != nil:
				t.Errorf("FromSpec = %v, want no error", err)
			case !tt.ok && (!errors.As(err, &specErr) || !strings.Contains(err.Error(), "would admit every HTTP request")):
				t.Errorf("FromSpec = %v, want the overlap refused", err)
			}
		})
	}
}
