// Package analysis finds what re-opens an isolated workload. NetworkPolicies
// are additive: any policy that selects the target pods and allows more
// sources or ports than the WorkloadIsolation declares widens the isolation,
// whoever wrote it. The same holds for egress: once the declared policies
// isolate the target's egress, any policy that selects the target pods and
// allows more destinations or ports widens it. Analyze compares every policy
// of the target's namespace with the declared (generated) policies, in both
// directions, and reports each one that admits more, with its direction.
// When the declared policies do not isolate egress, the target's egress is
// open anyway and egress rules are not analysed. It is pure: no client, no
// context, no clock.
//
// It never misses a widening: a policy is reported unless each of its rules
// is proven to admit nothing beyond a declared rule of the same direction.
// Where a proof is out of reach it is conservative and reports the policy (a
// false positive, never a false negative):
//   - label selectors, of pods and of namespaces alike, are compared by their
//     requirements (a selector is inside another when its requirements imply
//     the other's), not by the pods or namespaces that happen to exist, so
//     two differently written selectors that select the same objects may be
//     reported. Namespace selectors use one fact the API server guarantees:
//     every namespace carries kubernetes.io/metadata.name set to its own
//     name, so a peer without namespaceSelector (the policy's own namespace)
//     is the selector kubernetes.io/metadata.name=<namespace>. Sources and
//     destinations are compared alike;
//   - named ports are only inside the same named port or a port-less rule,
//     never inside a numeric range (the name could resolve to any number);
//   - an ipBlock is only inside one declared ipBlock: its CIDR inside the
//     declared CIDR, and every declared exception that overlaps it inside
//     one of its own exceptions. An ipBlock that only several declared
//     ipBlocks cover together, or whose exceptions only together cover a
//     declared exception, is reported. An ipBlock is never inside a
//     selector, and a selector never inside an ipBlock (whether pod IPs
//     match ipBlocks depends on the CNI);
//   - spec.ingress and spec.egress are read whatever spec.policyTypes says:
//     Cilium and the AWS network policy agent enforce the rules of a policy
//     whose policyTypes omit their direction, so such rules can open the
//     target. A policy isolates pods in a direction (counts as selecting
//     them) only when its policyTypes include that direction, as the API
//     defines; the pods a policy without that type selects are not thereby
//     isolated. The declared rules are taken as the intent only in the
//     directions their policies isolate.
//
// Because namespace selectors are compared by their requirements, a policy
// that admits namespaces which do not exist yet is reported too: it is a
// standing grant that opens the workload the moment such a namespace is
// created or labelled. Every widening says whether it is open now (some
// existing namespace it admits is not admitted by the declared rules, or it
// admits addresses or every peer) or latent (it admits no existing source or
// destination beyond the declared ones). Both widen the isolation.
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

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"
)

// Object is the name and labels of a pod or namespace.
type Object struct {
	Name   string
	Labels map[string]string
}

// DefaultBudget is the evaluation steps an analysis may take when
// Input.Budget is 0. A WorkloadIsolation at the CRD's maximum sizes (32
// ingress rules of 32 sources and 32 ports, and as many egress rules), in a
// namespace that also holds three more of them and a hundred other
// policies, in a cluster of a hundred namespaces, takes about 320,000 steps
// for both directions (see BenchmarkAnalyzeMaxSize), so the default leaves
// room for about six times that.
const DefaultBudget = 2_000_000

// NamespaceLabels are ns's labels with the one every namespace carries,
// kubernetes.io/metadata.name set to its name.
func NamespaceLabels(ns Object) map[string]string {
	return labels.Merge(ns.Labels, labels.Set{corev1.LabelMetadataName: ns.Name})
}

// Matches evaluates a label selector on a label set; one that cannot be
// parsed matches (what cannot be read is assumed to select).
func Matches(sel *metav1.LabelSelector, set map[string]string) bool {
	s, err := metav1.LabelSelectorAsSelector(sel)
	return err != nil || s.Matches(labels.Set(set))
}

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
	// Admin are the admin-tier policies (AdminNetworkPolicy, or
	// ClusterNetworkPolicy of the Admin tier) that select target pods and
	// come before anything that would deny: their Allow rules admit
	// traffic whatever the NetworkPolicies say. They are analysed like
	// policies that select every target pod and isolate none.
	Admin []AdminPolicy
	// Budget is the most evaluation steps (one selector requirement, port
	// or label match each) the analysis may take; 0 means DefaultBudget.
	// When it runs out the report is Incomplete.
	Budget int
}

