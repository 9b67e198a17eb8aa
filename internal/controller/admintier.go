package controller

import (
	"context"
	"fmt"
	"sync"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	anpv1alpha1 "sigs.k8s.io/network-policy-api/apis/v1alpha1"
	cnpv1alpha2 "sigs.k8s.io/network-policy-api/apis/v1alpha2"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/adminpolicy"
	"github.com/isolator-dev/isolator/internal/analysis"
	"github.com/isolator-dev/isolator/internal/intent"
	"github.com/isolator-dev/isolator/internal/status"
)

// The guard's dataplane layer is an admin-tier policy per guarded
// WorkloadIsolation; every admin-tier policy is read for the analysis.
// +kubebuilder:rbac:groups=policy.networking.k8s.io,resources=adminnetworkpolicies;clusternetworkpolicies,verbs=get;list;watch;create;patch;delete

// adminTier is what the reconciler keeps for the guard's dataplane layer.
type adminTier struct {
	// served says which admin-tier APIs the cluster serves (at start).
	served adminpolicy.Served
	// mu serialises priority allocation, so that two guarded
	// WorkloadIsolations reconciled at once never take the same priority.
	mu sync.Mutex
	// written remembers, per WorkloadIsolation UID, the priority of the
	// policy last written, until the cache holds it.
	written map[types.UID]int32
}

// adminServed reports which admin-tier APIs the cluster serves.
func adminServed(mapper meta.RESTMapper) adminpolicy.Served {
	_, anp := mapper.RESTMapping(adminpolicy.ANPGVK.GroupKind(), adminpolicy.ANPGVK.Version)
	_, cnp := mapper.RESTMapping(adminpolicy.CNPGVK.GroupKind(), adminpolicy.CNPGVK.Version)
	return adminpolicy.Served{AdminNetworkPolicy: anp == nil, ClusterNetworkPolicy: cnp == nil}
}

// adminPolicies lists the cluster's admin-tier policies of the APIs it
// serves, read-only from the cache.
func (r *WorkloadIsolationReconciler) adminPolicies(ctx context.Context) ([]anpv1alpha1.AdminNetworkPolicy, []cnpv1alpha2.ClusterNetworkPolicy, error) {
	var anps []anpv1alpha1.AdminNetworkPolicy
	var cnps []cnpv1alpha2.ClusterNetworkPolicy
	if r.admin.served.AdminNetworkPolicy {
		list := &anpv1alpha1.AdminNetworkPolicyList{}
		if err := r.List(ctx, list, client.UnsafeDisableDeepCopy); err != nil {
			return nil, nil, fmt.Errorf("listing AdminNetworkPolicies: %w", err)
		}
		anps = list.Items
	}
	if r.admin.served.ClusterNetworkPolicy {
		list := &cnpv1alpha2.ClusterNetworkPolicyList{}
		if err := r.List(ctx, list, client.UnsafeDisableDeepCopy); err != nil {
			return nil, nil, fmt.Errorf("listing ClusterNetworkPolicies: %w", err)
		}
		cnps = list.Items
	}
	return anps, cnps, nil
}

// adminGuard is the outcome of syncAdminTier.
type adminGuard struct {
	layer status.DataplaneGuard
	// own is the guard's policy in place, for the analysis.
	own *adminpolicy.Guard
}

