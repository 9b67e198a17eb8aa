package adminoracle

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/analysis"
	"github.com/isolator-dev/isolator/internal/intent"
	"github.com/isolator-dev/isolator/internal/preset"
)

// What np-guard (v1.4.4) evaluates, and so what the scenarios generate:
//   - pods, namespaces, selectors (matchLabels, In, Exists, DoesNotExist),
//     port numbers, ranges and named ports (resolved on the destination
//     pod's container ports), TCP, UDP and SCTP;
//   - AdminNetworkPolicy networks only against addresses outside the
//     cluster: np-guard never matches a pod's address against them (the API
//     says cluster-internal traffic is checked against networks too), so
//     the scenarios keep pod addresses (10.0.0.0/8) out of every CIDR;
//   - IPv4 only: np-guard skips IPv6 CIDRs (the guard's "::/0" is ignored),
//     so only IPv4 addresses are checked;
//   - no nodes peers and no domain names (np-guard ignores nodes, and its
//     types predate domain names);
//   - no two AdminNetworkPolicies at one priority: np-guard refuses them, so
//     a foreign policy at the guard's priority is evaluated twice, once just
//     before the guard and once just after it (the API leaves their order
//     undefined);
//   - ingress from addresses is not checked: admin-tier ingress rules cannot
//     name addresses, so the guard leaves them to the NetworkPolicies.
//   - NetworkPolicy egress rules with named ports are not generated in the
//     intent or the tenant's policies: np-guard fails on them when the
//     destination is an address; a NetworkPolicy port with a protocol and
//     no number is handed to np-guard as the range 1-65535 (see
//     networkPolicyObjects);
//   - property 1 declares no named ports: the guard passes a source or
//     destination declared with named ports on to the NetworkPolicies
//     (Pass), where the tenant's policies decide too.

// targetNamespace is where every scenario's WorkloadIsolation lives.
const targetNamespace = "local-ai"

// guardPriority is the guard's AdminNetworkPolicy priority.
const guardPriority = 900

type namespace struct {
	name   string
	labels map[string]string
}

type pod struct {
	namespace, name string
	labels          map[string]string
	ip              string
}

func (p *pod) String() string { return p.namespace + "/" + p.name }

// endpoint is a pod, or an address outside the cluster.
type endpoint struct {
	pod *pod
	ip  string
}

func (e endpoint) String() string {
	if e.pod != nil {
		return e.pod.String()
	}
	return e.ip
}

type port struct {
	protocol corev1.Protocol
	number   int
}

func (p port) String() string { return fmt.Sprintf("%s/%d", p.protocol, p.number) }

// containerPorts are the named ports of every pod: an application's, a DNS
// server's.
var containerPorts = []corev1.ContainerPort{
	{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP},
	{Name: "metrics", ContainerPort: 9090, Protocol: corev1.ProtocolTCP},
	{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP},
	{Name: "dns-tcp", ContainerPort: 53, Protocol: corev1.ProtocolTCP},
}

// checkedPorts are every port number the generated rules name or range
// over, on each protocol they use.
var checkedPorts = []port{
	{corev1.ProtocolTCP, 53}, {corev1.ProtocolTCP, 80}, {corev1.ProtocolTCP, 8050}, {corev1.ProtocolTCP, 8080}, {corev1.ProtocolTCP, 9090},
	{corev1.ProtocolUDP, 53}, {corev1.ProtocolUDP, 8080}, {corev1.ProtocolSCTP, 8080},
}

// external are addresses outside the cluster: inside and outside the
// declared CIDRs and their exceptions, NodeLocal DNSCache's address.
var external = []string{"192.0.2.10", "192.0.2.200", "198.51.100.7", "203.0.113.5", "169.254.20.10", "8.8.8.8"}

// cidrs are the ipBlocks rules declare; none holds a pod address.
var cidrs = []isolationv1alpha1.IPBlock{
	{CIDR: "192.0.2.0/24"},
	{CIDR: "192.0.2.0/24", Except: []string{"192.0.2.128/25"}},
	{CIDR: "198.51.100.0/24"},
	{CIDR: "0.0.0.0/0", Except: []string{"10.0.0.0/8"}},
	{CIDR: "0.0.0.0/0", Except: []string{"10.0.0.0/8", "169.254.0.0/16", "192.0.2.0/24"}},
}

var (
	teams = []string{"ml", "web"}
	envs  = []string{"prod", "dev"}
	apps  = []string{"client", "ingress-nginx", "prometheus", "local-ai"}
	tiers = []string{"api", "web"}
)

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

