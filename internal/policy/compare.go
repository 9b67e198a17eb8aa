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
// policy. Unlike the typed object it names every field of the spec even when
// empty (spec.ingress: [] of a default-deny policy, spec.egress: []), so that
// the operator owns the whole spec: a rule someone adds, in either direction,
// conflicts with the operator's ownership and is removed by the next forced
// apply, and a repair always converges. When have is not nil, its
// resourceVersion is a precondition: the apply fails with a conflict if the
// policy changed (or was replaced) since it was read.
func ApplyObject(np, have *networkingv1.NetworkPolicy) (*unstructured.Unstructured, error) {
	content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(np)
	if err != nil {
		return nil, fmt.Errorf("converting NetworkPolicy %s: %w", np.Name, err)
	}
	u := &unstructured.Unstructured{Object: content}
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(u.Object, "status")
	for _, list := range []string{"ingress", "egress"} {
		if _, found, _ := unstructured.NestedSlice(u.Object, "spec", list); !found {
			if err := unstructured.SetNestedSlice(u.Object, []any{}, "spec", list); err != nil {
				return nil, err
			}
		}
	}
	if have != nil {
		u.SetResourceVersion(have.ResourceVersion)
	}
	return u, nil
}
