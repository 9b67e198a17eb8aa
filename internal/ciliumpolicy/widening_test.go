package ciliumpolicy_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/isolator-dev/isolator/internal/analysis"
	"github.com/isolator-dev/isolator/internal/ciliumpolicy"
)

func ciliumObject(t *testing.T, doc string) unstructured.Unstructured {
	t.Helper()
	u := unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
		t.Fatal(err)
	}
	return u
}

var target = ciliumpolicy.Target{
	Namespace: analysis.Object{Name: "ai", Labels: map[string]string{"team": "ml"}},
	Pods:      []analysis.Object{{Name: "local-ai-0", Labels: map[string]string{"app": "local-ai"}}},
	Self:      "local-ai",
	SelfUID:   "u",
	Own: map[string]any{"local-ai-http-nginx": map[string]any{
		"endpointSelector": map[string]any{}, "ingress": []any{map[string]any{"fromEntities": []any{"world"}}},
	}},
}

func everyAddress() []networkingv1.NetworkPolicyPeer {
	return []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0"}}, {IPBlock: &networkingv1.IPBlock{CIDR: "::/0"}}}
}

func everything() []networkingv1.NetworkPolicyPeer {
	return append([]networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{}}}, everyAddress()...)
}

func nsIs(name string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": name}}
}

func req(key string, op metav1.LabelSelectorOperator, values ...string) metav1.LabelSelectorRequirement {
	return metav1.LabelSelectorRequirement{Key: key, Operator: op, Values: values}
}

func tcpPort(p int32) networkingv1.NetworkPolicyPort {
	return networkingv1.NetworkPolicyPort{Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(intstr.FromInt32(p))}
}

