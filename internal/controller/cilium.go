package controller

import (
	"context"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/equality"
	kerrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/ciliumpolicy"
	"github.com/isolator-dev/isolator/internal/intent"
	"github.com/isolator-dev/isolator/internal/policy"
	"github.com/isolator-dev/isolator/internal/status"
)

// Generated CiliumNetworkPolicies are owned like the NetworkPolicies.
// +kubebuilder:rbac:groups=cilium.io,resources=ciliumnetworkpolicies,verbs=get;list;watch;create;update;delete

// ciliumServed reports whether the cluster serves CiliumNetworkPolicy.
func ciliumServed(mapper meta.RESTMapper) bool {
	_, err := mapper.RESTMapping(ciliumpolicy.GVK.GroupKind(), ciliumpolicy.GVK.Version)
	return err == nil
}

// onCilium reports whether the detected or configured CNI is Cilium.
func (r *WorkloadIsolationReconciler) onCilium(outcome status.Outcome) bool {
	if !r.CiliumPolicies || outcome.CNI == nil {
		return false
	}
	for _, name := range strings.Split(outcome.CNI.Name, "+") {
		if name == "cilium" {
			return true
		}
	}
	return false
}

// ciliumObjects are the Cilium objects wi's intent needs on Cilium.
func ciliumObjects(in *intent.Intent) ([]*unstructured.Unstructured, error) {
	dns, err := ciliumpolicy.DNSHost(in)
	if err != nil || dns == nil {
		return nil, err
	}
	return []*unstructured.Unstructured{dns}, nil
}

// syncCilium keeps wi's CiliumNetworkPolicies as desired: it creates the
// missing ones, repairs those it owns that drifted, deletes those it owns
// that are no longer desired, and never modifies or deletes one it does not
// own. It reads only when it has something to write or status says it wrote
// something before. It returns the references of the objects in place.
func (r *WorkloadIsolationReconciler) syncCilium(ctx context.Context, wi *isolationv1alpha1.WorkloadIsolation,
	desired []*unstructured.Unstructured) ([]isolationv1alpha1.PolicyReference, *status.Failure, error) {
	names := map[string]*unstructured.Unstructured{}
	for _, d := range desired {
		names[d.GetName()] = d
	}
	for _, ref := range wi.Status.Policies {
		if ref.Kind == ciliumpolicy.Kind {
			if _, ok := names[ref.Name]; !ok {
				names[ref.Name] = nil
			}
		}
	}
	var refs []isolationv1alpha1.PolicyReference
	for name, want := range names {
		have := &unstructured.Unstructured{}
		have.SetGroupVersionKind(ciliumpolicy.GVK)
		err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: wi.Namespace, Name: name}, have)
		found := err == nil
		if err != nil && !kerrors.IsNotFound(err) {
			return refs, nil, fmt.Errorf("reading CiliumNetworkPolicy %s: %w", name, err)
		}
		owned := found && ownsObject(have, wi)
		switch {
		case want == nil && owned:
			uid, rv := have.GetUID(), have.GetResourceVersion()
			if err := r.Delete(ctx, have, client.Preconditions{UID: &uid, ResourceVersion: &rv}); client.IgnoreNotFound(err) != nil {
				return refs, nil, fmt.Errorf("deleting CiliumNetworkPolicy %s: %w", name, err)
			}
		case want == nil:
		case found && !owned:
			return refs, &status.Failure{Reason: isolationv1alpha1.ReasonNameConflict, Stalled: true, Message: fmt.Sprintf(
				"CiliumNetworkPolicy %s/%s exists and was not created by this WorkloadIsolation; it is left untouched. Rename the WorkloadIsolation or remove that object", wi.Namespace, name)}, nil
		case !found:
			if err := r.Create(ctx, want.DeepCopy()); err != nil {
				return refs, nil, fmt.Errorf("creating CiliumNetworkPolicy %s: %w", name, err)
			}
			refs = append(refs, isolationv1alpha1.PolicyReference{Kind: ciliumpolicy.Kind, Name: name})
		default:
			if !upToDate(have, want) {
				repaired := want.DeepCopy()
				repaired.SetResourceVersion(have.GetResourceVersion())
				if err := r.Update(ctx, repaired); err != nil {
					return refs, nil, fmt.Errorf("repairing CiliumNetworkPolicy %s: %w", name, err)
				}
			}
			refs = append(refs, isolationv1alpha1.PolicyReference{Kind: ciliumpolicy.Kind, Name: name})
		}
	}
	return refs, nil, nil
}

// ownsObject: controlled by wi (its UID), and the owner label, if any, names
// wi.
func ownsObject(obj metav1.Object, wi *isolationv1alpha1.WorkloadIsolation) bool {
	if !metav1.IsControlledBy(obj, wi) {
		return false
	}
	label, ok := obj.GetLabels()[policy.LabelOwner]
	return !ok || label == policy.OwnerLabelValue(wi.Name)
}

// upToDate: the same spec, and the generated labels and owner reference.
func upToDate(have, want *unstructured.Unstructured) bool {
	for k, v := range want.GetLabels() {
		if have.GetLabels()[k] != v {
			return false
		}
	}
	if !metav1.IsControlledBy(have, &metav1.ObjectMeta{UID: want.GetOwnerReferences()[0].UID}) {
		return false
	}
	return apierrors.Semantic.DeepEqual(have.Object["spec"], want.Object["spec"])
}

// unstructuredReferences names objects for status.policies.
func unstructuredReferences(objs []*unstructured.Unstructured) []isolationv1alpha1.PolicyReference {
	refs := make([]isolationv1alpha1.PolicyReference, 0, len(objs))
	for _, o := range objs {
		refs = append(refs, isolationv1alpha1.PolicyReference{Kind: o.GetKind(), Name: o.GetName()})
	}
	return refs
}
