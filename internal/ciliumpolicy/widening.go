package ciliumpolicy

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/isolator-dev/isolator/internal/analysis"
	"github.com/isolator-dev/isolator/internal/policy"
)

// The few shapes of Cilium's policy API (cilium.io/v2, pkg/policy/api) the
// analysis reads: who a rule selects, whom it admits, on which ports. Deny
// rules, L7 rules and other narrowing fields are not read: they never admit.
type (
	rule struct {
		EndpointSelector *selector     `json:"endpointSelector,omitempty"`
		NodeSelector     *selector     `json:"nodeSelector,omitempty"`
		Ingress          []ingressRule `json:"ingress,omitempty"`
		Egress           []egressRule  `json:"egress,omitempty"`
	}
	selector struct {
		MatchLabels      map[string]string `json:"matchLabels,omitempty"`
		MatchExpressions []struct {
			Key      string   `json:"key"`
			Operator string   `json:"operator"`
			Values   []string `json:"values,omitempty"`
		} `json:"matchExpressions,omitempty"`
	}
	cidrSet struct {
		CIDR              string    `json:"cidr,omitempty"`
		Except            []string  `json:"except,omitempty"`
		CIDRGroupRef      string    `json:"cidrGroupRef,omitempty"`
		CIDRGroupSelector *selector `json:"cidrGroupSelector,omitempty"`
	}
	portRule struct {
		Ports []struct {
			Port     string `json:"port,omitempty"`
			EndPort  int32  `json:"endPort,omitempty"`
			Protocol string `json:"protocol,omitempty"`
		} `json:"ports,omitempty"`
	}
	ingressRule struct {
		FromEndpoints []selector       `json:"fromEndpoints,omitempty"`
		FromNodes     []selector       `json:"fromNodes,omitempty"`
		FromCIDR      []string         `json:"fromCIDR,omitempty"`
		FromCIDRSet   []cidrSet        `json:"fromCIDRSet,omitempty"`
		FromEntities  []string         `json:"fromEntities,omitempty"`
		FromGroups    []map[string]any `json:"fromGroups,omitempty"`
		ToPorts       []portRule       `json:"toPorts,omitempty"`
		ICMPs         []map[string]any `json:"icmps,omitempty"`
	}
	egressRule struct {
		ToEndpoints []selector       `json:"toEndpoints,omitempty"`
		ToNodes     []selector       `json:"toNodes,omitempty"`
		ToCIDR      []string         `json:"toCIDR,omitempty"`
		ToCIDRSet   []cidrSet        `json:"toCIDRSet,omitempty"`
		ToEntities  []string         `json:"toEntities,omitempty"`
		ToServices  []map[string]any `json:"toServices,omitempty"`
		ToFQDNs     []map[string]any `json:"toFQDNs,omitempty"`
		ToGroups    []map[string]any `json:"toGroups,omitempty"`
		ToPorts     []portRule       `json:"toPorts,omitempty"`
		ICMPs       []map[string]any `json:"icmps,omitempty"`
	}
)

// Label keys of Cilium's endpoint labels, without their source.
const (
	namespaceLabel       = "io.kubernetes.pod.namespace"
	namespaceLabelsKey   = "io.cilium.k8s.namespace.labels."
	ciliumPolicyLabelKey = "io.cilium.k8s.policy."
)

// Target is what a Cilium policy must select to matter.
type Target struct {
	// Namespace is the target's namespace with its labels.
	Namespace analysis.Object
	// Pods are the target pods now.
	Pods []analysis.Object
	// Self and SelfUID identify the WorkloadIsolation analysed. Own maps
	// the names of its generated Cilium policies to the spec each should
	// have: a policy of that name it owns is left out while its spec is
	// that one (rules added beside it, as specs, are read). A policy that
	// only claims to be its own (another name, another UID) is read.
	Self    string
	SelfUID types.UID
	Own     map[string]any
	// Current holds policies as the server holds them after the
	// operator's own writes, read instead of the cached copies; a nil
	// entry is one the operator deleted.
	Current map[string]*unstructured.Unstructured
}