// scenario is a cluster and a WorkloadIsolation that isolates ingress and,
// most of the time, egress.
type scenario struct {
	namespaces []namespace
	pods       []*pod
	wi         *isolationv1alpha1.WorkloadIsolation
	in         *intent.Intent
	// namedPorts says whether rules may declare named ports.
	namedPorts bool
}

// settings: ADMIN_ORACLE_SEED fixes the seed (a failure prints the seed
// and case to replay), ADMIN_ORACLE_CASES sets how many scenarios each
// property runs.
func settings(t *testing.T) (seed uint64, cases int) {
	seed, cases = 20261207, 1000
	if v := os.Getenv("ADMIN_ORACLE_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("ADMIN_ORACLE_SEED=%q: %v", v, err)
		}
		seed = s
	}
	if v := os.Getenv("ADMIN_ORACLE_CASES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("ADMIN_ORACLE_CASES=%q: %v", v, err)
		}
		cases = n
	}
	return seed, cases
}

var presets = func() preset.Catalog {
	builtin, err := preset.Parse(preset.BuiltinYAML())
	if err != nil {
		panic(err)
	}
	c, err := preset.NewCatalog(builtin)
	if err != nil {
		panic(err)
	}
	return c
}()

func generate(t *testing.T, r *rand.Rand, namedPorts bool) *scenario {
	t.Helper()
	s := &scenario{namedPorts: namedPorts}
	for _, n := range []string{targetNamespace, "nginx", "monitoring", "team-a", "team-b", "kube-system"} {
		if n != targetNamespace && r.IntN(4) == 0 {
			continue
		}
		l := map[string]string{corev1.LabelMetadataName: n}
		if r.IntN(2) == 0 {
			l["team"] = pick(r, teams)
		}
		if r.IntN(2) == 0 {
			l["env"] = pick(r, envs)
		}
		s.namespaces = append(s.namespaces, namespace{name: n, labels: l})
	}
	for _, ns := range s.namespaces {
		count := 2 + r.IntN(2)
		if ns.name == targetNamespace {
			count = 3 + r.IntN(2)
		}
		for j := range count {
			l := map[string]string{"app.kubernetes.io/name": pick(r, apps)}
			switch {
			case ns.name == targetNamespace && j < 2:
				l["app.kubernetes.io/name"] = "local-ai" // candidates for the target
			case ns.name == "kube-system" || r.IntN(8) == 0:
				l = map[string]string{"k8s-app": pick(r, []string{"kube-dns", "node-local-dns", "metrics-server"})}
			}
			if r.IntN(2) == 0 {
				l["tier"] = pick(r, tiers)
			}
			s.pods = append(s.pods, &pod{namespace: ns.name, name: fmt.Sprintf("%s-%d", ns.name, j), labels: l,
				ip: fmt.Sprintf("10.244.%d.%d", len(s.pods)/200, len(s.pods)%200+1)})
		}
	}
	s.wi = s.generateIsolation(r)
	in, err := intent.FromSpec(s.wi, *s.wi.Spec.Target.PodSelector.LabelSelector(), presets)
	if err != nil {
		t.Fatalf("generated spec is invalid: %v\nspec: %+v", err, s.wi.Spec)
	}
	s.in = in
	return s
}

func (s *scenario) generateIsolation(r *rand.Rand) *isolationv1alpha1.WorkloadIsolation {
	target := &isolationv1alpha1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": "local-ai"}}
	switch r.IntN(3) {
	case 1:
		target.MatchLabels["tier"] = pick(r, tiers)
	case 2:
		target.MatchExpressions = []isolationv1alpha1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpDoesNotExist}}
	}
	wi := &isolationv1alpha1.WorkloadIsolation{
		ObjectMeta: metav1.ObjectMeta{Name: "local-ai", Namespace: targetNamespace, UID: types.UID("0d7c5a3e-guard")},
		Spec:       isolationv1alpha1.WorkloadIsolationSpec{Target: isolationv1alpha1.Target{PodSelector: target}},
	}
	for i := range r.IntN(4) {
		rule := isolationv1alpha1.IngressRule{Name: fmt.Sprintf("in-%d", i)}
		for range 1 + r.IntN(2) {
			rule.From = append(rule.From, s.generatePeer(r))
		}
		for range r.IntN(3) {
			rule.Ports = append(rule.Ports, generatePort(r, s.namedPorts))
		}
		wi.Spec.Ingress = append(wi.Spec.Ingress, rule)
	}
	if r.IntN(5) == 0 {
		return wi // egress not isolated
	}
	wi.Spec.Egress = []isolationv1alpha1.EgressRule{}
	for i := range r.IntN(4) {
		rule := isolationv1alpha1.EgressRule{Name: fmt.Sprintf("out-%d", i)}
		for range 1 + r.IntN(2) {
			p := s.generatePeer(r)
			if p.Preset != "" { // ingress presets name sources only
				p = isolationv1alpha1.IngressPeer{NamespaceSelector: &isolationv1alpha1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: "nginx"}}}
			}
			rule.To = append(rule.To, isolationv1alpha1.EgressPeer{NamespaceSelector: p.NamespaceSelector, PodSelector: p.PodSelector, IPBlock: p.IPBlock})
		}
		for range r.IntN(3) {
			// np-guard fails on an egress NetworkPolicy rule with a
			// named port when the destination is an address.
			rule.Ports = append(rule.Ports, generatePort(r, false))
		}
		wi.Spec.Egress = append(wi.Spec.Egress, rule)
	}
	wi.Spec.DNS = pick(r, []string{"", "None", "cluster-dns"})
	return wi
}

