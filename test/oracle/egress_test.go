package oracle

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"testing"

	"github.com/mattfenwick/cyclonus/pkg/matcher"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/analysis"
	"github.com/isolator-dev/isolator/internal/policy"
)

// Egress scenarios are the ingress scenarios plus the cluster's name
// resolution (kube-system's kube-dns and node-local-dns pods, NodeLocal
// DNSCache's 169.254.20.10), an object store (MinIO), decoys that carry
// those labels in other namespaces, addresses outside the cluster, and a
// WorkloadIsolation that isolates egress: random destinations (pods,
// namespaces, presets with and without presetNamespace, ipBlocks with
// exceptions), random ports (numbers, ranges, named ports, TCP, UDP, SCTP)
// and a random spec.dns (absent, cluster-dns, None).
//
// What cyclonus models and what it does not, for egress: it matches ipBlocks
// against any address, pods included (Kubernetes leaves that to the CNI), so
// the declared ipBlocks keep pod addresses (10.0.0.0/8) out, as the ingress
// ones do; it resolves a named port through the name the caller gives for
// the destination's port (the destination pod's container port, as
// Kubernetes does for egress), and external addresses have none, so a named
// port never matches them; endPort ranges and SCTP are compared as declared.

// egressExternal are the addresses outside the cluster the scenarios reach:
// inside and outside the declared CIDRs and their exceptions, NodeLocal
// DNSCache's address and the cloud metadata address.
var egressExternal = []string{"192.0.2.10", "192.0.2.200", "198.51.100.7", "203.0.113.5", "169.254.20.10", "169.254.169.254", "8.8.8.8"}

// egressCIDRs are the ipBlocks egress rules declare; none contains a pod
// address.
var egressCIDRs = []isolationv1alpha1.IPBlock{
	{CIDR: "192.0.2.0/24"},
	{CIDR: "192.0.2.0/24", Except: []string{"192.0.2.128/25"}},
	{CIDR: "192.0.2.0/25"},
	{CIDR: "198.51.100.0/24"},
	{CIDR: "169.254.169.254/32"},
	{CIDR: "0.0.0.0/0", Except: []string{"10.0.0.0/8"}},
	{CIDR: "0.0.0.0/0", Except: []string{"10.0.0.0/8", "169.254.0.0/16", "192.0.2.0/24"}},
}

// egressPorts are the ports checked in egress scenarios: every port number
// the generated rules name or range over, on each protocol they use.
var egressPorts = []port{
	{corev1.ProtocolTCP, 53}, {corev1.ProtocolTCP, 80}, {corev1.ProtocolTCP, 8050}, {corev1.ProtocolTCP, 8080}, {corev1.ProtocolTCP, 9000}, {corev1.ProtocolTCP, 9090},
	{corev1.ProtocolUDP, 53}, {corev1.ProtocolUDP, 8080}, {corev1.ProtocolUDP, 9000},
	{corev1.ProtocolSCTP, 8080},
}

// serviceContainerPorts are the named ports of every pod in egress
// scenarios: the application's, a DNS server's and an object store's.
var serviceContainerPorts = []corev1.ContainerPort{
	{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP},
	{Name: "metrics", ContainerPort: 9090, Protocol: corev1.ProtocolTCP},
	{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP},
	{Name: "dns-tcp", ContainerPort: 53, Protocol: corev1.ProtocolTCP},
	{Name: "s3", ContainerPort: 9000, Protocol: corev1.ProtocolTCP},
}

// egressPresetMeaning is what the egress presets stand for, as the README
// and the preset descriptions document them.
var egressPresetMeaning = map[string]struct {
	namespace string
	pods      []map[string]string
	ips       []string
	ports     []isolationv1alpha1.Port
}{
	"cluster-dns": {
		namespace: "kube-system",
		pods:      []map[string]string{{"k8s-app": "kube-dns"}, {"k8s-app": "node-local-dns"}},
		ips:       []string{"169.254.20.10"},
		ports: []isolationv1alpha1.Port{
			{Protocol: corev1.ProtocolUDP, Port: ptr.To(intstr.FromInt32(53))},
			{Protocol: corev1.ProtocolTCP, Port: ptr.To(intstr.FromInt32(53))},
		},
	},
	"minio": {
		namespace: "minio",
		pods:      []map[string]string{{"app.kubernetes.io/name": "minio"}},
		ports:     []isolationv1alpha1.Port{{Protocol: corev1.ProtocolTCP, Port: ptr.To(intstr.FromInt32(9000))}},
	},
}

