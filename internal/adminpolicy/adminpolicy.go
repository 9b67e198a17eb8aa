// Package adminpolicy renders the dataplane layer of the guard: one
// cluster-scoped admin-tier policy per guarded WorkloadIsolation that lets
// the target pods exchange traffic with the declared peers only, whatever
// the NetworkPolicies of their namespace say. Admin-tier policies are
// evaluated before NetworkPolicies, and only cluster administrators may
// write them, so a tenant with rights in the namespace cannot re-open the
// target through the dataplane either.
//
// Two APIs of the Kubernetes network-policy-api project carry it:
// AdminNetworkPolicy (policy.networking.k8s.io/v1alpha1, implemented by
// Calico 3.29 to 3.31, among others) and ClusterNetworkPolicy in its Admin
// tier (v1alpha2 and v1beta1, same schema; Calico 3.32, Antrea,
// kube-network-policies). Both evaluate rules in order, first match wins,
// and policies by priority, lowest number first.
//
// The rendered policy, for the target pods:
//   - ingress: Allow (Accept) each declared source that is a pod or
//     namespace selector, on the declared ports, then Deny every pod of the
//     cluster. Named ports are not in the APIs' standard channel: a source
//     declared with named ports is passed on to the NetworkPolicies (Pass)
//     instead, which then decide its ports. Admin-tier ingress rules cannot name addresses, so declared
//     ipBlock sources and traffic from outside the cluster are left to the
//     NetworkPolicies (and the admission guard); a pod that a declared
//     ipBlock would have admitted by its address is denied;
//   - egress, when declared: Allow each declared destination (selectors;
//     ipBlocks as their CIDR minus its exceptions, computed exactly), then
//     Deny every pod and every address.
//
// It is pure: no client, no context, no clock.
package adminpolicy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"go4.org/netipx"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/isolator-dev/isolator/internal/intent"
	"github.com/isolator-dev/isolator/internal/policy"
)

// Kind is the API a guard's dataplane layer is written in.
type Kind string

// The admin-tier APIs.
const (
	AdminNetworkPolicy   Kind = "AdminNetworkPolicy"
	ClusterNetworkPolicy Kind = "ClusterNetworkPolicy"
)

// Labels of a rendered policy, besides policy.LabelManagedBy and
// policy.LabelOwner. A cluster-scoped object cannot have a namespaced owner,
// so these labels and the name say whose it is.
const (
	// LabelOwnerNamespace holds the WorkloadIsolation's namespace.
	LabelOwnerNamespace = "isolation.isolator.dev/namespace"
	// LabelOwnerUID holds the WorkloadIsolation's UID.
	LabelOwnerUID = "isolation.isolator.dev/uid"
)

// namePrefix begins the name of every rendered policy.
const namePrefix = "isolator-"

// Name is the name of the admin-tier policy of the WorkloadIsolation with
// this UID.
func Name(uid types.UID) string { return namePrefix + string(uid) }

// Owns reports whether an admin-tier policy with this name and these labels
// is the one rendered for a WorkloadIsolation: its name is the one of the
// UID its labels name, and it carries the operator's label.
func Owns(name string, labels map[string]string) bool {
	uid := labels[LabelOwnerUID]
	return uid != "" && name == Name(types.UID(uid)) && labels[policy.LabelManagedBy] == policy.ManagedByValue
}

// AnnotationOwner holds the WorkloadIsolation's name whole (the owner label
// is shortened when the name is longer than a label value may be).
const AnnotationOwner = "isolation.isolator.dev/workloadisolation"

// OwnerOf returns the namespace and name of the WorkloadIsolation an owned
// policy belongs to.
func OwnerOf(obj metav1.Object) types.NamespacedName {
	return types.NamespacedName{Namespace: obj.GetLabels()[LabelOwnerNamespace], Name: obj.GetAnnotations()[AnnotationOwner]}
}

// limits are an API's bounds on list lengths.
type limits struct {
	rules, peers, ports, networks int
}

var (
	anpLimits = limits{rules: 100, peers: 100, ports: 100, networks: 25}
	cnpLimits = limits{rules: 25, peers: 25, ports: 25, networks: 25}
)

// peer is one admin-tier peer: exactly one field set.
type peer struct {
	namespaces *metav1.LabelSelector
	pods       *podPeer
	networks   []string
}

type podPeer struct {
	namespaces, pods metav1.LabelSelector
}

// port is one admin-tier port: a protocol's range.
type port struct {
	protocol   corev1.Protocol
	start, end int32
}

// action is what a rule does with the traffic it matches.
type action int

const (
	// allow, the zero action, admits the traffic.
	_ action = iota
	// pass hands the traffic on to the NetworkPolicies.
	pass
	deny
)

// rule is one admin-tier rule; nil ports mean all ports.
type rule struct {
	name   string
	action action
	peers  []peer
	ports  []port
}

// model is the policy before it is spelled in one API.
type model struct {
	ingress, egress []rule
}

