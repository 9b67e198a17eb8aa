package oracle

import (
	"fmt"
	"net/netip"

	"github.com/mattfenwick/cyclonus/pkg/matcher"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/preset"
)

// targetNamespace is where every scenario's WorkloadIsolation lives.
const targetNamespace = "local-ai"

type namespace struct {
	name   string
	labels map[string]string
}

type pod struct {
	namespace string
	name      string
	labels    map[string]string
	ip        string
	// ports are the pod's named container ports.
	ports []corev1.ContainerPort
}

// source is a traffic source: a pod, or an address outside the cluster.
type source struct {
	pod *pod
	ip  string
}

func (s source) String() string {
	if s.pod != nil {
		return s.pod.namespace + "/" + s.pod.name
	}
	return s.ip
}

type port struct {
	protocol corev1.Protocol
	number   int
}

func (p port) String() string { return fmt.Sprintf("%s/%d", p.protocol, p.number) }

// scenario is a cluster: namespaces, pods, a WorkloadIsolation and
// policies written by others.
type scenario struct {
	namespaces []namespace
	pods       []*pod
	external   []string
	ports      []port
	wi         *isolationv1alpha1.WorkloadIsolation
	foreign    []networkingv1.NetworkPolicy
}

func (s *scenario) namespace(name string) namespace {
	for _, ns := range s.namespaces {
		if ns.name == name {
			return ns
		}
	}
	return namespace{name: name}
}

func (s *scenario) sources() []source {
	var out []source
	for _, p := range s.pods {
		out = append(out, source{pod: p})
	}
	for _, ip := range s.external {
		out = append(out, source{ip: ip})
	}
	return out
}

func (s *scenario) targetNamespacePods() []*pod {
	var out []*pod
	for _, p := range s.pods {
		if p.namespace == targetNamespace {
			out = append(out, p)
		}
	}
	return out
}

// oracleAllows asks the independent implementation whether traffic from src
// to dst on port is allowed under policies.
func (s *scenario) oracleAllows(policies *matcher.Policy, src source, dst *pod, p port) bool {
	peer := func(src source) *matcher.TrafficPeer {
		if src.pod == nil {
			return &matcher.TrafficPeer{IP: src.ip}
		}
		return &matcher.TrafficPeer{IP: src.pod.ip, Internal: &matcher.InternalPeer{
			PodLabels: src.pod.labels, NamespaceLabels: s.namespace(src.pod.namespace).labels, Namespace: src.pod.namespace,
		}}
	}
	traffic := &matcher.Traffic{
		Source:       peer(src),
		Destination:  peer(source{pod: dst}),
		ResolvedPort: p.number,
		Protocol:     p.protocol,
	}
	for _, cp := range dst.ports {
		if int(cp.ContainerPort) == p.number && cp.Protocol == p.protocol {
			traffic.ResolvedPortName = cp.Name
		}
	}
	return policies.IsTrafficAllowed(traffic).IsAllowed()
}

// declared says what the WorkloadIsolation's spec means, read directly from
// the API's documented semantics (not through the generated policies):
// traffic to a target pod is allowed when some rule has a from entry that
// matches the source and a port that matches; other pods are not isolated.
func (s *scenario) declared(src source, dst *pod, p port) bool {
	target := s.wi.Spec.Target.PodSelector
	if !selectorMatches(target, dst.labels) {
		return true
	}
	for _, rule := range s.wi.Spec.Ingress {
		if !portMatches(rule.Ports, dst, p) {
			continue
		}
		for _, from := range rule.From {
			if s.fromMatches(from, src) {
				return true
			}
		}
	}
	return false
}

// presetMeaning is what the presets used in scenarios stand for, as the
// README documents them: namespace and pod labels.
var presetMeaning = map[string]struct{ namespace, app string }{
	"ingress-nginx": {namespace: "nginx", app: "ingress-nginx"},
	"monitoring":    {namespace: "monitoring", app: "prometheus"},
}

func (s *scenario) fromMatches(from isolationv1alpha1.IngressPeer, src source) bool {
	switch {
	case from.Preset != "":
		meaning := presetMeaning[from.Preset]
		ns := meaning.namespace
		if from.PresetNamespace != "" {
			ns = from.PresetNamespace
		}
		return src.pod != nil && src.pod.namespace == ns && src.pod.labels["app.kubernetes.io/name"] == meaning.app
	case from.IPBlock != nil:
		if src.pod != nil {
			return false // scenarios keep pod addresses out of every ipBlock
		}
		addr := netip.MustParseAddr(src.ip)
		if !netip.MustParsePrefix(from.IPBlock.CIDR).Contains(addr) {
			return false
		}
		for _, e := range from.IPBlock.Except {
			if netip.MustParsePrefix(e).Contains(addr) {
				return false
			}
		}
		return true
	default:
		if src.pod == nil {
			return false
		}
		if from.NamespaceSelector == nil {
			if src.pod.namespace != targetNamespace {
				return false
			}
		} else if !selectorMatches(from.NamespaceSelector, s.namespace(src.pod.namespace).labels) {
			return false
		}
		return from.PodSelector == nil || selectorMatches(from.PodSelector, src.pod.labels)
	}
}

func selectorMatches(sel *isolationv1alpha1.LabelSelector, set map[string]string) bool {
	s, ok := selectors[sel]
	if !ok {
		var err error
		if s, err = metav1.LabelSelectorAsSelector(sel.LabelSelector()); err != nil {
			panic(err)
		}
		if len(selectors) > 10000 {
			clear(selectors)
		}
		selectors[sel] = s
	}
	return s.Matches(labels.Set(set))
}

// selectors caches parsed selectors by the spec's selector; the key keeps
// the selector alive, so its address is not reused while cached. The tests
// do not run in parallel.
var selectors = map[*isolationv1alpha1.LabelSelector]labels.Selector{}

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
			for _, cp := range dst.ports {
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

// testPresets is the operator's preset catalog in scenarios: the built-ins
// plus the administrator preset "monitoring".
func testPresets() preset.Catalog {
	builtin, err := preset.Parse(preset.BuiltinYAML())
	if err != nil {
		panic(err)
	}
	admin, err := preset.Parse([]byte(`
presets:
- name: monitoring
  from:
  - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}
    podSelector: {matchLabels: {app.kubernetes.io/name: prometheus}}
`))
	if err != nil {
		panic(err)
	}
	c, err := preset.NewCatalog(builtin, admin)
	if err != nil {
		panic(err)
	}
	return c
}
