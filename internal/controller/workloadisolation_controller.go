// Package controller reconciles WorkloadIsolations into NetworkPolicies. It is
// the only package that talks to the API server: it reads, calls the pure
// packages (policy, status) and writes the result.
package controller

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/adminpolicy"
	"github.com/isolator-dev/isolator/internal/analysis"
	"github.com/isolator-dev/isolator/internal/intent"
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

	// APIReader reads target pods whole (the cache holds their metadata
	// only) to check that named ports are declared; nil skips the check.
	APIReader client.Reader
	// ContestWindow is how long repairs of a policy are remembered: a
	// policy repaired three times within it is reported as contested
	// (DefaultContestWindow when zero).
	ContestWindow time.Duration
	// Resync is how often a healthy resource is reconciled again when
	// nothing happened (DefaultResync when zero, never when negative), with
	// up to 10% jitter.
	Resync time.Duration

	// recorded remembers the last condition (status/reason) an Event was
	// recorded for, per object and condition type, so that a reconcile that
	// starts from a cached object older than its last status write does not
	// record the same transition twice. Entries go when the object does.
	recorded sync.Map
	// written remembers the last status written per object (*writtenStatus),
	// so that a cache older than that write cannot hide a change.
	written sync.Map
	// repairs remembers recent repairs per object (*repairLog).
	repairs sync.Map
	// portChecks remembers the last named-port check per object (portCheck).
	portChecks sync.Map
	// namespaces is the cluster's namespaces for the analysis.
	namespaces namespaceSnapshot

	// CiliumPolicies is true when the cluster serves CiliumNetworkPolicy:
	// on Cilium the operator then writes the Cilium objects an intent needs
	// (SetupWithManager sets it).
	CiliumPolicies bool
	// clusterwideCilium is true when CiliumClusterwideNetworkPolicy is
	// served too.
	clusterwideCilium bool
	// ciliumPolicies reads Cilium's policies from the manager's cache.
	ciliumPolicies client.Reader
	// ciliumEndpoints is true when CiliumEndpoint is served; endpoints
	// reads them from the manager's cache (the client would read
	// unstructured objects from the API server).
	ciliumEndpoints bool
	endpoints       client.Reader
	// guardAPI is true when the cluster serves ValidatingAdmissionPolicy.
	guardAPI bool

	// AdminPriorities is the range of admin-tier priorities the guard's
	// dataplane policies take (adminpolicy.DefaultPriorities when zero).
	AdminPriorities adminpolicy.Priorities
	// WatchNamespaces, when set, are the only namespaces whose
	// WorkloadIsolations this instance reconciles (the manager's cache is
	// restricted to them): cluster-scoped policies of the others' are left
	// to the instance that owns them.
	WatchNamespaces []string
	// admin is the state of the guard's dataplane layer.
	admin adminTier
}

// +kubebuilder:rbac:groups=isolation.isolator.dev,resources=workloadisolations,verbs=get;list;watch
// +kubebuilder:rbac:groups=isolation.isolator.dev,resources=workloadisolations/status,verbs=get;patch
// Generated policies carry an owner reference with blockOwnerDeletion, which
// the OwnerReferencesPermissionEnforcement admission plugin allows only to
// those who may update the owner's finalizers.
// +kubebuilder:rbac:groups=isolation.isolator.dev,resources=workloadisolations/finalizers,verbs=update
// +kubebuilder:rbac:groups=networking.k8s.io,resources=networkpolicies,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=apps,resources=deployments;statefulsets;daemonsets,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=pods,verbs=list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile computes the NetworkPolicies of one WorkloadIsolation, applies
// them, prunes the ones no longer wanted, and records the outcome in status.
// A healthy resource comes back after the resync interval, as a backstop for
// events the operator missed.
func (r *WorkloadIsolationReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	last := r.lastWrite(req.NamespacedName) // before the cached copy: see lastWrite
	wi := &isolationv1alpha1.WorkloadIsolation{}
	if err := r.Get(ctx, req.NamespacedName, wi); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(req.NamespacedName)
			return ctrl.Result{}, r.forgetAdmin(ctx, req.NamespacedName)
		}
		return ctrl.Result{}, err
	}
	if !wi.DeletionTimestamp.IsZero() {
		// Owner references let garbage collection remove the namespaced
		// policies; the cluster-scoped ones go here.
		r.forget(req.NamespacedName)
		return ctrl.Result{}, r.forgetAdmin(ctx, req.NamespacedName)
	}
	if r.CNI != nil && r.CNI.Current() == nil {
		// The first CNI classification, moments after start, reconciles
		// every WorkloadIsolation; until then there is nothing to report.
		return ctrl.Result{}, nil
	}
	cached := wi.DeepCopy()
	// What the server holds, read once: the watch may bring this process's
	// last write into the cache while the reconcile runs.
	server := r.serverStatus(cached, last)
	wi.Status = *server.DeepCopy()
	before := wi.DeepCopy()

	outcome, err := r.reconcile(ctx, wi)
	if apierrors.IsAlreadyExists(err) {
		// The cache has not seen a policy created a moment ago (by this
		// process or someone else): what was computed from it is not
		// worth reporting. Retry shortly.
		return ctrl.Result{}, err
	}
	status.SetConditions(&wi.Status, outcome)
	if patchErr := r.patchStatus(ctx, cached, server, wi); patchErr != nil {
		return ctrl.Result{}, errors.Join(err, patchErr)
	}
	r.recordTransition(before, wi)
	if err != nil {
		return ctrl.Result{}, err
	}
	if outcome.Failure != nil && outcome.Failure.Reason == isolationv1alpha1.ReasonContested {
		// Come back when the repairs have left the window.
		return ctrl.Result{RequeueAfter: r.contestWindow()}, nil
	}
	return ctrl.Result{RequeueAfter: r.resyncAfter()}, nil
}