// AdminPolicy is the part of an admin-tier policy that can widen: its
// Allow (Accept) rules, spelled as NetworkPolicy rules whose peers always
// name their namespaces.
type AdminPolicy struct {
	// Name is how exposures name the policy, such as
	// "AdminNetworkPolicy/allow-monitoring".
	Name string
	// WorkloadIsolation names the WorkloadIsolation of the namespace whose
	// guard wrote the policy, if one did: one that admits nothing more is
	// reported like another WorkloadIsolation's NetworkPolicy over the same
	// pods.
	WorkloadIsolation string
	Ingress           []networkingv1.NetworkPolicyIngressRule
	Egress            []networkingv1.NetworkPolicyEgressRule
}

// adminTier is the policy type of an admin-tier policy seen as a
// NetworkPolicy: it isolates no direction.
const adminTier networkingv1.PolicyType = "AdminTier"

// withAdmin returns the policies to analyse: the admin-tier ones, as
// NetworkPolicies of the namespace selecting every pod, then the others.
func withAdmin(in Input) []networkingv1.NetworkPolicy {
	if len(in.Admin) == 0 {
		return in.Policies
	}
	out := make([]networkingv1.NetworkPolicy, 0, len(in.Admin)+len(in.Policies))
	for _, p := range in.Admin {
		var owners []metav1.OwnerReference
		if p.WorkloadIsolation != "" {
			owners = []metav1.OwnerReference{{Kind: "WorkloadIsolation", Name: p.WorkloadIsolation, Controller: ptr.To(true)}}
		}
		out = append(out, networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: in.Namespace, OwnerReferences: owners},
			Spec: networkingv1.NetworkPolicySpec{
				PolicyTypes: []networkingv1.PolicyType{adminTier}, Ingress: p.Ingress, Egress: p.Egress,
			},
		})
	}
	return append(out, in.Policies...)
}

// ControllingIsolation is an Input.OwnerOf for policies in the cluster: the
// WorkloadIsolation named by the policy's controller owner reference.
func ControllingIsolation(np *networkingv1.NetworkPolicy) string {
	if ref := metav1.GetControllerOf(np); ref != nil && ref.Kind == "WorkloadIsolation" {
		return ref.Name
	}
	return ""
}

// Direction is the direction of traffic an exposure or path concerns.
type Direction string

// The directions, spelled as in status.exposure[].direction.
const (
	// Ingress is traffic to the target pods.
	Ingress Direction = "Ingress"
	// Egress is traffic from the target pods.
	Egress Direction = "Egress"
)