// Widenings returns the Cilium policies that may admit traffic to or from
// the target, with their allow rules in NetworkPolicy form for
// analysis.Input.Admin, and names those it cannot read (unanalysed: they
// fail the isolation closed). Read are the CiliumNetworkPolicies of the
// target's namespace and all CiliumClusterwideNetworkPolicies whose
// endpointSelector selects a target pod now (as the analysis reads
// NetworkPolicies; a new pod is analysed when it appears), except the
// target's own generated ones while their spec is the one the operator
// writes (rules added as specs are read); another WorkloadIsolation's
// generated policy is kept and named as such.
//
// The meaning is Cilium's, at L3/L4, rounded up where it cannot be
// bounded here (never down):
//   - selector keys are split as Cilium splits them ("$x" and "reserved.x"
//     are reserved, nothing after '='); endpoint selectors keep their pod
//     labels; the namespace name (io.kubernetes.pod.namespace) and
//     namespace labels (io.cilium.k8s.namespace.labels.*) become namespace
//     selectors; a peer that names neither is the policy's own namespace
//     (a CiliumNetworkPolicy), or every namespace when it names namespace
//     labels or the policy is clusterwide, as Cilium scopes them; where
//     Cilium adds no namespace and no positive namespace requirement
//     remains, reserved identities match too (every address). NotIn and
//     DoesNotExist requirements are dropped (Cilium leaves some labels out
//     of identities, and such a requirement then holds for every
//     endpoint), as are Cilium's service-account and cluster labels; a
//     reserved or unknown label source admits every pod and address;
//   - entities: world is every address; the others (nodes, the API server,
//     health, ingress, init, unmanaged, cluster, all) are every pod and
//     every address, as no ipBlock matches them on Cilium;
//   - CIDRs are ipBlocks; CIDR groups, FQDNs and cloud groups are every
//     address; nodes and services every pod and every address;
//   - a rule with ports and no peer admits every peer, one with neither
//     admits nothing, an explicitly empty list selects nothing; ports are
//     read with their protocols as Cilium reads them (an IANA service name
//     is a named port, a number is base 0; ANY is TCP, UDP and SCTP; port
//     0 or none is every port); ICMP and other protocols admit every port;
//   - L7 rules, deny rules, and fromRequires/toRequires are left out: they
//     only narrow.
func Widenings(namespaced, clusterwide []unstructured.Unstructured, t Target) (out []analysis.AdminPolicy, unanalysed []string) {
	read := func(u *unstructured.Unstructured, kind, namespace string) {
		if current, ok := t.Current[u.GetName()]; ok && namespace != "" {
			if current == nil {
				return // deleted by the operator; the cache may still hold it
			}
			u = current
		}
		owner, generated := generatedBy(u)
		own := false
		if ref := metav1.GetControllerOf(u); generated && owner == t.Self && ref.UID == t.SelfUID && u.GetNamespace() == t.Namespace.Name {
			want, desired := t.Own[u.GetName()]
			own = desired && equality.Semantic.DeepEqual(u.Object["spec"], want)
		}
		name := kind + "/" + u.GetName()
		if namespace != "" {
			name = kind + "/" + namespace + "/" + u.GetName()
		}
		rules, err := rulesOf(u, own)
		if err != nil {
			unanalysed = append(unanalysed, fmt.Sprintf("%s %s (%v)", kind, qualified(namespace, u.GetName()), err))
			return
		}
		w := analysis.AdminPolicy{Name: name}
		if generated && !own && u.GetNamespace() == t.Namespace.Name {
			w.WorkloadIsolation = owner
		}
		selected := false
		for _, r := range rules {
			subject, ok := t.selects(r, namespace)
			if !ok {
				continue
			}
			selected = true
			scope := peerScope{namespace: namespace}
			if subject.mentionsInit {
				// Cilium scopes no peer of a rule whose subject names
				// initializing pods: reserved identities match too.
				scope = peerScope{unscoped: true}
			}
			for _, in := range r.Ingress {
				if peers, ok := in.peers(scope); ok {
					w.Ingress = append(w.Ingress, networkingv1.NetworkPolicyIngressRule{From: peers, Ports: ports(in.ToPorts, in.ICMPs != nil)})
				}
			}
			for _, eg := range r.Egress {
				if peers, ok := eg.peers(scope); ok {
					w.Egress = append(w.Egress, networkingv1.NetworkPolicyEgressRule{To: peers, Ports: ports(eg.ToPorts, eg.ICMPs != nil)})
				}
			}
		}
		if selected && (len(w.Ingress) > 0 || len(w.Egress) > 0) {
			out = append(out, w)
		}
	}
	for i := range namespaced {
		if namespaced[i].GetNamespace() == t.Namespace.Name {
			read(&namespaced[i], Kind, t.Namespace.Name)
		}
	}
	for i := range clusterwide {
		read(&clusterwide[i], ClusterwideGVK.Kind, "")
	}
	return out, unanalysed
}