// reconcile does the work and says what it achieved. The returned error is
// transient (an API failure) and makes the request back off; failures of the
// spec are reported in the outcome only.
func (r *WorkloadIsolationReconciler) reconcile(ctx context.Context, wi *isolationv1alpha1.WorkloadIsolation) (status.Outcome, error) {
	outcome := status.Outcome{Generation: wi.Generation, Mode: wi.Spec.Mode, EgressDeclared: wi.Spec.Egress != nil}
	if wi.Spec.Guard == isolationv1alpha1.GuardEnforce {
		guard, err := r.guardState(ctx)
		if err != nil {
			return withTransient(outcome, err)
		}
		outcome.Guard = guard
	}
	if r.CNI != nil {
		outcome.CNI = r.CNI.Current()
	}
	if outcome.Mode == "" {
		outcome.Mode = isolationv1alpha1.ModeEnforce
	}
	if outcome.Guard != nil {
		outcome.Guard.Dataplane = r.pendingAdminLayer(outcome)
	}

	selector, failure, err := r.resolveTarget(ctx, wi)
	if err != nil {
		return withTransient(outcome, err)
	}
	if failure != nil {
		outcome.Failure = failure
		if failure.Reason != isolationv1alpha1.ReasonTargetNotFound || wi.Status.TargetSelector == nil {
			return outcome, nil
		}
		// The workload is gone, but its pods may not be (an orphaning
		// delete): keep enforcing and verifying the last resolved target.
		selector = wi.Status.TargetSelector.DeepCopy()
	}
	in, err := intent.FromSpec(wi, *selector, r.Presets)
	if specErr := (*policy.SpecError)(nil); errors.As(err, &specErr) {
		outcome.Failure = &status.Failure{Reason: specErr.Reason, Message: specErr.Error(), Stalled: true}
		return outcome, nil
	}
	if err != nil {
		return withTransient(outcome, err)
	}
	desired := policy.NetworkPolicies(in)
	outcome.L7NotEnforced = r.l7NotEnforced(in, outcome)
	var desiredCilium []*unstructured.Unstructured
	if r.onCilium(outcome) {
		var renderErr error
		if desiredCilium, renderErr = ciliumObjects(in); renderErr != nil {
			// A spec the Cilium renderer cannot say (such as a named DNS
			// port): report it, write nothing.
			outcome.Failure = &status.Failure{Reason: isolationv1alpha1.ReasonInvalidSpec, Message: renderErr.Error(), Stalled: true}
			return outcome, nil //nolint:nilerr // a spec failure goes to status, not to the retry queue
		}
	}
	status.SetTarget(&wi.Status, selector)
	outcome.Policies = len(desired) + len(desiredCilium)
	pods, podSet, err := r.targetPods(ctx, wi.Namespace, selector)
	if err != nil {
		return withTransient(outcome, err)
	}
	wi.Status.SelectedPods = int32(len(pods))
	if outcome.Coverage, outcome.CNI, err = r.coverage(ctx, wi.Namespace, pods, outcome.CNI); err != nil {
		return withTransient(outcome, err)
	}

	// The namespace's WorkloadIsolations, read-only: their generated names
	// may collide with wi's, and their targets may overlap its guard's.
	siblings := &isolationv1alpha1.WorkloadIsolationList{}
	if err := r.List(ctx, siblings, client.InNamespace(wi.Namespace), client.UnsafeDisableDeepCopy); err != nil {
		return withTransient(outcome, fmt.Errorf("listing WorkloadIsolations: %w", err))
	}
	contested := policy.Collisions(wi, siblings.Items)
	written := desired
	if outcome.Mode == isolationv1alpha1.ModeAudit {
		written = nil // Audit writes nothing and removes what Enforce wrote.
	}
	// The cached policies are only read: the sync and the analysis copy
	// what they keep.
	existing := &networkingv1.NetworkPolicyList{}
	if err := r.List(ctx, existing, client.InNamespace(wi.Namespace), client.UnsafeDisableDeepCopy); err != nil {
		return withTransient(outcome, fmt.Errorf("listing NetworkPolicies: %w", err))
	}
	res, syncErr := r.syncPolicies(ctx, wi, written, existing.Items, contested)
	writtenCilium := desiredCilium
	if outcome.Mode == isolationv1alpha1.ModeAudit {
		writtenCilium = nil
	}
	cachedCilium, err := r.namespaceCiliumPolicies(ctx, wi.Namespace)
	if err != nil {
		return withTransient(outcome, errors.Join(syncErr, err))
	}
	var ciliumRefs []isolationv1alpha1.PolicyReference
	var ciliumInPlace map[string]*unstructured.Unstructured
	var ciliumFailure *status.Failure
	switch {
	case res.failure != nil || syncErr != nil:
		// While the NetworkPolicies cannot be brought in line, the Cilium
		// objects in place stay as they are: a name conflict must not cost
		// the target its name resolution.
		ciliumRefs = ciliumReferences(wi.Status.Policies)
	case r.APIReader != nil && r.CiliumPolicies:
		ciliumRefs, ciliumInPlace, ciliumFailure, syncErr = r.syncCilium(ctx, wi, writtenCilium, cachedCilium)
	}
	if outcome.Mode == isolationv1alpha1.ModeAudit {
		status.SetPolicies(&wi.Status, append(references(desired), unstructuredReferences(desiredCilium)...))
	} else {
		status.SetPolicies(&wi.Status, append(ownedReferences(desired, res.owned), ciliumRefs...))
	}
	if res.failure != nil {
		outcome.Failure = res.failure
	}
	if outcome.Failure == nil && ciliumFailure != nil {
		outcome.Failure = ciliumFailure
	}
	if outcome.Failure == nil {
		outcome.Failure = r.contestedFailure(wi, time.Now())
	}
	// Analyse what is in place even when a write failed, so that Isolated
	// says what the cluster holds, not what was meant to be written.
	namespaces, namespaceNames, err := r.namespaces.get(ctx, r.Client)
	if err != nil {
		return withTransient(outcome, errors.Join(syncErr, err))
	}
	anps, cnps, err := r.adminPolicies(ctx)
	if err != nil {
		return withTransient(outcome, errors.Join(syncErr, err))
	}
	admin, err := r.syncAdminTier(ctx, wi, in, outcome, anps, cnps, namespaceObject(namespaces, wi.Namespace), siblings.Items)
	if err != nil {
		return withTransient(outcome, errors.Join(syncErr, err))
	}
	if outcome.Guard != nil {
		outcome.Guard.Dataplane = admin.layer
	}
	ns := namespaceObject(namespaces, wi.Namespace)
	cilium, unanalysed, err := r.ciliumWidenings(ctx, cachedCilium, ciliumTarget(wi, ns, pods, writtenCilium, ciliumInPlace))
	if err != nil {
		return withTransient(outcome, errors.Join(syncErr, err))
	}
	unanalysed = append(unanalysed, r.unreadCiliumPolicies(outcome.CNI)...)
	outcome.UnanalysedPolicies = unanalysed
	outcome.Isolation = r.analyze(wi, pods, desired, existing.Items, res, namespaces,
		append(adminpolicy.Widenings(anps, cnps, admin.own, adminpolicy.Target{Namespace: ns, Pods: pods}), cilium...))
	if r.admin.served.ClusterNetworkPolicyOtherVersion {
		outcome.UnanalysedPolicies = append(outcome.UnanalysedPolicies,
			"ClusterNetworkPolicies (served in neither v1alpha2 nor v1beta1, which the operator reads)")
	}
	if syncErr != nil {
		return withTransient(outcome, syncErr)
	}
	outcome.MissingSources = policy.MissingNamespaces(wi, func(name string) bool { return namespaceNames[name] })
	outcome.UndeclaredPorts, err = r.undeclaredPorts(ctx, wi, selector, len(pods), podSet)
	if err != nil {
		return withTransient(outcome, err)
	}
	outcome.SourcesChecked = true
	return outcome, nil
}

