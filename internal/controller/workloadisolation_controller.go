// Package controller reconciles WorkloadIsolations into NetworkPolicies. It is
// the only package that talks to the API server: it reads, calls the pure
// packages (policy, status) and writes the result.
package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/analysis"
	"github.com/isolator-dev/isolator/internal/policy"
	"github.com/isolator-dev/isolator/internal/preset"
	"github.com/isolator-dev/isolator/internal/status"
)

// FieldOwner is the server-side apply field manager of every generated object.
const FieldOwner = "isolator"

// WorkloadIsolationReconciler reconciles a WorkloadIsolation.
type WorkloadIsolationReconciler struct {
	client.Client
	// Presets resolves the preset names used in from entries.
	Presets preset.Catalog
	// Recorder records an Event when the Ready or Enforced condition changes.
	Recorder events.EventRecorder
	// CNI, when set, reports whether the cluster's CNI enforces the policies.
	CNI *CNIDetector
	// Workers is how many WorkloadIsolations are reconciled in parallel
	// (controller-runtime's default, 1, when zero).
	Workers int

	// recorded remembers the last condition (status/reason) an Event was
	// recorded for, per object and condition type, so that a reconcile that
	// starts from a cached object older than its last status write does not
	// record the same transition twice.
	recorded sync.Map
}

// +kubebuilder:rbac:groups=isolation.isolator.dev,resources=workloadisolations,verbs=get;list;watch
// +kubebuilder:rbac:groups=isolation.isolator.dev,resources=workloadisolations/status,verbs=get;patch
// +kubebuilder:rbac:groups=networking.k8s.io,resources=networkpolicies,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=apps,resources=deployments;statefulsets;daemonsets,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=pods;namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile computes the NetworkPolicies of one WorkloadIsolation, applies
// them, prunes the ones no longer wanted, and records the outcome in status.
func (r *WorkloadIsolationReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	wi := &isolationv1alpha1.WorkloadIsolation{}
	if err := r.Get(ctx, req.NamespacedName, wi); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !wi.DeletionTimestamp.IsZero() {
		// Owner references let garbage collection remove the policies.
		return ctrl.Result{}, nil
	}
	if r.CNI != nil && r.CNI.Current() == nil {
		// The first CNI classification, moments after start, reconciles
		// every WorkloadIsolation; until then there is nothing to report.
		return ctrl.Result{}, nil
	}
	before := wi.DeepCopy()

	outcome, err := r.reconcile(ctx, wi)
	status.SetConditions(&wi.Status, outcome)
	if patchErr := r.patchStatus(ctx, before, wi); patchErr != nil {
		err = errors.Join(err, patchErr)
	}
	r.recordTransition(before, wi)
	return ctrl.Result{}, err
}

// reconcile does the work and says what it achieved. The returned error is
// transient (an API failure) and makes the request back off; failures of the
// spec are reported in the outcome only.
func (r *WorkloadIsolationReconciler) reconcile(ctx context.Context, wi *isolationv1alpha1.WorkloadIsolation) (status.Outcome, error) {
	outcome := status.Outcome{Generation: wi.Generation, Mode: wi.Spec.Mode}
	if r.CNI != nil {
		outcome.CNI = r.CNI.Current()
	}
	if outcome.Mode == "" {
		outcome.Mode = isolationv1alpha1.ModeEnforce
	}

	selector, failure, err := r.resolveTarget(ctx, wi)
	if failure != nil || err != nil {
		outcome.Failure = failure
		return withTransient(outcome, err)
	}
	wi.Status.Target = formatSelector(selector)

	desired, err := policy.Build(wi, *selector, r.Presets)
	if specErr := (*policy.SpecError)(nil); errors.As(err, &specErr) {
		outcome.Failure = &status.Failure{Reason: specErr.Reason, Message: specErr.Error(), Stalled: true}
		return outcome, nil
	}
	if err != nil {
		return withTransient(outcome, err)
	}
	outcome.Policies = len(desired)
	wi.Status.Policies = references(desired)
	wi.Status.PolicyCount = int32(len(desired))
	pods, err := r.targetPods(ctx, wi.Namespace, selector)
	if err != nil {
		return withTransient(outcome, err)
	}
	wi.Status.SelectedPods = int32(len(pods))

	written := desired
	if outcome.Mode == isolationv1alpha1.ModeAudit {
		written = nil // Audit writes nothing and removes what Enforce wrote.
	}
	if err := r.syncPolicies(ctx, wi, written); err != nil {
		return withTransient(outcome, err)
	}
	report, err := r.analyze(ctx, wi, pods, desired, written)
	if err != nil {
		return withTransient(outcome, err)
	}
	outcome.Isolation = report
	return outcome, nil
}

