package adminpolicy

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	anpv1alpha1 "sigs.k8s.io/network-policy-api/apis/v1alpha1"
	cnpv1alpha2 "sigs.k8s.io/network-policy-api/apis/v1alpha2"
	"sigs.k8s.io/yaml"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/analysis"
	"github.com/isolator-dev/isolator/internal/intent"
)

func tcp(port int32) networkingv1.NetworkPolicyPort {
	return networkingv1.NetworkPolicyPort{Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(intstr.FromInt32(port))}
}

func named(name string) networkingv1.NetworkPolicyPort {
	return networkingv1.NetworkPolicyPort{Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(intstr.FromString(name))}
}

func sel(kv ...string) *metav1.LabelSelector {
	m := map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return &metav1.LabelSelector{MatchLabels: m}
}

// localAI is an intent with every kind of peer: a same-namespace pod
// source, a namespace source, an address source, and egress to pods, to an
// address range with an exception, and DNS. Named ports become Pass rules
// for their peers: the APIs' standard channel has none.
func localAI() *intent.Intent {
	return &intent.Intent{
		Name: "localai", Namespace: "ai", UID: "0b5e6c2a-1111-2222-3333-444455556666",
		Target: *sel("app", "localai"),
		Ingress: []intent.Rule{
			{Name: "gateway", Peers: []networkingv1.NetworkPolicyPeer{
				{PodSelector: sel("app", "gateway")},
				{NamespaceSelector: sel("team", "web")},
				{IPBlock: &networkingv1.IPBlock{CIDR: "203.0.113.0/24"}},
			}, Ports: []networkingv1.NetworkPolicyPort{tcp(8080), named("metrics")}},
			{Name: "lb", Peers: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "198.51.100.0/24"}}}},
		},
		Egress: &intent.Egress{
			Rules: []intent.Rule{
				{Name: "store", Peers: []networkingv1.NetworkPolicyPeer{
					{NamespaceSelector: sel("kubernetes.io/metadata.name", "minio"), PodSelector: sel("app", "minio")},
					{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8", Except: []string{"10.96.0.0/12"}}},
				}, Ports: []networkingv1.NetworkPolicyPort{tcp(9000), named("s3")}},
			},
			DNS: &intent.DNS{Preset: "cluster-dns", Rule: intent.Rule{Name: "cluster-dns", Peers: []networkingv1.NetworkPolicyPeer{
				{NamespaceSelector: sel("kubernetes.io/metadata.name", "kube-system"), PodSelector: sel("k8s-app", "kube-dns")},
			}, Ports: []networkingv1.NetworkPolicyPort{{Protocol: ptr.To(corev1.ProtocolUDP), Port: ptr.To(intstr.FromInt32(53))}}}},
		},
	}
}

func TestANPAllowsTheDeclaredPeersAndDeniesTheRest(t *testing.T) {
	anp, err := ANP(localAI(), 950, false)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := yaml.Marshal(anp.Spec)
	want := `egress:
- action: Allow
  name: allow-store
  ports:
  - portNumber:
      port: 9000
      protocol: TCP
  to:
  - pods:
      namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: minio
      podSelector:
        matchLabels:
          app: minio
- action: Allow
  name: allow-store-addresses
  ports:
  - portNumber:
      port: 9000
      protocol: TCP
  to:
  - networks:
    - 10.0.0.0/10
    - 10.64.0.0/11
    - 10.112.0.0/12
    - 10.128.0.0/9
- action: Allow
  name: allow-cluster-dns
  ports:
  - portNumber:
      port: 53
      protocol: UDP
  to:
  - pods:
      namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: kube-system
      podSelector:
        matchLabels:
          k8s-app: kube-dns
- action: Pass
  name: pass-store
  to:
  - pods:
      namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: minio
      podSelector:
        matchLabels:
          app: minio
- action: Deny
  name: deny-other-destinations
  to:
  - namespaces: {}
  - networks:
    - 0.0.0.0/0
    - ::/0
ingress:
- action: Allow
  from:
  - pods:
      namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: ai
      podSelector:
        matchLabels:
          app: gateway
  - namespaces:
      matchLabels:
        team: web
  name: allow-gateway
  ports:
  - portNumber:
      port: 8080
      protocol: TCP
- action: Pass
  from:
  - pods:
      namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: ai
      podSelector:
        matchLabels:
          app: gateway
  - namespaces:
      matchLabels:
        team: web
  name: pass-gateway
- action: Deny
  from:
  - namespaces: {}
  name: deny-other-pods
priority: 950
subject:
  pods:
    namespaceSelector:
      matchLabels:
        kubernetes.io/metadata.name: ai
    podSelector:
      matchLabels:
        app: localai
`
	if string(got) != want {
		t.Errorf("spec:\n%s\nwant:\n%s", got, want)
	}
	if !Owns(anp.Name, anp.Labels) || OwnerOf(anp).String() != "ai/localai" {
		t.Errorf("the rendered policy is not recognised as the operator's: %s %v %v", anp.Name, anp.Labels, anp.Annotations)
	}
}

