package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	anpv1alpha1 "sigs.k8s.io/network-policy-api/apis/v1alpha1"
	cnpv1alpha2 "sigs.k8s.io/network-policy-api/apis/v1alpha2"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/adminpolicy"
	"github.com/isolator-dev/isolator/internal/analysis"
	"github.com/isolator-dev/isolator/internal/cni"
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
	// WorkloadIsolations of a namespace reconciled at once never take the
	// same priority.
	mu sync.Mutex
	// written remembers, per WorkloadIsolation UID, the namespace and
	// priority of the policy last written, until it is removed.
	written map[types.UID]writtenAdmin
	// cnpVersion is the ClusterNetworkPolicy version read and written:
	// v1alpha2 where served, else v1beta1 (the same schema).
	cnpVersion string
}

type writtenAdmin struct {
	namespace string
	priority  int32
}

// adminServed reports which admin-tier APIs the cluster serves. Only a
// definite "no such kind" counts as not served: a discovery failure fails
// the start, so that admin-tier policies are never silently left out of
// the analysis.
func adminServed(mapper meta.RESTMapper) (adminpolicy.Served, string, error) {
	served := func(gk schema.GroupKind, versions ...string) (bool, error) {
		_, err := mapper.RESTMapping(gk, versions...)
		switch {
		case err == nil:
			return true, nil
		case meta.IsNoMatchError(err):
			return false, nil
		}
		return false, fmt.Errorf("discovering %s: %w", gk.Kind, err)
	}
	var out adminpolicy.Served
	var err error
	if out.AdminNetworkPolicy, err = served(adminpolicy.ANPGVK.GroupKind(), adminpolicy.ANPGVK.Version); err != nil {
		return out, "", err
	}
	for _, version := range []string{adminpolicy.CNPGVK.Version, cnpv1beta1.GroupVersion.Version} {
		if out.ClusterNetworkPolicy, err = served(adminpolicy.CNPGVK.GroupKind(), version); err != nil || out.ClusterNetworkPolicy {
			return out, version, err
		}
	}
	out.ClusterNetworkPolicyOtherVersion, err = served(adminpolicy.CNPGVK.GroupKind())
	return out, "", err
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
	switch {
	case r.admin.served.ClusterNetworkPolicy && r.admin.cnpVersion == cnpv1beta1.GroupVersion.Version:
		list := &cnpv1beta1.ClusterNetworkPolicyList{}
		if err := r.List(ctx, list, client.UnsafeDisableDeepCopy); err != nil {
			return nil, nil, fmt.Errorf("listing ClusterNetworkPolicies: %w", err)
		}
		for i := range list.Items {
			var p cnpv1alpha2.ClusterNetworkPolicy
			if err := convertSchema(&list.Items[i], &p); err != nil {
				return nil, nil, err
			}
			cnps = append(cnps, p)
		}
	case r.admin.served.ClusterNetworkPolicy:
		list := &cnpv1alpha2.ClusterNetworkPolicyList{}
		if err := r.List(ctx, list, client.UnsafeDisableDeepCopy); err != nil {
			return nil, nil, fmt.Errorf("listing ClusterNetworkPolicies: %w", err)
		}
		cnps = list.Items
	}
	return anps, cnps, nil
}

// convertSchema copies an object into the same schema of another version
// (ClusterNetworkPolicy v1alpha2 and v1beta1).
func convertSchema(in, out runtime.Object) error {
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(in)
	if err != nil {
		return err
	}
	return runtime.DefaultUnstructuredConverter.FromUnstructured(u, out)
}

// inServedVersion returns obj as the cluster serves it: a
// ClusterNetworkPolicy in the version read and written, as an
// unstructured object when that is not v1alpha2.
func (r *WorkloadIsolationReconciler) inServedVersion(obj client.Object) (client.Object, error) {
	if _, ok := obj.(*cnpv1alpha2.ClusterNetworkPolicy); !ok || r.admin.cnpVersion != cnpv1beta1.GroupVersion.Version {
		return obj, nil
	}
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	out := &unstructured.Unstructured{Object: u}
	out.SetGroupVersionKind(schema.GroupVersionKind{Group: cnpv1beta1.GroupName, Version: cnpv1beta1.GroupVersion.Version, Kind: string(adminpolicy.ClusterNetworkPolicy)})
	return out, nil
}

// adminGuard is the outcome of syncAdminTier.
type adminGuard struct {
	layer status.DataplaneGuard
	// own is the guard's policy in place, for the analysis.
	own *adminpolicy.Guard
}

