package adminoracle

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	anpv1alpha1 "sigs.k8s.io/network-policy-api/apis/v1alpha1"

	"github.com/isolator-dev/isolator/internal/adminpolicy"
	"github.com/isolator-dev/isolator/internal/analysis"
	"github.com/isolator-dev/isolator/internal/policy"
)

// foreignPriorities are the priorities of administrators' own
// AdminNetworkPolicies: before the guard, at its priority, after it.
var foreignPriorities = []int32{100, 500, guardPriority, 950, 990}

// adminScenario is a scenario plus admin-tier policies others wrote.
type adminScenario struct {
	*scenario
	generated []networkingv1.NetworkPolicy
	tenant    []networkingv1.NetworkPolicy
	guard     *anpv1alpha1.AdminNetworkPolicy
	foreign   []anpv1alpha1.AdminNetworkPolicy
	baseline  *anpv1alpha1.BaselineAdminNetworkPolicy
}

func generateAdmin(t *testing.T, r *rand.Rand) *adminScenario {
	t.Helper()
	s := &adminScenario{scenario: generate(t, r, true)}
	s.generated = policy.NetworkPolicies(s.in)
	if r.IntN(4) == 0 {
		s.tenant = tenantPolicies(r, s.scenario)
	}
	if r.IntN(5) > 0 {
		g, err := adminpolicy.ANP(s.in, guardPriority, false)
		if err != nil {
			t.Fatal(err)
		}
		s.guard = g
	}
	priorities := slices.Clone(foreignPriorities)
	r.Shuffle(len(priorities), func(i, j int) { priorities[i], priorities[j] = priorities[j], priorities[i] })
	for i := range r.IntN(4) {
		anp := anpv1alpha1.AdminNetworkPolicy{
			TypeMeta:   metav1.TypeMeta{APIVersion: anpv1alpha1.SchemeGroupVersion.String(), Kind: "AdminNetworkPolicy"},
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("foreign-%d", i)},
			Spec:       anpv1alpha1.AdminNetworkPolicySpec{Priority: priorities[i], Subject: s.adminSubject(r)},
		}
		for j := range r.IntN(3) {
			anp.Spec.Ingress = append(anp.Spec.Ingress, anpv1alpha1.AdminNetworkPolicyIngressRule{
				Name: fmt.Sprintf("in-%d", j), Action: pick(r, anpActions), From: s.adminIngressPeers(r), Ports: adminPorts(r)})
		}
		for j := range r.IntN(3) {
			anp.Spec.Egress = append(anp.Spec.Egress, anpv1alpha1.AdminNetworkPolicyEgressRule{
				Name: fmt.Sprintf("out-%d", j), Action: pick(r, anpActions), To: s.adminEgressPeers(r), Ports: adminPorts(r)})
		}
		s.foreign = append(s.foreign, anp)
	}
	if r.IntN(3) == 0 {
		b := &anpv1alpha1.BaselineAdminNetworkPolicy{
			TypeMeta:   metav1.TypeMeta{APIVersion: anpv1alpha1.SchemeGroupVersion.String(), Kind: "BaselineAdminNetworkPolicy"},
			ObjectMeta: metav1.ObjectMeta{Name: "default"},
			Spec:       anpv1alpha1.BaselineAdminNetworkPolicySpec{Subject: s.adminSubject(r)},
		}
		action := func() anpv1alpha1.BaselineAdminNetworkPolicyRuleAction {
			return pick(r, []anpv1alpha1.BaselineAdminNetworkPolicyRuleAction{anpv1alpha1.BaselineAdminNetworkPolicyRuleActionAllow, anpv1alpha1.BaselineAdminNetworkPolicyRuleActionDeny})
		}
		for j := range 1 + r.IntN(2) {
			b.Spec.Ingress = append(b.Spec.Ingress, anpv1alpha1.BaselineAdminNetworkPolicyIngressRule{
				Name: fmt.Sprintf("in-%d", j), Action: action(), From: s.adminIngressPeers(r), Ports: adminPorts(r)})
		}
		for j := range r.IntN(3) {
			var to []anpv1alpha1.BaselineAdminNetworkPolicyEgressPeer
			for _, p := range s.adminEgressPeers(r) {
				to = append(to, anpv1alpha1.BaselineAdminNetworkPolicyEgressPeer{Namespaces: p.Namespaces, Pods: p.Pods, Networks: p.Networks})
			}
			b.Spec.Egress = append(b.Spec.Egress, anpv1alpha1.BaselineAdminNetworkPolicyEgressRule{
				Name: fmt.Sprintf("out-%d", j), Action: action(), To: to, Ports: adminPorts(r)})
		}
		s.baseline = b
	}
	return s
}