func (s *scenario) generatePeer(r *rand.Rand) isolationv1alpha1.IngressPeer {
	podSel := func() *isolationv1alpha1.LabelSelector {
		switch r.IntN(4) {
		case 0:
			return &isolationv1alpha1.LabelSelector{}
		case 1:
			return &isolationv1alpha1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": pick(r, apps)}}
		case 2:
			return &isolationv1alpha1.LabelSelector{MatchExpressions: []isolationv1alpha1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpExists}}}
		default:
			return &isolationv1alpha1.LabelSelector{MatchLabels: map[string]string{"k8s-app": "kube-dns"}}
		}
	}
	nsSel := func() *isolationv1alpha1.LabelSelector {
		switch r.IntN(4) {
		case 0:
			return &isolationv1alpha1.LabelSelector{}
		case 1:
			return &isolationv1alpha1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: pick(r, s.namespaces).name}}
		case 2:
			return &isolationv1alpha1.LabelSelector{MatchLabels: map[string]string{"team": pick(r, teams)}}
		default:
			return &isolationv1alpha1.LabelSelector{MatchExpressions: []isolationv1alpha1.LabelSelectorRequirement{{Key: "env", Operator: metav1.LabelSelectorOpIn, Values: []string{pick(r, envs)}}}}
		}
	}
	switch r.IntN(7) {
	case 0:
		p := isolationv1alpha1.IngressPeer{Preset: "ingress-nginx"}
		if r.IntN(3) == 0 {
			p.PresetNamespace = pick(r, s.namespaces).name
		}
		return p
	case 1:
		return isolationv1alpha1.IngressPeer{NamespaceSelector: nsSel()}
	case 2:
		return isolationv1alpha1.IngressPeer{PodSelector: podSel()}
	case 3, 4:
		return isolationv1alpha1.IngressPeer{NamespaceSelector: nsSel(), PodSelector: podSel()}
	default:
		b := pick(r, cidrs)
		return isolationv1alpha1.IngressPeer{IPBlock: &b}
	}
}

// generatePort returns a declared port; named ones only when named is set.
// A named port comes with no protocol or with the protocol of the container
// port of that name.
func generatePort(r *rand.Rand, named bool) isolationv1alpha1.Port {
	protocols := []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolTCP, corev1.ProtocolUDP, ""}
	p := isolationv1alpha1.Port{Protocol: pick(r, protocols)}
	switch r.IntN(6) {
	case 0:
		p.Port = ptr.To(intstr.FromInt32(8080))
	case 1:
		p.Port = ptr.To(intstr.FromInt32(pick(r, []int32{80, 53, 9090})))
	case 2:
		p.Port = ptr.To(intstr.FromInt32(8000))
		p.EndPort = ptr.To[int32](8100)
	case 3:
		if !named {
			break
		}
		cp := pick(r, containerPorts)
		p.Port = ptr.To(intstr.FromString(cp.Name))
		p.Protocol = pick(r, []corev1.Protocol{cp.Protocol, ""})
		if cp.Protocol != corev1.ProtocolTCP {
			p.Protocol = cp.Protocol
		}
	case 4:
		p.Protocol = corev1.ProtocolSCTP
		p.Port = ptr.To(intstr.FromInt32(8080))
	default:
		// no port: every port of the protocol
	}
	return p
}

// --- the intent, read from the spec's documented semantics ---