// Exposure is one policy that widens the isolation in one direction.
type Exposure struct {
	// Policy is the NetworkPolicy's name, Unselected for target pods no
	// policy isolates (in Direction), or Incomplete when the analysis ran
	// out of budget. A policy that widens both directions gives two
	// exposures.
	Policy string
	// WorkloadIsolation names another WorkloadIsolation that generated the
	// policy, if one did.
	WorkloadIsolation string
	// Direction is Ingress when the policy lets more reach the target pods,
	// Egress when it lets them reach more; empty for the Incomplete entry.
	Direction Direction
	// Summary says in a line what the policy opens; that of an egress
	// exposure says "egress to".
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
	// Exposures lists, in policy name order (Ingress before Egress for
	// the same policy), the policies that widen the isolation or belong to
	// another WorkloadIsolation selecting the same pods; then the
	// Unselected (Ingress, then Egress) and Incomplete entries, if any.
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

// Unselected is the Exposure.Policy of target pods no policy isolates in
// the exposure's direction (egress only when egress is declared).
const Unselected = "(none)"

// Incomplete is the Exposure.Policy that stands for the policies an
// incomplete analysis did not examine.
const Incomplete = "(incomplete)"

// latentNote ends the summary of a latent widening.
const latentNote = " (latent: admits no existing namespace beyond the declared ones, but any namespace created or labelled to match)"

// Analyze reports the policies that admit ingress to the target pods beyond
// the declared sources and ports and, when the declared policies isolate
// egress, those that let the target pods reach more than the declared
// destinations and ports.
func Analyze(in Input) Report {
	in.Policies = withAdmin(in)
	a := newAnalyzer(in)
	var report Report
	for i := range in.Policies {
		p := &in.Policies[i]
		if a.exhausted() {
			break
		}
		directions := a.directions(p)
		if len(directions) == 0 || a.targetPodsSelected(i) == 0 {
			continue
		}
		owner := ""
		if in.OwnerOf != nil {
			owner = in.OwnerOf(p)
		}
		var found []Exposure
		for _, dir := range directions {
			var open []string
			latent := true
			for _, r := range rulesOf(p, dir) {
				v := a.ruleVerdict(dir, r, p.Namespace)
				if v.covered {
					continue
				}
				text := describeRule(dir, r, p.Namespace)
				if v.latent {
					text += latentNote
				} else {
					latent = false
				}
				open = append(open, text)
			}
			if len(open) > 0 {
				found = append(found, Exposure{
					Policy: p.Name, WorkloadIsolation: other(owner, in.Self), Direction: dir, Widens: true, Latent: latent,
					Summary: p.Name + ": " + strings.Join(open, "; "),
				})
			}
		}
		if a.exhausted() {
			break // the verdicts of this policy are not reliable
		}
		if len(found) == 0 && owner != "" && owner != in.Self {
			found = append(found, Exposure{
				Policy: p.Name, WorkloadIsolation: owner, Direction: directions[0],
				Summary: fmt.Sprintf("%s: generated for WorkloadIsolation %s, which selects the same pods", p.Name, owner),
			})
		}
		report.Exposures = append(report.Exposures, found...)
	}
	sort.SliceStable(report.Exposures, func(i, j int) bool {
		x, y := report.Exposures[i], report.Exposures[j]
		if x.Policy != y.Policy {
			return x.Policy < y.Policy
		}
		return x.Direction == Ingress && y.Direction == Egress
	})
	if !a.exhausted() {
		if open := a.unselected(Ingress); open > 0 {
			// No ingress policy selects these pods, so nothing restricts them
			// (in Audit mode, before the generated policies are written).
			report.Exposures = append(report.Exposures, Exposure{
				Policy: Unselected, Direction: Ingress, Widens: true,
				Summary: fmt.Sprintf("%d target pods are selected by no NetworkPolicy: all sources, all ports", open),
			})
		}
	}
	if !a.exhausted() && a.egressDeclared {
		if open := a.unselected(Egress); open > 0 {
			report.Exposures = append(report.Exposures, Exposure{
				Policy: Unselected, Direction: Egress, Widens: true,
				Summary: fmt.Sprintf("%d target pods are selected by no egress NetworkPolicy: egress to all destinations, all ports", open),
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

// isolatesEgress reports whether a policy isolates the pods it selects for
// egress, as the API defines it: its policyTypes include Egress (or are
// empty and it has egress rules, which is when the API server's defaulting
// adds Egress).
func isolatesEgress(p *networkingv1.NetworkPolicy) bool {
	if len(p.Spec.PolicyTypes) == 0 {
		return len(p.Spec.Egress) > 0
	}
	return slices.Contains(p.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
}

// isolates reports whether a policy isolates the pods it selects in dir.
func isolates(p *networkingv1.NetworkPolicy, dir Direction) bool {
	if dir == Egress {
		return isolatesEgress(p)
	}
	return isolatesIngress(p)
}

// directions returns the directions in which a policy matters to the
// analysis: those it isolates or has rules for (rules count whatever
// policyTypes say, see the package doc). Egress matters only when the
// declared policies isolate egress: otherwise the target's egress is not
// isolated and no policy can widen it.
func (a *analyzer) directions(p *networkingv1.NetworkPolicy) []Direction {
	var out []Direction
	if isolatesIngress(p) || len(p.Spec.Ingress) > 0 {
		out = append(out, Ingress)
	}
	if a.egressDeclared && (isolatesEgress(p) || len(p.Spec.Egress) > 0) {
		out = append(out, Egress)
	}
	return out
}

// rule is an ingress or egress rule: the peers (sources or destinations;
// none means all) and ports it admits.
type rule struct {
	peers []networkingv1.NetworkPolicyPeer
	ports []networkingv1.NetworkPolicyPort
}

// rulesOf returns a policy's rules in dir.
func rulesOf(p *networkingv1.NetworkPolicy, dir Direction) []rule {
	if dir == Egress {
		out := make([]rule, len(p.Spec.Egress))
		for i, r := range p.Spec.Egress {
			out[i] = rule{peers: r.To, ports: r.Ports}
		}
		return out
	}
	out := make([]rule, len(p.Spec.Ingress))
	for i, r := range p.Spec.Ingress {
		out[i] = rule{peers: r.From, ports: r.Ports}
	}
	return out
}
