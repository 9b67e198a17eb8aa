package analysis

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// ipBlockInside reports whether every address inner admits, outer admits.
func ipBlockInside(inner, outer networkingv1.IPBlock) bool {
	in, err1 := netip.ParsePrefix(inner.CIDR)
	out, err2 := netip.ParsePrefix(outer.CIDR)
	if err1 != nil || err2 != nil || !prefixInside(in.Masked(), out.Masked()) {
		return false
	}
	// Every range outer excludes that overlaps inner must be excluded by
	// inner too.
	for _, e := range outer.Except {
		ex, err := netip.ParsePrefix(e)
		if err != nil {
			return false
		}
		ex = ex.Masked()
		if !ex.Overlaps(in.Masked()) {
			continue
		}
		if !slices.ContainsFunc(inner.Except, func(ie string) bool {
			p, err := netip.ParsePrefix(ie)
			return err == nil && prefixInside(ex, p.Masked())
		}) {
			return false
		}
	}
	return true
}

func prefixInside(inner, outer netip.Prefix) bool {
	return inner.Addr().Is4() == outer.Addr().Is4() && outer.Bits() <= inner.Bits() && outer.Contains(inner.Addr())
}

func protocol(p networkingv1.NetworkPolicyPort) corev1.Protocol {
	if p.Protocol == nil {
		return corev1.ProtocolTCP
	}
	return *p.Protocol
}

func portRange(p networkingv1.NetworkPolicyPort) (int32, int32) {
	lo := p.Port.IntVal
	if p.EndPort != nil {
		return lo, *p.EndPort
	}
	return lo, lo
}

// describeRule says in words what a rule in direction dir admits: "all
// sources, all ports" for ingress, "egress to all destinations, all ports"
// for egress.
func describeRule(dir Direction, r rule, policyNamespace string) string {
	text := describePeers(dir, r.peers, policyNamespace) + ", " + describePorts(r.ports)
	if dir == Egress {
		return "egress to " + text
	}
	return text
}

// describePeers says in words which sources (ingress) or destinations
// (egress) some peers select.
func describePeers(dir Direction, peers []networkingv1.NetworkPolicyPeer, policyNamespace string) string {
	if len(peers) == 0 {
		if dir == Egress {
			return "all destinations"
		}
		return "all sources"
	}
	parts := make([]string, 0, len(peers))
	for _, p := range peers {
		parts = append(parts, describePeer(p, policyNamespace))
	}
	return strings.Join(parts, " or ")
}

// describePeer says in words which sources or destinations a peer selects.
func describePeer(p networkingv1.NetworkPolicyPeer, policyNamespace string) string {
	if p.IPBlock != nil {
		s := "IP block " + p.IPBlock.CIDR
		if len(p.IPBlock.Except) > 0 {
			s += " except " + strings.Join(p.IPBlock.Except, ", ")
		}
		return s
	}
	pods := "all pods"
	if p.PodSelector != nil && !isEmpty(p.PodSelector) {
		pods = "pods " + metav1.FormatLabelSelector(p.PodSelector)
	}
	switch {
	case p.NamespaceSelector == nil:
		return pods + " in namespace " + policyNamespace
	case isEmpty(p.NamespaceSelector):
		return pods + " in all namespaces"
	default:
		return pods + " in namespaces " + metav1.FormatLabelSelector(p.NamespaceSelector)
	}
}

func isEmpty(s *metav1.LabelSelector) bool {
	return len(s.MatchLabels) == 0 && len(s.MatchExpressions) == 0
}

func describePorts(ports []networkingv1.NetworkPolicyPort) string {
	if len(ports) == 0 {
		return "all ports"
	}
	var out []string
	for _, p := range ports {
		switch {
		case p.Port == nil:
			out = append(out, fmt.Sprintf("all %s ports", protocol(p)))
		case p.Port.Type == intstr.String:
			out = append(out, fmt.Sprintf("%s port %s", protocol(p), p.Port.StrVal))
		case p.EndPort != nil:
			out = append(out, fmt.Sprintf("%s %d-%d", protocol(p), p.Port.IntVal, *p.EndPort))
		default:
			out = append(out, fmt.Sprintf("%s %d", protocol(p), p.Port.IntVal))
		}
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}
