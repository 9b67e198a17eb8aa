package oracle

import (
	"testing"

	"github.com/mattfenwick/cyclonus/pkg/matcher"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/policy"
)

// Fixed scenarios after the Kubernetes NetworkPolicy e2e suite
// (test/e2e/network/netpol): the classic pod "a" in namespaces x, y, z, each
// labelled pod=<name>, with the target being x/a. Each case lists which
// connections must be allowed; every other one must be denied.

func upstreamScene(rules ...isolationv1alpha1.IngressRule) *scenario {
	s := &scenario{external: []string{"192.0.2.10", "192.0.2.200"}}
	for _, ns := range []string{targetNamespace, "y", "z"} {
		s.namespaces = append(s.namespaces, namespace{name: ns, labels: map[string]string{"kubernetes.io/metadata.name": ns, "ns": ns}})
		for _, name := range []string{"a", "b", "c"} {
			s.pods = append(s.pods, &pod{
				namespace: ns, name: name, labels: map[string]string{"pod": name},
				ip:    "10.244." + map[string]string{targetNamespace: "1", "y": "2", "z": "3"}[ns] + "." + map[string]string{"a": "1", "b": "2", "c": "3"}[name],
				ports: []corev1.ContainerPort{{Name: "serve-80-tcp", ContainerPort: 80, Protocol: corev1.ProtocolTCP}, {Name: "serve-81-tcp", ContainerPort: 81, Protocol: corev1.ProtocolTCP}},
			})
		}
	}
	s.ports = []port{{corev1.ProtocolTCP, 80}, {corev1.ProtocolTCP, 81}}
	s.wi = &isolationv1alpha1.WorkloadIsolation{
		ObjectMeta: metav1.ObjectMeta{Name: "x-a", Namespace: targetNamespace, UID: "uid"},
		Spec: isolationv1alpha1.WorkloadIsolationSpec{
			Target:  isolationv1alpha1.Target{PodSelector: &isolationv1alpha1.LabelSelector{MatchLabels: map[string]string{"pod": "a"}}},
			Ingress: rules,
		},
	}
	return s
}

func TestUpstreamScenarios(t *testing.T) {
	byNs := func(ns string) *isolationv1alpha1.LabelSelector {
		return &isolationv1alpha1.LabelSelector{MatchLabels: map[string]string{"ns": ns}}
	}
	byPod := func(name string) *isolationv1alpha1.LabelSelector {
		return &isolationv1alpha1.LabelSelector{MatchLabels: map[string]string{"pod": name}}
	}
	tests := []struct {
		name  string
		rules []isolationv1alpha1.IngressRule
		// allowed lists "source port" pairs that reach x/a; sources are
		// "ns/pod" or an IP.
		allowed []string
	}{{
		name:    "should support a 'default-deny-ingress' policy",
		allowed: nil,
	}, {
		name:    "should enforce policy to allow traffic from pods within server namespace based on PodSelector",
		rules:   []isolationv1alpha1.IngressRule{{Name: "b", From: []isolationv1alpha1.IngressPeer{{PodSelector: byPod("b")}}}},
		allowed: []string{"local-ai/b 80", "local-ai/b 81"},
	}, {
		name:    "should enforce policy to allow traffic only from a different namespace, based on NamespaceSelector",
		rules:   []isolationv1alpha1.IngressRule{{Name: "y", From: []isolationv1alpha1.IngressPeer{{NamespaceSelector: byNs("y")}}}},
		allowed: []string{"y/a 80", "y/a 81", "y/b 80", "y/b 81", "y/c 80", "y/c 81"},
	}, {
		name:    "should enforce policy based on PodSelector and NamespaceSelector",
		rules:   []isolationv1alpha1.IngressRule{{Name: "yb", From: []isolationv1alpha1.IngressPeer{{NamespaceSelector: byNs("y"), PodSelector: byPod("b")}}}},
		allowed: []string{"y/b 80", "y/b 81"},
	}, {
		name: "should enforce policy based on PodSelector or NamespaceSelector",
		rules: []isolationv1alpha1.IngressRule{{Name: "either", From: []isolationv1alpha1.IngressPeer{
			{NamespaceSelector: byNs("z")}, {PodSelector: byPod("c")},
		}}},
		allowed: []string{"z/a 80", "z/a 81", "z/b 80", "z/b 81", "z/c 80", "z/c 81", "local-ai/c 80", "local-ai/c 81"},
	}, {
		name: "should allow ingress access from namespace on one named port",
		rules: []isolationv1alpha1.IngressRule{{Name: "named", From: []isolationv1alpha1.IngressPeer{{NamespaceSelector: byNs("y")}},
			Ports: []isolationv1alpha1.Port{{Port: ptr.To(intstr.FromString("serve-81-tcp"))}}}},
		allowed: []string{"y/a 81", "y/b 81", "y/c 81"},
	}, {
		name: "should allow ingress access on one numeric port",
		rules: []isolationv1alpha1.IngressRule{{Name: "numeric", From: []isolationv1alpha1.IngressPeer{{NamespaceSelector: &isolationv1alpha1.LabelSelector{}}},
			Ports: []isolationv1alpha1.Port{{Protocol: corev1.ProtocolTCP, Port: ptr.To(intstr.FromInt32(80))}}}},
		allowed: []string{"local-ai/b 80", "local-ai/c 80", "y/a 80", "y/b 80", "y/c 80", "z/a 80", "z/b 80", "z/c 80"},
	}, {
		name: "should allow ingress from an ipBlock with except",
		rules: []isolationv1alpha1.IngressRule{{Name: "cidr", From: []isolationv1alpha1.IngressPeer{
			{IPBlock: &isolationv1alpha1.IPBlock{CIDR: "192.0.2.0/24", Except: []string{"192.0.2.128/25"}}},
		}}},
		allowed: []string{"192.0.2.10 80", "192.0.2.10 81"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := upstreamScene(tt.rules...)
			generated, err := policy.Build(s.wi, *s.wi.Spec.Target.PodSelector.LabelSelector(), testPresets())
			if err != nil {
				t.Fatal(err)
			}
			oracle := matcher.BuildNetworkPolicies(false, pointers(generated))
			want := map[string]bool{}
			for _, a := range tt.allowed {
				want[a] = true
			}
			var target *pod
			for _, p := range s.pods {
				if p.namespace == targetNamespace && p.name == "a" {
					target = p
				}
			}
			for _, src := range s.sources() {
				if src.pod == target {
					continue
				}
				for _, p := range s.ports {
					key := src.String() + " " + map[int]string{80: "80", 81: "81"}[p.number]
					if got := s.oracleAllows(oracle, src, target, p); got != want[key] {
						t.Errorf("%s -> local-ai/a: oracle allows=%v, want %v", key, got, want[key])
					}
					if got := s.declared(src, target, p); got != want[key] {
						t.Errorf("%s -> local-ai/a: spec semantics say %v, want %v", key, got, want[key])
					}
				}
			}
			// Pods the WorkloadIsolation does not target stay reachable.
			for _, p := range s.pods {
				if p.namespace == targetNamespace && p.name == "b" && !s.oracleAllows(oracle, source{ip: "192.0.2.200"}, p, port{corev1.ProtocolTCP, 80}) {
					t.Error("a pod the WorkloadIsolation does not target must not be isolated")
				}
			}
		})
	}
}
