package adminpolicy

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	anpv1alpha1 "sigs.k8s.io/network-policy-api/apis/v1alpha1"
	cnpv1alpha2 "sigs.k8s.io/network-policy-api/apis/v1alpha2"

	"github.com/isolator-dev/isolator/internal/intent"
)

// ANPGVK and CNPGVK are the versions written: AdminNetworkPolicy
// v1alpha1, ClusterNetworkPolicy v1alpha2 (served next to v1beta1, with the
// same schema).
var (
	ANPGVK = schema.GroupVersionKind{Group: anpv1alpha1.GroupName, Version: anpv1alpha1.GroupVersion.Version, Kind: string(AdminNetworkPolicy)}
	CNPGVK = schema.GroupVersionKind{Group: cnpv1alpha2.GroupName, Version: cnpv1alpha2.GroupVersion.Version, Kind: string(ClusterNetworkPolicy)}
)

// ANP returns the AdminNetworkPolicy guarding the target of in, at the
// given priority; shared passes the declared peers on instead of allowing
// them (see build). It fails when the intent needs more rules or ports than
// the API allows.
func ANP(in *intent.Intent, priority int32, shared bool) (*anpv1alpha1.AdminNetworkPolicy, error) {
	m, err := build(in, shared, anpLimits)
	if err != nil {
		return nil, err
	}
	s := subject(in)
	out := &anpv1alpha1.AdminNetworkPolicy{
		ObjectMeta: objectMeta(in),
		Spec: anpv1alpha1.AdminNetworkPolicySpec{
			Priority: priority,
			Subject:  anpv1alpha1.AdminNetworkPolicySubject{Pods: &anpv1alpha1.NamespacedPod{NamespaceSelector: s.namespaces, PodSelector: s.pods}},
		},
	}
	out.SetGroupVersionKind(ANPGVK)
	for _, r := range m.ingress {
		rule := anpv1alpha1.AdminNetworkPolicyIngressRule{Name: ruleName(r.name), Action: anpAction(r.action), Ports: anpPorts(r.ports)}
		for _, p := range r.peers {
			rule.From = append(rule.From, anpv1alpha1.AdminNetworkPolicyIngressPeer{Namespaces: p.namespaces, Pods: anpPods(p.pods)})
		}
		out.Spec.Ingress = append(out.Spec.Ingress, rule)
	}
	for _, r := range m.egress {
		rule := anpv1alpha1.AdminNetworkPolicyEgressRule{Name: ruleName(r.name), Action: anpAction(r.action), Ports: anpPorts(r.ports)}
		for _, p := range r.peers {
			peer := anpv1alpha1.AdminNetworkPolicyEgressPeer{Namespaces: p.namespaces, Pods: anpPods(p.pods)}
			for _, n := range p.networks {
				peer.Networks = append(peer.Networks, anpv1alpha1.CIDR(n))
			}
			rule.To = append(rule.To, peer)
		}
		out.Spec.Egress = append(out.Spec.Egress, rule)
	}
	return out, nil
}

func anpAction(a action) anpv1alpha1.AdminNetworkPolicyRuleAction {
	switch a {
	case deny:
		return anpv1alpha1.AdminNetworkPolicyRuleActionDeny
	case pass:
		return anpv1alpha1.AdminNetworkPolicyRuleActionPass
	}
	return anpv1alpha1.AdminNetworkPolicyRuleActionAllow
}

func anpPods(p *podPeer) *anpv1alpha1.NamespacedPod {
	if p == nil {
		return nil
	}
	return &anpv1alpha1.NamespacedPod{NamespaceSelector: p.namespaces, PodSelector: p.pods}
}

func anpPorts(ports []port) *[]anpv1alpha1.AdminNetworkPolicyPort {
	if ports == nil {
		return nil
	}
	out := make([]anpv1alpha1.AdminNetworkPolicyPort, 0, len(ports))
	for _, p := range ports {
		if p.start == p.end {
			out = append(out, anpv1alpha1.AdminNetworkPolicyPort{PortNumber: &anpv1alpha1.Port{Protocol: p.protocol, Port: p.start}})
		} else {
			out = append(out, anpv1alpha1.AdminNetworkPolicyPort{PortRange: &anpv1alpha1.PortRange{Protocol: p.protocol, Start: p.start, End: p.end}})
		}
	}
	return &out
}