func generateEgress(r *rand.Rand) *scenario {
	s := generate(r)
	s.external = egressExternal
	s.ports = egressPorts
	for _, p := range s.pods {
		p.ports = serviceContainerPorts
	}
	ipN := 0
	add := func(ns string, nsLabels map[string]string, pods ...map[string]string) {
		if !slices.ContainsFunc(s.namespaces, func(n namespace) bool { return n.name == ns }) {
			l := map[string]string{corev1.LabelMetadataName: ns}
			for k, v := range nsLabels {
				l[k] = v
			}
			s.namespaces = append(s.namespaces, namespace{name: ns, labels: l})
		}
		for j, l := range pods {
			ipN++
			s.pods = append(s.pods, &pod{namespace: ns, name: fmt.Sprintf("%s-svc-%d", ns, j), labels: l,
				ip: fmt.Sprintf("10.246.%d.%d", ipN/200, ipN%200+1), ports: serviceContainerPorts})
		}
	}
	if r.IntN(8) > 0 {
		pods := []map[string]string{{"k8s-app": "kube-dns"}, {"k8s-app": "metrics-server"}}
		if r.IntN(4) > 0 {
			pods = append(pods, map[string]string{"k8s-app": "node-local-dns"})
		}
		add("kube-system", nil, pods...)
	}
	if r.IntN(2) == 0 {
		add("minio", map[string]string{"team": pick(r, teams)}, map[string]string{"app.kubernetes.io/name": "minio"}, map[string]string{"app.kubernetes.io/name": "minio-console"})
	}
	if r.IntN(2) == 0 {
		add("storage", nil, map[string]string{"app.kubernetes.io/name": "minio", "tier": "api"})
	}
	if r.IntN(2) == 0 {
		// Decoys: the labels of the DNS and object-store pods, in a
		// namespace no preset names.
		add("decoy", map[string]string{"env": pick(r, envs)}, map[string]string{"k8s-app": "kube-dns"}, map[string]string{"k8s-app": "node-local-dns"}, map[string]string{"app.kubernetes.io/name": "minio"})
	}
	if r.IntN(3) == 0 {
		// A decoy DNS pod next to the target.
		add(targetNamespace, nil, map[string]string{"k8s-app": "kube-dns"})
	}
	s.wi.Spec.Egress = []isolationv1alpha1.EgressRule{}
	for i := range r.IntN(4) {
		rule := isolationv1alpha1.EgressRule{Name: fmt.Sprintf("rule-%d", i)}
		for range 1 + r.IntN(2) {
			rule.To = append(rule.To, generateEgressPeer(r, s))
		}
		for range r.IntN(3) {
			rule.Ports = append(rule.Ports, generateEgressPort(r))
		}
		// A preset's ports cannot apply next to other destinations, so
		// the API asks such a rule for its own ports.
		if len(rule.Ports) == 0 && len(rule.To) > 1 && slices.ContainsFunc(rule.To, func(p isolationv1alpha1.EgressPeer) bool { return p.Preset != "" }) {
			rule.Ports = append(rule.Ports, generateEgressPort(r))
		}
		s.wi.Spec.Egress = append(s.wi.Spec.Egress, rule)
	}
	s.wi.Spec.DNS = pick(r, []string{"", "", "None", "cluster-dns"})
	return s
}

