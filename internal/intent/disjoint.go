package intent

import (
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Disjoint reports whether two label selectors provably select no common
// pod: one requires a label value (matchLabels, or In) that the other
// forbids (another matchLabels value, NotIn, DoesNotExist, or In without
// it). Anything it cannot prove counts as overlapping.
func Disjoint(a, b metav1.LabelSelector) bool {
	return excludes(a, b) || excludes(b, a)
}

// excludes: some value a requires is ruled out by b.
func excludes(a, b metav1.LabelSelector) bool {
	required := map[string][]string{}
	for k, v := range a.MatchLabels {
		required[k] = []string{v}
	}
	for _, r := range a.MatchExpressions {
		if r.Operator == metav1.LabelSelectorOpIn {
			required[r.Key] = r.Values
		}
	}
	rules := func(k, v string) bool {
		if w, ok := b.MatchLabels[k]; ok && w != v {
			return true
		}
		for _, r := range b.MatchExpressions {
			if r.Key != k {
				continue
			}
			switch r.Operator {
			case metav1.LabelSelectorOpDoesNotExist:
				return true
			case metav1.LabelSelectorOpNotIn:
				if slices.Contains(r.Values, v) {
					return true
				}
			case metav1.LabelSelectorOpIn:
				if !slices.Contains(r.Values, v) {
					return true
				}
			}
		}
		return false
	}
	for k, values := range required {
		if len(values) > 0 && !slices.ContainsFunc(values, func(v string) bool { return !rules(k, v) }) {
			return true
		}
	}
	return false
}

// PeersDisjoint reports whether two NetworkPolicy peers of namespace
// provably admit no common source on Cilium: selectors whose namespaces or
// pods are disjoint, address ranges that do not overlap, or a selector and
// an address range (Cilium matches ranges only outside the cluster's pods).
// Anything it cannot prove counts as overlapping.
func PeersDisjoint(a, b networkingv1.NetworkPolicyPeer, namespace string) bool {
	switch {
	case a.IPBlock != nil && b.IPBlock != nil:
		pa, errA := netip.ParsePrefix(a.IPBlock.CIDR)
		pb, errB := netip.ParsePrefix(b.IPBlock.CIDR)
		return errA == nil && errB == nil && !pa.Overlaps(pb)
	case a.IPBlock != nil || b.IPBlock != nil:
		return true
	}
	own := metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: namespace}}
	namespaces := func(p networkingv1.NetworkPolicyPeer) metav1.LabelSelector {
		if p.NamespaceSelector == nil {
			return own
		}
		return *p.NamespaceSelector
	}
	pods := func(p networkingv1.NetworkPolicyPeer) metav1.LabelSelector {
		if p.PodSelector == nil {
			return metav1.LabelSelector{}
		}
		return *p.PodSelector
	}
	return Disjoint(namespaces(a), namespaces(b)) || Disjoint(pods(a), pods(b))
}

// PortsDisjoint reports whether two rules' port lists provably share no
// port: both list ports, and no two of the same protocol overlap. A named
// port may be any number.
func PortsDisjoint(a, b []networkingv1.NetworkPolicyPort) bool {
	if len(a) == 0 || len(b) == 0 {
		return false
	}
	for _, p := range a {
		for _, q := range b {
			if !portDisjoint(p, q) {
				return false
			}
		}
	}
	return true
}

func portDisjoint(p, q networkingv1.NetworkPolicyPort) bool {
	if protocolOf(p) != protocolOf(q) {
		return true
	}
	if p.Port == nil || q.Port == nil || p.Port.StrVal != "" || q.Port.StrVal != "" {
		return false
	}
	lo := func(x networkingv1.NetworkPolicyPort) int32 { return x.Port.IntVal }
	hi := func(x networkingv1.NetworkPolicyPort) int32 {
		if x.EndPort != nil {
			return *x.EndPort
		}
		return x.Port.IntVal
	}
	return hi(p) < lo(q) || hi(q) < lo(p)
}

func protocolOf(p networkingv1.NetworkPolicyPort) string {
	if p.Protocol == nil {
		return "TCP"
	}
	return string(*p.Protocol)
}