func qualified(namespace, name string) string {
	if namespace == "" {
		return name
	}
	return namespace + "/" + name
}

// generatedBy reports the WorkloadIsolation that generated a Cilium
// policy, if one did.
func generatedBy(u *unstructured.Unstructured) (string, bool) {
	ref := metav1.GetControllerOf(u)
	if u.GetLabels()[policy.LabelManagedBy] != policy.ManagedByValue || ref == nil || ref.Kind != "WorkloadIsolation" {
		return "", false
	}
	return ref.Name, true
}

// rulesOf reads spec and specs; of the target's own policy only specs,
// which the operator never writes (someone else added them).
func rulesOf(u *unstructured.Unstructured, own bool) ([]rule, error) {
	var doc struct {
		Spec  *rule  `json:"spec,omitempty"`
		Specs []rule `json:"specs,omitempty"`
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &doc); err != nil {
		return nil, err
	}
	out := doc.Specs
	if doc.Spec != nil && !own {
		out = append([]rule{*doc.Spec}, out...)
	}
	return out, nil
}

// selects reports whether a rule's endpointSelector may select a target
// pod now. A node selector selects nodes, not pods; a reserved label
// selects no pod, except reserved:init (pods being set up). A
// CiliumNetworkPolicy selects only pods of its namespace, whatever its
// selector says of namespaces.
func (t Target) selects(r rule, namespace string) (mappedSelector, bool) {
	if r.EndpointSelector == nil {
		return mappedSelector{}, false
	}
	m, ok := r.EndpointSelector.mapping(true)
	if !ok {
		// A reserved label selects no pod (init: pods being set up); a
		// selector that is no Kubernetes selector may select any.
		return m, m.initPods || !m.reserved
	}
	if namespace != "" && namespace != t.Namespace.Name {
		return m, false
	}
	if namespace == "" && m.namespaces != nil && !analysis.Matches(m.namespaces, analysis.NamespaceLabels(t.Namespace)) {
		return m, false
	}
	for _, p := range t.Pods {
		if analysis.Matches(&m.pods, p.Labels) {
			return m, true
		}
	}
	return m, false
}

// mappedSelector is an endpoint selector in NetworkPolicy terms.
type mappedSelector struct {
	pods metav1.LabelSelector
	// namespaces is nil when the selector names no namespace.
	namespaces *metav1.LabelSelector
	// namesLabels is true when the selector names namespace labels but not
	// the namespace itself.
	namesLabels bool
	// initPods is true for reserved:init; reserved for any positive
	// reserved requirement.
	initPods, reserved bool
	// unscoped: Cilium adds no namespace requirement, as the selector
	// names the namespace or its labels (with any operator); requiresNamespace:
	// a positive requirement on them remains, which no reserved identity
	// (world, host, …), having no namespace, can meet.
	unscoped, requiresNamespace bool
	// mentionsInit: a requirement names reserved:init.
	mentionsInit bool
}