func (s *scenario) namespace(name string) namespace {
	for _, ns := range s.namespaces {
		if ns.name == name {
			return ns
		}
	}
	return namespace{name: name}
}

func (s *scenario) isTarget(p *pod) bool {
	return p != nil && p.namespace == targetNamespace && specSelects(s.wi.Spec.Target.PodSelector, p.labels)
}

func (s *scenario) targets() []*pod {
	var out []*pod
	for _, p := range s.pods {
		if s.isTarget(p) {
			out = append(out, p)
		}
	}
	return out
}

func specSelects(sel *isolationv1alpha1.LabelSelector, set map[string]string) bool {
	return selects(sel.LabelSelector(), set)
}

func selects(sel *metav1.LabelSelector, set map[string]string) bool {
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		panic(err)
	}
	return s.Matches(labels.Set(set))
}

// declaredIngress says whether the spec lets src reach the target pod dst
// on p: some rule has a from entry naming src and a port matching p. A pod
// is never named by an ipBlock (the scenarios keep pod addresses out), and
// the guard does not admit pods by address anyway.
func (s *scenario) declaredIngress(src, dst *pod, p port) bool {
	for _, rule := range s.wi.Spec.Ingress {
		if !portMatches(rule.Ports, dst, p) {
			continue
		}
		for _, from := range rule.From {
			switch {
			case from.Preset == "ingress-nginx":
				ns := from.PresetNamespace
				if ns == "" {
					ns = "nginx"
				}
				if src.namespace == ns && src.labels["app.kubernetes.io/name"] == "ingress-nginx" {
					return true
				}
			case from.IPBlock != nil:
			case s.peerMatches(from.NamespaceSelector, from.PodSelector, src):
				return true
			}
		}
	}
	return false
}

func (s *scenario) peerMatches(nsSel, podSel *isolationv1alpha1.LabelSelector, p *pod) bool {
	if nsSel == nil {
		if p.namespace != targetNamespace {
			return false
		}
	} else if !specSelects(nsSel, s.namespace(p.namespace).labels) {
		return false
	}
	return podSel == nil || specSelects(podSel, p.labels)
}

// declaredEgress says whether the spec lets a target pod reach dst on p:
// name resolution (spec.dns: absent means cluster-dns) or some rule. It is
// only asked when egress is isolated.
func (s *scenario) declaredEgress(dst endpoint, p port) bool {
	dstPod := dst.pod
	if dstPod == nil {
		dstPod = &pod{} // an address: no named ports
	}
	if s.wi.Spec.DNS != "None" && p.number == 53 && (p.protocol == corev1.ProtocolTCP || p.protocol == corev1.ProtocolUDP) {
		if dst.pod == nil && dst.ip == "169.254.20.10" ||
			dst.pod != nil && dst.pod.namespace == "kube-system" && slices.Contains([]string{"kube-dns", "node-local-dns"}, dst.pod.labels["k8s-app"]) {
			return true
		}
	}
	for _, rule := range s.wi.Spec.Egress {
		if !portMatches(rule.Ports, dstPod, p) {
			continue
		}
		for _, to := range rule.To {
			switch {
			case to.IPBlock != nil:
				if dst.pod == nil && blockHolds(to.IPBlock, dst.ip) {
					return true
				}
			case dst.pod != nil && s.peerMatches(to.NamespaceSelector, to.PodSelector, dst.pod):
				return true
			}
		}
	}
	return false
}

func blockHolds(b *isolationv1alpha1.IPBlock, ip string) bool {
	addr := netip.MustParseAddr(ip)
	if !netip.MustParsePrefix(b.CIDR).Contains(addr) {
		return false
	}
	for _, e := range b.Except {
		if netip.MustParsePrefix(e).Contains(addr) {
			return false
		}
	}
	return true
}

// portMatches says whether declared ports admit p to dst; every pod has
// containerPorts, an address (a pod without a name) none.
func portMatches(ports []isolationv1alpha1.Port, dst *pod, p port) bool {
	if len(ports) == 0 {
		return true
	}
	for _, want := range ports {
		protocol := want.Protocol
		if protocol == "" {
			protocol = corev1.ProtocolTCP
		}
		if protocol != p.protocol {
			continue
		}
		switch {
		case want.Port == nil:
			return true
		case want.Port.Type == intstr.String:
			if dst.name == "" {
				continue // an address has no named ports
			}
			for _, cp := range containerPorts {
				if cp.Name == want.Port.StrVal && int(cp.ContainerPort) == p.number && cp.Protocol == p.protocol {
					return true
				}
			}
		case want.EndPort != nil:
			if p.number >= int(want.Port.IntVal) && p.number <= int(*want.EndPort) {
				return true
			}
		default:
			if p.number == int(want.Port.IntVal) {
				return true
			}
		}
	}
	return false
}

