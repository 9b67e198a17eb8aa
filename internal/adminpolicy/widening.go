package adminpolicy

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	anpv1alpha1 "sigs.k8s.io/network-policy-api/apis/v1alpha1"
	cnpv1alpha2 "sigs.k8s.io/network-policy-api/apis/v1alpha2"

	"github.com/isolator-dev/isolator/internal/analysis"
)

// Guard is the guard's own admin-tier policy, when it is in place.
type Guard struct {
	Kind     Kind
	Name     string
	Priority int32
}

// Target is what a foreign admin-tier policy must select to matter.
type Target struct {
	// Namespace is the target's namespace with its labels.
	Namespace analysis.Object
	// Pods are the target pods now.
	Pods []analysis.Object
}

// Widenings returns the admin-tier policies that can admit traffic to or
// from the target whatever the NetworkPolicies say, with their Allow
// (Accept) rules in NetworkPolicy form for analysis.Input.Admin:
//   - AdminNetworkPolicies, and ClusterNetworkPolicies of the Admin tier,
//     whose subject selects a target pod now (a selector that cannot be
//     parsed selects);
//   - except the guard's own policy, and those of the guard's kind that
//     come after it (a higher priority number): its final Deny rules catch
//     every pod and address first. One at the same priority is kept, as
//     the APIs leave the order of equal priorities undefined; one of the
//     other kind is kept, as nothing orders the two APIs.
//
// Deny and Pass rules are left out: they never admit. Baseline policies
// (BaselineAdminNetworkPolicy, the Baseline tier) are left out too: they
// apply only to traffic no NetworkPolicy selects, and the declared
// NetworkPolicies select the target pods in every declared direction.
func Widenings(anps []anpv1alpha1.AdminNetworkPolicy, cnps []cnpv1alpha2.ClusterNetworkPolicy, guard *Guard, t Target) []analysis.AdminPolicy {
	var out []analysis.AdminPolicy
	after := func(kind Kind, name string, priority int32) bool {
		return guard != nil && guard.Kind == kind && (name == guard.Name || priority > guard.Priority)
	}
	for i := range anps {
		p := &anps[i]
		if after(AdminNetworkPolicy, p.Name, p.Spec.Priority) || !t.selected(p.Spec.Subject.Namespaces, anpPodsOf(p.Spec.Subject.Pods)) {
			continue
		}
		w := analysis.AdminPolicy{Name: fmt.Sprintf("%s/%s", AdminNetworkPolicy, p.Name), WorkloadIsolation: t.guardOf(p)}
		for _, r := range p.Spec.Ingress {
			if r.Action != anpv1alpha1.AdminNetworkPolicyRuleActionAllow {
				continue
			}
			rule := networkingv1.NetworkPolicyIngressRule{Ports: fromANPPorts(r.Ports)}
			for _, peer := range r.From {
				rule.From = append(rule.From, selectorPeers(peer.Namespaces, anpPodsOf(peer.Pods))...)
			}
			w.Ingress = append(w.Ingress, rule)
		}
		for _, r := range p.Spec.Egress {
			if r.Action != anpv1alpha1.AdminNetworkPolicyRuleActionAllow {
				continue
			}
			rule := networkingv1.NetworkPolicyEgressRule{Ports: fromANPPorts(r.Ports)}
			for _, peer := range r.To {
				rule.To = append(rule.To, selectorPeers(peer.Namespaces, anpPodsOf(peer.Pods))...)
				rule.To = append(rule.To, addressPeers(anpNetworks(peer.Networks), peer.Nodes != nil || len(peer.DomainNames) > 0)...)
			}
			w.Egress = append(w.Egress, rule)
		}
		out = append(out, w)
	}
	for i := range cnps {
		p := &cnps[i]
		if p.Spec.Tier != cnpv1alpha2.AdminTier || after(ClusterNetworkPolicy, p.Name, p.Spec.Priority) ||
			!t.selected(p.Spec.Subject.Namespaces, cnpPodsOf(p.Spec.Subject.Pods)) {
			continue
		}
		w := analysis.AdminPolicy{Name: fmt.Sprintf("%s/%s", ClusterNetworkPolicy, p.Name), WorkloadIsolation: t.guardOf(p)}
		for _, r := range p.Spec.Ingress {
			if r.Action != cnpv1alpha2.ClusterNetworkPolicyRuleActionAccept {
				continue
			}
			rule := networkingv1.NetworkPolicyIngressRule{Ports: fromProtocols(r.Protocols)}
			for _, peer := range r.From {
				rule.From = append(rule.From, selectorPeers(peer.Namespaces, cnpPodsOf(peer.Pods))...)
			}
			w.Ingress = append(w.Ingress, rule)
		}
		for _, r := range p.Spec.Egress {
			if r.Action != cnpv1alpha2.ClusterNetworkPolicyRuleActionAccept {
				continue
			}
			rule := networkingv1.NetworkPolicyEgressRule{Ports: fromProtocols(r.Protocols)}
			for _, peer := range r.To {
				rule.To = append(rule.To, selectorPeers(peer.Namespaces, cnpPodsOf(peer.Pods))...)
				rule.To = append(rule.To, addressPeers(cnpNetworks(peer.Networks), peer.Nodes != nil || len(peer.DomainNames) > 0)...)
			}
			w.Egress = append(w.Egress, rule)
		}
		out = append(out, w)
	}
	return out
}

