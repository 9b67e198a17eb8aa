package adminpolicy

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/intent"
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
		if mine == nil || theirs == nil || !intent.Disjoint(*mine, *theirs) {
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
