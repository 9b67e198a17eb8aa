// Package analysis finds what re-opens an isolated workload. NetworkPolicies
// are additive: any policy that selects the target pods and allows more
// sources or ports than the WorkloadIsolation declares widens the isolation,
// whoever wrote it. Analyze compares every policy of the target's namespace
// with the declared (generated) policies and reports each one that admits
// more. It is pure: no client, no context, no clock.
//
// It never misses a widening: a policy is reported unless each of its rules
// is proven to admit nothing beyond a declared rule. Where a proof is out of
// reach it is conservative and reports the policy (a false positive, never a
// false negative):
//   - label selectors, of pods and of namespaces alike, are compared by their
//     requirements (a selector is inside another when its requirements imply
//     the other's), not by the pods or namespaces that happen to exist, so
//     two differently written selectors that select the same objects may be
//     reported. Namespace selectors use one fact the API server guarantees:
//     every namespace carries kubernetes.io/metadata.name set to its own
//     name, so a peer without namespaceSelector (the policy's own namespace)
//     is the selector kubernetes.io/metadata.name=<namespace>;
//   - named ports are only inside the same named port or a port-less rule,
//     never inside a numeric range (the name could resolve to any number);
//   - an ipBlock is only inside a declared ipBlock, never inside a selector,
//     and a selector never inside an ipBlock (whether pod IPs match ipBlocks
//     depends on the CNI);
//   - spec.ingress is read whatever spec.policyTypes says: Cilium and the
//     AWS network policy agent enforce the ingress rules of a policy whose
//     policyTypes omit Ingress, so such rules can open the target. A policy
//     isolates pods for ingress (counts as selecting them) only when its
//     policyTypes include Ingress, as the API defines; the pods a policy
//     without Ingress type selects are not thereby isolated.
//
// Because namespace selectors are compared by their requirements, a policy
// that admits namespaces which do not exist yet is reported too: it is a
// standing grant that opens the workload the moment such a namespace is
// created or labelled. Every widening says whether it is open now (some
// existing namespace it admits is not admitted by the declared rules, or it
// admits addresses or every source) or latent (it admits no existing source
// beyond the declared ones). Both widen the isolation.
//
// The work is bounded: selectors, ports and namespace matches are computed
// once per distinct selector, so an analysis is near-linear in its inputs,
// and Input.Budget caps the evaluation steps. An analysis that runs out of
// budget says so in Report.Incomplete and is never reported as isolated.
package analysis

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Object is the name and labels of a pod or namespace.
type Object struct {
	Name   string
	Labels map[string]string
}

// DefaultBudget is the evaluation steps an analysis may take when
// Input.Budget is 0. A WorkloadIsolation at the CRD's maximum sizes (32
// rules of 32 sources and 32 ports), in a namespace that also holds three
// more of them and a hundred other policies, in a cluster of a hundred
// namespaces, takes about 170,000 steps (see BenchmarkAnalyzeMaxSize), so
// the default leaves room for about ten times that.
const DefaultBudget = 2_000_000

// Input is what Analyze needs.
type Input struct {
	// Namespace of the WorkloadIsolation, its target pods and Policies.
	Namespace string
	// TargetPods are the pods the target selects now.
	TargetPods []Object
	// Namespaces are all namespaces of the cluster, with their labels. They
	// decide only whether a widening is open now or latent.
	Namespaces []Object
	// Policies are all NetworkPolicies of Namespace, as in the cluster.
	Policies []networkingv1.NetworkPolicy
	// Declared are the policies generated for the WorkloadIsolation: what
	// it allows is the intent.
	Declared []networkingv1.NetworkPolicy
	// OwnerOf returns the WorkloadIsolation that generated a policy, or ""
	// for a policy no WorkloadIsolation generated.
	OwnerOf func(*networkingv1.NetworkPolicy) string
	// Self is the name of the WorkloadIsolation analysed.
	Self string
	// Budget is the most evaluation steps (one selector requirement, port
	// or label match each) the analysis may take; 0 means DefaultBudget.
	// When it runs out the report is Incomplete.
	Budget int
}

// ControllingIsolation is an Input.OwnerOf for policies in the cluster: the
// WorkloadIsolation named by the policy's controller owner reference.
func ControllingIsolation(np *networkingv1.NetworkPolicy) string {
	if ref := metav1.GetControllerOf(np); ref != nil && ref.Kind == "WorkloadIsolation" {
		return ref.Name
	}
	return ""
}

// Exposure is one policy that widens the isolation.
type Exposure struct {
	// Policy is the NetworkPolicy's name, Unselected for target pods no
	// policy isolates, or Incomplete when the analysis ran out of budget.
	Policy string
	// WorkloadIsolation names another WorkloadIsolation that generated the
	// policy, if one did.
	WorkloadIsolation string
	// Summary says in a line what the policy opens.
	Summary string
	// Widens is false for a policy of another WorkloadIsolation that
	// selects the same pods without admitting more. It is true for open and
	// latent widenings alike.
	Widens bool
	// Latent is true for a widening that admits no source that exists now
	// beyond the declared ones: it admits only namespaces that do not exist
	// yet (or do not carry the labels yet), and opens the target as soon as
	// one does. False for a widening that is open now.
	Latent bool
}