// splitKey reads a selector key as Cilium does (labels.GetExtendedKeyFrom):
// "$k" and a colon-less "reserved.k" are reserved, a source before the
// first ':' (none: any), and nothing after '='.
func splitKey(key string) (source, name string) {
	switch {
	case strings.HasPrefix(key, "$"):
		source, name = "reserved", key[1:]
	case strings.Contains(key, ":"):
		source, name, _ = strings.Cut(key, ":")
	case strings.HasPrefix(key, "reserved."):
		source, name = "reserved", strings.TrimPrefix(key, "reserved.")
	default:
		source, name = "any", key
	}
	name, _, _ = strings.Cut(name, "=")
	return source, name
}

// mapped spells the selector in NetworkPolicy terms, rounded up: negative
// requirements (NotIn, DoesNotExist) are dropped, since Cilium leaves some
// labels out of identities and such a requirement then holds for every
// endpoint; so are requirements on Cilium's own policy labels (service
// account, cluster) and, in a subject, on unknown sources. It is not ok
// when a positive requirement names a reserved label (it selects no pod,
// except reserved:init, pods being set up), or, in a peer, any reserved or
// unknown source; or when the result is no Kubernetes selector.
func (s selector) mapped() (mappedSelector, bool) {
	return s.mapping(false)
}

func (s selector) mapping(subject bool) (mappedSelector, bool) {
	var m mappedSelector
	type requirement struct {
		key, op string
		values  []string
	}
	var reqs []requirement
	for k, v := range s.MatchLabels {
		reqs = append(reqs, requirement{k, string(metav1.LabelSelectorOpIn), []string{v}})
	}
	for _, e := range s.MatchExpressions {
		reqs = append(reqs, requirement{e.Key, e.Operator, e.Values})
	}
	ok := true
	namesNamespace := false
	for _, r := range reqs {
		negative := r.op == string(metav1.LabelSelectorOpNotIn) || r.op == string(metav1.LabelSelectorOpDoesNotExist)
		source, key := splitKey(r.key)
		switch {
		case source == "reserved" && key == "init":
			// Named with any operator, init leaves the rule's peers
			// unscoped (Cilium's matchesPodInit).
			m.mentionsInit = true
			if !negative {
				m.initPods, m.reserved, ok = true, true, false
			}
			continue
		case source == "reserved" && !negative:
			m.reserved = true
			ok = false
			continue
		case source != "k8s" && source != "any" && !subject:
			ok = false
			continue
		case source != "k8s" && source != "any":
			continue // dropped: selects more
		}
		req := metav1.LabelSelectorRequirement{Key: key, Operator: metav1.LabelSelectorOperator(r.op), Values: r.values}
		switch {
		case key == namespaceLabel:
			// Named, even by a dropped requirement, the namespace is not
			// scoped by Cilium any more.
			req.Key = corev1.LabelMetadataName
			m.namespaces = addRequirement(m.namespaces, req, negative)
			namesNamespace, m.unscoped = true, true
			m.requiresNamespace = m.requiresNamespace || !negative
		case strings.HasPrefix(key, namespaceLabelsKey):
			req.Key = strings.TrimPrefix(key, namespaceLabelsKey)
			m.namespaces = addRequirement(m.namespaces, req, negative)
			m.namesLabels, m.unscoped = true, true
			m.requiresNamespace = m.requiresNamespace || !negative
		case negative:
			// dropped: selects more
		case strings.HasPrefix(key, ciliumPolicyLabelKey):
			// Service account, cluster: not labels here; dropped.
		default:
			m.pods.MatchExpressions = append(m.pods.MatchExpressions, req)
		}
	}
	if namesNamespace {
		m.namesLabels = false
	}
	if !ok {
		return m, false
	}
	if _, err := metav1.LabelSelectorAsSelector(&m.pods); err != nil {
		return m, false
	}
	if m.namespaces != nil {
		if _, err := metav1.LabelSelectorAsSelector(m.namespaces); err != nil {
			return m, false
		}
	}
	return m, true
}