func generateEgressPeer(r *rand.Rand, s *scenario) isolationv1alpha1.EgressPeer {
	switch r.IntN(9) {
	case 0, 1:
		p := isolationv1alpha1.EgressPeer{Preset: "minio"}
		if r.IntN(2) == 0 {
			p.PresetNamespace = pick(r, []string{"storage", "decoy", "minio", targetNamespace})
		}
		return p
	case 2:
		return isolationv1alpha1.EgressPeer{Preset: "cluster-dns"}
	case 3:
		ns := &isolationv1alpha1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: "kube-system"}}
		if r.IntN(3) == 0 {
			ns = &isolationv1alpha1.LabelSelector{}
		}
		return isolationv1alpha1.EgressPeer{NamespaceSelector: ns,
			PodSelector: &isolationv1alpha1.LabelSelector{MatchLabels: map[string]string{"k8s-app": pick(r, []string{"kube-dns", "node-local-dns", "metrics-server"})}}}
	case 4, 5:
		b := pick(r, egressCIDRs)
		return isolationv1alpha1.EgressPeer{IPBlock: &b}
	default:
		p := generatePeer(r, s)
		if p.Preset != "" { // ingress presets name sources only
			return isolationv1alpha1.EgressPeer{NamespaceSelector: &isolationv1alpha1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: presetMeaning[p.Preset].namespace}}}
		}
		return isolationv1alpha1.EgressPeer{NamespaceSelector: p.NamespaceSelector, PodSelector: p.PodSelector, IPBlock: p.IPBlock}
	}
}

func generateEgressPort(r *rand.Rand) isolationv1alpha1.Port {
	switch r.IntN(9) {
	case 0:
		return isolationv1alpha1.Port{Protocol: corev1.ProtocolUDP, Port: ptr.To(intstr.FromInt32(53))}
	case 1:
		return isolationv1alpha1.Port{Port: ptr.To(intstr.FromInt32(9000))}
	case 2:
		return pick(r, []isolationv1alpha1.Port{
			{Protocol: corev1.ProtocolUDP, Port: ptr.To(intstr.FromString("dns"))},
			{Protocol: corev1.ProtocolTCP, Port: ptr.To(intstr.FromString("dns-tcp"))},
			{Protocol: corev1.ProtocolTCP, Port: ptr.To(intstr.FromString("dns"))}, // names a UDP port: matches nothing
			{Port: ptr.To(intstr.FromString("s3"))},
		})
	case 3:
		return isolationv1alpha1.Port{Protocol: corev1.ProtocolSCTP, Port: ptr.To(intstr.FromInt32(8080))}
	case 4:
		return isolationv1alpha1.Port{Protocol: corev1.ProtocolTCP, Port: ptr.To(intstr.FromInt32(9000)), EndPort: ptr.To[int32](9100)}
	default:
		return generatePort(r)
	}
}

// traffic is a connection as cyclonus sees it; a named port is the
// destination pod's container port with that number and protocol.
func (s *scenario) traffic(src, dst source, p port) *matcher.Traffic {
	peer := func(e source) *matcher.TrafficPeer {
		if e.pod == nil {
			return &matcher.TrafficPeer{IP: e.ip}
		}
		return &matcher.TrafficPeer{IP: e.pod.ip, Internal: &matcher.InternalPeer{
			PodLabels: e.pod.labels, NamespaceLabels: s.namespace(e.pod.namespace).labels, Namespace: e.pod.namespace,
		}}
	}
	t := &matcher.Traffic{Source: peer(src), Destination: peer(dst), ResolvedPort: p.number, Protocol: p.protocol}
	if dst.pod != nil {
		for _, cp := range dst.pod.ports {
			if int(cp.ContainerPort) == p.number && cp.Protocol == p.protocol {
				t.ResolvedPortName = cp.Name
			}
		}
	}
	return t
}

// oracleEgress says whether the oracle lets src send to dst on p (egress of
// src only); oracleIngress whether it lets dst receive it (ingress of dst
// only).
func (s *scenario) oracleEgress(policies *matcher.Policy, src *pod, dst source, p port) bool {
	return policies.IsIngressOrEgressAllowed(s.traffic(source{pod: src}, dst, p), false).IsAllowed()
}

func (s *scenario) oracleIngress(policies *matcher.Policy, src source, dst *pod, p port) bool {
	return policies.IsIngressOrEgressAllowed(s.traffic(src, source{pod: dst}, p), true).IsAllowed()
}

