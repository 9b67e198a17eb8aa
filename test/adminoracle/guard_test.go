package adminoracle

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	anpv1alpha1 "sigs.k8s.io/network-policy-api/apis/v1alpha1"

	"github.com/isolator-dev/isolator/internal/adminpolicy"
	"github.com/isolator-dev/isolator/internal/intent"
	"github.com/isolator-dev/isolator/internal/policy"
)

// Property 1: the guard holds. With the generated NetworkPolicies, the
// guard's AdminNetworkPolicy and random NetworkPolicies of the tenant in the
// target namespace (allow-all ones among them), np-guard lets a target pod
// exchange traffic with another pod, or send to an address, exactly as the
// intent declares, whatever the tenant's policies say.
//
// The side of a connection the guard does not hold (the other pod's, and the
// target's egress when egress is not isolated) stays the tenant's to
// decide: np-guard answers it from a second cluster where an
// AdminNetworkPolicy allows everything the guard would hold, so that the
// expected answer is "declared on the guarded sides, and allowed on the
// others".
func TestGuardAllowsExactlyTheDeclaredPeers(t *testing.T) {
	seed, cases := settings(t)
	start := time.Now()
	var checked, allowed, undeclaredOpen int
	for i := range cases {
		r := rand.New(rand.NewPCG(seed, uint64(i)))
		s := generate(t, r, false)
		guard, err := adminpolicy.ANP(s.in, guardPriority, false)
		if err != nil {
			t.Fatalf("seed %d case %d: %v", seed, i, err)
		}
		base := append(s.clusterObjects(), networkPolicyObjects(policy.NetworkPolicies(s.in))...)
		base = append(base, networkPolicyObjects(tenantPolicies(r, s))...)
		flows := s.flows()
		got, err := engine.allowed(append(base[:len(base):len(base)], guard), queries(flows))
		if err != nil {
			t.Fatalf("seed %d case %d: %v", seed, i, err)
		}
		open, err := engine.allowed(append(base[:len(base):len(base)], s.openANP()), queries(flows))
		if err != nil {
			t.Fatalf("seed %d case %d: %v", seed, i, err)
		}
		for j, f := range flows {
			checked++
			declared := s.declared(f.src, f.dst, f.port)
			if want := declared && open[j]; got[j] != want {
				t.Fatalf("seed %d case %d (replay: ADMIN_ORACLE_SEED=%d): %s: np-guard allows=%v, want %v (declared=%v, allowed on the unguarded side=%v)\nspec: %+v",
					seed, i, seed, f, got[j], want, declared, open[j], s.wi.Spec)
			}
			if got[j] {
				allowed++
			}
			if !declared && open[j] {
				undeclaredOpen++
			}
		}
	}
	t.Logf("%d scenarios, %d connections checked against np-guard (%d allowed, %d undeclared ones the guard denies), 0 disagreements, %s",
		cases, checked, allowed, undeclaredOpen, time.Since(start).Round(time.Millisecond))
	fmt.Printf("admin oracle property 1: %d scenarios, %d connections (%d allowed, %d undeclared ones denied by the guard), 0 disagreements\n",
		cases, checked, allowed, undeclaredOpen)
}

// openANP allows everything the guard holds: ingress of the target pods,
// and their egress when egress is isolated.
func (s *scenario) openANP() *anpv1alpha1.AdminNetworkPolicy {
	anp := &anpv1alpha1.AdminNetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: anpv1alpha1.SchemeGroupVersion.String(), Kind: "AdminNetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: "open"},
		Spec: anpv1alpha1.AdminNetworkPolicySpec{
			Priority: guardPriority,
			Subject: anpv1alpha1.AdminNetworkPolicySubject{Pods: &anpv1alpha1.NamespacedPod{
				NamespaceSelector: metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: targetNamespace}},
				PodSelector:       *s.wi.Spec.Target.PodSelector.LabelSelector(),
			}},
			Ingress: []anpv1alpha1.AdminNetworkPolicyIngressRule{{Name: "all", Action: anpv1alpha1.AdminNetworkPolicyRuleActionAllow,
				From: []anpv1alpha1.AdminNetworkPolicyIngressPeer{{Namespaces: &metav1.LabelSelector{}}}}},
		},
	}
	if s.wi.Spec.Egress != nil {
		anp.Spec.Egress = []anpv1alpha1.AdminNetworkPolicyEgressRule{{Name: "all", Action: anpv1alpha1.AdminNetworkPolicyRuleActionAllow,
			To: []anpv1alpha1.AdminNetworkPolicyEgressPeer{{Namespaces: &metav1.LabelSelector{}}, {Networks: []anpv1alpha1.CIDR{"0.0.0.0/0"}}}}}
	}
	return anp
}

