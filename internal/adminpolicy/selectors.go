package adminpolicy

import (
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
)

// SharedTarget names another guarded WorkloadIsolation among siblings (the
// WorkloadIsolations of wi's namespace) whose target is not provably
// disjoint from wi's, or "". A target not resolved yet counts as shared.
func SharedTarget(wi *isolationv1alpha1.WorkloadIsolation, siblings []isolationv1alpha1.WorkloadIsolation) string {
	mine := resolvedTarget(wi)
	for i := range siblings {
		other := &siblings[i]
		if other.UID == wi.UID || other.Spec.Guard != isolationv1alpha1.GuardEnforce {
			continue
		}
		theirs := resolvedTarget(other)
		if mine == nil || theirs == nil || !Disjoint(*mine, *theirs) {
			return other.Name
		}
	}
	return ""
}

// resolvedTarget is a WorkloadIsolation's target selector as last resolved,
// or its podSelector; nil when neither is known.
func resolvedTarget(wi *isolationv1alpha1.WorkloadIsolation) *metav1.LabelSelector {
	if wi.Status.TargetSelector != nil {
		return wi.Status.TargetSelector
	}
	if wi.Spec.Target.PodSelector != nil {
		return wi.Spec.Target.PodSelector.LabelSelector()
	}
	return nil
}

// Disjoint reports whether two pod selectors provably select no common
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