// everyPod is the peer of all pods of all namespaces.
func everyPod() peer { return peer{namespaces: &metav1.LabelSelector{}} }

// everyAddress is the peer of every IPv4 and IPv6 address.
func everyAddress() peer { return peer{networks: []string{"0.0.0.0/0", "::/0"}} }

// selectorRules are the rules for a declared rule's selector peers: Allow
// on its numbered ports (all ports when it lists none), and Pass, on all
// ports, when it names ports. The standard channel of both APIs has no
// named ports, so the NetworkPolicies (which the admission guard keeps)
// decide which ports the named ones are.
func selectorRules(name string, peers []peer, declared []networkingv1.NetworkPolicyPort, shared bool, lim limits) (allows, passes []rule) {
	numbered, named := ports(declared)
	if shared {
		if named {
			numbered = nil // all ports: the NetworkPolicies decide
		}
		return split(rule{name: "pass-" + name, action: pass, peers: peers, ports: numbered}, lim), nil
	}
	if len(declared) == 0 || len(numbered) > 0 {
		allows = split(rule{name: "allow-" + name, peers: peers, ports: numbered}, lim)
	}
	if named {
		passes = split(rule{name: "pass-" + name, action: pass, peers: peers}, lim)
	}
	return allows, passes
}

// build turns an intent into the API-neutral model, within lim: the Allow
// rules, then the Pass rules, then the Deny rule of each direction. With
// shared (another guarded WorkloadIsolation may select the same pods) it
// allows nothing itself: the declared peers are passed on to the
// NetworkPolicies, so that neither guard policy can open the other's pods.
func build(in *intent.Intent, shared bool, lim limits) (model, error) {
	var m model
	var passes []rule
	for _, r := range in.Ingress {
		if len(r.HTTP) > 0 {
			// Admitted only by a policy that can say the requests, which
			// neither API can: denied here, like by the NetworkPolicies.
			continue
		}
		var peers []peer
		for _, p := range r.Peers {
			if p.IPBlock == nil {
				peers = append(peers, selectorPeer(p, in.Namespace))
			}
		}
		if len(r.Peers) == 0 {
			peers = []peer{everyPod()}
		}
		if len(peers) == 0 {
			continue // addresses only: left to the NetworkPolicies
		}
		allows, p := selectorRules(r.Name, peers, r.Ports, shared, lim)
		m.ingress, passes = append(m.ingress, allows...), append(passes, p...)
	}
	m.ingress = append(m.ingress, passes...)
	m.ingress = append(m.ingress, rule{name: "deny-other-pods", action: deny, peers: []peer{everyPod()}})
	passes = nil
	if in.Egress == nil {
		return m, check(m, lim)
	}
	rules := in.Egress.Rules
	if in.Egress.DNS != nil {
		rules = append(rules[:len(rules):len(rules)], in.Egress.DNS.Rule)
	}
	for _, r := range rules {
		if len(r.Peers) == 0 && len(r.Hosts) > 0 {
			// Hosts only, which neither API can name: denied here.
			continue
		}
		var selectors []peer
		var networks netipx.IPSetBuilder
		hasNetworks := false
		for _, p := range r.Peers {
			if p.IPBlock == nil {
				selectors = append(selectors, selectorPeer(p, in.Namespace))
				continue
			}
			if err := addBlock(&networks, p.IPBlock); err != nil {
				return m, err
			}
			hasNetworks = true
		}
		if len(r.Peers) == 0 {
			selectors = []peer{everyPod()}
			for _, all := range everyAddress().networks {
				if err := addBlock(&networks, &networkingv1.IPBlock{CIDR: all}); err != nil {
					return m, err
				}
			}
			hasNetworks = true
		}
		if len(selectors) > 0 {
			allows, p := selectorRules(r.Name, selectors, r.Ports, shared, lim)
			m.egress, passes = append(m.egress, allows...), append(passes, p...)
		}
		if !hasNetworks {
			continue
		}
		// A named port means nothing for an address: the addresses keep
		// the numbered ports, and none at all when every port is named.
		numbered, _ := ports(r.Ports)
		if len(r.Ports) > 0 && len(numbered) == 0 {
			continue
		}
		set, err := networks.IPSet()
		if err != nil {
			return m, fmt.Errorf("egress rule %s: %w", r.Name, err)
		}
		var cidrs []peer
		// IPv4-mapped IPv6 ranges never appear on the wire as such, and
		// the APIs refuse them as CIDRs: they are left out (denied).
		prefixes := slices.DeleteFunc(set.Prefixes(), func(p netip.Prefix) bool {
			return p.Bits() >= v4Mapped.Bits() && v4Mapped.Contains(p.Addr())
		})
		for len(prefixes) > 0 {
			n := min(len(prefixes), lim.networks)
			p := peer{}
			for _, prefix := range prefixes[:n] {
				p.networks = append(p.networks, prefix.String())
			}
			cidrs = append(cidrs, p)
			prefixes = prefixes[n:]
		}
		addresses := rule{name: "allow-" + r.Name + "-addresses", peers: cidrs, ports: numbered}
		if shared {
			addresses.name, addresses.action = "pass-"+r.Name+"-addresses", pass
		}
		if len(cidrs) > 0 {
			m.egress = append(m.egress, split(addresses, lim)...)
		}
	}
	m.egress = append(m.egress, passes...)
	m.egress = append(m.egress, rule{name: "deny-other-destinations", action: deny, peers: []peer{everyPod(), everyAddress()}})
	return m, check(m, lim)
}