// addRequirement adds r to s (made when nil), or only makes s when drop.
func addRequirement(s *metav1.LabelSelector, r metav1.LabelSelectorRequirement, drop bool) *metav1.LabelSelector {
	if s == nil {
		s = &metav1.LabelSelector{}
	}
	if !drop {
		s.MatchExpressions = append(s.MatchExpressions, r)
	}
	return s
}

// everything admits every pod of every namespace and every address.
func everything() []networkingv1.NetworkPolicyPeer {
	return append([]networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{}}}, everyAddress()...)
}

func everyAddress() []networkingv1.NetworkPolicyPeer {
	return []networkingv1.NetworkPolicyPeer{
		{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0"}},
		{IPBlock: &networkingv1.IPBlock{CIDR: "::/0"}},
	}
}

// peerScope is how Cilium scopes a rule's endpoint peers: to namespace
// (a CiliumNetworkPolicy's; "" for clusterwide, any namespace), or not at
// all (a subject that names initializing pods), when reserved identities
// may match too.
type peerScope struct {
	namespace string
	unscoped  bool
}

// endpointPeers spells fromEndpoints or toEndpoints, scoped as Cilium
// scopes them: namespace of the policy (clusterwide: every namespace) when
// the selector names neither namespace nor namespace labels. Where Cilium
// adds no namespace requirement and none remains positive, reserved
// identities (the world, nodes) may match as well: every address.
func endpointPeers(selectors []selector, scope peerScope) []networkingv1.NetworkPolicyPeer {
	var out []networkingv1.NetworkPolicyPeer
	addresses := false
	for _, s := range selectors {
		m, ok := s.mapped()
		if !ok {
			return everything()
		}
		ns := m.namespaces
		if ns == nil {
			ns = &metav1.LabelSelector{}
			if scope.namespace != "" && !scope.unscoped {
				ns.MatchLabels = map[string]string{corev1.LabelMetadataName: scope.namespace}
			}
		}
		out = append(out, networkingv1.NetworkPolicyPeer{NamespaceSelector: ns, PodSelector: m.pods.DeepCopy()})
		addresses = addresses || (m.unscoped || scope.unscoped) && !m.requiresNamespace
	}
	if addresses {
		out = append(out, everyAddress()...)
	}
	return out
}

func cidrPeers(cidrs []string, sets []cidrSet) []networkingv1.NetworkPolicyPeer {
	var out []networkingv1.NetworkPolicyPeer
	for _, c := range cidrs {
		out = append(out, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: c}})
	}
	for _, s := range sets {
		if s.CIDR == "" {
			return everyAddress() // a CIDR group: its members are not known here
		}
		out = append(out, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: s.CIDR, Except: s.Except}})
	}
	return out
}

// entityPeers spells Cilium entities.
func entityPeers(entities []string) []networkingv1.NetworkPolicyPeer {
	var out []networkingv1.NetworkPolicyPeer
	for _, e := range entities {
		switch e {
		case "world", "world-ipv4", "world-ipv6":
			out = append(out, everyAddress()...)
		case "none":
		default:
			// Nodes, the API server, health, ingress, init and unmanaged
			// endpoints, cluster, all, or one not known here: endpoints
			// no ipBlock on Cilium matches, so every pod and address.
			return everything()
		}
	}
	return out
}

// peers spells an ingress rule's sources; none when it admits nothing (as
// Cilium reads it: an explicitly empty list selects nothing, and a rule
// with neither sources nor ports admits nothing), every peer when it names
// no sources but ports.
func (r ingressRule) peers(scope peerScope) ([]networkingv1.NetworkPolicyPeer, bool) {
	if explicitlyEmpty(r.FromEndpoints, r.FromNodes, r.FromEntities, r.FromCIDR, r.FromCIDRSet) {
		return nil, false
	}
	if r.FromEndpoints == nil && r.FromNodes == nil && r.FromCIDR == nil && r.FromCIDRSet == nil && r.FromEntities == nil && r.FromGroups == nil {
		return everything(), r.ToPorts != nil || r.ICMPs != nil
	}
	out := endpointPeers(r.FromEndpoints, scope)
	out = append(out, cidrPeers(r.FromCIDR, r.FromCIDRSet)...)
	out = append(out, entityPeers(r.FromEntities)...)
	if len(r.FromNodes) > 0 {
		out = append(out, everything()...)
	}
	if len(r.FromGroups) > 0 {
		out = append(out, everyAddress()...)
	}
	return out, len(out) > 0
}