// adminSupport says which admin-tier API the guard can use for an outcome's
// CNI.
func (r *WorkloadIsolationReconciler) adminSupport(outcome status.Outcome) adminpolicy.Support {
	if outcome.CNI == nil {
		return adminpolicy.Support{Message: "the CNI is not known yet"}
	}
	support := adminpolicy.Choose(outcome.CNI.Name, outcome.CNI.Version, outcome.CNI.Enforces == cni.EnforcementFalse, r.admin.served)
	if support.Kind != "" && outcome.CNI.Enforces != cni.EnforcementTrue {
		support.Message += " (its enforcement is not confirmed now: see Enforced)"
	}
	return support
}

// pendingAdminLayer is the dataplane layer before syncAdminTier has run:
// not active where the cluster offers it, so that a reconcile that stops
// early never reports the layer as missing from the cluster.
func (r *WorkloadIsolationReconciler) pendingAdminLayer(outcome status.Outcome) status.DataplaneGuard {
	support := r.adminSupport(outcome)
	if support.Kind == "" {
		return status.DataplaneGuard{State: unavailable(support), Message: support.Message}
	}
	return status.DataplaneGuard{State: isolationv1alpha1.GuardLayerNotActive,
		Message: support.Message + "; its policy is not in place yet: the reconcile stopped before writing it (see Ready)"}
}

// syncAdminTier brings wi's admin-tier policy in line: written when the
// guard is on, the mode is Enforce and the CNI implements an admin-tier API
// the cluster serves; removed otherwise. It never modifies or deletes a
// policy it did not write (adminpolicy.Owns). The policy comes after every
// other admin-tier policy that may select the namespace, so that cluster
// administrators' rules keep applying to the target; when another guarded
// WorkloadIsolation of the namespace may select the same pods, it passes
// the declared peers on instead of allowing them.
func (r *WorkloadIsolationReconciler) syncAdminTier(ctx context.Context, wi *isolationv1alpha1.WorkloadIsolation, in *intent.Intent,
	outcome status.Outcome, anps []anpv1alpha1.AdminNetworkPolicy, cnps []cnpv1alpha2.ClusterNetworkPolicy, ns analysis.Object,
	siblings []isolationv1alpha1.WorkloadIsolation) (adminGuard, error) {
	if err := r.pruneAdmin(ctx, client.ObjectKeyFromObject(wi), wi.UID, anps, cnps); err != nil {
		return adminGuard{}, err
	}
	support := r.adminSupport(outcome)
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
		state := unavailable(support)
		if support.Kind != "" {
			state = isolationv1alpha1.GuardLayerNotActive // Audit mode
			support.Message += "; nothing is written in Audit mode"
		}
		return adminGuard{layer: status.DataplaneGuard{State: state, Message: support.Message}}, nil
	}
	var have client.Object
	notActive := func(format string, args ...any) (adminGuard, error) {
		layer := status.DataplaneGuard{State: isolationv1alpha1.GuardLayerNotActive, Message: support.Message + "; " + fmt.Sprintf(format, args...)}
		// A policy of an earlier reconcile must not stay where the new one
		// could not go (before an administrator's policy, say).
		if have != nil && adminpolicy.Owns(have.GetName(), have.GetLabels()) {
			delete(r.admin.written, wi.UID)
			if err := r.deleteAdminObject(ctx, support.Kind, have); client.IgnoreNotFound(err) != nil {
				// A conflict too: the policy changed since it was read; the
				// reconcile comes back and tries again.
				return adminGuard{}, err
			}
			layer.Message += "; the policy written before was removed"
		}
		return adminGuard{layer: layer}, nil
	}
	shared := adminpolicy.SharedTarget(wi, siblings)
	r.admin.mu.Lock()
	defer r.admin.mu.Unlock()
	name := adminpolicy.Name(wi.UID)
	slot := adminSlot{namespace: wi.Namespace, floor: -1, taken: map[int32]bool{}}
	for uid, w := range r.admin.written {
		if uid != wi.UID && w.namespace == wi.Namespace {
			slot.taken[w.priority] = true
		}
	}
	switch support.Kind {
	case adminpolicy.AdminNetworkPolicy:
		for i := range anps {
			p := &anps[i]
			if p.Name == name {
				have, slot.current = p, &p.Spec.Priority
			} else {
				slot.add(p, p.Spec.Priority, adminpolicy.ANPSelectsNamespace(p, ns))
			}
		}
	case adminpolicy.ClusterNetworkPolicy:
		for i := range cnps {
			p := &cnps[i]
			if p.Name == name {
				have, slot.current = p, &p.Spec.Priority
			} else if p.Spec.Tier == cnpv1alpha2.AdminTier {
				slot.add(p, p.Spec.Priority, adminpolicy.CNPSelectsNamespace(p, ns))
			}
		}
	}
	if have != nil && !adminpolicy.Owns(have.GetName(), have.GetLabels()) {
		return notActive("%s %s exists and was not created by the operator; it is left untouched", support.Kind, name) // notActive leaves it: not owned
	}
	priority, ok := r.adminPriorities().Allocate(slot.current, slot.floor, slot.taken)
	if !ok {
		if slot.floor >= r.adminPriorities().Last {
			return notActive("%s %s (priority %d) may select this namespace, and the guard must come after it: its range %s leaves no room; raise the operator's --admin-priorities",
				support.Kind, slot.floorBy, slot.floor, r.adminPriorities())
		}
		return notActive("every priority in %s after %d is taken by another guarded WorkloadIsolation of this namespace; widen the operator's --admin-priorities",
			r.adminPriorities(), slot.floor)
	}
	desired, err := renderAdmin(support.Kind, in, priority, shared != "")
	if err != nil {
		return notActive("%v", err)
	}
	if have == nil || !adminUpToDate(have, desired) {
		if err := r.applyAdmin(ctx, desired, have); apierrors.IsInvalid(err) {
			// The API server refuses what was rendered: retrying cannot help.
			return notActive("the API server refuses it: %v", err)
		} else if err != nil {
			return adminGuard{}, err
		}
	}
	r.admin.written[wi.UID] = writtenAdmin{namespace: wi.Namespace, priority: priority}
	object := fmt.Sprintf("%s %s, priority %d", support.Kind, name, priority)
	message := support.Message + "; the target pods exchange traffic with the declared pods, namespaces and egress addresses only, before any NetworkPolicy is consulted (ingress from outside the cluster is left to the NetworkPolicies)"
	if shared != "" {
		message = support.Message + fmt.Sprintf("; the target pods exchange traffic with no pod or egress address but the declared ones, "+
			"which are passed on to the NetworkPolicies: guarded WorkloadIsolation %s may select the same pods, so neither guard policy allows traffic itself, and the one that comes first may deny the other's declared peers", shared)
	}
	if len(slot.passedBy) > 0 {
		slices.Sort(slot.passedBy)
		message += fmt.Sprintf("; traffic that %s %s passes on to the NetworkPolicies before the guard is consulted", support.Kind, status.JoinBounded(slot.passedBy, 5))
	}
	return adminGuard{
		layer: status.DataplaneGuard{State: isolationv1alpha1.GuardLayerActive, Object: object, Message: message},
		own:   &adminpolicy.Guard{Kind: support.Kind, Name: name, Priority: priority},
	}, nil
}