// declaredEgress says what the spec means for egress, read from the API's
// documented semantics: a target pod may reach a destination when name
// resolution (spec.dns) or some rule allows it; other pods, and every pod
// when spec.egress is absent, are not isolated. isTarget says whether src
// is a target pod.
func (s *scenario) declaredEgress(isTarget bool, dst source, p port) bool {
	if !isTarget || s.wi.Spec.Egress == nil {
		return true
	}
	dstPod := dst.pod
	if dstPod == nil {
		dstPod = &pod{} // an address outside the cluster: no named ports
	}
	dns := s.wi.Spec.DNS
	if dns == "" {
		dns = "cluster-dns"
	}
	if dns != "None" {
		if portMatches(egressPresetMeaning[dns].ports, dstPod, p) && s.presetHas(dns, "", dst) {
			return true
		}
	}
	for _, rule := range s.wi.Spec.Egress {
		ports := rule.Ports
		if len(ports) == 0 && len(rule.To) == 1 && rule.To[0].Preset != "" {
			ports = egressPresetMeaning[rule.To[0].Preset].ports
		}
		if !portMatches(ports, dstPod, p) {
			continue
		}
		for _, to := range rule.To {
			if to.Preset != "" {
				if s.presetHas(to.Preset, to.PresetNamespace, dst) {
					return true
				}
				continue
			}
			if s.fromMatches(isolationv1alpha1.IngressPeer{NamespaceSelector: to.NamespaceSelector, PodSelector: to.PodSelector, IPBlock: to.IPBlock}, dst) {
				return true
			}
		}
	}
	return false
}

// presetHas says whether an egress preset (pointed at namespace, if set)
// names dst.
func (s *scenario) presetHas(name, namespace string, dst source) bool {
	meaning := egressPresetMeaning[name]
	if dst.pod == nil {
		return slices.Contains(meaning.ips, dst.ip)
	}
	if namespace == "" {
		namespace = meaning.namespace
	}
	if dst.pod.namespace != namespace {
		return false
	}
	return slices.ContainsFunc(meaning.pods, func(l map[string]string) bool {
		for k, v := range l {
			if dst.pod.labels[k] != v {
				return false
			}
		}
		return true
	})
}

// destinations are every pod but src, and every external address.
func (s *scenario) destinations(src *pod) []source {
	var out []source
	for _, d := range s.sources() {
		if d.pod != src {
			out = append(out, d)
		}
	}
	return out
}

// Property 3: with only the generated policies, the oracle lets each target
// pod reach exactly the declared destinations on the declared ports, plus
// name resolution unless spec.dns is None, and nothing else; pods the
// WorkloadIsolation does not target keep their egress open; and ingress is
// exactly as declared, as without egress.
func TestGeneratedPoliciesAllowExactlyTheDeclaredDestinations(t *testing.T) {
	seed, cases := settings(t)
	presets := testPresets()
	var egressChecks, egressAllowed, dnsAllowed, ingressChecks int
	for i := range cases {
		r := rand.New(rand.NewPCG(seed+2, uint64(i)))
		s := generateEgress(r)
		generated, err := policy.Build(s.wi, *s.wi.Spec.Target.PodSelector.LabelSelector(), presets)
		if err != nil {
			t.Fatalf("seed %d case %d: generated spec is invalid: %v\nspec: %s", seed, i, err, asJSON(s.wi.Spec))
		}
		oracle := matcher.BuildNetworkPolicies(false, pointers(generated))
		targets := s.targetPods()
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("seed %d case %d (replay: ORACLE_SEED=%d): %s\nspec: %s", seed, i, seed, fmt.Sprintf(format, args...), asJSON(s.wi.Spec))
		}
		for _, src := range s.targetNamespacePods() {
			isTarget := slices.Contains(targets, src)
			for _, dst := range s.destinations(src) {
				for _, p := range s.ports {
					egressChecks++
					got, want := s.oracleEgress(oracle, src, dst, p), s.declaredEgress(isTarget, dst, p)
					if got != want {
						fail("%s/%s -> %s on %s: oracle allows=%v, declared=%v", src.namespace, src.name, dst, p, got, want)
					}
					if isTarget && got {
						egressAllowed++
						if p.number == 53 && (dst.pod != nil && dst.pod.namespace == "kube-system" || dst.ip == "169.254.20.10") {
							dnsAllowed++
						}
					}
				}
			}
			for _, from := range s.sources() {
				if from.pod == src {
					continue
				}
				for _, p := range s.ports {
					ingressChecks++
					if got, want := s.oracleIngress(oracle, from, src, p), s.declared(from, src, p); got != want {
						fail("%s -> %s/%s on %s: oracle allows ingress=%v, declared=%v", from, src.namespace, src.name, p, got, want)
					}
				}
			}
		}
	}
	t.Logf("%d scenarios, %d egress and %d ingress connections checked against the oracle", cases, egressChecks, ingressChecks)
	fmt.Printf("oracle property 3 (egress): %d scenarios, %d egress connections (%d allowed from target pods, %d of them to DNS), %d ingress connections, 0 disagreements\n",
		cases, egressChecks, egressAllowed, dnsAllowed, ingressChecks)
}

