package policy

import (
	"fmt"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

// UpToDate reports whether the policy in the cluster (have) already says
// what the generated one (want) says: the same spec, the generated labels
// with their values, and want's controller owner reference. Extra labels or
// annotations added by others do not count as drift; anything that changes
// what the policy allows does.
func UpToDate(have, want *networkingv1.NetworkPolicy) bool {
	for k, v := range want.Labels {
		if have.Labels[k] != v {
			return false
		}
	}
	if !hasOwnerReferences(have, want) {
		return false
	}
	// Semantic equality treats nil and empty slices and maps alike, as the
	// API server's storage does.
	return equality.Semantic.DeepEqual(have.Spec, want.Spec)
}

func hasOwnerReferences(have, want *networkingv1.NetworkPolicy) bool {
	for _, w := range want.OwnerReferences {
		found := false
		for _, h := range have.OwnerReferences {
			if equality.Semantic.DeepEqual(h, w) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// ApplyObject returns the server-side apply request body for a generated
// policy. Unlike the typed object it names every list the operator owns even
// when empty (spec.ingress: [] of a default-deny policy), so that a rule
// someone adds to it conflicts with the operator's ownership and is removed
// by the next forced apply.
func ApplyObject(np *networkingv1.NetworkPolicy) (*unstructured.Unstructured, error) {
	content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(np)
	if err != nil {
		return nil, fmt.Errorf("converting NetworkPolicy %s: %w", np.Name, err)
	}
	u := &unstructured.Unstructured{Object: content}
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(u.Object, "status")
	if len(np.Spec.Ingress) == 0 {
		if err := unstructured.SetNestedSlice(u.Object, []any{}, "spec", "ingress"); err != nil {
			return nil, err
		}
	}
	return u, nil
}