// adminSlot collects what decides a guard policy's priority.
type adminSlot struct {
	namespace string
	current   *int32
	// floor is the last priority of the other policies that may select the
	// namespace (floorBy names one), -1 for none.
	floor   int32
	floorBy string
	// taken are the priorities of the operator's other guard policies of
	// the namespace.
	taken map[int32]bool
	// passedBy names the policies before the guard with Pass rules.
	passedBy []string
}

func (s *adminSlot) add(p client.Object, priority int32, selectsNamespace bool) {
	switch {
	case adminpolicy.Owns(p.GetName(), p.GetLabels()):
		if adminpolicy.OwnerOf(p).Namespace == s.namespace {
			s.taken[priority] = true
		}
	case selectsNamespace:
		if priority > s.floor || priority == s.floor && p.GetName() < s.floorBy {
			s.floor, s.floorBy = priority, p.GetName()
		}
		if passes(p) {
			s.passedBy = append(s.passedBy, p.GetName())
		}
	}
}

// passes reports whether an admin-tier policy has a Pass rule: traffic it
// matches skips every later admin-tier policy, the guard's included.
func passes(p client.Object) bool {
	switch p := p.(type) {
	case *anpv1alpha1.AdminNetworkPolicy:
		return slices.ContainsFunc(p.Spec.Ingress, func(r anpv1alpha1.AdminNetworkPolicyIngressRule) bool {
			return r.Action == anpv1alpha1.AdminNetworkPolicyRuleActionPass
		}) || slices.ContainsFunc(p.Spec.Egress, func(r anpv1alpha1.AdminNetworkPolicyEgressRule) bool {
			return r.Action == anpv1alpha1.AdminNetworkPolicyRuleActionPass
		})
	case *cnpv1alpha2.ClusterNetworkPolicy:
		return slices.ContainsFunc(p.Spec.Ingress, func(r cnpv1alpha2.ClusterNetworkPolicyIngressRule) bool {
			return r.Action == cnpv1alpha2.ClusterNetworkPolicyRuleActionPass
		}) || slices.ContainsFunc(p.Spec.Egress, func(r cnpv1alpha2.ClusterNetworkPolicyEgressRule) bool {
			return r.Action == cnpv1alpha2.ClusterNetworkPolicyRuleActionPass
		})
	}
	return false
}

