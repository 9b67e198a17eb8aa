package adminpolicy

import (
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

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