var anpActions = []anpv1alpha1.AdminNetworkPolicyRuleAction{
	anpv1alpha1.AdminNetworkPolicyRuleActionAllow, anpv1alpha1.AdminNetworkPolicyRuleActionAllow,
	anpv1alpha1.AdminNetworkPolicyRuleActionDeny, anpv1alpha1.AdminNetworkPolicyRuleActionPass,
}

// adminSubject selects every pod, the target namespace, the target's pods
// or some of them, a tier anywhere, another namespace, or other pods.
func (s *adminScenario) adminSubject(r *rand.Rand) anpv1alpha1.AdminNetworkPolicySubject {
	inTarget := metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: targetNamespace}}
	switch r.IntN(6) {
	case 0:
		return anpv1alpha1.AdminNetworkPolicySubject{Namespaces: &metav1.LabelSelector{}}
	case 1:
		return anpv1alpha1.AdminNetworkPolicySubject{Namespaces: &inTarget}
	case 2:
		return anpv1alpha1.AdminNetworkPolicySubject{Pods: &anpv1alpha1.NamespacedPod{NamespaceSelector: inTarget,
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": "local-ai"}}}}
	case 3:
		return anpv1alpha1.AdminNetworkPolicySubject{Pods: &anpv1alpha1.NamespacedPod{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"tier": pick(r, tiers)}}}}
	case 4:
		return anpv1alpha1.AdminNetworkPolicySubject{Namespaces: &metav1.LabelSelector{MatchLabels: map[string]string{"team": pick(r, teams)}}}
	default:
		return anpv1alpha1.AdminNetworkPolicySubject{Pods: &anpv1alpha1.NamespacedPod{NamespaceSelector: inTarget,
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": "client"}}}}
	}
}

func (s *adminScenario) adminIngressPeers(r *rand.Rand) []anpv1alpha1.AdminNetworkPolicyIngressPeer {
	var out []anpv1alpha1.AdminNetworkPolicyIngressPeer
	for range 1 + r.IntN(2) {
		p := s.generatePeer(r)
		switch {
		case p.NamespaceSelector != nil && p.PodSelector == nil:
			out = append(out, anpv1alpha1.AdminNetworkPolicyIngressPeer{Namespaces: p.NamespaceSelector.LabelSelector()})
		case p.NamespaceSelector != nil:
			out = append(out, anpv1alpha1.AdminNetworkPolicyIngressPeer{Pods: &anpv1alpha1.NamespacedPod{
				NamespaceSelector: *p.NamespaceSelector.LabelSelector(), PodSelector: *p.PodSelector.LabelSelector()}})
		case p.PodSelector != nil:
			out = append(out, anpv1alpha1.AdminNetworkPolicyIngressPeer{Pods: &anpv1alpha1.NamespacedPod{PodSelector: *p.PodSelector.LabelSelector()}})
		default:
			out = append(out, anpv1alpha1.AdminNetworkPolicyIngressPeer{Namespaces: &metav1.LabelSelector{}})
		}
	}
	return out
}

// adminEgressPeers are ingress peers plus networks outside the cluster.
func (s *adminScenario) adminEgressPeers(r *rand.Rand) []anpv1alpha1.AdminNetworkPolicyEgressPeer {
	var out []anpv1alpha1.AdminNetworkPolicyEgressPeer
	for _, p := range s.adminIngressPeers(r) {
		if r.IntN(3) == 0 {
			out = append(out, anpv1alpha1.AdminNetworkPolicyEgressPeer{Networks: []anpv1alpha1.CIDR{
				anpv1alpha1.CIDR(pick(r, []string{"192.0.2.0/25", "198.51.100.0/24", "169.254.20.10/32", "8.8.8.0/24"}))}})
			continue
		}
		out = append(out, anpv1alpha1.AdminNetworkPolicyEgressPeer{Namespaces: p.Namespaces, Pods: p.Pods})
	}
	return out
}

// adminPorts are none (all ports) or one or two numbers, ranges or named
// ports.
func adminPorts(r *rand.Rand) *[]anpv1alpha1.AdminNetworkPolicyPort {
	if r.IntN(2) == 0 {
		return nil
	}
	out := []anpv1alpha1.AdminNetworkPolicyPort{}
	for range 1 + r.IntN(2) {
		switch r.IntN(4) {
		case 0:
			out = append(out, anpv1alpha1.AdminNetworkPolicyPort{PortNumber: &anpv1alpha1.Port{Protocol: corev1.ProtocolTCP, Port: pick(r, []int32{53, 80, 8080, 9090})}})
		case 1:
			out = append(out, anpv1alpha1.AdminNetworkPolicyPort{PortNumber: &anpv1alpha1.Port{Protocol: corev1.ProtocolUDP, Port: 53}})
		case 2:
			out = append(out, anpv1alpha1.AdminNetworkPolicyPort{PortRange: &anpv1alpha1.PortRange{Protocol: corev1.ProtocolTCP, Start: 8000, End: 8100}})
		default:
			out = append(out, anpv1alpha1.AdminNetworkPolicyPort{NamedPort: ptr.To(pick(r, containerPorts).Name)})
		}
	}
	return &out
}

// orders are the clusters np-guard evaluates: one, or, when a foreign
// policy holds the guard's priority, two (it just before the guard, and
// just after), as the API leaves their order undefined.
func (s *adminScenario) orders() [][]any {
	base := s.clusterObjects()
	base = append(base, networkPolicyObjects(s.generated)...)
	base = append(base, networkPolicyObjects(s.tenant)...)
	if s.baseline != nil {
		base = append(base, s.baseline)
	}
	tied := s.guard != nil && slices.ContainsFunc(s.foreign, func(a anpv1alpha1.AdminNetworkPolicy) bool { return a.Spec.Priority == guardPriority })
	var out [][]any
	for _, shift := range []int32{-1, 1} {
		objects := slices.Clone(base)
		if s.guard != nil {
			objects = append(objects, s.guard)
		}
		for i := range s.foreign {
			a := s.foreign[i].DeepCopy()
			if tied && a.Spec.Priority == guardPriority {
				a.Spec.Priority += shift
			}
			objects = append(objects, a)
		}
		out = append(out, objects)
		if !tied {
			break
		}
	}
	return out
}

// analyze runs the widening analysis as the operator does: the generated
// policies are the declared ones, every policy of the namespace is
// analysed, and the other admin-tier policies come in as widenings.
func (s *adminScenario) analyze(analyze func(analysis.Input) analysis.Report) analysis.Report {
	ns, namespaces, targets := s.analysisObjects()
	var guard *adminpolicy.Guard
	if s.guard != nil {
		guard = &adminpolicy.Guard{Kind: adminpolicy.AdminNetworkPolicy, Name: s.guard.Name, Priority: s.guard.Spec.Priority}
	}
	return analyze(analysis.Input{
		Namespace:  targetNamespace,
		TargetPods: targets,
		Namespaces: namespaces,
		Policies:   append(slices.Clone(s.generated), s.tenant...),
		Declared:   s.generated,
		Self:       s.wi.Name,
		Admin:      adminpolicy.Widenings(s.foreign, nil, guard, adminpolicy.Target{Namespace: ns, Pods: targets}),
	})
}

// adminWidening is what property 2 measured.
type adminWidening struct {
	scenarios, flows int
	// widened: np-guard allows a connection of a target pod the intent
	// does not declare.
	widened int
	// reports: the analysis reported a widening.
	reports int
	// falsePositives: reported, and np-guard allows nothing undeclared.
	falsePositives int
	// tenantFalsePositives: false positives in scenarios with NetworkPolicies
	// of the tenant (which the guard overrides, but the analysis reads).
	tenantFalsePositives int
}

func (w adminWidening) falsePositiveRate() float64 {
	if w.reports == 0 {
		return 0
	}
	return float64(w.falsePositives) / float64(w.reports)
}

func measureAdminWidening(t *testing.T, seed uint64, cases int, analyze func(analysis.Input) analysis.Report) adminWidening {
	t.Helper()
	w := adminWidening{scenarios: cases}
	for i := range cases {
		r := rand.New(rand.NewPCG(seed+1, uint64(i)))
		s := generateAdmin(t, r)
		flows := s.flows()
		witness := ""
		for _, objects := range s.orders() {
			got, err := engine.allowed(objects, queries(flows))
			if err != nil {
				t.Fatalf("seed %d case %d: %v", seed, i, err)
			}
			for j, f := range flows {
				w.flows++
				if got[j] && witness == "" && !s.declared(f.src, f.dst, f.port) {
					witness = f.String()
				}
			}
		}
		report := s.analyze(analyze)
		if report.Widened() {
			w.reports++
		}
		switch {
		case witness != "":
			w.widened++
			if !report.Widened() {
				t.Fatalf("seed %d case %d (replay: ADMIN_ORACLE_SEED=%d): np-guard allows undeclared traffic (%s) but the analysis reports no widening\nspec: %+v\nguard: %v\nforeign: %+v\nbaseline: %+v\ntenant: %+v",
					seed+1, i, seed, witness, s.wi.Spec, s.guard != nil, s.foreign, s.baseline, s.tenant)
			}
		case report.Widened():
			w.falsePositives++
			if len(s.tenant) > 0 {
				w.tenantFalsePositives++
			}
		}
	}
	return w
}

// adminFalsePositiveBound is the largest share of widening reports np-guard
// may find no undeclared connection for. Measured with the default seed
// and 1000 scenarios: 86 of 306 reports (28.1%), 54 of them in scenarios
// with NetworkPolicies of the tenant that the guard overrides but the
// analysis reads; an analysis that reports every scenario scores about 83%
// and fails.
const adminFalsePositiveBound = 0.40

// Property 2: whenever np-guard lets a target pod exchange traffic the
// intent does not declare, because of AdminNetworkPolicies others wrote
// (before, at or after the guard's priority, with Allow, Deny and Pass
// rules, selecting the target or not, with or without the guard), a
// BaselineAdminNetworkPolicy or the tenant's NetworkPolicies, the analysis
// fed with adminpolicy.Widenings reports a widening; and most of what it
// reports is real.
func TestAnalysisReportsEveryAdminWidening(t *testing.T) {
	seed, cases := settings(t)
	start := time.Now()
	w := measureAdminWidening(t, seed, cases, analysis.Analyze)
	rate := w.falsePositiveRate()
	t.Logf("%+v, false-positive rate %.2f%%, %s", w, 100*rate, time.Since(start).Round(time.Millisecond))
	fmt.Printf("admin oracle property 2: %d scenarios, %d connections, %d widened by admin-tier or tenant policies, all reported; %d reports\n",
		w.scenarios, w.flows, w.widened, w.reports)
	fmt.Printf("admin oracle property 2: false positives %d of %d reports = %.2f%% (%d of them with tenant NetworkPolicies the guard overrides; bound %.0f%%)\n",
		w.falsePositives, w.reports, 100*rate, w.tenantFalsePositives, 100*adminFalsePositiveBound)
	if rate > adminFalsePositiveBound {
		t.Fatalf("false-positive rate %.2f%% exceeds the bound %.0f%%", 100*rate, 100*adminFalsePositiveBound)
	}
}

// The false-positive bound has teeth: an analysis that reports every
// scenario as widened fails it.
func TestAdminFalsePositiveBoundRejectsAlwaysReporting(t *testing.T) {
	seed, cases := settings(t)
	always := func(analysis.Input) analysis.Report {
		return analysis.Report{Exposures: []analysis.Exposure{{Policy: "any", Widens: true}}}
	}
	w := measureAdminWidening(t, seed, min(cases, 300), always)
	fmt.Printf("admin oracle property 2 (self-check): an analysis that always reports scores %.2f%% false positives (bound %.0f%%)\n",
		100*w.falsePositiveRate(), 100*adminFalsePositiveBound)
	if w.falsePositiveRate() <= adminFalsePositiveBound {
		t.Fatalf("an always-reporting analysis passes the bound: %+v", w)
	}
}
