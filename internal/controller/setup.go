package controller

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	clientworkqueue "k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/analysis"
)

// workloadRefIndex indexes WorkloadIsolations by "<Kind>/<name>" of their
// spec.target.workloadRef.
const workloadRefIndex = "spec.target.workloadRef"

type workqueue = clientworkqueue.TypedRateLimitingInterface[reconcile.Request]

// CacheOptions restricts the manager's cache to what the reconciler needs, so
// memory stays small on large clusters: workloads are stripped down to their
// selector, Pods and Namespaces are watched metadata-only (see
// SetupWithManager), and managed fields are dropped from every object.
// NetworkPolicies are cached whole: the isolation analysis reads all of them.
func CacheOptions() cache.Options {
	return cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&appsv1.Deployment{}:  {Transform: keepSelectorOnly},
			&appsv1.StatefulSet{}: {Transform: keepSelectorOnly},
			&appsv1.DaemonSet{}:   {Transform: keepSelectorOnly},
		},
	}
}

// SetupWithManager registers the reconciler and its watches.
func (r *WorkloadIsolationReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &isolationv1alpha1.WorkloadIsolation{}, workloadRefIndex,
		func(obj client.Object) []string {
			ref := obj.(*isolationv1alpha1.WorkloadIsolation).Spec.Target.WorkloadRef
			if ref == nil {
				return nil
			}
			return []string{workloadRefKey(string(ref.Kind), ref.Name)}
		}); err != nil {
		return fmt.Errorf("indexing WorkloadIsolations by workloadRef: %w", err)
	}
	b := ctrl.NewControllerManagedBy(mgr).
		For(&isolationv1alpha1.WorkloadIsolation{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		// Any NetworkPolicy, generated or not, can change what reaches the
		// pods it selects: re-evaluate the isolations of those pods.
		Watches(&networkingv1.NetworkPolicy{}, policyHandler{client: mgr.GetClient()}).
		WatchesMetadata(&corev1.Pod{}, podHandler{client: mgr.GetClient()}).
		WatchesMetadata(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.mapAll),
			builder.WithPredicates(predicate.Or(predicate.LabelChangedPredicate{}, deleteOrCreate())))
	for _, kind := range []isolationv1alpha1.WorkloadKind{
		isolationv1alpha1.WorkloadKindDeployment, isolationv1alpha1.WorkloadKindStatefulSet, isolationv1alpha1.WorkloadKindDaemonSet,
	} {
		b = b.Watches(newWorkload(kind), handler.EnqueueRequestsFromMapFunc(r.mapWorkload(kind)),
			builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, deleteOrCreate())))
	}
	if r.CNI != nil {
		b = b.WatchesRawSource(r.CNI.Changes(mgr.GetClient()))
	}
	return b.Named("workloadisolation").
		WithOptions(controller.Options{MaxConcurrentReconciles: r.Workers}).
		Complete(r)
}

func workloadRefKey(kind, name string) string { return kind + "/" + name }

// mapWorkload enqueues the WorkloadIsolations whose workloadRef names the workload.
func (r *WorkloadIsolationReconciler) mapWorkload(kind isolationv1alpha1.WorkloadKind) handler.MapFunc {
	return func(ctx context.Context, obj client.Object) []reconcile.Request {
		list := &isolationv1alpha1.WorkloadIsolationList{}
		if err := r.List(ctx, list, client.InNamespace(obj.GetNamespace()),
			client.MatchingFields{workloadRefIndex: workloadRefKey(string(kind), obj.GetName())}); err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "listing WorkloadIsolations for workload", "kind", kind, "name", obj.GetName())
			return nil
		}
		return requests(list.Items, func(isolationv1alpha1.WorkloadIsolation) bool { return true })
	}
}

// mapAll enqueues every WorkloadIsolation: a namespace's labels can change
// what a namespaceSelector anywhere admits.
func (r *WorkloadIsolationReconciler) mapAll(ctx context.Context, _ client.Object) []reconcile.Request {
	return mapAll(ctx, r)
}