func TestCNPSpellsPortsAsProtocols(t *testing.T) {
	in := localAI()
	in.Ingress[0].Ports = append(in.Ingress[0].Ports,
		networkingv1.NetworkPolicyPort{Protocol: ptr.To(corev1.ProtocolUDP)},
		networkingv1.NetworkPolicyPort{Protocol: ptr.To(corev1.ProtocolSCTP), Port: ptr.To(intstr.FromInt32(100)), EndPort: ptr.To(int32(200))})
	cnp, err := CNP(in, 900, false)
	if err != nil {
		t.Fatal(err)
	}
	if cnp.Spec.Tier != cnpv1alpha2.AdminTier || cnp.Spec.Priority != 900 {
		t.Errorf("tier %s priority %d", cnp.Spec.Tier, cnp.Spec.Priority)
	}
	got, _ := yaml.Marshal(cnp.Spec.Ingress[0].Protocols)
	want := `- tcp:
    destinationPort:
      number: 8080
- udp: {}
- sctp:
    destinationPort:
      range:
        end: 200
        start: 100
`
	if string(got) != want {
		t.Errorf("protocols:\n%s\nwant:\n%s", got, want)
	}
	last := cnp.Spec.Ingress[len(cnp.Spec.Ingress)-1]
	if last.Action != cnpv1alpha2.ClusterNetworkPolicyRuleActionDeny || cnp.Spec.Ingress[0].Action != cnpv1alpha2.ClusterNetworkPolicyRuleActionAccept {
		t.Errorf("actions: first %s, last %s", cnp.Spec.Ingress[0].Action, last.Action)
	}
}

func TestAllSourcesAndAllDestinations(t *testing.T) {
	in := &intent.Intent{Name: "w", Namespace: "ai", UID: "u", Target: *sel("app", "x"),
		Ingress: []intent.Rule{{Name: "any"}},
		Egress:  &intent.Egress{Rules: []intent.Rule{{Name: "any", Ports: []networkingv1.NetworkPolicyPort{tcp(443)}}}}}
	anp, err := ANP(in, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := yaml.Marshal(anp.Spec.Egress[:2])
	want := `- action: Allow
  name: allow-any
  ports:
  - portNumber:
      port: 443
      protocol: TCP
  to:
  - namespaces: {}
- action: Allow
  name: allow-any-addresses
  ports:
  - portNumber:
      port: 443
      protocol: TCP
  to:
  - networks:
    - 0.0.0.0/0
    - ::/0
`
	if string(got) != want {
		t.Errorf("egress:\n%s\nwant:\n%s", got, want)
	}
	if len(anp.Spec.Ingress) != 2 || anp.Spec.Ingress[0].From[0].Namespaces == nil || anp.Spec.Ingress[0].Ports != nil {
		t.Errorf("an ingress rule without sources must allow every pod on every port: %+v", anp.Spec.Ingress)
	}
}

func TestAddressesWithOnlyNamedPortsAreLeftOut(t *testing.T) {
	in := &intent.Intent{Name: "w", Namespace: "ai", UID: "u", Target: *sel("app", "x"),
		Egress: &intent.Egress{Rules: []intent.Rule{{Name: "r", Ports: []networkingv1.NetworkPolicyPort{named("http")},
			Peers: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "192.0.2.0/24"}}}}}}}
	anp, err := ANP(in, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(anp.Spec.Egress) != 1 || anp.Spec.Egress[0].Action != anpv1alpha1.AdminNetworkPolicyRuleActionDeny {
		t.Errorf("an address reached only by a named port matches nothing; want only the final Deny, got %+v", anp.Spec.Egress)
	}
}