func TestWideningsSpellCiliumRulesAsNetworkPolicyRules(t *testing.T) {
	tests := []struct {
		name    string
		doc     string
		ingress []networkingv1.NetworkPolicyIngressRule
		egress  []networkingv1.NetworkPolicyEgressRule
	}{
		{
			name: "endpoints of the policy's namespace, a numbered port",
			doc: `{apiVersion: cilium.io/v2, kind: CiliumNetworkPolicy, metadata: {name: p, namespace: ai},
  spec: {endpointSelector: {matchLabels: {app: local-ai}}, ingress: [{fromEndpoints: [{matchLabels: {"k8s:role": gw}}], toPorts: [{ports: [{port: "8080", protocol: TCP}]}]}]}}`,
			ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{NamespaceSelector: nsIs("ai"), PodSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{req("role", metav1.LabelSelectorOpIn, "gw")}}}},
				Ports: []networkingv1.NetworkPolicyPort{tcpPort(8080)},
			}},
		},
		{
			name: "namespace labels reach every namespace that has them; ANY is three protocols; port 0 is every port",
			doc: `{apiVersion: cilium.io/v2, kind: CiliumNetworkPolicy, metadata: {name: p, namespace: ai},
  spec: {endpointSelector: {}, ingress: [{fromEndpoints: [{matchLabels: {"io.cilium.k8s.namespace.labels.team": web}}],
    toPorts: [{ports: [{port: "53"}, {port: "0", protocol: UDP}]}]}]}}`,
			ingress: []networkingv1.NetworkPolicyIngressRule{{
				From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{req("team", metav1.LabelSelectorOpIn, "web")}},
					PodSelector: &metav1.LabelSelector{}}},
				Ports: []networkingv1.NetworkPolicyPort{
					{Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(intstr.FromInt32(53))},
					{Protocol: ptr.To(corev1.ProtocolUDP), Port: ptr.To(intstr.FromInt32(53))},
					{Protocol: ptr.To(corev1.ProtocolSCTP), Port: ptr.To(intstr.FromInt32(53))},
					{Protocol: ptr.To(corev1.ProtocolUDP)},
				},
			}},
		},
		{
			name: "entities and CIDRs; only ports means every peer; ICMP is every port",
			doc: `{apiVersion: cilium.io/v2, kind: CiliumNetworkPolicy, metadata: {name: p, namespace: ai},
  spec: {endpointSelector: {matchExpressions: [{key: app, operator: Exists}]},
    ingress: [{fromEntities: [world]}, {fromEntities: [cluster]}, {toPorts: [{ports: [{port: "9090", protocol: TCP}]}]}, {}],
    egress: [{toCIDRSet: [{cidr: 10.0.0.0/8, except: [10.1.0.0/16]}], icmps: [{fields: [{type: 8}]}]}, {toFQDNs: [{matchName: hf.co}]}, {toEndpoints: []}]}}`,
			ingress: []networkingv1.NetworkPolicyIngressRule{
				{From: everyAddress()},
				{From: everything()},
				{From: everything(), Ports: []networkingv1.NetworkPolicyPort{tcpPort(9090)}},
			},
			egress: []networkingv1.NetworkPolicyEgressRule{
				{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8", Except: []string{"10.1.0.0/16"}}}}},
				{To: everyAddress()},
			},
		},
		{
			name: "clusterwide: a peer without namespace is every namespace; a named namespace is a namespace selector; reserved labels admit everything",
			doc: `{apiVersion: cilium.io/v2, kind: CiliumClusterwideNetworkPolicy, metadata: {name: c},
  spec: {endpointSelector: {matchLabels: {"k8s:io.kubernetes.pod.namespace": ai}}, ingress: [{fromEndpoints: [
    {matchLabels: {app: prometheus}}, {matchLabels: {"k8s:io.kubernetes.pod.namespace": monitoring, "io.cilium.k8s.policy.serviceaccount": prom}}, {matchLabels: {"reserved:host": ""}}]}]}}`,
			ingress: []networkingv1.NetworkPolicyIngressRule{{From: everything()}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := ciliumObject(t, tt.doc)
			var ns, cw []unstructured.Unstructured
			if u.GetNamespace() == "" {
				cw = append(cw, u)
			} else {
				ns = append(ns, u)
			}
			got, unanalysed := ciliumpolicy.Widenings(ns, cw, target)
			if len(unanalysed) > 0 || len(got) != 1 {
				t.Fatalf("Widenings = %+v, unanalysed %v", got, unanalysed)
			}
			if diff := cmp.Diff(tt.ingress, got[0].Ingress); diff != "" {
				t.Errorf("ingress (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.egress, got[0].Egress); diff != "" {
				t.Errorf("egress (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWideningsReadOnlyWhatSelectsTheTarget(t *testing.T) {
	docs := []string{
		// Another namespace's policy.
		`{apiVersion: cilium.io/v2, kind: CiliumNetworkPolicy, metadata: {name: other, namespace: web}, spec: {endpointSelector: {}, ingress: [{fromEntities: [world]}]}}`,
		// Other pods.
		`{apiVersion: cilium.io/v2, kind: CiliumNetworkPolicy, metadata: {name: db, namespace: ai}, spec: {endpointSelector: {matchLabels: {app: db}}, ingress: [{fromEntities: [world]}]}}`,
		// Deny rules and the empty rule only narrow.
		`{apiVersion: cilium.io/v2, kind: CiliumNetworkPolicy, metadata: {name: deny, namespace: ai}, spec: {endpointSelector: {}, ingress: [{}], ingressDeny: [{fromEntities: [world]}]}}`,
		// The target's own generated policy.
		`{apiVersion: cilium.io/v2, kind: CiliumNetworkPolicy, metadata: {name: local-ai-http-nginx, namespace: ai, labels: {app.kubernetes.io/managed-by: isolator},
  ownerReferences: [{apiVersion: isolation.isolator.dev/v1alpha1, kind: WorkloadIsolation, name: local-ai, uid: u, controller: true}]}, spec: {endpointSelector: {}, ingress: [{fromEntities: [world]}]}}`,
		// Host policies select nodes.
		`{apiVersion: cilium.io/v2, kind: CiliumClusterwideNetworkPolicy, metadata: {name: host}, spec: {nodeSelector: {}, ingress: [{fromEntities: [world]}]}}`,
		// Another namespace, clusterwide.
		`{apiVersion: cilium.io/v2, kind: CiliumClusterwideNetworkPolicy, metadata: {name: web}, spec: {endpointSelector: {matchLabels: {"io.cilium.k8s.namespace.labels.team": web}}, ingress: [{fromEntities: [world]}]}}`,
	}
	var ns, cw []unstructured.Unstructured
	for _, d := range docs {
		u := ciliumObject(t, d)
		if u.GetNamespace() == "" {
			cw = append(cw, u)
		} else {
			ns = append(ns, u)
		}
	}
	got, unanalysed := ciliumpolicy.Widenings(ns, cw, target)
	if len(got) != 0 || len(unanalysed) != 0 {
		t.Errorf("Widenings = %+v, unanalysed %v; want none", got, unanalysed)
	}

	// Another WorkloadIsolation's generated policy is named as its own.
	other := ciliumObject(t, `{apiVersion: cilium.io/v2, kind: CiliumNetworkPolicy, metadata: {name: rag-http-api, namespace: ai, labels: {app.kubernetes.io/managed-by: isolator},
  ownerReferences: [{apiVersion: isolation.isolator.dev/v1alpha1, kind: WorkloadIsolation, name: rag, uid: u2, controller: true}]}, spec: {endpointSelector: {}, ingress: [{fromEntities: [world]}]}}`)
	// One that claims to be the target's own but is not in place as such.
	forged := ciliumObject(t, `{apiVersion: cilium.io/v2, kind: CiliumNetworkPolicy, metadata: {name: local-ai-allow-all, namespace: ai, labels: {app.kubernetes.io/managed-by: isolator},
  ownerReferences: [{apiVersion: isolation.isolator.dev/v1alpha1, kind: WorkloadIsolation, name: local-ai, uid: u, controller: true}]}, spec: {endpointSelector: {}, ingress: [{fromEntities: [world]}]}}`)
	if got, _ := ciliumpolicy.Widenings([]unstructured.Unstructured{forged}, nil, target); len(got) != 1 {
		t.Errorf("a policy that only claims to be the target's own must be read: %+v", got)
	}
	broken := ciliumObject(t, `{apiVersion: cilium.io/v2, kind: CiliumNetworkPolicy, metadata: {name: broken, namespace: ai}, spec: {endpointSelector: {}, ingress: {fromEntities: world}}}`)
	got, unanalysed = ciliumpolicy.Widenings([]unstructured.Unstructured{other, broken}, nil, target)
	if len(got) != 1 || got[0].WorkloadIsolation != "rag" || got[0].Name != "CiliumNetworkPolicy/ai/rag-http-api" {
		t.Errorf("Widenings = %+v", got)
	}
	if len(unanalysed) != 1 {
		t.Errorf("a policy that cannot be read must fail closed: unanalysed = %v", unanalysed)
	}
}

// Spellings Cilium reads its own way, which a tenant could use to hide a
// widening.
func TestWideningsReadKeysAndPortsAsCiliumDoes(t *testing.T) {
	tests := []struct {
		name    string
		doc     string
		ingress []networkingv1.NetworkPolicyIngressRule
	}{
		{
			name: "a leading 0 is octal: 0120 is port 80",
			doc: `{apiVersion: cilium.io/v2, kind: CiliumNetworkPolicy, metadata: {name: p, namespace: ai},
  spec: {endpointSelector: {}, ingress: [{fromEntities: [world], toPorts: [{ports: [{port: "0120", protocol: TCP}]}]}]}}`,
			ingress: []networkingv1.NetworkPolicyIngressRule{{From: everyAddress(), Ports: []networkingv1.NetworkPolicyPort{tcpPort(80)}}},
		},
		{
			name: "an IANA service name is a named port, even one that reads as a number elsewhere",
			doc: `{apiVersion: cilium.io/v2, kind: CiliumNetworkPolicy, metadata: {name: p, namespace: ai},
  spec: {endpointSelector: {}, ingress: [{fromEntities: [world], toPorts: [{ports: [{port: "0x10", protocol: TCP}, {port: "HTTP", protocol: TCP}]}]}]}}`,
			ingress: []networkingv1.NetworkPolicyIngressRule{{From: everyAddress(), Ports: []networkingv1.NetworkPolicyPort{
				{Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(intstr.FromString("0x10"))},
				{Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(intstr.FromString("http"))},
			}}},
		},
		{
			name: "dotted and $ reserved keys are reserved: every peer",
			doc: `{apiVersion: cilium.io/v2, kind: CiliumNetworkPolicy, metadata: {name: p, namespace: ai},
  spec: {endpointSelector: {}, ingress: [{fromEndpoints: [{matchLabels: {"reserved.host": ""}}]}, {fromEndpoints: [{matchLabels: {"$world": ""}}]}]}}`,
			ingress: []networkingv1.NetworkPolicyIngressRule{{From: everything()}, {From: everything()}},
		},
		{
			name: "a subject that only rules labels out selects every pod",
			doc: `{apiVersion: cilium.io/v2, kind: CiliumNetworkPolicy, metadata: {name: p, namespace: ai},
  spec: {endpointSelector: {matchExpressions: [{key: "reserved:host", operator: DoesNotExist}, {key: pod-template-hash, operator: DoesNotExist}, {key: "K8S:app", operator: In, values: [x]}]},
    ingress: [{fromEntities: [host]}]}}`,
			ingress: []networkingv1.NetworkPolicyIngressRule{{From: everything()}},
		},
		{
			name: "a peer that rules a label out is not narrowed by it (Cilium may not keep the label); a key's value part is dropped",
			doc: `{apiVersion: cilium.io/v2, kind: CiliumNetworkPolicy, metadata: {name: p, namespace: ai},
  spec: {endpointSelector: {matchLabels: {"k8s:app=zz": local-ai}}, ingress: [{fromEndpoints: [{matchExpressions: [{key: pod-template-hash, operator: NotIn, values: [a]}, {key: team, operator: In, values: [x]}]}]}]}}`,
			ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: nsIs("ai"),
				PodSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{req("team", metav1.LabelSelectorOpIn, "x")}}}}}},
		},
		{
			name: "a peer that names its namespace only to rule one out is unscoped: reserved identities (the world) match too",
			doc: `{apiVersion: cilium.io/v2, kind: CiliumNetworkPolicy, metadata: {name: p, namespace: ai},
  spec: {endpointSelector: {}, ingress: [{fromEndpoints: [{matchExpressions: [{key: io.kubernetes.pod.namespace, operator: NotIn, values: [x]}]}]}]}}`,
			ingress: []networkingv1.NetworkPolicyIngressRule{{From: append([]networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{}, PodSelector: &metav1.LabelSelector{}}}, everyAddress()...)}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, unanalysed := ciliumpolicy.Widenings([]unstructured.Unstructured{ciliumObject(t, tt.doc)}, nil, target)
			if len(unanalysed) > 0 || len(got) != 1 {
				t.Fatalf("Widenings = %+v, unanalysed %v", got, unanalysed)
			}
			if diff := cmp.Diff(tt.ingress, got[0].Ingress, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("ingress (-want +got):\n%s", diff)
			}
		})
	}
}