// unavailable is the state of a layer the guard cannot use: NotActive when
// the cluster offers it in a form the operator cannot write, else
// Unavailable.
func unavailable(s adminpolicy.Support) isolationv1alpha1.GuardLayerState {
	if s.Unusable {
		return isolationv1alpha1.GuardLayerNotActive
	}
	return isolationv1alpha1.GuardLayerUnavailable
}

// adminPriorities returns the configured range, or the default.
func (r *WorkloadIsolationReconciler) adminPriorities() adminpolicy.Priorities {
	if r.AdminPriorities == (adminpolicy.Priorities{}) {
		return adminpolicy.DefaultPriorities
	}
	return r.AdminPriorities
}

// renderAdmin renders wi's policy in the API kind.
func renderAdmin(kind adminpolicy.Kind, in *intent.Intent, priority int32, shared bool) (client.Object, error) {
	if kind == adminpolicy.AdminNetworkPolicy {
		return adminpolicy.ANP(in, priority, shared)
	}
	return adminpolicy.CNP(in, priority, shared)
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
	if have != nil {
		desired.SetResourceVersion(have.GetResourceVersion())
	}
	served, err := r.inServedVersion(desired)
	if err != nil {
		return err
	}
	if have == nil {
		if err := r.Create(ctx, served, client.FieldOwner(FieldOwner)); err != nil {
			return fmt.Errorf("creating %s %s: %w", kind, desired.GetName(), err)
		}
		return nil
	}
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(served)
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
	if err := r.deleteAdminObject(ctx, kind, obj); client.IgnoreNotFound(err) != nil && !apierrors.IsConflict(errors.Unwrap(err)) {
		return err
	}
	return nil
}

// deleteAdminObject deletes an admin-tier policy as read (UID and
// resourceVersion preconditions), in the version the cluster serves.
func (r *WorkloadIsolationReconciler) deleteAdminObject(ctx context.Context, kind adminpolicy.Kind, obj client.Object) error {
	objUID, rv := obj.GetUID(), obj.GetResourceVersion()
	served, err := r.inServedVersion(obj.DeepCopyObject().(client.Object))
	if err != nil {
		return err
	}
	if err := r.Delete(ctx, served, client.Preconditions{UID: &objUID, ResourceVersion: &rv}); err != nil {
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

// namespaceObject finds a namespace with its labels; one not (yet) known
// has only its name.
func namespaceObject(namespaces []analysis.Object, name string) analysis.Object {
	for _, ns := range namespaces {
		if ns.Name == name {
			return ns
		}
	}
	return analysis.Object{Name: name}
}

// mapAdminPolicy requests, for an admin-tier policy event, the
// WorkloadIsolations of the namespace an operator's policy belongs to, and
// every WorkloadIsolation for any other policy (which may widen any of
// them, or change where the guard's policies must come).
func (r *WorkloadIsolationReconciler) mapAdminPolicy(ctx context.Context, obj client.Object) []reconcile.Request {
	if !adminpolicy.Owns(obj.GetName(), obj.GetLabels()) {
		return mapAll(ctx, r.Client)
	}
	owner := adminpolicy.OwnerOf(obj)
	if len(r.WatchNamespaces) > 0 && !slices.Contains(r.WatchNamespaces, owner.Namespace) {
		return nil // another instance's
	}
	// The owner, gone or not, and every WorkloadIsolation of its
	// namespace: the policy can only select pods there, and may select
	// theirs.
	out := []reconcile.Request{{NamespacedName: owner}}
	for _, req := range mapNamespace(ctx, r.Client, owner.Namespace) {
		if req.NamespacedName != owner {
			out = append(out, req)
		}
	}
	return out
}
