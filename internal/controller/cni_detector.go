package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"
	"sigs.k8s.io/yaml"

	"github.com/isolator-dev/isolator/internal/cni"
)

// DefaultCNINamespaces are the namespaces CNI detection watches.
var DefaultCNINamespaces = []string{"kube-system", "calico-system", "kube-flannel", "cilium"}

// cniResync re-reads facts that are not watched (KKP ApplicationInstallations).
const cniResync = 5 * time.Minute

var applicationInstallationGVK = schema.GroupVersionKind{Group: "apps.kubermatic.k8c.io", Version: "v1", Kind: "ApplicationInstallationList"}

// CNIDetector keeps the cluster's CNI classification current. It watches,
// through a cache of its own, only DaemonSets and ConfigMaps of the system
// namespaces (stripped to what the classifier reads, including a
// DaemonSet's counts of scheduled and ready agent pods: every change of
// them, spec or status, classifies again) and the metadata of
// CRDs; KKP ApplicationInstallations are read directly when their API
// exists. When the classification changes, every WorkloadIsolation is
// reconciled again.
type CNIDetector struct {
	// Override, when set, is reported instead of detection.
	Override *cni.Result
	// Namespaces to watch; DefaultCNINamespaces when empty.
	Namespaces []string

	cache   cache.Cache
	reader  client.Reader // uncached, for ApplicationInstallations
	mu      sync.RWMutex
	current *cni.Result
	changed chan event.GenericEvent
}

// The detector reads through informers (list, watch), never by name.
// ConfigMaps (in the CNI namespaces) and KKP ApplicationInstallations (in
// kube-system) are granted by namespaced Roles, not by these cluster-wide
// rules: config/rbac/cni_detection_role.yaml, and the chart's Role per
// cniNamespaces entry.
// +kubebuilder:rbac:groups=apps,resources=daemonsets,verbs=list;watch
// +kubebuilder:rbac:groups=apiextensions.k8s.io,resources=customresourcedefinitions,verbs=list;watch

// Current returns the current classification, nil before the first one.
func (d *CNIDetector) Current() *cni.Result {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.current
}

// SetupWithManager creates the detector's cache and controller.
func (d *CNIDetector) SetupWithManager(mgr ctrl.Manager) error {
	d.changed = make(chan event.GenericEvent, 1)
	d.reader = mgr.GetAPIReader()
	if d.Override != nil {
		d.set(d.Override)
		return nil
	}
	namespaces := d.Namespaces
	if len(namespaces) == 0 {
		namespaces = DefaultCNINamespaces
	}
	byNamespace := map[string]cache.Config{}
	for _, ns := range namespaces {
		byNamespace[ns] = cache.Config{}
	}
	var err error
	d.cache, err = cache.New(mgr.GetConfig(), cache.Options{
		Scheme:            mgr.GetScheme(),
		Mapper:            mgr.GetRESTMapper(),
		DefaultNamespaces: byNamespace,
		DefaultTransform:  cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&appsv1.DaemonSet{}: {Transform: keepClassifiedFields},
			&corev1.ConfigMap{}: {Transform: keepCNIConfigOnly},
		},
	})
	if err != nil {
		return fmt.Errorf("creating the CNI detection cache: %w", err)
	}
	if err := mgr.Add(d.cache); err != nil {
		return err
	}
	crd := &metav1.PartialObjectMetadata{}
	crd.SetGroupVersionKind(apiextensionsv1.SchemeGroupVersion.WithKind("CustomResourceDefinition"))
	one := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{{NamespacedName: client.ObjectKey{Name: "cni"}}}
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("cni-detector").
		WatchesRawSource(source.Kind(d.cache, client.Object(&appsv1.DaemonSet{}), one)).
		WatchesRawSource(source.Kind(d.cache, client.Object(&corev1.ConfigMap{}), one)).
		WatchesRawSource(source.Kind(d.cache, client.Object(crd), one)).
		Complete(d)
}