// guardOf names the WorkloadIsolation of the target's namespace whose
// guard wrote p, if one did.
func (t Target) guardOf(p metav1.Object) string {
	if !Owns(p.GetName(), p.GetLabels()) {
		return ""
	}
	owner := OwnerOf(p)
	if owner.Namespace != t.Namespace.Name {
		return ""
	}
	return owner.Name
}

// SelectsNamespace reports whether an admin-tier subject (namespaces, or
// pods of namespaces) may select pods of the namespace ns, whatever the
// pods: the policies the guard must come after.
func SelectsNamespace(namespaces *metav1.LabelSelector, pods *podPeer, ns analysis.Object) bool {
	if pods != nil {
		namespaces = &pods.namespaces
	}
	return namespaces == nil || analysis.Matches(namespaces, analysis.NamespaceLabels(ns))
}

// ANPSelectsNamespace and CNPSelectsNamespace are SelectsNamespace for
// each API's subject.
func ANPSelectsNamespace(p *anpv1alpha1.AdminNetworkPolicy, ns analysis.Object) bool {
	return SelectsNamespace(p.Spec.Subject.Namespaces, anpPodsOf(p.Spec.Subject.Pods), ns)
}

// CNPSelectsNamespace is SelectsNamespace for a ClusterNetworkPolicy.
func CNPSelectsNamespace(p *cnpv1alpha2.ClusterNetworkPolicy, ns analysis.Object) bool {
	return SelectsNamespace(p.Spec.Subject.Namespaces, cnpPodsOf(p.Spec.Subject.Pods), ns)
}

// selected reports whether a subject (namespaces, or pods of namespaces)
// may select a target pod now.
func (t Target) selected(namespaces *metav1.LabelSelector, pods *podPeer) bool {
	if namespaces == nil && pods == nil {
		return true // not a valid subject: assume the worst
	}
	podSel := &metav1.LabelSelector{}
	if pods != nil {
		namespaces, podSel = &pods.namespaces, &pods.pods
	}
	if !analysis.Matches(namespaces, analysis.NamespaceLabels(t.Namespace)) {
		return false
	}
	for _, p := range t.Pods {
		if analysis.Matches(podSel, p.Labels) {
			return true
		}
	}
	return false
}

func anpPodsOf(p *anpv1alpha1.NamespacedPod) *podPeer {
	if p == nil {
		return nil
	}
	return &podPeer{namespaces: p.NamespaceSelector, pods: p.PodSelector}
}

func cnpPodsOf(p *cnpv1alpha2.NamespacedPod) *podPeer {
	if p == nil {
		return nil
	}
	return &podPeer{namespaces: p.NamespaceSelector, pods: p.PodSelector}
}

// selectorPeers spells an admin-tier namespaces or pods peer as a
// NetworkPolicy peer; its namespaces are always named.
func selectorPeers(namespaces *metav1.LabelSelector, pods *podPeer) []networkingv1.NetworkPolicyPeer {
	switch {
	case pods != nil:
		return []networkingv1.NetworkPolicyPeer{{NamespaceSelector: pods.namespaces.DeepCopy(), PodSelector: pods.pods.DeepCopy()}}
	case namespaces != nil:
		return []networkingv1.NetworkPolicyPeer{{NamespaceSelector: namespaces.DeepCopy()}}
	}
	return nil
}