func TestManyPeersAreSplitWithinTheAPIBounds(t *testing.T) {
	in := &intent.Intent{Name: "w", Namespace: "ai", UID: "u", Target: *sel("app", "x")}
	var peers []networkingv1.NetworkPolicyPeer
	for i := range 60 {
		peers = append(peers, networkingv1.NetworkPolicyPeer{PodSelector: sel("n", strings.Repeat("a", i+1))})
	}
	in.Ingress = []intent.Rule{{Name: "many", Peers: peers}}
	cnp, err := CNP(in, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(cnp.Spec.Ingress) != 4 || len(cnp.Spec.Ingress[0].From) != 25 || len(cnp.Spec.Ingress[2].From) != 10 {
		t.Errorf("want 25+25+10 peers and the Deny, got %d rules", len(cnp.Spec.Ingress))
	}
	for range 30 {
		in.Ingress = append(in.Ingress, intent.Rule{Name: "r", Peers: peers[:1]})
	}
	if _, err := CNP(in, 1, false); err == nil || !strings.Contains(err.Error(), "more than the 25") {
		t.Errorf("34 rules in an API of 25: err = %v", err)
	}
	if _, err := ANP(in, 1, false); err != nil {
		t.Errorf("34 rules fit AdminNetworkPolicy's 100: %v", err)
	}
}

func TestChoose(t *testing.T) {
	both := Served{AdminNetworkPolicy: true, ClusterNetworkPolicy: true}
	for _, c := range []struct {
		name, version  string
		doesNotEnforce bool
		served         Served
		want           Kind
		says           string
	}{
		{"canal", "v3.30.2", false, both, AdminNetworkPolicy, "Calico v3.30.2 implements AdminNetworkPolicy"},
		{"calico", "v3.29.0", false, both, AdminNetworkPolicy, ""},
		{"calico", "v3.31.5", false, Served{ClusterNetworkPolicy: true}, "", "does not serve it"},
		{"calico", "v3.32.0", false, both, ClusterNetworkPolicy, ""},
		{"calico", "v3.32.0", false, Served{ClusterNetworkPolicyOtherVersion: true}, "", "neither v1alpha2 nor v1beta1"},
		{"calico", "v3.28.4", false, both, "", "needs Calico 3.29"},
		{"calico", "master", false, both, "", "not known"},
		{"canal", "v3.30.2", true, both, "", "does not enforce"},
		{"antrea", "v2.4.0", false, both, ClusterNetworkPolicy, ""},
		{"flannel+kube-network-policies", "v0.9.0", false, both, ClusterNetworkPolicy, ""},
		{"flannel+kube-network-policies", "v0.9.0", false, Served{AdminNetworkPolicy: true}, "", "does not serve"},
		{"cilium", "v1.19.4", false, both, "", "Cilium implements neither"},
		{"kube-router", "v2.1.0", false, both, "", "not known to implement"},
	} {
		got := Choose(c.name, c.version, c.doesNotEnforce, c.served)
		if got.Kind != c.want || !strings.Contains(got.Message, c.says) {
			t.Errorf("%s %s: got %q (%s), want %q containing %q", c.name, c.version, got.Kind, got.Message, c.want, c.says)
		}
	}
}

func TestPriorities(t *testing.T) {
	p, err := ParsePriorities("900-902")
	if err != nil || p.String() != "900-902" {
		t.Fatalf("%v %v", p, err)
	}
	for _, bad := range []string{"", "900", "5-1", "0-1001", "-1-5", "a-b"} {
		if _, err := ParsePriorities(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	taken := map[int32]bool{900: true}
	if n, ok := p.Allocate(nil, -1, taken); !ok || n != 901 {
		t.Errorf("first free: %d %v", n, ok)
	}
	if n, ok := p.Allocate(ptr.To(int32(902)), -1, taken); !ok || n != 902 {
		t.Errorf("keeps its own: %d %v", n, ok)
	}
	if n, ok := p.Allocate(ptr.To(int32(900)), -1, taken); !ok || n != 901 {
		t.Errorf("moves off a taken one: %d %v", n, ok)
	}
	if n, ok := p.Allocate(ptr.To(int32(5)), -1, taken); !ok || n != 901 {
		t.Errorf("moves into the range: %d %v", n, ok)
	}
	if _, ok := p.Allocate(nil, -1, map[int32]bool{900: true, 901: true, 902: true}); ok {
		t.Error("a full range allocated")
	}
	// After every other policy that may select the namespace.
	if n, ok := p.Allocate(ptr.To(int32(901)), 901, taken); !ok || n != 902 {
		t.Errorf("moves after a policy at its priority: %d %v", n, ok)
	}
	if n, ok := p.Allocate(nil, 50, nil); !ok || n != 900 {
		t.Errorf("a policy before the range: %d %v", n, ok)
	}
	if _, ok := p.Allocate(nil, 902, nil); ok {
		t.Error("allocated before a policy at the end of the range")
	}
}

// TestWidenings checks which foreign admin-tier rules reach the analysis,
// and that the analysis reports them against the declared policies.
func TestWidenings(t *testing.T) {
	target := Target{Namespace: analysis.Object{Name: "ai", Labels: map[string]string{"tenant": "a"}},
		Pods: []analysis.Object{{Name: "localai-0", Labels: map[string]string{"app": "localai"}}}}
	allowFrom := func(name string, priority int32, subject anpv1alpha1.AdminNetworkPolicySubject, action anpv1alpha1.AdminNetworkPolicyRuleAction) anpv1alpha1.AdminNetworkPolicy {
		p := anpv1alpha1.AdminNetworkPolicy{}
		p.Name, p.Spec.Priority, p.Spec.Subject = name, priority, subject
		p.Spec.Ingress = []anpv1alpha1.AdminNetworkPolicyIngressRule{{Action: action,
			From: []anpv1alpha1.AdminNetworkPolicyIngressPeer{{Namespaces: sel("team", "intruder")}}}}
		return p
	}
	tenantA := anpv1alpha1.AdminNetworkPolicySubject{Namespaces: sel("tenant", "a")}
	otherTenant := anpv1alpha1.AdminNetworkPolicySubject{Namespaces: sel("tenant", "b")}
	otherPods := anpv1alpha1.AdminNetworkPolicySubject{Pods: &anpv1alpha1.NamespacedPod{PodSelector: *sel("app", "other")}}
	guard := &Guard{Kind: AdminNetworkPolicy, Name: "isolator-u", Priority: 950}
	anps := []anpv1alpha1.AdminNetworkPolicy{
		allowFrom("before", 10, tenantA, anpv1alpha1.AdminNetworkPolicyRuleActionAllow),
		allowFrom("same", 950, tenantA, anpv1alpha1.AdminNetworkPolicyRuleActionAllow),
		allowFrom("after", 951, tenantA, anpv1alpha1.AdminNetworkPolicyRuleActionAllow),
		allowFrom("other-tenant", 10, otherTenant, anpv1alpha1.AdminNetworkPolicyRuleActionAllow),
		allowFrom("other-pods", 10, otherPods, anpv1alpha1.AdminNetworkPolicyRuleActionAllow),
		allowFrom("pass", 10, tenantA, anpv1alpha1.AdminNetworkPolicyRuleActionPass),
		allowFrom("isolator-u", 950, tenantA, anpv1alpha1.AdminNetworkPolicyRuleActionAllow),
	}
	cnp := cnpv1alpha2.ClusterNetworkPolicy{}
	cnp.Name, cnp.Spec.Tier, cnp.Spec.Priority = "cnp-after", cnpv1alpha2.AdminTier, 999
	cnp.Spec.Subject.Namespaces = sel("tenant", "a")
	cnp.Spec.Egress = []cnpv1alpha2.ClusterNetworkPolicyEgressRule{{Action: cnpv1alpha2.ClusterNetworkPolicyRuleActionAccept,
		To: []cnpv1alpha2.ClusterNetworkPolicyEgressPeer{{Nodes: sel()}}}}
	baseline := cnp
	baseline.Name, baseline.Spec.Tier = "baseline", cnpv1alpha2.BaselineTier

	got := Widenings(anps, []cnpv1alpha2.ClusterNetworkPolicy{cnp, baseline}, guard, target)
	var names []string
	for _, w := range got {
		names = append(names, w.Name)
	}
	want := "AdminNetworkPolicy/before AdminNetworkPolicy/same AdminNetworkPolicy/pass ClusterNetworkPolicy/cnp-after"
	if strings.Join(names, " ") != want {
		t.Errorf("widenings: %s\nwant:       %s", strings.Join(names, " "), want)
	}
	if len(got) > 2 && len(got[2].Ingress) != 0 {
		t.Errorf("a Pass rule admits nothing, got %+v", got[2].Ingress)
	}
	if all := Widenings(anps, nil, nil, target); len(all) != 5 {
		t.Errorf("without a guard policy every selecting one counts: %d", len(all))
	}

	// The analysis reports the Allow rules and the node egress against
	// the declared policies.
	declared := networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "localai-allow", Namespace: "ai"},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: *sel("app", "localai"),
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
			Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: sel("team", "web")}}}},
			Egress:      []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8"}}}}}}}
	report := analysis.Analyze(analysis.Input{Namespace: "ai", TargetPods: target.Pods, Self: "localai",
		Namespaces: []analysis.Object{target.Namespace, {Name: "intruder", Labels: map[string]string{"team": "intruder"}}},
		Policies:   []networkingv1.NetworkPolicy{declared}, Declared: []networkingv1.NetworkPolicy{declared}, Admin: got})
	var exposures []string
	for _, e := range report.Exposures {
		exposures = append(exposures, e.Policy+" "+string(e.Direction))
	}
	wantExp := "AdminNetworkPolicy/before Ingress,AdminNetworkPolicy/same Ingress,ClusterNetworkPolicy/cnp-after Egress"
	if strings.Join(exposures, ",") != wantExp || report.Isolated() {
		t.Errorf("exposures: %s\nwant:      %s", strings.Join(exposures, ","), wantExp)
	}
	// An admin-tier policy isolates nothing: alone, it leaves the target
	// pods unselected.
	alone := analysis.Analyze(analysis.Input{Namespace: "ai", TargetPods: target.Pods, Self: "localai", Admin: got[:1]})
	if len(alone.Exposures) != 2 || alone.Exposures[1].Policy != analysis.Unselected {
		t.Errorf("alone: %+v", alone.Exposures)
	}
}

