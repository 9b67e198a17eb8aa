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
//   - label selectors are compared by their requirements (a selector is
//     inside another when its requirements imply the other's), not by the
//     pods that happen to exist, so two differently written selectors that
//     select the same pods may be reported;
//   - named ports are only inside the same named port or a port-less rule,
//     never inside a numeric range (the name could resolve to any number);
//   - an ipBlock is only inside a declared ipBlock, never inside a selector,
//     and a selector never inside an ipBlock (whether pod IPs match ipBlocks
//     depends on the CNI);
//   - a policy without the Ingress policy type, or selecting none of the
//     current target pods, admits nothing to them and is not reported.
//
// Namespace selectors are evaluated against the namespaces that exist now;
// namespaces created or relabelled later are re-analysed by the controller.
package analysis

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Object is the name and labels of a pod or namespace.
type Object struct {
	Name   string
	Labels map[string]string
}

// Input is what Analyze needs.
type Input struct {
	// Namespace of the WorkloadIsolation, its target pods and Policies.
	Namespace string
	// TargetPods are the pods the target selects now.
	TargetPods []Object
	// Namespaces are all namespaces of the cluster, with their labels.
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
	// Policy is the NetworkPolicy's name.
	Policy string
	// WorkloadIsolation names another WorkloadIsolation that generated the
	// policy, if one did.
	WorkloadIsolation string
	// Summary says in a line what the policy opens.
	Summary string
	// Widens is false for a policy of another WorkloadIsolation that
	// selects the same pods without admitting more.
	Widens bool
}

// Report is the result of Analyze.
type Report struct {
	// Exposures lists, in policy name order, the policies that widen the
	// isolation or belong to another WorkloadIsolation selecting the same pods.
	Exposures []Exposure
}

// Isolated reports whether no exposure was found.
func (r Report) Isolated() bool { return len(r.Exposures) == 0 }

// Widened reports whether some policy admits more than declared.
func (r Report) Widened() bool {
	return slices.ContainsFunc(r.Exposures, func(e Exposure) bool { return e.Widens })
}

// Analyze reports the policies that admit ingress to the target pods beyond
// the declared sources and ports.
func Analyze(in Input) Report {
	declared := declaredRules(in.Declared)
	var report Report
	for i := range in.Policies {
		p := &in.Policies[i]
		if !hasIngress(p) || !selectsAny(p, in.TargetPods) {
			continue
		}
		owner := ""
		if in.OwnerOf != nil {
			owner = in.OwnerOf(p)
		}
		var open []string
		for _, rule := range p.Spec.Ingress {
			if !ruleCovered(rule, p.Namespace, declared, in.Namespaces) {
				open = append(open, describeRule(rule, p.Namespace))
			}
		}
		switch {
		case len(open) > 0:
			report.Exposures = append(report.Exposures, Exposure{
				Policy: p.Name, WorkloadIsolation: other(owner, in.Self), Widens: true,
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
	if open := unselected(in); open > 0 {
		// No ingress policy selects these pods, so nothing restricts them
		// (in Audit mode, before the generated policies are written).
		report.Exposures = append(report.Exposures, Exposure{
			Policy: Unselected, Widens: true,
			Summary: fmt.Sprintf("%d target pods are selected by no NetworkPolicy: all sources, all ports", open),
		})
	}
	return report
}

// Unselected is the Exposure.Policy of target pods no ingress policy selects.
const Unselected = "(none)"

// unselected counts the target pods no ingress policy selects.
func unselected(in Input) int {
	open := 0
	for _, pod := range in.TargetPods {
		if !slices.ContainsFunc(in.Policies, func(p networkingv1.NetworkPolicy) bool {
			return hasIngress(&p) && selectsAny(&p, []Object{pod})
		}) {
			open++
		}
	}
	return open
}

func other(owner, self string) string {
	if owner == self {
		return ""
	}
	return owner
}

// declaredRule is one ingress rule of a declared policy.
type declaredRule struct {
	namespace string
	rule      networkingv1.NetworkPolicyIngressRule
}

func declaredRules(policies []networkingv1.NetworkPolicy) []declaredRule {
	var out []declaredRule
	for _, p := range policies {
		if !hasIngress(&p) {
			continue
		}
		for _, r := range p.Spec.Ingress {
			out = append(out, declaredRule{namespace: p.Namespace, rule: r})
		}
	}
	return out
}

func hasIngress(p *networkingv1.NetworkPolicy) bool {
	if len(p.Spec.PolicyTypes) == 0 {
		return true // the API server's default
	}
	return slices.Contains(p.Spec.PolicyTypes, networkingv1.PolicyTypeIngress)
}

func selectsAny(p *networkingv1.NetworkPolicy, pods []Object) bool {
	sel, err := metav1.LabelSelectorAsSelector(&p.Spec.PodSelector)
	if err != nil {
		return true // cannot tell: assume it does
	}
	return slices.ContainsFunc(pods, func(pod Object) bool { return sel.Matches(labels.Set(pod.Labels)) })
}

// ruleCovered reports whether every (source, port) the rule admits is
// admitted by one declared rule.
func ruleCovered(r networkingv1.NetworkPolicyIngressRule, policyNamespace string, declared []declaredRule, namespaces []Object) bool {
	if len(r.From) == 0 {
		// Every source: only a declared rule that also admits every source
		// covers it; declared rules always name their sources.
		return slices.ContainsFunc(declared, func(d declaredRule) bool {
			return len(d.rule.From) == 0 && portsCovered(r.Ports, d.rule.Ports)
		})
	}
	for _, peer := range r.From {
		if !peerCovered(peer, r.Ports, policyNamespace, declared, namespaces) {
			return false
		}
	}
	return true
}

func peerCovered(peer networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort, policyNamespace string, declared []declaredRule, namespaces []Object) bool {
	if peer.IPBlock != nil {
		return slices.ContainsFunc(declared, func(d declaredRule) bool {
			return portsCovered(ports, d.rule.Ports) && slices.ContainsFunc(d.rule.From, func(a networkingv1.NetworkPolicyPeer) bool {
				return a.IPBlock != nil && ipBlockInside(*peer.IPBlock, *a.IPBlock)
			})
		})
	}
	for _, ns := range selectedNamespaces(peer.NamespaceSelector, policyNamespace, namespaces) {
		if !slices.ContainsFunc(declared, func(d declaredRule) bool {
			return portsCovered(ports, d.rule.Ports) && slices.ContainsFunc(d.rule.From, func(a networkingv1.NetworkPolicyPeer) bool {
				return a.IPBlock == nil &&
					slices.Contains(selectedNamespaces(a.NamespaceSelector, d.namespace, namespaces), ns) &&
					selectorInside(peer.PodSelector, a.PodSelector)
			})
		}) {
			return false
		}
	}
	return true
}

// selectedNamespaces returns the names of the namespaces a peer's
// namespaceSelector selects: the policy's own namespace when nil.
func selectedNamespaces(sel *metav1.LabelSelector, policyNamespace string, namespaces []Object) []string {
	if sel == nil {
		return []string{policyNamespace}
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		s = labels.Everything() // cannot tell: assume all
	}
	var out []string
	for _, ns := range namespaces {
		if s.Matches(labels.Set(ns.Labels)) {
			out = append(out, ns.Name)
		}
	}
	return out
}