// Reconcile classifies the cluster's CNI again.
func (d *CNIDetector) Reconcile(ctx context.Context, _ reconcile.Request) (ctrl.Result, error) {
	facts, err := d.facts(ctx)
	if err != nil {
		return ctrl.Result{}, err
	}
	result := cni.Classify(facts)
	if d.set(&result) {
		ctrl.LoggerFrom(ctx).Info("CNI classified", "cni", result.Name, "version", result.Version,
			"enforcesNetworkPolicy", result.Enforces, "evidence", result.EvidenceString())
	}
	return ctrl.Result{RequeueAfter: cniResync}, nil
}

// set stores a classification and reports whether it changed; a change
// re-reconciles every WorkloadIsolation.
func (d *CNIDetector) set(r *cni.Result) bool {
	d.mu.Lock()
	changed := d.current == nil || !equality.Semantic.DeepEqual(*d.current, *r)
	if changed {
		d.current = r
	}
	d.mu.Unlock()
	if changed {
		recordCNIMetric(r)
		select {
		case d.changed <- event.GenericEvent{Object: &metav1.PartialObjectMetadata{}}:
		default: // a notification is already pending
		}
	}
	return changed
}

// Changes is a source for the WorkloadIsolation controller that fires when
// the classification changes.
func (d *CNIDetector) Changes(r client.Reader) source.Source {
	return source.Channel(d.changed, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, _ client.Object) []reconcile.Request {
		return mapAll(ctx, r)
	}))
}

func (d *CNIDetector) facts(ctx context.Context) (cni.Facts, error) {
	var f cni.Facts
	daemonSets := &appsv1.DaemonSetList{}
	if err := d.cache.List(ctx, daemonSets); err != nil {
		return f, fmt.Errorf("listing DaemonSets: %w", err)
	}
	for _, ds := range daemonSets.Items {
		f.DaemonSets = append(f.DaemonSets, daemonSetFacts(ds))
	}
	configMaps := &corev1.ConfigMapList{}
	if err := d.cache.List(ctx, configMaps); err != nil {
		return f, fmt.Errorf("listing ConfigMaps: %w", err)
	}
	for _, cm := range configMaps.Items {
		if slices.Contains(cni.ConfigMapNames, cm.Name) {
			f.ConfigMaps = append(f.ConfigMaps, cni.ConfigMap{Namespace: cm.Namespace, Name: cm.Name, Data: cm.Data})
		}
	}
	crds := &metav1.PartialObjectMetadataList{}
	crds.SetGroupVersionKind(apiextensionsv1.SchemeGroupVersion.WithKind("CustomResourceDefinitionList"))
	if err := d.cache.List(ctx, crds); err != nil {
		return f, fmt.Errorf("listing CRDs: %w", err)
	}
	for _, crd := range crds.Items {
		if crd.Name == cni.CiliumNetworkPolicyCRD || crd.Name == cni.CiliumClusterwideNetworkPolicyCRD {
			f.CiliumPolicyCRDs = append(f.CiliumPolicyCRDs, crd.Name)
		}
		if _, group, ok := strings.Cut(crd.Name, "."); ok && !slices.Contains(f.APIGroups, group) {
			f.APIGroups = append(f.APIGroups, group)
		}
	}
	if slices.Contains(f.APIGroups, applicationInstallationGVK.Group) {
		apps, err := d.applications(ctx)
		if err != nil {
			return f, err
		}
		f.Applications = apps
	}
	return f, nil
}