// namedPortSample is how many target pods are read to check named ports.
const namedPortSample = 20

// portCheck is the result of undeclaredPorts for one generation of a
// resource and one set of target pods (container ports cannot change in a
// running pod, so the same pods give the same answer).
type portCheck struct {
	generation int64
	pods       uint64
	undeclared []string
}

// undeclaredPorts reports the named ports of wi that no container of (a
// sample of) the target pods declares. Only resources with named ports and
// target pods cost a read, and only when the spec or the set of target pods
// changed since the last check.
func (r *WorkloadIsolationReconciler) undeclaredPorts(ctx context.Context, wi *isolationv1alpha1.WorkloadIsolation,
	selector *metav1.LabelSelector, pods int, podSet uint64) ([]string, error) {
	if r.APIReader == nil || pods == 0 || len(policy.NamedPorts(wi)) == 0 {
		return nil, nil
	}
	key := client.ObjectKeyFromObject(wi)
	if v, ok := r.portChecks.Load(key); ok {
		if last := v.(portCheck); last.generation == wi.Generation && last.pods == podSet {
			return last.undeclared, nil
		}
	}
	sel, err := metav1.LabelSelectorAsSelector(selector)
	if err != nil {
		return nil, err
	}
	list := &corev1.PodList{}
	if err := r.APIReader.List(ctx, list, client.InNamespace(wi.Namespace),
		client.MatchingLabelsSelector{Selector: sel}, client.Limit(namedPortSample)); err != nil {
		return nil, fmt.Errorf("reading target pods for their named ports: %w", err)
	}
	declared := map[string]bool{}
	for _, pod := range list.Items {
		for _, c := range append(pod.Spec.InitContainers, pod.Spec.Containers...) {
			for _, p := range c.Ports {
				declared[p.Name] = true
			}
		}
	}
	undeclared := policy.UndeclaredPorts(wi, declared)
	r.portChecks.Store(key, portCheck{generation: wi.Generation, pods: podSet, undeclared: undeclared})
	return undeclared, nil
}