func mapAll(ctx context.Context, r client.Reader) []reconcile.Request {
	list := &isolationv1alpha1.WorkloadIsolationList{}
	if err := r.List(ctx, list); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "listing WorkloadIsolations")
		return nil
	}
	return requests(list.Items, func(isolationv1alpha1.WorkloadIsolation) bool { return true })
}

func deleteOrCreate() predicate.Funcs {
	return predicate.Funcs{
		CreateFunc: func(event.CreateEvent) bool { return true },
		DeleteFunc: func(event.DeleteEvent) bool { return true },
		UpdateFunc: func(event.UpdateEvent) bool { return false },
	}
}

// newWorkload returns an empty object of a workload kind, nil for an
// unsupported kind.
func newWorkload(kind isolationv1alpha1.WorkloadKind) client.Object {
	switch kind {
	case isolationv1alpha1.WorkloadKindDeployment:
		return &appsv1.Deployment{}
	case isolationv1alpha1.WorkloadKindStatefulSet:
		return &appsv1.StatefulSet{}
	case isolationv1alpha1.WorkloadKindDaemonSet:
		return &appsv1.DaemonSet{}
	}
	return nil
}

// workloadSelector returns the pod selector of a workload.
func workloadSelector(obj client.Object) *metav1.LabelSelector {
	switch w := obj.(type) {
	case *appsv1.Deployment:
		return w.Spec.Selector
	case *appsv1.StatefulSet:
		return w.Spec.Selector
	case *appsv1.DaemonSet:
		return w.Spec.Selector
	}
	return nil
}

// keepSelectorOnly is a cache transform that keeps of a workload only what
// the reconciler reads: identity, labels, generation and spec.selector. The
// pod template, often the largest part, is dropped.
func keepSelectorOnly(in any) (any, error) {
	slim := func(m metav1.ObjectMeta) metav1.ObjectMeta {
		return metav1.ObjectMeta{
			Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion,
			Generation: m.Generation, Labels: m.Labels, DeletionTimestamp: m.DeletionTimestamp,
		}
	}
	switch w := in.(type) {
	case *appsv1.Deployment:
		return &appsv1.Deployment{TypeMeta: w.TypeMeta, ObjectMeta: slim(w.ObjectMeta), Spec: appsv1.DeploymentSpec{Selector: w.Spec.Selector}}, nil
	case *appsv1.StatefulSet:
		return &appsv1.StatefulSet{TypeMeta: w.TypeMeta, ObjectMeta: slim(w.ObjectMeta), Spec: appsv1.StatefulSetSpec{Selector: w.Spec.Selector}}, nil
	case *appsv1.DaemonSet:
		return &appsv1.DaemonSet{TypeMeta: w.TypeMeta, ObjectMeta: slim(w.ObjectMeta), Spec: appsv1.DaemonSetSpec{Selector: w.Spec.Selector}}, nil
	}
	return in, nil
}

// podHandler enqueues the WorkloadIsolations whose resolved target selects a
// pod, before or after a change, so status.selectedPods follows pods coming,
// going and changing labels. Pod updates that keep the labels are ignored.
type podHandler struct {
	client client.Reader
}

var _ handler.EventHandler = podHandler{}

func (h podHandler) Create(ctx context.Context, e event.CreateEvent, q workqueue) {
	h.enqueue(ctx, q, e.Object)
}

func (h podHandler) Update(ctx context.Context, e event.UpdateEvent, q workqueue) {
	if labels.Equals(e.ObjectOld.GetLabels(), e.ObjectNew.GetLabels()) {
		return
	}
	h.enqueue(ctx, q, e.ObjectOld, e.ObjectNew)
}

func (h podHandler) Delete(ctx context.Context, e event.DeleteEvent, q workqueue) {
	h.enqueue(ctx, q, e.Object)
}

func (h podHandler) Generic(context.Context, event.GenericEvent, workqueue) {}