// analyze checks every NetworkPolicy of the namespace against the declared
// policies. The policies just written are taken as written, so that the
// analysis does not report a drift that was repaired a moment ago.
func (r *WorkloadIsolationReconciler) analyze(ctx context.Context, wi *isolationv1alpha1.WorkloadIsolation,
	pods []analysis.Object, declared, written []networkingv1.NetworkPolicy) (*analysis.Report, error) {
	// The lists below are only read: skip the cache's deep copies.
	list := &networkingv1.NetworkPolicyList{}
	if err := r.List(ctx, list, client.InNamespace(wi.Namespace), client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("listing NetworkPolicies: %w", err)
	}
	current := map[string]networkingv1.NetworkPolicy{}
	for _, np := range list.Items {
		current[np.Name] = np
	}
	for _, np := range written {
		current[np.Name] = np
	}
	namespaces := &metav1.PartialObjectMetadataList{}
	namespaces.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("NamespaceList"))
	if err := r.List(ctx, namespaces, client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("listing namespaces: %w", err)
	}
	in := analysis.Input{
		Namespace: wi.Namespace, TargetPods: pods, Declared: declared, Self: wi.Name,
		OwnerOf: analysis.ControllingIsolation,
	}
	for _, np := range current {
		in.Policies = append(in.Policies, np)
	}
	for _, ns := range namespaces.Items {
		in.Namespaces = append(in.Namespaces, analysis.Object{Name: ns.Name, Labels: ns.Labels})
	}
	report := analysis.Analyze(in)
	return &report, nil
}

// withTransient records a transient error as the outcome's failure.
func withTransient(o status.Outcome, err error) (status.Outcome, error) {
	if err != nil && o.Failure == nil {
		o.Failure = &status.Failure{Reason: isolationv1alpha1.ReasonApplyFailed, Message: err.Error()}
	}
	return o, err
}

// resolveTarget returns the target pod selector. A workloadRef that names a
// missing workload is a failure to wait for (a watch on the workload brings
// the request back when it appears).
func (r *WorkloadIsolationReconciler) resolveTarget(ctx context.Context, wi *isolationv1alpha1.WorkloadIsolation) (*metav1.LabelSelector, *status.Failure, error) {
	target := wi.Spec.Target
	if target.WorkloadRef == nil {
		if target.PodSelector == nil {
			return &metav1.LabelSelector{}, nil, nil
		}
		return target.PodSelector.LabelSelector(), nil, nil
	}
	ref := target.WorkloadRef
	workload := newWorkload(ref.Kind)
	if workload == nil {
		return nil, &status.Failure{
			Reason:  isolationv1alpha1.ReasonInvalidSpec,
			Message: fmt.Sprintf("unsupported workloadRef kind %q", ref.Kind),
			Stalled: true,
		}, nil
	}
	if err := r.Get(ctx, client.ObjectKey{Namespace: wi.Namespace, Name: ref.Name}, workload); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, &status.Failure{
				Reason:  isolationv1alpha1.ReasonTargetNotFound,
				Message: fmt.Sprintf("%s %s/%s not found", ref.Kind, wi.Namespace, ref.Name),
			}, nil
		}
		return nil, nil, err
	}
	selector := workloadSelector(workload)
	if selector == nil || (len(selector.MatchLabels) == 0 && len(selector.MatchExpressions) == 0) {
		return nil, &status.Failure{
			Reason:  isolationv1alpha1.ReasonInvalidSpec,
			Message: fmt.Sprintf("%s %s/%s has an empty spec.selector, which would select every pod", ref.Kind, wi.Namespace, ref.Name),
			Stalled: true,
		}, nil
	}
	return selector, nil, nil
}

// targetPods lists the pods the selector selects, from the metadata-only
// cache. The selector has been validated by policy.Build.
func (r *WorkloadIsolationReconciler) targetPods(ctx context.Context, namespace string, selector *metav1.LabelSelector) ([]analysis.Object, error) {
	sel, err := metav1.LabelSelectorAsSelector(selector)
	if err != nil {
		return nil, err
	}
	pods := &metav1.PartialObjectMetadataList{}
	pods.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("PodList"))
	if err := r.List(ctx, pods, client.InNamespace(namespace), client.MatchingLabelsSelector{Selector: sel}, client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("listing pods: %w", err)
	}
	out := make([]analysis.Object, 0, len(pods.Items))
	for _, p := range pods.Items {
		out = append(out, analysis.Object{Name: p.Name, Labels: p.Labels})
	}
	return out, nil
}