// syncAdminTier brings wi's admin-tier policy in line: written when the
// guard is on, the mode is Enforce and the CNI implements an admin-tier API
// the cluster serves; removed otherwise. It never modifies or deletes a
// policy it did not write (adminpolicy.Owns).
func (r *WorkloadIsolationReconciler) syncAdminTier(ctx context.Context, wi *isolationv1alpha1.WorkloadIsolation, in *intent.Intent,
	outcome status.Outcome, anps []anpv1alpha1.AdminNetworkPolicy, cnps []cnpv1alpha2.ClusterNetworkPolicy) (adminGuard, error) {
	support := adminpolicy.Support{Message: "the CNI is not known yet"}
	if outcome.CNI != nil {
		support = adminpolicy.Choose(outcome.CNI.Name, outcome.CNI.Version, outcome.CNI.Enforces == "True", r.admin.served)
	}
	if err := r.pruneAdmin(ctx, client.ObjectKeyFromObject(wi), wi.UID, anps, cnps); err != nil {
		return adminGuard{}, err
	}
	want := wi.Spec.Guard == isolationv1alpha1.GuardEnforce && outcome.Mode == isolationv1alpha1.ModeEnforce && support.Kind != ""
	for _, kind := range []adminpolicy.Kind{adminpolicy.AdminNetworkPolicy, adminpolicy.ClusterNetworkPolicy} {
		if want && kind == support.Kind {
			continue
		}
		if err := r.deleteAdminPolicy(ctx, kind, wi.UID, anps, cnps); err != nil {
			return adminGuard{}, err
		}
	}
	if !want {
		r.admin.mu.Lock()
		delete(r.admin.written, wi.UID)
		r.admin.mu.Unlock()
		state := isolationv1alpha1.GuardLayerUnavailable
		if support.Kind != "" {
			state = isolationv1alpha1.GuardLayerNotActive // Audit mode
			support.Message += "; nothing is written in Audit mode"
		}
		return adminGuard{layer: status.DataplaneGuard{State: state, Message: support.Message}}, nil
	}
	r.admin.mu.Lock()
	defer r.admin.mu.Unlock()
	name := adminpolicy.Name(wi.UID)
	var current *int32
	taken := map[int32]bool{}
	var have client.Object
	for uid, p := range r.admin.written {
		if uid != wi.UID {
			taken[p] = true
		}
	}
	switch support.Kind {
	case adminpolicy.AdminNetworkPolicy:
		for i := range anps {
			if anps[i].Name == name {
				have, current = &anps[i], &anps[i].Spec.Priority
			} else {
				taken[anps[i].Spec.Priority] = true
			}
		}
	case adminpolicy.ClusterNetworkPolicy:
		for i := range cnps {
			if cnps[i].Name == name {
				have, current = &cnps[i], &cnps[i].Spec.Priority
			} else if cnps[i].Spec.Tier == cnpv1alpha2.AdminTier {
				taken[cnps[i].Spec.Priority] = true
			}
		}
	}
	notActive := func(format string, args ...any) (adminGuard, error) {
		return adminGuard{layer: status.DataplaneGuard{State: isolationv1alpha1.GuardLayerNotActive,
			Message: support.Message + "; " + fmt.Sprintf(format, args...)}}, nil
	}
	if have != nil && !adminpolicy.Owns(have.GetName(), have.GetLabels()) {
		return notActive("%s %s exists and was not created by the operator; it is left untouched", support.Kind, name)
	}
	priority, ok := r.adminPriorities().Allocate(current, taken)
	if !ok {
		return notActive("every priority in %s is taken by another %s; widen the operator's --admin-priorities", r.adminPriorities(), support.Kind)
	}
	desired, err := renderAdmin(support.Kind, in, priority)
	if err != nil {
		return notActive("%v", err)
	}
	if have == nil || !adminUpToDate(have, desired) {
		if err := r.applyAdmin(ctx, desired, have); err != nil {
			return adminGuard{}, err
		}
	}
	r.admin.written[wi.UID] = priority
	object := fmt.Sprintf("%s %s, priority %d", support.Kind, name, priority)
	return adminGuard{
		layer: status.DataplaneGuard{State: isolationv1alpha1.GuardLayerActive, Object: object, Message: support.Message +
			"; the target pods exchange traffic with the declared pods and namespaces only, before any NetworkPolicy is consulted"},
		own: &adminpolicy.Guard{Kind: support.Kind, Name: name, Priority: priority},
	}, nil
}

// adminPriorities returns the configured range, or the default.
func (r *WorkloadIsolationReconciler) adminPriorities() adminpolicy.Priorities {
	if r.AdminPriorities == (adminpolicy.Priorities{}) {
		return adminpolicy.DefaultPriorities
	}
	return r.AdminPriorities
}

// renderAdmin renders wi's policy in the API kind.
func renderAdmin(kind adminpolicy.Kind, in *intent.Intent, priority int32) (client.Object, error) {
	if kind == adminpolicy.AdminNetworkPolicy {
		return adminpolicy.ANP(in, priority)
	}
	return adminpolicy.CNP(in, priority)
}

// adminUpToDate: the same spec, labels and owner annotation.
func adminUpToDate(have, want client.Object) bool {
	for k, v := range want.GetLabels() {
		if have.GetLabels()[k] != v {
			return false
		}
	}
	for k, v := range want.GetAnnotations() {
		if have.GetAnnotations()[k] != v {
			return false
		}
	}
	switch w := want.(type) {
	case *anpv1alpha1.AdminNetworkPolicy:
		h, ok := have.(*anpv1alpha1.AdminNetworkPolicy)
		return ok && equality.Semantic.DeepEqual(h.Spec, w.Spec)
	case *cnpv1alpha2.ClusterNetworkPolicy:
		h, ok := have.(*cnpv1alpha2.ClusterNetworkPolicy)
		return ok && equality.Semantic.DeepEqual(h.Spec, w.Spec)
	}
	return false
}

// applyAdmin creates the policy, or repairs the one in place (a forced
// server-side apply of the operator's fields, with a resourceVersion
// precondition).
func (r *WorkloadIsolationReconciler) applyAdmin(ctx context.Context, desired, have client.Object) error {
	kind := desired.GetObjectKind().GroupVersionKind().Kind
	if have == nil {
		if err := r.Create(ctx, desired, client.FieldOwner(FieldOwner)); err != nil {
			return fmt.Errorf("creating %s %s: %w", kind, desired.GetName(), err)
		}
		return nil
	}
	desired.SetResourceVersion(have.GetResourceVersion())
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(desired)
	if err != nil {
		return err
	}
	if err := r.Apply(ctx, client.ApplyConfigurationFromUnstructured(&unstructured.Unstructured{Object: u}), client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		return fmt.Errorf("repairing %s %s: %w", kind, desired.GetName(), err)
	}
	return nil
}