// TestSharedTargetAllowsNothing: when another guarded WorkloadIsolation may
// select the same pods, the policy passes the declared peers on and allows
// nothing itself, so that neither policy can open the other's pods.
func TestSharedTargetAllowsNothing(t *testing.T) {
	anp, err := ANP(localAI(), 900, true)
	if err != nil {
		t.Fatal(err)
	}
	cnp, err := CNP(localAI(), 900, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range []any{anp, cnp} {
		u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
		if err != nil {
			t.Fatal(err)
		}
		var rules []string
		for _, dir := range []string{"ingress", "egress"} {
			list, _, _ := unstructured.NestedSlice(u, "spec", dir)
			for _, r := range list {
				rules = append(rules, fmt.Sprintf("%s %s", r.(map[string]any)["action"], r.(map[string]any)["name"]))
			}
		}
		for _, r := range rules {
			if strings.HasPrefix(r, "Allow") || strings.HasPrefix(r, "Accept") {
				t.Errorf("a shared target's policy allows: %v", rules)
			}
		}
		if len(rules) != 6 || rules[0] != "Pass pass-gateway" || !strings.HasPrefix(rules[1], "Deny") {
			t.Errorf("rules: %v", rules)
		}
	}
}

func TestDisjoint(t *testing.T) {
	in := func(key string, values ...string) metav1.LabelSelector {
		return metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: key, Operator: metav1.LabelSelectorOpIn, Values: values}}}
	}
	op := func(key string, o metav1.LabelSelectorOperator, values ...string) metav1.LabelSelector {
		return metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: key, Operator: o, Values: values}}}
	}
	for _, c := range []struct {
		name     string
		a, b     metav1.LabelSelector
		disjoint bool
	}{
		{"other value", *sel("app", "a"), *sel("app", "b"), true},
		{"same value", *sel("app", "a"), *sel("app", "a"), false},
		{"other keys", *sel("app", "a"), *sel("tier", "b"), false},
		{"everything", *sel("app", "a"), metav1.LabelSelector{}, false},
		{"NotIn", *sel("app", "a"), op("app", metav1.LabelSelectorOpNotIn, "a"), true},
		{"DoesNotExist", *sel("app", "a"), op("app", metav1.LabelSelectorOpDoesNotExist), true},
		{"In without it", *sel("app", "a"), in("app", "b", "c"), true},
		{"In with it", *sel("app", "a"), in("app", "a", "c"), false},
		{"In and In overlapping", in("app", "a", "b"), in("app", "b", "c"), false},
		{"In and In apart", in("app", "a", "b"), in("app", "c"), true},
		{"Exists", *sel("app", "a"), op("app", metav1.LabelSelectorOpExists), false},
	} {
		if got := intent.Disjoint(c.a, c.b); got != c.disjoint {
			t.Errorf("%s: Disjoint = %v", c.name, got)
		}
		if got := intent.Disjoint(c.b, c.a); got != c.disjoint {
			t.Errorf("%s, reversed: Disjoint = %v", c.name, got)
		}
	}
}

