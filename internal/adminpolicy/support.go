package adminpolicy

import (
	"fmt"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/version"
)

// Served says which admin-tier APIs the cluster serves in the versions the
// operator reads and writes (AdminNetworkPolicy v1alpha1,
// ClusterNetworkPolicy v1alpha2 or v1beta1).
type Served struct {
	AdminNetworkPolicy   bool
	ClusterNetworkPolicy bool
	// ClusterNetworkPolicyOtherVersion is true when ClusterNetworkPolicy is
	// served, but in neither v1alpha2 nor v1beta1.
	ClusterNetworkPolicyOtherVersion bool
}

// Support is the admin-tier API the guard can use on a cluster, or none.
type Support struct {
	// Kind is empty when the cluster offers no admin tier the guard can
	// rely on.
	Kind Kind
	// Unusable is true when the CNI implements an admin-tier API the
	// cluster serves, but not in a version the operator writes: the layer
	// is offered and not in place.
	Unusable bool
	// Message says why, for status.
	Message string
}

// calicoCNP is the first Calico release that implements
// ClusterNetworkPolicy; calicoANP the first that implements
// AdminNetworkPolicy.
var (
	calicoANP = version.MustParseGeneric("3.29.0")
	calicoCNP = version.MustParseGeneric("3.32.0")
)

// Choose says which admin-tier API the guard uses, given the CNI found
// (cni.Result's Name and Version; doesNotEnforce when it is known not to
// enforce policies, not when that is unknown, as while its agents roll out)
// and the APIs served. An API counts only when both its CRD is served and the CNI
// is one known to implement it:
//   - Calico (and Canal) 3.29 to 3.31: AdminNetworkPolicy;
//   - Calico 3.32 and later, Antrea, kube-network-policies:
//     ClusterNetworkPolicy.
//
// Cilium up to 1.19 implements neither. Anything not known to implement an
// API gets none: a policy nothing enforces would be a promise on paper.
func Choose(cniName, cniVersion string, doesNotEnforce bool, served Served) Support {
	if doesNotEnforce {
		return Support{Message: fmt.Sprintf("the CNI (%s) does not enforce policies, so no admin-tier policy would be either", cniName)}
	}
	parts := strings.Split(cniName, "+")
	has := func(name string) bool {
		for _, p := range parts {
			if p == name {
				return true
			}
		}
		return false
	}
	needs := func(kind Kind, who string) Support {
		ok := kind == AdminNetworkPolicy && served.AdminNetworkPolicy || kind == ClusterNetworkPolicy && served.ClusterNetworkPolicy
		if !ok && kind == ClusterNetworkPolicy && served.ClusterNetworkPolicyOtherVersion {
			return Support{Unusable: true, Message: fmt.Sprintf("%s implements %s, but the cluster serves it in neither v1alpha2 nor v1beta1, which the operator writes", who, kind)}
		}
		if !ok {
			return Support{Message: fmt.Sprintf("%s implements %s, but the cluster does not serve it (policy.networking.k8s.io CRDs not installed)", who, kind)}
		}
		return Support{Kind: kind, Message: fmt.Sprintf("%s implements %s", who, kind)}
	}
	switch {
	case has("calico") || has("canal"):
		v, err := version.ParseGeneric(strings.TrimPrefix(cniVersion, "v"))
		if err != nil {
			return Support{Message: fmt.Sprintf("Calico's version (%q) is not known, so neither is its admin tier", cniVersion)}
		}
		who := fmt.Sprintf("Calico %s", cniVersion)
		switch {
		case v.LessThan(calicoANP):
			return Support{Message: who + " implements no admin-tier policy API (AdminNetworkPolicy needs Calico 3.29 or later)"}
		case v.LessThan(calicoCNP):
			return needs(AdminNetworkPolicy, who)
		default:
			return needs(ClusterNetworkPolicy, who)
		}
	case has("antrea"):
		return needs(ClusterNetworkPolicy, "Antrea")
	case has("kube-network-policies"):
		return needs(ClusterNetworkPolicy, "kube-network-policies")
	case has("cilium"):
		return Support{Message: "Cilium implements neither AdminNetworkPolicy nor ClusterNetworkPolicy (ClusterNetworkPolicy arrives behind a flag in 1.20)"}
	}
	return Support{Message: fmt.Sprintf("the CNI (%s) is not known to implement AdminNetworkPolicy or ClusterNetworkPolicy", cniName)}
}

// Priorities is the range of admin-tier priorities the guard's policies
// take, both ends included. Lower numbers come first; the default keeps
// the guard after the cluster administrators' own policies.
type Priorities struct {
	First, Last int32
}

// DefaultPriorities are 900 to 999.
var DefaultPriorities = Priorities{First: 900, Last: 999}

// ParsePriorities reads "first-last", within the APIs' 0 to 1000.
func ParsePriorities(s string) (Priorities, error) {
	first, last, ok := strings.Cut(s, "-")
	a, errA := strconv.ParseInt(strings.TrimSpace(first), 10, 32)
	b, errB := strconv.ParseInt(strings.TrimSpace(last), 10, 32)
	if !ok || errA != nil || errB != nil || a < 0 || b > 1000 || a > b {
		return Priorities{}, fmt.Errorf("admin-tier priorities %q: want first-last within 0-1000, such as 900-999", s)
	}
	return Priorities{First: int32(a), Last: int32(b)}, nil
}

// String spells the range as ParsePriorities reads it.
func (p Priorities) String() string { return fmt.Sprintf("%d-%d", p.First, p.Last) }

// Allocate picks the priority of one guard policy: after floor (the last
// priority of the other policies that may select its namespace, -1 for
// none), within the range, and not taken (by the operator's other guard
// policies of the same namespace). It keeps its current one when that
// still fits. ok is false when no priority fits.
func (p Priorities) Allocate(current *int32, floor int32, taken map[int32]bool) (priority int32, ok bool) {
	first := max(p.First, floor+1)
	if current != nil && *current >= first && *current <= p.Last && !taken[*current] {
		return *current, true
	}
	for n := first; n <= p.Last; n++ {
		if !taken[n] {
			return n, true
		}
	}
	return 0, false
}