// deleteAdminPolicy removes the operator's policy of kind for the
// WorkloadIsolation with this UID, if the cache holds one.
func (r *WorkloadIsolationReconciler) deleteAdminPolicy(ctx context.Context, kind adminpolicy.Kind, uid types.UID,
	anps []anpv1alpha1.AdminNetworkPolicy, cnps []cnpv1alpha2.ClusterNetworkPolicy) error {
	name := adminpolicy.Name(uid)
	var obj client.Object
	switch kind {
	case adminpolicy.AdminNetworkPolicy:
		for i := range anps {
			if anps[i].Name == name {
				obj = anps[i].DeepCopy()
			}
		}
	case adminpolicy.ClusterNetworkPolicy:
		for i := range cnps {
			if cnps[i].Name == name {
				obj = cnps[i].DeepCopy()
			}
		}
	}
	if obj == nil || !adminpolicy.Owns(obj.GetName(), obj.GetLabels()) {
		return nil
	}
	return r.deleteOwnedAdmin(ctx, kind, obj)
}

// deleteOwnedAdmin deletes one of the operator's admin-tier policies, as
// long as it is the object that was read.
func (r *WorkloadIsolationReconciler) deleteOwnedAdmin(ctx context.Context, kind adminpolicy.Kind, obj client.Object) error {
	objUID, rv := obj.GetUID(), obj.GetResourceVersion()
	if err := r.Delete(ctx, obj, client.Preconditions{UID: &objUID, ResourceVersion: &rv}); client.IgnoreNotFound(err) != nil && !apierrors.IsConflict(err) {
		return fmt.Errorf("deleting %s %s: %w", kind, obj.GetName(), err)
	}
	return nil
}

// forgetAdmin removes the admin-tier policies of a WorkloadIsolation that is
// gone (or going). A cluster-scoped object cannot have a namespaced owner,
// so garbage collection cannot do it.
func (r *WorkloadIsolationReconciler) forgetAdmin(ctx context.Context, key types.NamespacedName) error {
	if !r.admin.served.AdminNetworkPolicy && !r.admin.served.ClusterNetworkPolicy {
		return nil
	}
	anps, cnps, err := r.adminPolicies(ctx)
	if err != nil {
		return err
	}
	return r.pruneAdmin(ctx, key, "", anps, cnps)
}

// pruneAdmin deletes the operator's admin-tier policies written for the
// WorkloadIsolation key, except those of the incarnation keep (its UID).
// Earlier incarnations' policies are left when the operator did not see
// their deletion.
func (r *WorkloadIsolationReconciler) pruneAdmin(ctx context.Context, key types.NamespacedName, keep types.UID,
	anps []anpv1alpha1.AdminNetworkPolicy, cnps []cnpv1alpha2.ClusterNetworkPolicy) error {
	stale := func(obj client.Object) bool {
		uid := types.UID(obj.GetLabels()[adminpolicy.LabelOwnerUID])
		return adminpolicy.Owns(obj.GetName(), obj.GetLabels()) && adminpolicy.OwnerOf(obj) == key && (keep == "" || uid != keep)
	}
	var objs []client.Object
	var kinds []adminpolicy.Kind
	for i := range anps {
		if stale(&anps[i]) {
			objs, kinds = append(objs, anps[i].DeepCopy()), append(kinds, adminpolicy.AdminNetworkPolicy)
		}
	}
	for i := range cnps {
		if stale(&cnps[i]) {
			objs, kinds = append(objs, cnps[i].DeepCopy()), append(kinds, adminpolicy.ClusterNetworkPolicy)
		}
	}
	for i, obj := range objs {
		r.admin.mu.Lock()
		delete(r.admin.written, types.UID(obj.GetLabels()[adminpolicy.LabelOwnerUID]))
		r.admin.mu.Unlock()
		if err := r.deleteOwnedAdmin(ctx, kinds[i], obj); err != nil {
			return err
		}
	}
	return nil
}

// adminWidenings returns the other admin-tier policies that can admit
// traffic to or from the target, for the analysis.
func adminWidenings(anps []anpv1alpha1.AdminNetworkPolicy, cnps []cnpv1alpha2.ClusterNetworkPolicy, own *adminpolicy.Guard,
	namespace string, namespaces []analysis.Object, pods []analysis.Object) []analysis.AdminPolicy {
	if len(anps) == 0 && len(cnps) == 0 {
		return nil
	}
	target := adminpolicy.Target{Namespace: analysis.Object{Name: namespace}, Pods: pods}
	for _, ns := range namespaces {
		if ns.Name == namespace {
			target.Namespace = ns
		}
	}
	return adminpolicy.Widenings(anps, cnps, own, target)
}

// mapAdminPolicy requests, for an admin-tier policy event, the
// WorkloadIsolation an operator's policy belongs to, and every
// WorkloadIsolation for any other policy (which may widen any of them).
func (r *WorkloadIsolationReconciler) mapAdminPolicy(ctx context.Context, obj client.Object) []reconcile.Request {
	if adminpolicy.Owns(obj.GetName(), obj.GetLabels()) {
		return []reconcile.Request{{NamespacedName: adminpolicy.OwnerOf(obj)}}
	}
	return mapAll(ctx, r.Client)
}