// applications reads KKP ApplicationInstallations of kube-system, where KKP
// installs its managed CNI.
func (d *CNIDetector) applications(ctx context.Context) ([]cni.Application, error) {
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(applicationInstallationGVK)
	if err := d.reader.List(ctx, list, client.InNamespace("kube-system")); err != nil {
		if meta.IsNoMatchError(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("listing ApplicationInstallations: %w", err)
	}
	var out []cni.Application
	for _, item := range list.Items {
		name, _, _ := unstructured.NestedString(item.Object, "spec", "applicationRef", "name")
		version, _, _ := unstructured.NestedString(item.Object, "spec", "applicationRef", "version")
		values, _, _ := unstructured.NestedMap(item.Object, "spec", "values")
		if block, _, _ := unstructured.NestedString(item.Object, "spec", "valuesBlock"); block != "" {
			parsed := map[string]any{}
			if err := yaml.Unmarshal([]byte(block), &parsed); err == nil {
				values = parsed
			}
		}
		out = append(out, cni.Application{Namespace: item.GetNamespace(), Name: item.GetName(), Application: name, Version: version, Values: values})
	}
	return out, nil
}

func daemonSetFacts(ds appsv1.DaemonSet) cni.DaemonSet {
	out := cni.DaemonSet{Namespace: ds.Namespace, Name: ds.Name, Labels: ds.Labels,
		Generation: ds.Generation, ObservedGeneration: ds.Status.ObservedGeneration,
		DesiredNumberScheduled: ds.Status.DesiredNumberScheduled, NumberReady: ds.Status.NumberReady}
	spec := ds.Spec.Template.Spec
	for _, c := range append(append([]corev1.Container(nil), spec.InitContainers...), spec.Containers...) {
		env := map[string]string{}
		for _, e := range c.Env {
			env[e.Name] = e.Value
		}
		out.Containers = append(out.Containers, cni.Container{Name: c.Name, Image: c.Image, Command: c.Command, Args: c.Args, Env: env})
	}
	return out
}

// keepClassifiedFields is a cache transform that keeps of a DaemonSet only
// its identity and generation, the name, image, command, args and plain env
// of its containers, and the status counts of scheduled and ready agent pods
// with their observed generation.
func keepClassifiedFields(in any) (any, error) {
	ds, ok := in.(*appsv1.DaemonSet)
	if !ok {
		return in, nil
	}
	slim := func(cs []corev1.Container) []corev1.Container {
		out := make([]corev1.Container, 0, len(cs))
		for _, c := range cs {
			var env []corev1.EnvVar
			for _, e := range c.Env {
				if e.ValueFrom == nil {
					env = append(env, corev1.EnvVar{Name: e.Name, Value: e.Value})
				}
			}
			out = append(out, corev1.Container{Name: c.Name, Image: c.Image, Command: c.Command, Args: c.Args, Env: env})
		}
		return out
	}
	return &appsv1.DaemonSet{
		TypeMeta: ds.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name: ds.Name, Namespace: ds.Namespace, UID: ds.UID, ResourceVersion: ds.ResourceVersion, Labels: ds.Labels,
			Generation: ds.Generation,
		},
		Spec: appsv1.DaemonSetSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			InitContainers: slim(ds.Spec.Template.Spec.InitContainers),
			Containers:     slim(ds.Spec.Template.Spec.Containers),
		}}},
		Status: appsv1.DaemonSetStatus{
			ObservedGeneration:     ds.Status.ObservedGeneration,
			DesiredNumberScheduled: ds.Status.DesiredNumberScheduled,
			NumberReady:            ds.Status.NumberReady,
		},
	}, nil
}

// keepCNIConfigOnly is a cache transform that keeps, of the ConfigMaps the
// classifier reads, only the keys it reads (cni.ConfigMapKeys), and drops
// the data of all others.
func keepCNIConfigOnly(in any) (any, error) {
	cm, ok := in.(*corev1.ConfigMap)
	if !ok {
		return in, nil
	}
	out := &corev1.ConfigMap{TypeMeta: cm.TypeMeta, ObjectMeta: metav1.ObjectMeta{
		Name: cm.Name, Namespace: cm.Namespace, UID: cm.UID, ResourceVersion: cm.ResourceVersion,
	}}
	for _, key := range cni.ConfigMapKeys[cm.Name] {
		if v, ok := cm.Data[key]; ok {
			if out.Data == nil {
				out.Data = map[string]string{}
			}
			out.Data[key] = v
		}
	}
	return out, nil
}