// analyze checks every NetworkPolicy of the namespace (as listed before the
// sync) against the declared policies. The policies just written are taken
// as written and those just deleted as gone, so that the analysis neither
// reports a drift that was repaired a moment ago nor a policy that no longer
// exists.
func (r *WorkloadIsolationReconciler) analyze(wi *isolationv1alpha1.WorkloadIsolation, pods []analysis.Object,
	declared, listed []networkingv1.NetworkPolicy, res syncResult, namespaces []analysis.Object, admin []analysis.AdminPolicy) *analysis.Report {
	current := make(map[string]networkingv1.NetworkPolicy, len(listed))
	for _, np := range listed {
		current[np.Name] = np
	}
	for _, np := range res.owned {
		current[np.Name] = np
	}
	for _, name := range res.deleted {
		delete(current, name)
	}
	in := analysis.Input{
		Namespace: wi.Namespace, TargetPods: pods, Declared: declared, Self: wi.Name,
		OwnerOf: analysis.ControllingIsolation, Namespaces: namespaces, Admin: admin,
	}
	for _, name := range slices.Sorted(maps.Keys(current)) {
		in.Policies = append(in.Policies, current[name])
	}
	report := analysis.Analyze(in)
	return &report
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
// The second result identifies the set of pods (by UID, in any order).
func (r *WorkloadIsolationReconciler) targetPods(ctx context.Context, namespace string, selector *metav1.LabelSelector) ([]analysis.Object, uint64, error) {
	sel, err := metav1.LabelSelectorAsSelector(selector)
	if err != nil {
		return nil, 0, err
	}
	pods := &metav1.PartialObjectMetadataList{}
	pods.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("PodList"))
	if err := r.List(ctx, pods, client.InNamespace(namespace), client.MatchingLabelsSelector{Selector: sel}, client.UnsafeDisableDeepCopy); err != nil {
		return nil, 0, fmt.Errorf("listing pods: %w", err)
	}
	out := make([]analysis.Object, 0, len(pods.Items))
	var set uint64
	for _, p := range pods.Items {
		out = append(out, analysis.Object{Name: p.Name, Labels: p.Labels})
		h := fnv.New64a()
		_, _ = h.Write([]byte(p.UID))
		set += h.Sum64()
	}
	return out, set, nil
}

func references(policies []networkingv1.NetworkPolicy) []isolationv1alpha1.PolicyReference {
	refs := make([]isolationv1alpha1.PolicyReference, 0, len(policies))
	for _, np := range policies {
		refs = append(refs, isolationv1alpha1.PolicyReference{Kind: "NetworkPolicy", Name: np.Name})
	}
	return refs
}
