package analysis

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
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
}

// Explain lists every way into the target pods, given all policies of the
// namespace: one path per ingress rule of each policy that selects target
// pods, plus one "all sources" path for target pods no ingress policy
// selects (they are not isolated at all).
func Explain(in Input) []Path {
	declared := declaredRules(in.Declared)
	var paths []Path
	isolated := make([]bool, len(in.TargetPods))
	for i := range in.Policies {
		p := &in.Policies[i]
		if !hasIngress(p) {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(&p.Spec.PodSelector)
		if err != nil {
			continue
		}
		pods := 0
		for j, pod := range in.TargetPods {
			if sel.Matches(labels.Set(pod.Labels)) {
				pods++
				isolated[j] = true
			}
		}
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
			paths = append(paths, Path{
				Policy: p.Name, Pods: pods, Sources: sources, Ports: describePorts(rule.Ports),
				Declared: ruleCovered(rule, p.Namespace, declared, in.Namespaces),
			})
		}
	}
	open := 0
	for _, ok := range isolated {
		if !ok {
			open++
		}
	}
	if open > 0 {
		paths = append(paths, Path{Pods: open, Sources: fmt.Sprintf("all sources (%d pods selected by no ingress policy)", open), Ports: "all ports"})
	}
	return paths
}