// tenantPolicies are NetworkPolicies a tenant wrote in the target
// namespace: they select every pod, the target's pods, a tier or other
// pods, isolate ingress, egress or both, and allow everything, nothing,
// or random peers on random ports.
func tenantPolicies(r *rand.Rand, s *scenario) []networkingv1.NetworkPolicy {
	var out []networkingv1.NetworkPolicy
	for i := range r.IntN(4) {
		np := networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("tenant-%d", i), Namespace: targetNamespace}}
		switch r.IntN(4) {
		case 0:
		case 1:
			np.Spec.PodSelector = metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": "local-ai"}}
		case 2:
			np.Spec.PodSelector = metav1.LabelSelector{MatchLabels: map[string]string{"tier": pick(r, tiers)}}
		default:
			np.Spec.PodSelector = metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": "client"}}
		}
		ingress, egress := true, r.IntN(2) == 0
		if egress && r.IntN(3) == 0 {
			ingress = false
		}
		if ingress {
			np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress)
			for range r.IntN(3) {
				peers, ports := tenantRule(r, s, true)
				np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{From: peers, Ports: ports})
			}
		}
		if egress {
			np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
			for range r.IntN(3) {
				peers, ports := tenantRule(r, s, false)
				np.Spec.Egress = append(np.Spec.Egress, networkingv1.NetworkPolicyEgressRule{To: peers, Ports: ports})
			}
		}
		out = append(out, np)
	}
	return out
}

// tenantRule returns a rule's peers and ports: none of either (allow all)
// half of the time. Named ports only when named is set: np-guard fails on an
// egress rule with a named port when the destination is an address.
func tenantRule(r *rand.Rand, s *scenario, named bool) ([]networkingv1.NetworkPolicyPeer, []networkingv1.NetworkPolicyPort) {
	if r.IntN(2) == 0 {
		return nil, nil
	}
	var peers []networkingv1.NetworkPolicyPeer
	for range r.IntN(3) {
		p := s.generatePeer(r)
		if p.Preset != "" {
			p.Preset, p.PresetNamespace = "", ""
			p.NamespaceSelector = nil
		}
		np := networkingv1.NetworkPolicyPeer{NamespaceSelector: p.NamespaceSelector.LabelSelector(), PodSelector: p.PodSelector.LabelSelector()}
		if p.IPBlock != nil {
			np.IPBlock = &networkingv1.IPBlock{CIDR: p.IPBlock.CIDR, Except: p.IPBlock.Except}
		}
		if np.NamespaceSelector == nil && np.PodSelector == nil && np.IPBlock == nil {
			np.PodSelector = &metav1.LabelSelector{}
		}
		peers = append(peers, np)
	}
	var ports []networkingv1.NetworkPolicyPort
	for range r.IntN(3) {
		p := generatePort(r, named)
		ports = append(ports, networkingv1.NetworkPolicyPort{Protocol: ptr.To(cmp.Or(p.Protocol, corev1.ProtocolTCP)), Port: p.Port, EndPort: p.EndPort})
	}
	return peers, ports
}

// Property 1b: a second guarded WorkloadIsolation over the same pods
// cannot open them. Both guard policies are rendered for a shared target
// (they pass their declared peers on and allow nothing); the second one
// declares every source and destination and comes before or after the
// first. Its NetworkPolicies are absent, as the admission guard refuses
// them, and no tenant policy is added: np-guard must still let the target
// exchange traffic exactly as the first WorkloadIsolation declares.
func TestSharedTargetGuardsOpenNothing(t *testing.T) {
	seed, cases := settings(t)
	cases = max(cases/4, 1)
	start := time.Now()
	var checked int
	for i := range cases {
		r := rand.New(rand.NewPCG(seed, uint64(i)))
		s := generate(t, r, false)
		guard, err := adminpolicy.ANP(s.in, guardPriority, true)
		if err != nil {
			t.Fatalf("seed %d case %d: %v", seed, i, err)
		}
		wide := *s.in
		wide.Name, wide.UID = "wide-open", "wide-open-uid"
		wide.Ingress = []intent.Rule{{Name: "everyone"}}
		if wide.Egress != nil {
			wide.Egress = &intent.Egress{Rules: []intent.Rule{{Name: "everywhere"}}}
		}
		other, err := adminpolicy.ANP(&wide, guardPriority+int32(2*r.IntN(2)-1), true)
		if err != nil {
			t.Fatalf("seed %d case %d: %v", seed, i, err)
		}
		base := append(s.clusterObjects(), networkPolicyObjects(policy.NetworkPolicies(s.in))...)
		flows := s.flows()
		got, err := engine.allowed(append(base[:len(base):len(base)], guard, other), queries(flows))
		if err != nil {
			t.Fatalf("seed %d case %d: %v", seed, i, err)
		}
		open, err := engine.allowed(append(base[:len(base):len(base)], s.openANP()), queries(flows))
		if err != nil {
			t.Fatalf("seed %d case %d: %v", seed, i, err)
		}
		for j, f := range flows {
			checked++
			if want := s.declared(f.src, f.dst, f.port) && open[j]; got[j] != want {
				t.Fatalf("seed %d case %d (replay: ADMIN_ORACLE_SEED=%d): %s: np-guard allows=%v, want %v\nspec: %+v",
					seed, i, seed, f, got[j], want, s.wi.Spec)
			}
		}
	}
	t.Logf("%d scenarios, %d connections checked against np-guard with a second, wide-open guarded isolation over the same pods, 0 disagreements, %s",
		cases, checked, time.Since(start).Round(time.Millisecond))
	fmt.Printf("admin oracle property 1b: %d scenarios, %d connections, a second wide-open guard over the same pods, 0 disagreements\n", cases, checked)
}
