package controller

import (
	"context"
	"fmt"
	"slices"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	anpv1alpha1 "sigs.k8s.io/network-policy-api/apis/v1alpha1"
	cnpv1alpha2 "sigs.k8s.io/network-policy-api/apis/v1alpha2"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/ciliumpolicy"
)

// workloadRefIndex indexes WorkloadIsolations by "<Kind>/<name>" of their
// spec.target.workloadRef.
const workloadRefIndex = "spec.target.workloadRef"

// CacheOptions restricts the manager's cache to what the reconciler needs, so
// memory stays small on large clusters: workloads are stripped down to their
// selector, Pods and Namespaces are watched metadata-only (see
// SetupWithManager) and cut down further (slimObjects), and managed fields
// are dropped from every object.
// NetworkPolicies are cached with their spec (the isolation analysis reads
// all of them), without annotations. Cached objects share maps with one
// another (slimObjects): what is read from the cache must not be modified.
func CacheOptions() cache.Options {
	return cache.Options{
		DefaultTransform: slimObjects,
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
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &isolationv1alpha1.WorkloadIsolation{}, namespaceEventIndex,
		namespaceEventKeys); err != nil {
		return fmt.Errorf("indexing WorkloadIsolations by the namespaces that concern them: %w", err)
	}
	r.namespaces.watched.Store(true)
	b := ctrl.NewControllerManagedBy(mgr).
		For(&isolationv1alpha1.WorkloadIsolation{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		// Generated names can collide between resources of a namespace.
		Watches(&isolationv1alpha1.WorkloadIsolation{}, isolationHandler{client: mgr.GetClient()}).
		Watches(&isolationv1alpha1.WorkloadIsolation{}, handler.Funcs{UpdateFunc: r.cacheCaughtUp}).
		// Any NetworkPolicy, generated or not, can change what reaches the
		// pods it selects: re-evaluate the isolations of those pods.
		Watches(&networkingv1.NetworkPolicy{}, policyHandler{client: mgr.GetClient()}).
		WatchesMetadata(&corev1.Pod{}, podHandler{client: mgr.GetClient()}).
		WatchesMetadata(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.mapExposed),
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
	// Guarded isolations say whether the admission guard is installed.
	if r.guardAPI = guardServed(mgr.GetRESTMapper()); r.guardAPI {
		b = b.Watches(&admissionregistrationv1.ValidatingAdmissionPolicy{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, _ client.Object) []reconcile.Request {
			return mapAll(ctx, mgr.GetClient())
		})).Watches(&admissionregistrationv1.ValidatingAdmissionPolicyBinding{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, _ client.Object) []reconcile.Request {
			return mapAll(ctx, mgr.GetClient())
		}))
	}
	// Generated CiliumNetworkPolicies are repaired when changed or deleted,
	// and every other Cilium policy is analysed like a NetworkPolicy. The
	// agents' status writes change nothing the operator reads.
	specOrMetadata := builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, predicate.LabelChangedPredicate{},
		ownersChanged()))
	if r.CiliumPolicies = served(mgr.GetRESTMapper(), ciliumpolicy.GVK); r.CiliumPolicies {
		r.ciliumPolicies = mgr.GetCache()
		cnp := &unstructured.Unstructured{}
		cnp.SetGroupVersionKind(ciliumpolicy.GVK)
		b = b.Watches(cnp, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, obj client.Object) []reconcile.Request {
			return mapNamespace(ctx, mgr.GetClient(), obj.GetNamespace())
		}), specOrMetadata)
		// CiliumEndpoints say which target pods Cilium polices.
		if r.ciliumEndpoints = served(mgr.GetRESTMapper(), ciliumpolicy.EndpointGVK); r.ciliumEndpoints {
			r.endpoints = mgr.GetCache()
			cep := &unstructured.Unstructured{}
			cep.SetGroupVersionKind(ciliumpolicy.EndpointGVK)
			b = b.Watches(cep, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, obj client.Object) []reconcile.Request {
				return mapNamespace(ctx, mgr.GetClient(), obj.GetNamespace())
			}), builder.WithPredicates(endpointChanged()))
		}
		if r.clusterwideCilium = served(mgr.GetRESTMapper(), ciliumpolicy.ClusterwideGVK); r.clusterwideCilium {
			ccnp := &unstructured.Unstructured{}
			ccnp.SetGroupVersionKind(ciliumpolicy.ClusterwideGVK)
			b = b.Watches(ccnp, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, _ client.Object) []reconcile.Request {
				return mapAll(ctx, mgr.GetClient())
			}), specOrMetadata)
		}
	}
	// Guarded isolations write an admin-tier policy where the CNI
	// implements one; every admin-tier policy may widen any isolation.
	served, cnpVersion, err := adminServed(mgr.GetRESTMapper())
	if err != nil {
		return err
	}
	r.admin.served, r.admin.cnpVersion, r.admin.written = served, cnpVersion, map[types.UID]writtenAdmin{}
	// Status updates (which implementations may write often) change
	// nothing the operator reads.
	specOrLabels := builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, predicate.LabelChangedPredicate{},
		predicate.AnnotationChangedPredicate{}))
	if served.AdminNetworkPolicy {
		b = b.Watches(&anpv1alpha1.AdminNetworkPolicy{}, handler.EnqueueRequestsFromMapFunc(r.mapAdminPolicy), specOrLabels)
	}
	switch {
	case served.ClusterNetworkPolicy && cnpVersion == cnpv1beta1.GroupVersion.Version:
		b = b.Watches(&cnpv1beta1.ClusterNetworkPolicy{}, handler.EnqueueRequestsFromMapFunc(r.mapAdminPolicy), specOrLabels)
	case served.ClusterNetworkPolicy:
		b = b.Watches(&cnpv1alpha2.ClusterNetworkPolicy{}, handler.EnqueueRequestsFromMapFunc(r.mapAdminPolicy), specOrLabels)
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
			client.MatchingFields{workloadRefIndex: workloadRefKey(string(kind), obj.GetName())}, client.UnsafeDisableDeepCopy); err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "listing WorkloadIsolations for workload", "kind", kind, "name", obj.GetName())
			return nil
		}
		return requests(list.Items, func(isolationv1alpha1.WorkloadIsolation) bool { return true })
	}
}

