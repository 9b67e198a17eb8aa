package controller

import (
	"context"
	"slices"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	clientworkqueue "k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/analysis"
	"github.com/isolator-dev/isolator/internal/policy"
)

// Event handlers that map Pod and NetworkPolicy events to the
// WorkloadIsolations they can affect.

type workqueue = clientworkqueue.TypedRateLimitingInterface[reconcile.Request]

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
		selector := targetSelector(&wi)
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
	if err := h.client.List(ctx, list, client.InNamespace(namespace), client.UnsafeDisableDeepCopy); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "listing WorkloadIsolations", "namespace", namespace)
		return
	}
	if len(list.Items) == 0 {
		return
	}
	// Only the pods the policies select are listed (and copied): a
	// namespace's other pods cannot tie the policies to an isolation.
	var pods []metav1.PartialObjectMetadata
	for i, sel := range selectors {
		if slices.ContainsFunc(selectors[:i], func(s labels.Selector) bool { return s.String() == sel.String() }) {
			continue
		}
		selected := &metav1.PartialObjectMetadataList{}
		selected.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("PodList"))
		if err := h.client.List(ctx, selected, client.InNamespace(namespace), client.MatchingLabelsSelector{Selector: sel},
			client.UnsafeDisableDeepCopy); err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "listing pods", "namespace", namespace)
			return
		}
		pods = append(pods, selected.Items...)
	}
	for i := range list.Items {
		wi := &list.Items[i]
		if selectsAny(pods, targetSelector(wi)) || generates(wi, objs) {
			q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Namespace: wi.Namespace, Name: wi.Name}})
		}
	}
}

// targetSelector returns the resolved target selector from status, or
// everything when it is not resolved yet (the reconciler then decides).
func targetSelector(wi *isolationv1alpha1.WorkloadIsolation) labels.Selector {
	if wi.Status.TargetSelector == nil {
		return labels.Everything()
	}
	sel, err := metav1.LabelSelectorAsSelector(wi.Status.TargetSelector)
	if err != nil {
		return labels.Everything()
	}
	return sel
}

// generates reports whether wi generates a policy of one of the objects'
// names: a policy that takes or frees such a name changes whether wi can
// write it.
func generates(wi *isolationv1alpha1.WorkloadIsolation, objs []client.Object) bool {
	names := policy.GeneratedNames(wi)
	return slices.ContainsFunc(objs, func(o client.Object) bool { return slices.Contains(names, o.GetName()) })
}

// isolationHandler enqueues, for a WorkloadIsolation that is created,
// deleted or whose spec changed, the other WorkloadIsolations of its
// namespace that generate one of the same names (before or after the
// change): a collision appears or goes away on both.
type isolationHandler struct {
	client client.Reader
}

var _ handler.EventHandler = isolationHandler{}

func (h isolationHandler) Create(ctx context.Context, e event.CreateEvent, q workqueue) {
	h.enqueue(ctx, q, e.Object)
}

func (h isolationHandler) Update(ctx context.Context, e event.UpdateEvent, q workqueue) {
	if e.ObjectOld.GetGeneration() == e.ObjectNew.GetGeneration() {
		return
	}
	h.enqueue(ctx, q, e.ObjectOld, e.ObjectNew)
}

func (h isolationHandler) Delete(ctx context.Context, e event.DeleteEvent, q workqueue) {
	h.enqueue(ctx, q, e.Object)
}

func (h isolationHandler) Generic(context.Context, event.GenericEvent, workqueue) {}

func (h isolationHandler) enqueue(ctx context.Context, q workqueue, objs ...client.Object) {
	var names []string
	for _, obj := range objs {
		if wi, ok := obj.(*isolationv1alpha1.WorkloadIsolation); ok {
			names = append(names, policy.GeneratedNames(wi)...)
		}
	}
	list := &isolationv1alpha1.WorkloadIsolationList{}
	if err := h.client.List(ctx, list, client.InNamespace(objs[0].GetNamespace()), client.UnsafeDisableDeepCopy); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "listing WorkloadIsolations", "namespace", objs[0].GetNamespace())
		return
	}
	for i := range list.Items {
		other := &list.Items[i]
		if other.Name == objs[0].GetName() {
			continue
		}
		if slices.ContainsFunc(policy.GeneratedNames(other), func(n string) bool { return slices.Contains(names, n) }) {
			q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Namespace: other.Namespace, Name: other.Name}})
		}
	}
}

// selectsAny reports whether the target selects one of the pods.
func selectsAny(pods []metav1.PartialObjectMetadata, target labels.Selector) bool {
	return slices.ContainsFunc(pods, func(pod metav1.PartialObjectMetadata) bool { return target.Matches(labels.Set(pod.Labels)) })
}