// egressFalsePositiveBound is the largest share of egress widening reports
// the oracle may find no witness for, even after the namespaces, pods and
// addresses the foreign policies could admit exist, and even with the
// egress rules that policyTypes leave out in force. Such rules do nothing
// under the API, and so under the oracle, but Cilium and the AWS network
// policy agent enforce them, so the analysis reports them on purpose; they
// are counted and printed apart. Measured with the default seed and 10000
// scenarios: 365 of 3718 reports have no witness (9.82%), 312 of them
// confirmed once those rules are in force; of the other 53 (1.43%), 51 have
// a named port the analysis cannot resolve (the scenarios' pods give each
// name one number and protocol, an address outside the cluster has none)
// and 2 are latent grants that only relabelling an existing namespace would
// open. An analysis that reports every scenario scores about 65% and fails.
const egressFalsePositiveBound = 0.05

// egressWidening is what property 4 measured.
type egressWidening struct {
	widening
	// ignoredRules: reports without a witness for which the oracle finds
	// one once the egress rules that a foreign policy's policyTypes leave
	// out are in force.
	ignoredRules int
	// namedPorts: other reports without a witness in which a declared or
	// foreign egress rule names a port.
	namedPorts int
}

// unexplainedRate is the share of reports without a witness even with the
// rules policyTypes leave out in force: what egressFalsePositiveBound bounds.
func (w egressWidening) unexplainedRate() float64 {
	if w.reports == 0 {
		return 0
	}
	return float64(w.falsePositives-w.ignoredRules) / float64(w.reports)
}

// widenedEgressPorts are the ports property 4 samples.
var widenedEgressPorts = append(append([]port(nil), egressPorts...),
	port{corev1.ProtocolUDP, 80}, port{corev1.ProtocolUDP, 8050}, port{corev1.ProtocolUDP, 9090})

// Property 4: whenever the oracle lets a target pod reach an undeclared
// destination (because of policies written by others), the analysis
// reports that the isolation is not intact, with an Egress exposure that is
// not only latent (or an incomplete report); and what it reports for egress
// is real: reports for which the oracle finds no witness, even once the
// namespaces, pods and addresses the foreign policies could admit exist,
// stay below egressFalsePositiveBound.
func TestAnalysisReportsEveryEgressWidening(t *testing.T) {
	seed, cases := settings(t)
	w := measureEgressWidening(t, seed, cases, analysis.Analyze)
	rate, unexplained := w.falsePositiveRate(), w.unexplainedRate()
	t.Logf("%+v, false-positive rate %.2f%%, %.2f%% with the rules policyTypes leave out in force", w, 100*rate, 100*unexplained)
	fmt.Printf("oracle property 4 (egress): %d scenarios, %d widened by foreign policies, all reported; %d egress reports in all, %d of them latent only\n",
		w.scenarios, w.widened, w.reports, w.latentOnly)
	fmt.Printf("oracle property 4 (egress): %d reports without a witness among existing destinations were confirmed once the admitted namespaces, pods and addresses exist (latent grants)\n",
		w.latentConfirmed)
	fmt.Printf("oracle property 4 (egress): false positives %d of %d reports = %.2f%%; %d of them confirmed once the egress rules that policyTypes leave out are in force (as Cilium enforces them)\n",
		w.falsePositives, w.reports, 100*rate, w.ignoredRules)
	fmt.Printf("oracle property 4 (egress): without a witness even then %d of %d = %.2f%% (bound %.0f%%), %d of them with a named port\n",
		w.falsePositives-w.ignoredRules, w.reports, 100*unexplained, 100*egressFalsePositiveBound, w.namedPorts)
	if unexplained > egressFalsePositiveBound {
		t.Fatalf("false-positive rate %.2f%% exceeds the bound %.0f%%", 100*unexplained, 100*egressFalsePositiveBound)
	}
}