// selectorPeer converts a NetworkPolicy selector peer of namespace ns.
func selectorPeer(p networkingv1.NetworkPolicyPeer, ns string) peer {
	namespaces := p.NamespaceSelector
	if namespaces == nil {
		namespaces = &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: ns}}
	}
	if p.PodSelector == nil {
		return peer{namespaces: namespaces.DeepCopy()}
	}
	return peer{pods: &podPeer{namespaces: *namespaces.DeepCopy(), pods: *p.PodSelector.DeepCopy()}}
}

// addBlock adds an ipBlock's CIDR minus its exceptions to b.
func addBlock(b *netipx.IPSetBuilder, block *networkingv1.IPBlock) error {
	var inner netipx.IPSetBuilder
	cidr, err := netip.ParsePrefix(block.CIDR)
	if err != nil {
		return fmt.Errorf("ipBlock %s: %w", block.CIDR, err)
	}
	inner.AddPrefix(cidr.Masked())
	for _, e := range block.Except {
		except, err := netip.ParsePrefix(e)
		if err != nil {
			return fmt.Errorf("ipBlock %s except %s: %w", block.CIDR, e, err)
		}
		inner.RemovePrefix(except.Masked())
	}
	set, err := inner.IPSet()
	if err != nil {
		return err
	}
	b.AddSet(set)
	return nil
}

// v4Mapped is the IPv4-mapped IPv6 range.
var v4Mapped = netip.MustParsePrefix("::ffff:0:0/96")

// ports converts the numbered NetworkPolicy ports and says whether there
// were named ones. nil in, nil out: all ports.
func ports(in []networkingv1.NetworkPolicyPort) (out []port, named bool) {
	for _, p := range in {
		protocol := corev1.ProtocolTCP
		if p.Protocol != nil {
			protocol = *p.Protocol
		}
		switch {
		case p.Port == nil:
			out = append(out, port{protocol: protocol, start: 1, end: 65535})
		case p.Port.Type == intstr.String:
			named = true
		case p.EndPort != nil:
			out = append(out, port{protocol: protocol, start: p.Port.IntVal, end: *p.EndPort})
		default:
			out = append(out, port{protocol: protocol, start: p.Port.IntVal, end: p.Port.IntVal})
		}
	}
	return out, named
}

// split cuts a rule whose peers exceed the API's bound into rules of the
// same action and ports; Allow rules may come in any order.
func split(r rule, lim limits) []rule {
	if len(r.peers) <= lim.peers {
		return []rule{r}
	}
	var out []rule
	for i := 0; i < len(r.peers); i += lim.peers {
		part := r
		part.peers = r.peers[i:min(i+lim.peers, len(r.peers))]
		part.name = fmt.Sprintf("%s-%d", r.name, i/lim.peers+1)
		out = append(out, part)
	}
	return out
}

// check fails when the model exceeds the API's bounds.
func check(m model, lim limits) error {
	for dir, rules := range map[string][]rule{"ingress": m.ingress, "egress": m.egress} {
		if len(rules) > lim.rules {
			return fmt.Errorf("the guard's %s needs %d admin-tier rules, more than the %d the API allows", dir, len(rules), lim.rules)
		}
		for _, r := range rules {
			if len(r.ports) > lim.ports {
				return fmt.Errorf("the guard's %s rule %s needs %d ports, more than the %d the API allows", dir, r.name, len(r.ports), lim.ports)
			}
		}
	}
	return nil
}

// ruleName bounds a rule name to the APIs' 100 characters.
func ruleName(s string) string {
	if len(s) <= 100 {
		return s
	}
	return strings.TrimRight(s[:100], "-")
}

// subject is the target pods.
func subject(in *intent.Intent) podPeer {
	return podPeer{
		namespaces: metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: in.Namespace}},
		pods:       *in.Target.DeepCopy(),
	}
}

// objectMeta names and labels the policy of in.
func objectMeta(in *intent.Intent) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name: Name(in.UID),
		Labels: map[string]string{
			policy.LabelManagedBy: policy.ManagedByValue,
			policy.LabelOwner:     policy.OwnerLabelValue(in.Name),
			LabelOwnerNamespace:   in.Namespace,
			LabelOwnerUID:         string(in.UID),
		},
		Annotations: map[string]string{AnnotationOwner: in.Name},
	}
}