func (h podHandler) enqueue(ctx context.Context, q workqueue, pods ...client.Object) {
	list := &isolationv1alpha1.WorkloadIsolationList{}
	if err := h.client.List(ctx, list, client.InNamespace(pods[0].GetNamespace()), client.UnsafeDisableDeepCopy); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "listing WorkloadIsolations for pod", "pod", pods[0].GetName())
		return
	}
	for _, req := range requests(list.Items, func(wi isolationv1alpha1.WorkloadIsolation) bool {
		selector, err := labels.Parse(wi.Status.Target)
		if err != nil || wi.Status.Target == "" {
			return true // not resolved yet: let the reconciler decide
		}
		for _, pod := range pods {
			if selector.Matches(labels.Set(pod.GetLabels())) {
				return true
			}
		}
		return false
	}) {
		q.Add(req)
	}
}

func requests(items []isolationv1alpha1.WorkloadIsolation, keep func(isolationv1alpha1.WorkloadIsolation) bool) []reconcile.Request {
	var out []reconcile.Request
	for _, wi := range items {
		if keep(wi) {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: wi.Namespace, Name: wi.Name}})
		}
	}
	return out
}

// policyHandler enqueues, for a NetworkPolicy event, the WorkloadIsolation
// that controls the policy and those whose target pods the policy selects
// (before or after the change). Other isolations of the namespace cannot be
// affected: a policy only admits traffic to the pods it selects.
type policyHandler struct {
	client client.Reader
}

var _ handler.EventHandler = policyHandler{}

func (h policyHandler) Create(ctx context.Context, e event.CreateEvent, q workqueue) {
	h.enqueue(ctx, q, e.Object)
}

func (h policyHandler) Update(ctx context.Context, e event.UpdateEvent, q workqueue) {
	h.enqueue(ctx, q, e.ObjectOld, e.ObjectNew)
}

func (h policyHandler) Delete(ctx context.Context, e event.DeleteEvent, q workqueue) {
	h.enqueue(ctx, q, e.Object)
}

func (h policyHandler) Generic(ctx context.Context, e event.GenericEvent, q workqueue) {
	h.enqueue(ctx, q, e.Object)
}

func (h policyHandler) enqueue(ctx context.Context, q workqueue, objs ...client.Object) {
	namespace := objs[0].GetNamespace()
	var selectors []labels.Selector
	for _, obj := range objs {
		np, ok := obj.(*networkingv1.NetworkPolicy)
		if !ok {
			continue
		}
		if owner := analysis.ControllingIsolation(np); owner != "" {
			q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Namespace: namespace, Name: owner}})
		}
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil {
			sel = labels.Everything()
		}
		selectors = append(selectors, sel)
	}
	list := &isolationv1alpha1.WorkloadIsolationList{}
	if err := h.client.List(ctx, list, client.InNamespace(namespace)); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "listing WorkloadIsolations", "namespace", namespace)
		return
	}
	if len(list.Items) == 0 {
		return
	}
	pods := &metav1.PartialObjectMetadataList{}
	pods.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("PodList"))
	if err := h.client.List(ctx, pods, client.InNamespace(namespace), client.UnsafeDisableDeepCopy); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "listing pods", "namespace", namespace)
		return
	}
	for _, wi := range list.Items {
		target, err := labels.Parse(wi.Status.Target)
		if err != nil || wi.Status.Target == "" {
			target = labels.Everything() // not resolved yet, or all pods
		}
		if sharesPod(pods.Items, target, selectors) {
			q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Namespace: wi.Namespace, Name: wi.Name}})
		}
	}
}

// sharesPod reports whether some pod matches the target and one of the
// policy selectors.
func sharesPod(pods []metav1.PartialObjectMetadata, target labels.Selector, selectors []labels.Selector) bool {
	for _, pod := range pods {
		set := labels.Set(pod.Labels)
		if !target.Matches(set) {
			continue
		}
		for _, sel := range selectors {
			if sel.Matches(set) {
				return true
			}
		}
	}
	return false
}
