package analysis

import (
	"fmt"
	"math"
)

// Path is one way into or out of the target: the peers and ports one rule
// of one policy admits for some of the target pods.
type Path struct {
	// Direction is Ingress for a way in, Egress for a way out.
	Direction Direction
	// Policy is the NetworkPolicy's name (an admin-tier policy's Input.Admin
	// name); empty for pods no policy isolates.
	Policy string
	// Pods is how many target pods the path concerns.
	Pods int
	// Peers says who is admitted: the sources of an ingress path, the
	// destinations of an egress path.
	Peers string
	// Ports says on which ports.
	Ports string
	// Declared is true when a declared rule admits at least as much.
	Declared bool
	// Latent is true for an undeclared path that admits no source or
	// destination that exists now beyond the declared ones (see
	// Exposure.Latent).
	Latent bool
}

// Explain lists every way into the target pods, given all policies of the
// namespace: one path per ingress rule of each policy that selects target
// pods (whatever its policyTypes say, see the package doc), plus one "all
// sources" path for target pods no ingress policy selects (they are not
// isolated at all). When the declared policies isolate egress, it then
// lists every way out the same way: one path per egress rule, plus one "all
// destinations" path for target pods no egress policy selects. Without
// declared egress the target's egress is not isolated and no egress path is
// listed. It examines every policy, without a budget: it serves one
// person's question, not the controller.
func Explain(in Input) []Path {
	in.Budget = math.MaxInt
	in.Policies = withAdmin(in)
	a := newAnalyzer(in)
	var paths []Path
	directions := []Direction{Ingress}
	if a.egressDeclared {
		directions = append(directions, Egress)
	}
	for _, dir := range directions {
		for i := range in.Policies {
			p := &in.Policies[i]
			if !isolates(p, dir) && len(rulesOf(p, dir)) == 0 {
				continue
			}
			pods := a.targetPodsSelected(i)
			if pods == 0 {
				continue
			}
			rules := rulesOf(p, dir)
			if len(rules) == 0 {
				paths = append(paths, Path{Direction: dir, Policy: p.Name, Pods: pods, Peers: "none (deny)", Ports: "-", Declared: true})
			}
			for _, r := range rules {
				v := a.ruleVerdict(dir, r, p.Namespace)
				paths = append(paths, Path{
					Direction: dir, Policy: p.Name, Pods: pods, Peers: describePeers(dir, r.peers, p.Namespace),
					Ports: describePorts(r.ports), Declared: v.covered, Latent: v.latent,
				})
			}
		}
		if open := a.unselected(dir); open > 0 {
			peers := fmt.Sprintf("all sources (%d pods selected by no ingress policy)", open)
			if dir == Egress {
				peers = fmt.Sprintf("all destinations (%d pods selected by no egress policy)", open)
			}
			paths = append(paths, Path{Direction: dir, Pods: open, Peers: peers, Ports: "all ports"})
		}
	}
	return paths
}