// The egress false-positive bound has teeth: an analysis that reports an
// egress widening in every scenario fails it.
func TestEgressFalsePositiveBoundRejectsAlwaysReporting(t *testing.T) {
	seed, cases := settings(t)
	always := func(analysis.Input) analysis.Report {
		return analysis.Report{Exposures: []analysis.Exposure{{Policy: "any", Direction: analysis.Egress, Widens: true}}}
	}
	w := measureEgressWidening(t, seed, min(cases, 1000), always)
	fmt.Printf("oracle property 4 (self-check): an analysis that always reports egress scores %.2f%% false positives (bound %.0f%%)\n",
		100*w.unexplainedRate(), 100*egressFalsePositiveBound)
	if w.unexplainedRate() <= egressFalsePositiveBound {
		t.Fatalf("an always-reporting analysis passes the bound: %+v", w)
	}
}

func measureEgressWidening(t *testing.T, seed uint64, cases int, analyze func(analysis.Input) analysis.Report) egressWidening {
	t.Helper()
	presets := testPresets()
	w := egressWidening{widening: widening{scenarios: cases}}
	for i := range cases {
		r := rand.New(rand.NewPCG(seed+3, uint64(i)))
		s := generateEgress(r)
		s.ports = widenedEgressPorts
		s.foreign = foreignEgressPolicies(r, s)
		generated, err := policy.Build(s.wi, *s.wi.Spec.Target.PodSelector.LabelSelector(), presets)
		if err != nil {
			t.Fatalf("seed %d case %d: generated spec is invalid: %v", seed, i, err)
		}
		all := append(append([]networkingv1.NetworkPolicy(nil), generated...), s.foreign...)
		oracle := matcher.BuildNetworkPolicies(false, pointers(all))
		report := analyze(s.analysisInput(generated, all))
		reported := report.Incomplete != "" || slices.ContainsFunc(report.Exposures, func(e analysis.Exposure) bool {
			return e.Widens && e.Direction == analysis.Egress
		})
		open := report.Incomplete != "" || slices.ContainsFunc(report.Exposures, func(e analysis.Exposure) bool {
			return e.Widens && e.Direction == analysis.Egress && !e.Latent
		})
		if reported {
			w.reports++
			if !open {
				w.latentOnly++
			}
		}
		targets := s.targetPods()
		witness := s.egressWitness(oracle, targets)
		switch {
		case witness != "":
			w.widened++
			if !reported {
				t.Fatalf("seed %d case %d (replay: ORACLE_SEED=%d): the oracle lets a target pod reach an undeclared destination (%s) but the analysis reports no egress widening\nspec: %s\nforeign: %s\nreport: %+v",
					seed+3, i, seed, witness, asJSON(s.wi.Spec), asJSON(s.foreign), report.Exposures)
			}
			if !open {
				t.Fatalf("seed %d case %d (replay: ORACLE_SEED=%d): the oracle lets a target pod reach an existing undeclared destination (%s) but the analysis reports only latent egress widenings\nspec: %s\nforeign: %s\nreport: %+v",
					seed+3, i, seed, witness, asJSON(s.wi.Spec), asJSON(s.foreign), report.Exposures)
			}
		case reported:
			s.addAdmittedDestinations()
			if s.egressWitness(oracle, targets) != "" {
				w.latentConfirmed++
				continue
			}
			w.falsePositives++
			if s.egressWitness(matcher.BuildNetworkPolicies(false, pointers(enforceEveryRule(all))), targets) != "" {
				w.ignoredRules++
			} else if namesAPort(all) {
				w.namedPorts++
			} else if os.Getenv("ORACLE_DEBUG") != "" {
				fmt.Printf("false positive: case %d\nspec: %s\nforeign: %s\nreport: %+v\n", i, asJSON(s.wi.Spec), asJSON(s.foreign), report.Exposures)
			}
		}
	}
	return w
}

func asJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// namesAPort says whether an egress rule of the policies names a port.
func namesAPort(policies []networkingv1.NetworkPolicy) bool {
	return slices.ContainsFunc(policies, func(np networkingv1.NetworkPolicy) bool {
		return slices.ContainsFunc(np.Spec.Egress, func(r networkingv1.NetworkPolicyEgressRule) bool {
			return slices.ContainsFunc(r.Ports, func(p networkingv1.NetworkPolicyPort) bool { return p.Port != nil && p.Port.Type == intstr.String })
		})
	})
}

// enforceEveryRule returns the policies with the egress rules their
// policyTypes leave out in force, as Cilium and the AWS network policy agent
// enforce them.
func enforceEveryRule(policies []networkingv1.NetworkPolicy) []networkingv1.NetworkPolicy {
	out := make([]networkingv1.NetworkPolicy, len(policies))
	for i := range policies {
		out[i] = *policies[i].DeepCopy()
		if len(out[i].Spec.Egress) > 0 && !slices.Contains(out[i].Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
			out[i].Spec.PolicyTypes = append(out[i].Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
		}
	}
	return out
}

// egressWitness returns an undeclared connection the oracle lets one of the
// target pods make, or "".
func (s *scenario) egressWitness(oracle *matcher.Policy, targets []*pod) string {
	for _, src := range targets {
		for _, dst := range s.destinations(src) {
			for _, p := range s.ports {
				if s.oracleEgress(oracle, src, dst, p) && !s.declaredEgress(true, dst, p) {
					return fmt.Sprintf("%s/%s -> %s on %s", src.namespace, src.name, dst, p)
				}
			}
		}
	}
	return ""
}

// foreignEgressCIDRs are ipBlocks others write: some inside the declared
// ones, some wider, some that cover pod addresses.
var foreignEgressCIDRs = []networkingv1.IPBlock{
	{CIDR: "0.0.0.0/0"},
	{CIDR: "0.0.0.0/0", Except: []string{"10.0.0.0/8"}},
	{CIDR: "10.0.0.0/8"},
	{CIDR: "169.254.0.0/16"},
	{CIDR: "169.254.20.10/32"},
	{CIDR: "192.0.2.0/24"},
	{CIDR: "192.0.2.0/26"},
	{CIDR: "192.0.2.128/25"},
	{CIDR: "198.51.100.0/24", Except: []string{"198.51.100.0/28"}},
}

// foreignEgressPolicies are policies others wrote in the target namespace:
// allow-all egress, egress to wider CIDRs, selectors or ports, egress-only
// policies, policies whose policyTypes leave their egress rules out, deny
// policies, and ingress policies as in property 2.
func foreignEgressPolicies(r *rand.Rand, s *scenario) []networkingv1.NetworkPolicy {
	var out []networkingv1.NetworkPolicy
	for i := range r.IntN(4) {
		np := foreignPolicy(r, i)
		egress := networkingv1.PolicyTypeEgress
		ingress := networkingv1.PolicyTypeIngress
		switch r.IntN(10) {
		case 0: // allow all egress
			np.Spec.PolicyTypes = []networkingv1.PolicyType{egress}
			np.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{}}
		case 1: // deny all egress: harmless
			np.Spec.PolicyTypes = []networkingv1.PolicyType{egress}
		case 2: // egress rules that policyTypes leave out
			np.Spec.PolicyTypes = []networkingv1.PolicyType{ingress}
			np.Spec.Egress = foreignEgressRules(r, s)
		case 3: // both directions
			np.Spec.PolicyTypes = []networkingv1.PolicyType{ingress, egress}
			np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{
				{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": pick(r, apps)}}},
			}}}
			np.Spec.Egress = foreignEgressRules(r, s)
		case 4: // an ingress policy
			np.Spec.PolicyTypes = []networkingv1.PolicyType{ingress}
			np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{}}
		default:
			np.Spec.PolicyTypes = []networkingv1.PolicyType{egress}
			np.Spec.Egress = foreignEgressRules(r, s)
		}
		out = append(out, np)
	}
	return out
}