func TestIPv4MappedAddressesAreLeftOut(t *testing.T) {
	in := &intent.Intent{Name: "w", Namespace: "ai", UID: "u", Target: *sel("app", "x"),
		Egress: &intent.Egress{Rules: []intent.Rule{{Name: "v6", Ports: []networkingv1.NetworkPolicyPort{tcp(443)},
			Peers: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "::/0", Except: []string{"::fffe:0:0/96"}}}}}}}}
	anp, err := ANP(in, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range anp.Spec.Egress[0].To {
		for _, n := range p.Networks {
			if prefix := netip.MustParsePrefix(string(n)); prefix.Overlaps(v4Mapped) {
				t.Errorf("%s overlaps the IPv4-mapped range, which the API refuses", n)
			}
		}
	}
}

func TestSharedTarget(t *testing.T) {
	wi := func(name string, guarded bool, target *metav1.LabelSelector) isolationv1alpha1.WorkloadIsolation {
		w := isolationv1alpha1.WorkloadIsolation{}
		w.Name, w.UID, w.Status.TargetSelector = name, types.UID(name), target
		if guarded {
			w.Spec.Guard = isolationv1alpha1.GuardEnforce
		}
		return w
	}
	self := wi("self", true, sel("app", "localai"))
	bySpec := wi("other", true, nil)
	bySpec.Spec.Target.PodSelector = &isolationv1alpha1.LabelSelector{MatchLabels: map[string]string{"app": "gateway"}}
	unresolved := wi("self", true, nil)
	if got := SharedTarget(&unresolved, []isolationv1alpha1.WorkloadIsolation{unresolved, bySpec}); got != "other" {
		t.Errorf("own target unresolved: %q, want other", got)
	}
	for _, c := range []struct {
		name     string
		siblings []isolationv1alpha1.WorkloadIsolation
		want     string
	}{
		{"alone", []isolationv1alpha1.WorkloadIsolation{self}, ""},
		{"disjoint", []isolationv1alpha1.WorkloadIsolation{self, wi("other", true, sel("app", "gateway"))}, ""},
		{"overlapping but not guarded", []isolationv1alpha1.WorkloadIsolation{self, wi("other", false, sel("app", "localai"))}, ""},
		{"overlapping and guarded", []isolationv1alpha1.WorkloadIsolation{self, wi("other", true, sel("tier", "gpu"))}, "other"},
		{"not resolved yet", []isolationv1alpha1.WorkloadIsolation{self, wi("other", true, nil)}, "other"},
		{"disjoint by spec before status", []isolationv1alpha1.WorkloadIsolation{self, bySpec}, ""},
	} {
		if got := SharedTarget(&self, c.siblings); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

// A rule with http admits only some requests, which neither admin-tier API
// can say: an Allow would admit every request, a Pass would let any
// NetworkPolicy do so. It is denied like every undeclared source.
func TestHTTPRulesAreNeitherAllowedNorPassed(t *testing.T) {
	in := &intent.Intent{Name: "w", Namespace: "ai", UID: "u", Target: *sel("app", "x"),
		Ingress: []intent.Rule{{Name: "gateway", Peers: []networkingv1.NetworkPolicyPeer{{PodSelector: sel("app", "gw")}},
			Ports: []networkingv1.NetworkPolicyPort{tcp(8080), named("http")},
			HTTP:  []isolationv1alpha1.HTTPRequest{{Method: "GET", Path: "/v1/models"}}}}}
	anp, err := ANP(in, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(anp.Spec.Ingress) != 1 || anp.Spec.Ingress[0].Action != anpv1alpha1.AdminNetworkPolicyRuleActionDeny {
		t.Errorf("want only the final Deny, got %+v", anp.Spec.Ingress)
	}
}

// An egress rule that names only hosts has no peers; it must not read as
// "every destination".
func TestHostsOnlyEgressRulesAllowNothing(t *testing.T) {
	in := &intent.Intent{Name: "w", Namespace: "ai", UID: "u", Target: *sel("app", "x"),
		Egress: &intent.Egress{Rules: []intent.Rule{{Name: "models", Hosts: []string{"hf.co"}, Ports: []networkingv1.NetworkPolicyPort{tcp(443)}}}}}
	anp, err := ANP(in, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(anp.Spec.Egress) != 1 || anp.Spec.Egress[0].Action != anpv1alpha1.AdminNetworkPolicyRuleActionDeny {
		t.Errorf("want only the final Deny, got %+v", anp.Spec.Egress)
	}
}