// CNP returns the ClusterNetworkPolicy, in the Admin tier, guarding the
// target of in at the given priority, like ANP.
func CNP(in *intent.Intent, priority int32, shared bool) (*cnpv1alpha2.ClusterNetworkPolicy, error) {
	m, err := build(in, shared, cnpLimits)
	if err != nil {
		return nil, err
	}
	s := subject(in)
	out := &cnpv1alpha2.ClusterNetworkPolicy{
		ObjectMeta: objectMeta(in),
		Spec: cnpv1alpha2.ClusterNetworkPolicySpec{
			Tier:     cnpv1alpha2.AdminTier,
			Priority: priority,
			Subject:  cnpv1alpha2.ClusterNetworkPolicySubject{Pods: &cnpv1alpha2.NamespacedPod{NamespaceSelector: s.namespaces, PodSelector: s.pods}},
		},
	}
	out.SetGroupVersionKind(CNPGVK)
	for _, r := range m.ingress {
		rule := cnpv1alpha2.ClusterNetworkPolicyIngressRule{Name: ruleName(r.name), Action: cnpAction(r.action), Protocols: cnpProtocols(r.ports)}
		for _, p := range r.peers {
			rule.From = append(rule.From, cnpv1alpha2.ClusterNetworkPolicyIngressPeer{Namespaces: p.namespaces, Pods: cnpPods(p.pods)})
		}
		out.Spec.Ingress = append(out.Spec.Ingress, rule)
	}
	for _, r := range m.egress {
		rule := cnpv1alpha2.ClusterNetworkPolicyEgressRule{Name: ruleName(r.name), Action: cnpAction(r.action), Protocols: cnpProtocols(r.ports)}
		for _, p := range r.peers {
			peer := cnpv1alpha2.ClusterNetworkPolicyEgressPeer{Namespaces: p.namespaces, Pods: cnpPods(p.pods)}
			for _, n := range p.networks {
				peer.Networks = append(peer.Networks, cnpv1alpha2.CIDR(n))
			}
			rule.To = append(rule.To, peer)
		}
		out.Spec.Egress = append(out.Spec.Egress, rule)
	}
	return out, nil
}

func cnpAction(a action) cnpv1alpha2.ClusterNetworkPolicyRuleAction {
	switch a {
	case deny:
		return cnpv1alpha2.ClusterNetworkPolicyRuleActionDeny
	case pass:
		return cnpv1alpha2.ClusterNetworkPolicyRuleActionPass
	}
	return cnpv1alpha2.ClusterNetworkPolicyRuleActionAccept
}

func cnpPods(p *podPeer) *cnpv1alpha2.NamespacedPod {
	if p == nil {
		return nil
	}
	return &cnpv1alpha2.NamespacedPod{NamespaceSelector: p.namespaces, PodSelector: p.pods}
}

// cnpProtocols spells ports as ClusterNetworkPolicy protocols: a protocol
// without a destination port means all its ports.
func cnpProtocols(ports []port) []cnpv1alpha2.ClusterNetworkPolicyProtocol {
	var out []cnpv1alpha2.ClusterNetworkPolicyProtocol
	for _, p := range ports {
		var dest *cnpv1alpha2.Port
		switch {
		case p.start == 1 && p.end == 65535:
		case p.start == p.end:
			dest = &cnpv1alpha2.Port{Number: p.start}
		default:
			dest = &cnpv1alpha2.Port{Range: &cnpv1alpha2.PortRange{Start: p.start, End: p.end}}
		}
		var proto cnpv1alpha2.ClusterNetworkPolicyProtocol
		switch p.protocol {
		case corev1.ProtocolUDP:
			proto.UDP = &cnpv1alpha2.ClusterNetworkPolicyProtocolUDP{DestinationPort: dest}
		case corev1.ProtocolSCTP:
			proto.SCTP = &cnpv1alpha2.ClusterNetworkPolicyProtocolSCTP{DestinationPort: dest}
		default:
			proto.TCP = &cnpv1alpha2.ClusterNetworkPolicyProtocolTCP{DestinationPort: dest}
		}
		out = append(out, proto)
	}
	return out
}