// syncPolicies makes the cluster hold exactly the desired policies of wi:
// it applies those that are missing or differ, and deletes owned policies
// that are no longer desired. Up-to-date policies cause no request at all.
func (r *WorkloadIsolationReconciler) syncPolicies(ctx context.Context, wi *isolationv1alpha1.WorkloadIsolation, desired []networkingv1.NetworkPolicy) error {
	existing := &networkingv1.NetworkPolicyList{}
	if err := r.List(ctx, existing, client.InNamespace(wi.Namespace),
		client.MatchingLabels{policy.LabelOwner: policy.OwnerLabelValue(wi.Name)}); err != nil {
		return fmt.Errorf("listing generated NetworkPolicies: %w", err)
	}
	owned := map[string]*networkingv1.NetworkPolicy{}
	for i := range existing.Items {
		if np := &existing.Items[i]; metav1.IsControlledBy(np, wi) {
			owned[np.Name] = np
		}
	}
	var errs []error
	for i := range desired {
		want := &desired[i]
		if have, ok := owned[want.Name]; ok && policy.UpToDate(have, want) {
			delete(owned, want.Name)
			continue
		}
		delete(owned, want.Name)
		if err := r.apply(ctx, want); err != nil {
			errs = append(errs, err)
			continue
		}
		log.FromContext(ctx).Info("applied NetworkPolicy", "networkPolicy", want.Name)
	}
	if len(errs) > 0 {
		// Never prune while the desired set is not fully in place.
		return errors.Join(errs...)
	}
	for _, stale := range owned {
		if err := r.Delete(ctx, stale, client.Preconditions{UID: &stale.UID, ResourceVersion: &stale.ResourceVersion}); client.IgnoreNotFound(err) != nil {
			errs = append(errs, fmt.Errorf("deleting NetworkPolicy %s: %w", stale.Name, err))
			continue
		}
		log.FromContext(ctx).Info("deleted NetworkPolicy no longer wanted", "networkPolicy", stale.Name)
	}
	return errors.Join(errs...)
}

// apply server-side applies one policy with the operator's field manager,
// taking ownership of every field it sets.
func (r *WorkloadIsolationReconciler) apply(ctx context.Context, np *networkingv1.NetworkPolicy) error {
	u, err := policy.ApplyObject(np)
	if err != nil {
		return err
	}
	if err := r.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		return fmt.Errorf("applying NetworkPolicy %s: %w", np.Name, err)
	}
	return nil
}

// patchStatus writes the status when, and only when, it changed.
func (r *WorkloadIsolationReconciler) patchStatus(ctx context.Context, before, after *isolationv1alpha1.WorkloadIsolation) error {
	if equality.Semantic.DeepEqual(before.Status, after.Status) {
		return nil
	}
	if err := r.Status().Patch(ctx, after, client.MergeFrom(before)); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("updating status: %w", err)
	}
	return nil
}

// recordTransition emits an Event when Ready, Isolated or Enforced changes
// status or reason: Normal when it turns True, Warning otherwise. A
// condition's first appearance is recorded only when it is False, so that
// creating many healthy resources does not write as many Events.
func (r *WorkloadIsolationReconciler) recordTransition(before, after *isolationv1alpha1.WorkloadIsolation) {
	if r.Recorder == nil {
		return
	}
	for _, t := range []string{isolationv1alpha1.ConditionReady, isolationv1alpha1.ConditionIsolated, isolationv1alpha1.ConditionEnforced} {
		was := meta.FindStatusCondition(before.Status.Conditions, t)
		now := meta.FindStatusCondition(after.Status.Conditions, t)
		if now == nil || (was != nil && was.Status == now.Status && was.Reason == now.Reason) ||
			(was == nil && now.Status != metav1.ConditionFalse) {
			continue
		}
		key, state := string(after.UID)+"/"+t, string(now.Status)+"/"+now.Reason
		if last, ok := r.recorded.Swap(key, state); ok && last == state {
			continue
		}
		eventType := corev1.EventTypeNormal
		if now.Status != metav1.ConditionTrue {
			eventType = corev1.EventTypeWarning
		}
		r.Recorder.Eventf(after, nil, eventType, now.Reason, t, "%s", now.Message)
	}
}

func references(policies []networkingv1.NetworkPolicy) []isolationv1alpha1.PolicyReference {
	refs := make([]isolationv1alpha1.PolicyReference, 0, len(policies))
	for _, np := range policies {
		refs = append(refs, isolationv1alpha1.PolicyReference{Kind: "NetworkPolicy", Name: np.Name})
	}
	return refs
}

// formatSelector renders a selector in kubectl's syntax for status.target.
func formatSelector(selector *metav1.LabelSelector) string {
	if len(selector.MatchLabels) == 0 && len(selector.MatchExpressions) == 0 {
		return allPods
	}
	return metav1.FormatLabelSelector(selector)
}

// allPods is status.target of an empty selector.
const allPods = "(all pods)"