// peers spells an egress rule's destinations, as for ingress.
func (r egressRule) peers(scope peerScope) ([]networkingv1.NetworkPolicyPeer, bool) {
	if explicitlyEmpty(r.ToEndpoints, r.ToNodes, r.ToEntities, r.ToCIDR, r.ToCIDRSet) {
		return nil, false
	}
	if r.ToEndpoints == nil && r.ToNodes == nil && r.ToCIDR == nil && r.ToCIDRSet == nil && r.ToEntities == nil &&
		r.ToServices == nil && r.ToFQDNs == nil && r.ToGroups == nil {
		return everything(), r.ToPorts != nil || r.ICMPs != nil
	}
	out := endpointPeers(r.ToEndpoints, scope)
	out = append(out, cidrPeers(r.ToCIDR, r.ToCIDRSet)...)
	out = append(out, entityPeers(r.ToEntities)...)
	if len(r.ToServices) > 0 {
		out = append(out, everything()...)
	}
	if len(r.ToNodes) > 0 {
		out = append(out, everything()...)
	}
	if len(r.ToFQDNs) > 0 || len(r.ToGroups) > 0 {
		out = append(out, everyAddress()...)
	}
	return out, len(out) > 0
}

// explicitlyEmpty reports whether one of the lists is present and empty.
func explicitlyEmpty(endpoints, nodes []selector, entities, cidrs []string, sets []cidrSet) bool {
	return endpoints != nil && len(endpoints) == 0 || nodes != nil && len(nodes) == 0 || entities != nil && len(entities) == 0 ||
		cidrs != nil && len(cidrs) == 0 || sets != nil && len(sets) == 0
}

// ports spells toPorts; nil is every port.
func ports(rules []portRule, icmp bool) []networkingv1.NetworkPolicyPort {
	if len(rules) == 0 || icmp {
		return nil
	}
	out := []networkingv1.NetworkPolicyPort{}
	for _, r := range rules {
		if len(r.Ports) == 0 {
			return nil
		}
		for _, p := range r.Ports {
			var protocols []corev1.Protocol
			switch strings.ToUpper(p.Protocol) {
			case "", "ANY":
				protocols = []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP}
			case "TCP", "UDP", "SCTP":
				protocols = []corev1.Protocol{corev1.Protocol(strings.ToUpper(p.Protocol))}
			default:
				return nil // ICMP and others: not bounded here
			}
			for _, protocol := range protocols {
				port := networkingv1.NetworkPolicyPort{Protocol: ptr.To(protocol)}
				// As Cilium reads it: an IANA service name (0x10 is one)
				// is a named port, anything else a number in base 0 (a
				// leading 0 is octal).
				number, err := strconv.ParseUint(p.Port, 0, 16)
				switch {
				case svcName(p.Port):
					port.Port = ptr.To(intstr.FromString(strings.ToLower(p.Port)))
				case p.Port == "" || number == 0 && err == nil:
				case err != nil:
					port.Port = ptr.To(intstr.FromString(p.Port))
				default:
					port.Port = ptr.To(intstr.FromInt32(int32(number)))
					if p.EndPort > int32(number) {
						port.EndPort = ptr.To(p.EndPort)
					}
				}
				out = append(out, port)
			}
		}
	}
	return out
}

// isSvcName is Cilium's (pkg/iana) test of an IANA service name.
var isSvcName = regexp.MustCompile(`^([a-zA-Z0-9]-?)*[a-zA-Z](-?[a-zA-Z0-9])*$`)

func svcName(s string) bool { return len(s) > 0 && len(s) <= 15 && isSvcName.MatchString(s) }