// addressPeers spells networks as ipBlocks; nodes and domain names, whose
// addresses cannot be known here, as every address.
func addressPeers(networks []string, anyAddress bool) []networkingv1.NetworkPolicyPeer {
	if anyAddress {
		networks = append(networks, everyAddress().networks...)
	}
	var out []networkingv1.NetworkPolicyPeer
	for _, n := range networks {
		out = append(out, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: n}})
	}
	return out
}

func anpNetworks(in []anpv1alpha1.CIDR) []string {
	var out []string
	for _, c := range in {
		out = append(out, string(c))
	}
	return out
}

func cnpNetworks(in []cnpv1alpha2.CIDR) []string {
	var out []string
	for _, c := range in {
		out = append(out, string(c))
	}
	return out
}

// anyProtocol lists the protocols a named port may stand for.
var anyProtocol = []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP}

// namedPort spells an admin-tier named port, which has no protocol, as
// the same name under every protocol.
func namedPort(name string) []networkingv1.NetworkPolicyPort {
	var out []networkingv1.NetworkPolicyPort
	for _, protocol := range anyProtocol {
		out = append(out, networkingv1.NetworkPolicyPort{Protocol: ptr.To(protocol), Port: ptr.To(intstr.FromString(name))})
	}
	return out
}

func numberedPort(protocol corev1.Protocol, start, end int32) networkingv1.NetworkPolicyPort {
	p := networkingv1.NetworkPolicyPort{Protocol: ptr.To(protocol), Port: ptr.To(intstr.FromInt32(start))}
	if end > start {
		p.EndPort = ptr.To(end)
	}
	return p
}

// fromANPPorts converts AdminNetworkPolicy ports; nil (all ports) stays nil.
func fromANPPorts(in *[]anpv1alpha1.AdminNetworkPolicyPort) []networkingv1.NetworkPolicyPort {
	if in == nil {
		return nil
	}
	out := []networkingv1.NetworkPolicyPort{}
	for _, p := range *in {
		switch {
		case p.NamedPort != nil:
			out = append(out, namedPort(*p.NamedPort)...)
		case p.PortNumber != nil:
			out = append(out, numberedPort(protocolOr(p.PortNumber.Protocol), p.PortNumber.Port, p.PortNumber.Port))
		case p.PortRange != nil:
			out = append(out, numberedPort(protocolOr(p.PortRange.Protocol), p.PortRange.Start, p.PortRange.End))
		default:
			return nil // nothing the analysis can bound: all ports
		}
	}
	return out
}

// fromProtocols converts ClusterNetworkPolicy protocols; none (all ports)
// gives nil.
func fromProtocols(in []cnpv1alpha2.ClusterNetworkPolicyProtocol) []networkingv1.NetworkPolicyPort {
	if len(in) == 0 {
		return nil
	}
	var out []networkingv1.NetworkPolicyPort
	for _, p := range in {
		var protocol corev1.Protocol
		var dest *cnpv1alpha2.Port
		switch {
		case p.DestinationNamedPort != "":
			out = append(out, namedPort(p.DestinationNamedPort)...)
			continue
		case p.TCP != nil:
			protocol, dest = corev1.ProtocolTCP, p.TCP.DestinationPort
		case p.UDP != nil:
			protocol, dest = corev1.ProtocolUDP, p.UDP.DestinationPort
		case p.SCTP != nil:
			protocol, dest = corev1.ProtocolSCTP, p.SCTP.DestinationPort
		default:
			return nil // nothing the analysis can bound: all ports
		}
		switch {
		case dest == nil:
			out = append(out, networkingv1.NetworkPolicyPort{Protocol: ptr.To(protocol)})
		case dest.Range != nil:
			out = append(out, numberedPort(protocol, dest.Range.Start, dest.Range.End))
		default:
			out = append(out, numberedPort(protocol, dest.Number, dest.Number))
		}
	}
	return out
}

func protocolOr(p corev1.Protocol) corev1.Protocol {
	if p == "" {
		return corev1.ProtocolTCP
	}
	return p
}