// mapExposed enqueues, for a namespace created, deleted or relabelled, the
// WorkloadIsolations it can affect: those that report an exposure, those
// whose presetNamespace names it, and, where admin-tier policies are
// served, those of the namespace itself. Whether a policy widens an isolation does
// not depend on which namespaces exist (namespace selectors are compared by
// their requirements); only whether a widening is open now or latent does,
// and only resources with an exposure have one to report. Other resources
// are not re-analysed, and an index finds the affected ones without looking
// at the others, so a namespace event costs work in proportion to the
// isolations it can affect. The namespace snapshot of the analysis is
// marked out of date.
func (r *WorkloadIsolationReconciler) mapExposed(ctx context.Context, ns client.Object) []reconcile.Request {
	r.namespaces.invalidate()
	seen := map[reconcile.Request]bool{}
	var out []reconcile.Request
	for _, key := range []string{exposedKey, presetNamespaceKey(ns.GetName())} {
		list := &isolationv1alpha1.WorkloadIsolationList{}
		if err := r.List(ctx, list, client.MatchingFields{namespaceEventIndex: key}, client.UnsafeDisableDeepCopy); err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "listing WorkloadIsolations", "index", key)
			return nil
		}
		for _, req := range requests(list.Items, func(isolationv1alpha1.WorkloadIsolation) bool { return true }) {
			if !seen[req] {
				seen[req] = true
				out = append(out, req)
			}
		}
	}
	if r.admin.served.AdminNetworkPolicy || r.admin.served.ClusterNetworkPolicy || r.clusterwideCilium {
		// Admin-tier and clusterwide Cilium subjects select namespaces by
		// their labels: which ones may widen the isolations of this
		// namespace, and which ones their guard policies must come
		// after, may have changed.
		for _, req := range mapNamespace(ctx, r.Client, ns.GetName()) {
			if !seen[req] {
				seen[req] = true
				out = append(out, req)
			}
		}
	}
	return out
}

// namespaceEventIndex indexes WorkloadIsolations by what makes a namespace
// event concern them: exposedKey while they report an exposure, and
// presetNamespaceKey(name) for each presetNamespace they name.
const (
	namespaceEventIndex = "namespaceEvents"
	exposedKey          = "exposed"
)

func presetNamespaceKey(name string) string { return "presetNamespace/" + name }

func namespaceEventKeys(obj client.Object) []string {
	wi := obj.(*isolationv1alpha1.WorkloadIsolation)
	var keys []string
	if len(wi.Status.Exposure) > 0 {
		keys = append(keys, exposedKey)
	}
	for _, rule := range wi.Spec.Ingress {
		for _, from := range rule.From {
			if from.PresetNamespace != "" {
				keys = append(keys, presetNamespaceKey(from.PresetNamespace))
			}
		}
	}
	for _, rule := range wi.Spec.Egress {
		for _, to := range rule.To {
			if to.PresetNamespace != "" {
				keys = append(keys, presetNamespaceKey(to.PresetNamespace))
			}
		}
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

func mapAll(ctx context.Context, r client.Reader) []reconcile.Request {
	list := &isolationv1alpha1.WorkloadIsolationList{}
	if err := r.List(ctx, list, client.UnsafeDisableDeepCopy); err != nil {
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

// mapNamespace requests every WorkloadIsolation of a namespace.
func mapNamespace(ctx context.Context, r client.Reader, namespace string) []reconcile.Request {
	list := &isolationv1alpha1.WorkloadIsolationList{}
	if err := r.List(ctx, list, client.InNamespace(namespace), client.UnsafeDisableDeepCopy); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "listing WorkloadIsolations", "namespace", namespace)
		return nil
	}
	out := make([]reconcile.Request, 0, len(list.Items))
	for _, wi := range list.Items {
		out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&wi)})
	}
	return out
}