// Rules added as specs to the target's own policy are read: the operator
// never writes specs.
func TestWideningsReadSpecsAddedToTheTargetsOwnPolicy(t *testing.T) {
	own := ciliumObject(t, `{apiVersion: cilium.io/v2, kind: CiliumNetworkPolicy, metadata: {name: local-ai-http-nginx, namespace: ai, labels: {app.kubernetes.io/managed-by: isolator},
  ownerReferences: [{apiVersion: isolation.isolator.dev/v1alpha1, kind: WorkloadIsolation, name: local-ai, uid: u, controller: true}]},
  spec: {endpointSelector: {}, ingress: [{fromEntities: [world]}]}, specs: [{endpointSelector: {}, ingress: [{fromEntities: [cluster]}]}]}`)
	got, _ := ciliumpolicy.Widenings([]unstructured.Unstructured{own}, nil, target)
	if len(got) != 1 || len(got[0].Ingress) != 1 || !cmp.Equal(got[0].Ingress[0].From, everything()) {
		t.Errorf("Widenings = %+v, want only the added specs", got)
	}
}

// The target's own policy is read when its spec is not the one the
// operator writes (a repair undone by another writer).
func TestWideningsReadTheTargetsOwnPolicyWhenItsSpecDiffers(t *testing.T) {
	own := ciliumObject(t, `{apiVersion: cilium.io/v2, kind: CiliumNetworkPolicy, metadata: {name: local-ai-http-nginx, namespace: ai, labels: {app.kubernetes.io/managed-by: isolator},
  ownerReferences: [{apiVersion: isolation.isolator.dev/v1alpha1, kind: WorkloadIsolation, name: local-ai, uid: u, controller: true}]},
  spec: {endpointSelector: {}, ingress: [{fromEntities: [world]}, {fromEntities: [cluster]}]}}`)
	got, _ := ciliumpolicy.Widenings([]unstructured.Unstructured{own}, nil, target)
	if len(got) != 1 || len(got[0].Ingress) != 2 {
		t.Errorf("Widenings = %+v, want the changed policy read whole", got)
	}
	// As the server holds it after a repair, it is left out again.
	repaired := ciliumObject(t, `{apiVersion: cilium.io/v2, kind: CiliumNetworkPolicy, metadata: {name: local-ai-http-nginx, namespace: ai, labels: {app.kubernetes.io/managed-by: isolator},
  ownerReferences: [{apiVersion: isolation.isolator.dev/v1alpha1, kind: WorkloadIsolation, name: local-ai, uid: u, controller: true}]},
  spec: {endpointSelector: {}, ingress: [{fromEntities: [world]}]}}`)
	withRepair := target
	withRepair.Current = map[string]*unstructured.Unstructured{"local-ai-http-nginx": &repaired}
	if got, _ := ciliumpolicy.Widenings([]unstructured.Unstructured{own}, nil, withRepair); len(got) != 0 {
		t.Errorf("Widenings = %+v, want the repaired copy left out", got)
	}
	// One the operator has just deleted is not read from a stale cache.
	withRepair.Current = map[string]*unstructured.Unstructured{"local-ai-http-nginx": nil}
	if got, _ := ciliumpolicy.Widenings([]unstructured.Unstructured{own}, nil, withRepair); len(got) != 0 {
		t.Errorf("Widenings = %+v, want the deleted policy left out", got)
	}
}