func foreignEgressRules(r *rand.Rand, s *scenario) []networkingv1.NetworkPolicyEgressRule {
	var rules []networkingv1.NetworkPolicyEgressRule
	for range 1 + r.IntN(2) {
		var rule networkingv1.NetworkPolicyEgressRule
		if r.IntN(6) > 0 {
			for range 1 + r.IntN(2) {
				var peer networkingv1.NetworkPolicyPeer
				switch r.IntN(5) {
				case 0:
					b := pick(r, foreignEgressCIDRs)
					peer.IPBlock = b.DeepCopy()
				default:
					p := generateEgressPeer(r, s)
					switch {
					case p.Preset != "":
						m := egressPresetMeaning[p.Preset]
						ns := m.namespace
						if p.PresetNamespace != "" {
							ns = p.PresetNamespace
						}
						peer.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: ns}}
						peer.PodSelector = &metav1.LabelSelector{MatchLabels: m.pods[0]}
					case p.IPBlock != nil:
						peer.IPBlock = &networkingv1.IPBlock{CIDR: p.IPBlock.CIDR, Except: p.IPBlock.Except}
					default:
						peer.NamespaceSelector, peer.PodSelector = p.NamespaceSelector.LabelSelector(), p.PodSelector.LabelSelector()
					}
				}
				rule.To = append(rule.To, peer)
			}
		}
		for range r.IntN(3) {
			p := generateEgressPort(r)
			protocol := p.Protocol
			if protocol == "" {
				protocol = corev1.ProtocolTCP
			}
			rule.Ports = append(rule.Ports, networkingv1.NetworkPolicyPort{Protocol: &protocol, Port: p.Port, EndPort: p.EndPort})
		}
		rules = append(rules, rule)
	}
	return rules
}

// addAdmittedDestinations adds, for every destination entry of the foreign
// policies, a pod its podSelector admits (in every existing namespace its
// namespaceSelector admits, and in a new namespace labelled to match it),
// and addresses inside each ipBlock but outside its exceptions.
func (s *scenario) addAdmittedDestinations() {
	n := 0
	for _, np := range s.foreign {
		for _, rule := range np.Spec.Egress {
			for _, peer := range rule.To {
				if peer.IPBlock != nil {
					for _, ip := range blockAddresses(peer.IPBlock) {
						if !slices.Contains(s.external, ip) {
							s.external = append(s.external, ip)
						}
					}
					continue
				}
				s.addAdmitted(np.Namespace, peer, &n, serviceContainerPorts)
			}
		}
	}
}

// blockAddresses returns addresses an ipBlock admits: its first, second
// and last, and those next to each exception, that no exception holds.
func blockAddresses(b *networkingv1.IPBlock) []string {
	cidr := netip.MustParsePrefix(b.CIDR).Masked()
	var excepts []netip.Prefix
	for _, e := range b.Except {
		excepts = append(excepts, netip.MustParsePrefix(e).Masked())
	}
	candidates := []netip.Addr{cidr.Addr(), cidr.Addr().Next(), lastAddr(cidr)}
	for _, e := range excepts {
		candidates = append(candidates, e.Addr().Prev(), lastAddr(e).Next())
	}
	var out []string
	for _, a := range candidates {
		if a.IsValid() && cidr.Contains(a) && !slices.ContainsFunc(excepts, func(e netip.Prefix) bool { return e.Contains(a) }) {
			out = append(out, a.String())
		}
	}
	return out
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	for i := p.Bits(); i < 32; i++ {
		b[i/8] |= 1 << (7 - i%8)
	}
	return netip.AddrFrom4(b)
}