// declared says whether the intent admits the connection src -> dst on p
// on the sides the guard holds: the ingress of a target destination, and
// the egress of a target source when egress is isolated. Other sides are
// not the intent's to decide.
func (s *scenario) declared(src, dst endpoint, p port) bool {
	if s.isTarget(src.pod) && s.wi.Spec.Egress != nil && !s.declaredEgress(dst, p) {
		return false
	}
	if s.isTarget(dst.pod) && !s.declaredIngress(src.pod, dst.pod, p) {
		return false
	}
	return true
}

// flows are the connections the properties check: from every other pod to
// each target pod, and from each target pod to every other pod and
// address, on every checked port.
func (s *scenario) flows() []flow {
	var out []flow
	for _, t := range s.targets() {
		for _, o := range s.pods {
			if o == t {
				continue // a pod's traffic to itself is not subject to policy
			}
			for _, p := range checkedPorts {
				out = append(out, flow{endpoint{pod: o}, endpoint{pod: t}, p})
				if !s.isTarget(o) { // target to target is listed once
					out = append(out, flow{endpoint{pod: t}, endpoint{pod: o}, p})
				}
			}
		}
		for _, ip := range external {
			for _, p := range checkedPorts {
				out = append(out, flow{endpoint{pod: t}, endpoint{ip: ip}, p})
			}
		}
	}
	return out
}

type flow struct {
	src, dst endpoint
	port     port
}

func (f flow) String() string { return fmt.Sprintf("%s -> %s on %s", f.src, f.dst, f.port) }

func queries(flows []flow) []query {
	out := make([]query, len(flows))
	for i, f := range flows {
		out[i] = query{Src: f.src.String(), Dst: f.dst.String(), Protocol: string(f.port.protocol), Port: f.port.number}
	}
	return out
}

// --- objects as np-guard reads them ---

// clusterObjects are the namespaces and pods, with the kinds set.
func (s *scenario) clusterObjects() []any {
	var out []any
	for _, ns := range s.namespaces {
		out = append(out, &corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
			ObjectMeta: metav1.ObjectMeta{Name: ns.name, Labels: ns.labels}})
	}
	for _, p := range s.pods {
		out = append(out, &corev1.Pod{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: metav1.ObjectMeta{Name: p.name, Namespace: p.namespace, Labels: p.labels},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: "app", Ports: containerPorts}}},
			Status:     corev1.PodStatus{HostIP: "172.31.0.1", PodIP: p.ip, PodIPs: []corev1.PodIP{{IP: p.ip}}},
		})
	}
	return out
}

// networkPolicyObjects are NetworkPolicies as np-guard reads them. A port
// with a protocol and no number is spelled as the range of every port:
// np-guard (v1.4.4, CheckIfAllowed) matches such a port on every protocol,
// where the API matches every port of its protocol only.
func networkPolicyObjects(nps []networkingv1.NetworkPolicy) []any {
	var out []any
	for i := range nps {
		np := nps[i].DeepCopy()
		np.TypeMeta = metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"}
		for j := range np.Spec.Ingress {
			everyPort(np.Spec.Ingress[j].Ports)
		}
		for j := range np.Spec.Egress {
			everyPort(np.Spec.Egress[j].Ports)
		}
		out = append(out, np)
	}
	return out
}

func everyPort(ports []networkingv1.NetworkPolicyPort) {
	for i := range ports {
		if ports[i].Port == nil {
			ports[i].Port, ports[i].EndPort = ptr.To(intstr.FromInt32(1)), ptr.To[int32](65535)
		}
	}
}

// analysisObjects are the target's namespace, every namespace and the
// target pods, as analysis.Input and adminpolicy.Target take them.
func (s *scenario) analysisObjects() (ns analysis.Object, namespaces, targets []analysis.Object) {
	for _, n := range s.namespaces {
		namespaces = append(namespaces, analysis.Object{Name: n.name, Labels: n.labels})
	}
	for _, p := range s.targets() {
		targets = append(targets, analysis.Object{Name: p.name, Labels: p.labels})
	}
	return analysis.Object{Name: targetNamespace, Labels: s.namespace(targetNamespace).labels}, namespaces, targets
}
