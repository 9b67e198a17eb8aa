package analysis

import (
	"fmt"
	"math"
)

// Path is one way into the target: the sources and ports one ingress rule
// of one policy admits to some of the target pods.
type Path struct {
	// Policy is the NetworkPolicy's name; empty for pods no policy isolates.
	Policy string
	// Pods is how many target pods the path reaches.
	Pods int
	// Sources and Ports say what is admitted.
	Sources string
	Ports   string
	// Declared is true when a declared rule admits at least as much.
	Declared bool
	// Latent is true for an undeclared path that admits no source that
	// exists now beyond the declared ones (see Exposure.Latent).
	Latent bool
}

// Explain lists every way into the target pods, given all policies of the
// namespace: one path per ingress rule of each policy that selects target
// pods (whatever its policyTypes say, see the package doc), plus one "all
// sources" path for target pods no ingress policy selects (they are not
// isolated at all). It examines every policy, without a budget: it serves
// one person's question, not the controller.
func Explain(in Input) []Path {
	in.Budget = math.MaxInt
	a := newAnalyzer(in)
	var paths []Path
	for i := range in.Policies {
		p := &in.Policies[i]
		if !isolatesIngress(p) && len(p.Spec.Ingress) == 0 {
			continue
		}
		pods := a.targetPodsSelected(i)
		if pods == 0 {
			continue
		}
		if len(p.Spec.Ingress) == 0 {
			paths = append(paths, Path{Policy: p.Name, Pods: pods, Sources: "none (deny)", Ports: "-", Declared: true})
		}
		for _, rule := range p.Spec.Ingress {
			sources := "all sources"
			if len(rule.From) > 0 {
				sources = ""
				for k, peer := range rule.From {
					if k > 0 {
						sources += " or "
					}
					sources += describePeer(peer, p.Namespace)
				}
			}
			v := a.ruleVerdict(rule, p.Namespace)
			paths = append(paths, Path{
				Policy: p.Name, Pods: pods, Sources: sources, Ports: describePorts(rule.Ports),
				Declared: v.covered, Latent: v.latent,
			})
		}
	}
	if open := a.unselected(); open > 0 {
		paths = append(paths, Path{Pods: open, Sources: fmt.Sprintf("all sources (%d pods selected by no ingress policy)", open), Ports: "all ports"})
	}
	return paths
}
