package preset_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/isolator-dev/isolator/internal/preset"
)

func mustCatalog(t *testing.T, docs ...string) preset.Catalog {
	t.Helper()
	lists := [][]preset.Preset{}
	for _, d := range append([]string{string(preset.BuiltinYAML())}, docs...) {
		p, err := preset.Parse([]byte(d))
		if err != nil {
			t.Fatal(err)
		}
		lists = append(lists, p)
	}
	c, err := preset.NewCatalog(lists...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func labels(kv ...string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: map[string]string{kv[0]: kv[1]}}
}

func TestBuiltinIngressNginx(t *testing.T) {
	got, err := mustCatalog(t).Resolve("ingress-nginx", "")
	if err != nil {
		t.Fatal(err)
	}
	want := []networkingv1.NetworkPolicyPeer{{
		NamespaceSelector: labels("kubernetes.io/metadata.name", "nginx"),
		PodSelector:       labels("app.kubernetes.io/name", "ingress-nginx"),
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestResolve(t *testing.T) {
	c := mustCatalog(t, `
presets:
- name: ingress-nginx
  description: redefined by the administrator
  from:
  - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: ingress-nginx}}
    podSelector: {matchLabels: {app.kubernetes.io/component: controller}}
- name: same-namespace-gateway
  from:
  - podSelector: {matchLabels: {app: gateway}}
- name: office
  from:
  - ipBlock: {cidr: 192.0.2.0/24}
`)
	tests := []struct {
		name, preset, namespace string
		want                    []networkingv1.NetworkPolicyPeer
		wantErr                 string
	}{{
		name: "administrator redefines a built-in", preset: "ingress-nginx",
		want: []networkingv1.NetworkPolicyPeer{{
			NamespaceSelector: labels("kubernetes.io/metadata.name", "ingress-nginx"),
			PodSelector:       labels("app.kubernetes.io/component", "controller"),
		}},
	}, {
		name: "namespace override replaces the namespace selector", preset: "ingress-nginx", namespace: "edge",
		want: []networkingv1.NetworkPolicyPeer{{
			NamespaceSelector: labels("kubernetes.io/metadata.name", "edge"),
			PodSelector:       labels("app.kubernetes.io/component", "controller"),
		}},
	}, {
		name: "namespace override adds a namespace selector to a pod-only peer", preset: "same-namespace-gateway", namespace: "edge",
		want: []networkingv1.NetworkPolicyPeer{{
			NamespaceSelector: labels("kubernetes.io/metadata.name", "edge"),
			PodSelector:       labels("app", "gateway"),
		}},
	}, {
		name: "ipBlock preset cannot take a namespace", preset: "office", namespace: "edge",
		wantErr: `preset "office" selects IP blocks, so presetNamespace "edge" cannot apply to it`,
	}, {
		name: "unknown preset names the known ones", preset: "nginx",
		wantErr: `unknown preset "nginx" (known presets: [ingress-nginx office same-namespace-gateway])`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.Resolve(tt.preset, tt.namespace)
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	var unknown *preset.UnknownError
	if _, err := c.Resolve("nope", ""); !errors.As(err, &unknown) {
		t.Errorf("an unknown preset must be an *UnknownError, got %T", err)
	}
}

func TestResolveReturnsACopy(t *testing.T) {
	c := mustCatalog(t)
	got, _ := c.Resolve("ingress-nginx", "")
	got[0].PodSelector.MatchLabels["app.kubernetes.io/name"] = "changed"
	again, _ := c.Resolve("ingress-nginx", "")
	if again[0].PodSelector.MatchLabels["app.kubernetes.io/name"] != "ingress-nginx" {
		t.Fatal("Resolve must not let callers modify the catalog")
	}
}

func TestInvalidPresets(t *testing.T) {
	tests := []struct{ name, doc, wantErr string }{
		{"typo in a field", "presets:\n- name: a\n  form: []\n", `unknown field "form"`},
		{"no peers", "presets:\n- name: a\n  from: []\n", "presets[0].from: Required value: a preset needs at least one peer"},
		{"invalid name", "presets:\n- name: A_B\n  from: [{podSelector: {}}]\n", `presets[0].name: Invalid value: "A_B"`},
		{"duplicate name", "presets:\n- name: a\n  from: [{podSelector: {}}]\n- name: a\n  from: [{podSelector: {}}]\n", `presets[1].name: Duplicate value: "a"`},
		{"empty peer", "presets:\n- name: a\n  from: [{}]\n", "presets[0].from[0]: Required value: one of namespaceSelector, podSelector or ipBlock"},
		{"ipBlock with selector", "presets:\n- name: a\n  from: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]\n", "presets[0].from[0]: Forbidden: ipBlock cannot be combined"},
		{"invalid cidr", "presets:\n- name: a\n  from: [{ipBlock: {cidr: 10.0.0.0}}]\n", `presets[0].from[0].ipBlock.cidr: Invalid value: "10.0.0.0": must be a valid CIDR`},
		{"except outside cidr", "presets:\n- name: a\n  from: [{ipBlock: {cidr: 10.0.0.0/8, except: [11.0.0.0/16]}}]\n", "presets[0].from[0].ipBlock.except[0]"},
		{"invalid selector operator", "presets:\n- name: a\n  from: [{podSelector: {matchExpressions: [{key: a, operator: Equals}]}}]\n", `presets[0].from[0].podSelector.matchExpressions[0].operator: Invalid value: "Equals"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			list, err := preset.Parse([]byte(tt.doc))
			if err == nil {
				_, err = preset.NewCatalog(list)
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}