// Report is the result of Analyze.
type Report struct {
	// Exposures lists, in policy name order, the policies that widen the
	// isolation or belong to another WorkloadIsolation selecting the same
	// pods; then the Unselected and Incomplete entries, if any.
	Exposures []Exposure
	// Incomplete, when not empty, says why the analysis stopped before it
	// had examined every policy (Input.Budget ran out). An incomplete report
	// proves nothing: callers must treat it as not isolated (fail closed).
	// Isolated returns false and Widened true for it, and Exposures ends
	// with an entry whose Policy is Incomplete.
	Incomplete string
	// Steps is how many evaluation steps the analysis took (see
	// Input.Budget).
	Steps int
}

// Isolated reports whether the analysis was complete and found no exposure.
func (r Report) Isolated() bool { return len(r.Exposures) == 0 && r.Incomplete == "" }

// Widened reports whether some policy admits more than declared, now or
// latently, or whether the analysis could not tell (Incomplete).
func (r Report) Widened() bool {
	return r.Incomplete != "" || slices.ContainsFunc(r.Exposures, func(e Exposure) bool { return e.Widens })
}

// Unselected is the Exposure.Policy of target pods no ingress policy selects.
const Unselected = "(none)"

// Incomplete is the Exposure.Policy that stands for the policies an
// incomplete analysis did not examine.
const Incomplete = "(incomplete)"

// latentNote ends the summary of a latent widening.
const latentNote = " (latent: admits no existing namespace beyond the declared ones, but any namespace created or labelled to match)"

// Analyze reports the policies that admit ingress to the target pods beyond
// the declared sources and ports.
func Analyze(in Input) Report {
	a := newAnalyzer(in)
	var report Report
	for i := range in.Policies {
		p := &in.Policies[i]
		if a.exhausted() {
			break
		}
		if !isolatesIngress(p) && len(p.Spec.Ingress) == 0 {
			continue
		}
		if a.targetPodsSelected(i) == 0 {
			continue
		}
		owner := ""
		if in.OwnerOf != nil {
			owner = in.OwnerOf(p)
		}
		var open []string
		latent := true
		for _, rule := range p.Spec.Ingress {
			v := a.ruleVerdict(rule, p.Namespace)
			if v.covered {
				continue
			}
			text := describeRule(rule, p.Namespace)
			if v.latent {
				text += latentNote
			} else {
				latent = false
			}
			open = append(open, text)
		}
		if a.exhausted() {
			break // the verdicts of this policy are not reliable
		}
		switch {
		case len(open) > 0:
			report.Exposures = append(report.Exposures, Exposure{
				Policy: p.Name, WorkloadIsolation: other(owner, in.Self), Widens: true, Latent: latent,
				Summary: p.Name + ": " + strings.Join(open, "; "),
			})
		case owner != "" && owner != in.Self:
			report.Exposures = append(report.Exposures, Exposure{
				Policy: p.Name, WorkloadIsolation: owner,
				Summary: fmt.Sprintf("%s: generated for WorkloadIsolation %s, which selects the same pods", p.Name, owner),
			})
		}
	}
	sort.Slice(report.Exposures, func(i, j int) bool { return report.Exposures[i].Policy < report.Exposures[j].Policy })
	if !a.exhausted() {
		if open := a.unselected(); open > 0 {
			// No ingress policy selects these pods, so nothing restricts them
			// (in Audit mode, before the generated policies are written).
			report.Exposures = append(report.Exposures, Exposure{
				Policy: Unselected, Widens: true,
				Summary: fmt.Sprintf("%d target pods are selected by no NetworkPolicy: all sources, all ports", open),
			})
		}
	}
	if a.exhausted() {
		report.Incomplete = fmt.Sprintf("the analysis stopped after %d evaluation steps (its budget) without examining every NetworkPolicy of namespace %s; the isolation is not proven", a.budget, in.Namespace)
		report.Exposures = append(report.Exposures, Exposure{Policy: Incomplete, Widens: true, Summary: report.Incomplete})
	}
	report.Steps = a.steps
	return report
}

func other(owner, self string) string {
	if owner == self {
		return ""
	}
	return owner
}

// isolatesIngress reports whether a policy isolates the pods it selects for
// ingress, as the API defines it: its policyTypes include Ingress (or are
// empty, before the API server's defaulting, which always adds Ingress).
func isolatesIngress(p *networkingv1.NetworkPolicy) bool {
	return len(p.Spec.PolicyTypes) == 0 || slices.Contains(p.Spec.PolicyTypes, networkingv1.PolicyTypeIngress)
}
