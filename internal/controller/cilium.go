package controller

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	kerrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/analysis"
	"github.com/isolator-dev/isolator/internal/ciliumpolicy"
	"github.com/isolator-dev/isolator/internal/cni"
	"github.com/isolator-dev/isolator/internal/intent"
	"github.com/isolator-dev/isolator/internal/policy"
	"github.com/isolator-dev/isolator/internal/status"
)

// Generated CiliumNetworkPolicies are owned like the NetworkPolicies; other
// Cilium policies are only noticed.
// +kubebuilder:rbac:groups=cilium.io,resources=ciliumnetworkpolicies,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=cilium.io,resources=ciliumclusterwidenetworkpolicies,verbs=get;list;watch
// CiliumEndpoints say which pods Cilium polices.
// +kubebuilder:rbac:groups=cilium.io,resources=ciliumendpoints,verbs=list;watch

// served reports whether the cluster serves gvk.
func served(mapper meta.RESTMapper, gvk schema.GroupVersionKind) bool {
	_, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	return err == nil
}

// namespaceCiliumPolicies lists the CiliumNetworkPolicies of namespace
// from the cache, read-only; none where Cilium's API is not read.
func (r *WorkloadIsolationReconciler) namespaceCiliumPolicies(ctx context.Context, namespace string) ([]unstructured.Unstructured, error) {
	if !r.CiliumPolicies || r.ciliumPolicies == nil {
		return nil, nil
	}
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(ciliumpolicy.GVK.GroupVersion().WithKind(ciliumpolicy.Kind + "List"))
	if err := r.ciliumPolicies.List(ctx, list, client.InNamespace(namespace), client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("listing CiliumNetworkPolicies: %w", err)
	}
	return list.Items, nil
}

// ciliumWidenings spells for the analysis the Cilium policies that may
// widen wi's isolation: those of its namespace (namespaced, from
// namespaceCiliumPolicies) and every CiliumClusterwideNetworkPolicy in the
// cache; those it cannot read are named as unanalysed.
func (r *WorkloadIsolationReconciler) ciliumWidenings(ctx context.Context, namespaced []unstructured.Unstructured, t ciliumpolicy.Target) ([]analysis.AdminPolicy, []string, error) {
	if !r.CiliumPolicies || r.ciliumPolicies == nil {
		return nil, nil, nil
	}
	clusterwide := &unstructured.UnstructuredList{}
	if r.clusterwideCilium {
		clusterwide.SetGroupVersionKind(ciliumpolicy.ClusterwideGVK.GroupVersion().WithKind(ciliumpolicy.ClusterwideGVK.Kind + "List"))
		if err := r.ciliumPolicies.List(ctx, clusterwide, client.UnsafeDisableDeepCopy); err != nil {
			return nil, nil, fmt.Errorf("listing CiliumClusterwideNetworkPolicies: %w", err)
		}
	}
	admin, unanalysed := ciliumpolicy.Widenings(namespaced, clusterwide.Items, t)
	return admin, unanalysed, nil
}

// ciliumTarget is what the Cilium analysis of wi needs: its namespace and
// pods, its own policies as the sync left them (inPlace), and what they
// should say (written): one whose spec differs, a repair undone, is read.
func ciliumTarget(wi *isolationv1alpha1.WorkloadIsolation, ns analysis.Object, pods []analysis.Object,
	written []*unstructured.Unstructured, inPlace map[string]*unstructured.Unstructured) ciliumpolicy.Target {
	own := make(map[string]any, len(written))
	for _, d := range written {
		own[d.GetName()] = d.Object["spec"]
	}
	return ciliumpolicy.Target{Namespace: ns, Pods: pods, Self: wi.Name, SelfUID: wi.UID, Own: own, Current: inPlace}
}

// unreadCiliumPolicies names the Cilium policy kinds whose CRD the CNI
// detector sees installed now, on Cilium, but that the operator does not
// read: they were not served when it started (it looks for them once).
func (r *WorkloadIsolationReconciler) unreadCiliumPolicies(c *cni.Result) []string {
	if c == nil || !isCilium(c.Name) {
		return nil
	}
	var out []string
	if !r.CiliumPolicies && slices.Contains(c.CiliumPolicyCRDs, cni.CiliumNetworkPolicyCRD) {
		out = append(out, "CiliumNetworkPolicies (served now, not when the operator started; restart the operator)")
	}
	if !r.clusterwideCilium && slices.Contains(c.CiliumPolicyCRDs, cni.CiliumClusterwideNetworkPolicyCRD) {
		out = append(out, "CiliumClusterwideNetworkPolicies (served now, not when the operator started; restart the operator)")
	}
	return out
}

// ownersChanged lets through updates that change an object's owner
// references: what makes a generated object the operator's.
func ownersChanged() predicate.Funcs {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		return !equality.Semantic.DeepEqual(e.ObjectOld.GetOwnerReferences(), e.ObjectNew.GetOwnerReferences())
	}}
}

// coverage says which of the target pods Cilium polices, from the
// CiliumEndpoints of the namespace, when the CNI is an enforcing Cilium
// that maintains them; nil otherwise. Where Cilium should maintain them but
// the operator cannot read them, it says so in the CNI verdict it returns
// (a copy). Target pods without a usable endpoint are read (a few at most):
// those that have ended, are being deleted or have no IP yet have no
// network for a policy to guard, and are left out.
func (r *WorkloadIsolationReconciler) coverage(ctx context.Context, namespace string, pods []analysis.Object, c *cni.Result) (*cni.Coverage, *cni.Result, error) {
	if c == nil || !c.CiliumEndpoints {
		return nil, c, nil
	}
	if !r.ciliumEndpoints || r.endpoints == nil {
		noted := *c
		noted.CiliumEndpoints = false
		noted.EndpointsNote = "CiliumEndpoint was not served when the operator started, so which target pods Cilium manages cannot be read, and enforcement rests on its agents"
		return nil, &noted, nil
	}
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(ciliumpolicy.EndpointGVK.GroupVersion().WithKind(ciliumpolicy.EndpointGVK.Kind + "List"))
	if err := r.endpoints.List(ctx, list, client.InNamespace(namespace), client.UnsafeDisableDeepCopy); err != nil {
		return nil, c, fmt.Errorf("listing CiliumEndpoints: %w", err)
	}
	endpoints := make(map[string]cni.Endpoint, len(list.Items))
	for i := range list.Items {
		endpoints[list.Items[i].GetName()] = endpointOf(&list.Items[i])
	}
	names := make([]string, len(pods))
	for i, p := range pods {
		names[i] = p.Name
	}
	cov := cni.CoverageOf(names, endpoints)
	if r.APIReader == nil {
		return &cov, c, nil
	}
	var gone []string
	for _, name := range cov.Unmanaged[:min(len(cov.Unmanaged), unmanagedPodReads)] {
		pod := &corev1.Pod{}
		err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, pod)
		switch {
		case kerrors.IsNotFound(err):
			gone = append(gone, name)
		case err != nil:
			return nil, c, fmt.Errorf("reading target pod %s: %w", name, err)
		case pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed ||
			!pod.DeletionTimestamp.IsZero() || pod.Status.PodIP == "" && !pod.Spec.HostNetwork:
			gone = append(gone, name)
		}
	}
	cov = cov.Without(gone)
	return &cov, c, nil
}

// unmanagedPodReads bounds the target pods read per reconcile to tell an
// ended pod from one Cilium does not police; the others count as not
// policed (failing closed).
const unmanagedPodReads = 20

// endpointChanged lets through the CiliumEndpoint events that can change
// coverage: creation, deletion, and a change of state or security identity.
func endpointChanged() predicate.Funcs {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		old, okOld := e.ObjectOld.(*unstructured.Unstructured)
		cur, okNew := e.ObjectNew.(*unstructured.Unstructured)
		return !okOld || !okNew || endpointOf(old) != endpointOf(cur)
	}}
}

// onCilium reports whether the detected or configured CNI is Cilium and
// the cluster serves CiliumNetworkPolicy.
func (r *WorkloadIsolationReconciler) onCilium(outcome status.Outcome) bool {
	return r.CiliumPolicies && outcome.CNI != nil && isCilium(outcome.CNI.Name)
}

// isCilium reports whether a CNI name (several joined by "+") names Cilium.
func isCilium(name string) bool {
	return slices.Contains(strings.Split(name, "+"), "cilium")
}

// ciliumObjects are the Cilium objects wi's intent needs on Cilium. The
// HTTP and host-name policies are written whether or not Cilium enforces
// layer 7 right now: an agent without its L7 proxy refuses them (their
// traffic stays denied), and while agents roll out they must stay.
func ciliumObjects(in *intent.Intent) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	dns, err := ciliumpolicy.DNSHost(in)
	if err != nil {
		return nil, err
	}
	if dns != nil {
		out = append(out, dns)
	}
	http, err := ciliumpolicy.HTTP(in)
	if err != nil {
		return nil, err
	}
	out = append(out, http...)
	hosts, err := ciliumpolicy.Hosts(in)
	if err != nil {
		return nil, err
	}
	if hosts != nil {
		out = append(out, hosts)
	}
	return out, nil
}

// l7NotEnforced says which of the intent's rules with http or hosts the
// cluster cannot enforce, and why; nil when it can, or there are none.
func (r *WorkloadIsolationReconciler) l7NotEnforced(in *intent.Intent, outcome status.Outcome) *status.L7NotEnforced {
	out := &status.L7NotEnforced{}
	for _, rule := range in.HTTPRules() {
		out.Rules = append(out.Rules, fmt.Sprintf("ingress rule %s (HTTP requests)", rule.Name))
	}
	for _, rule := range in.HostRules() {
		out.Rules = append(out.Rules, fmt.Sprintf("egress rule %s (host names)", rule.Name))
	}
	if len(out.Rules) == 0 {
		return nil
	}
	switch {
	case outcome.CNI == nil:
		out.Why = "no known CNI gives"
	case !isCilium(outcome.CNI.Name):
		out.Why = fmt.Sprintf("CNI %s does not give (only Cilium with its L7 proxy does)", orUnknown(outcome.CNI.Name))
	case !r.CiliumPolicies:
		out.Why = "Cilium does not give here: CiliumNetworkPolicy was not served when the operator started"
	case !outcome.CNI.L7 && outcome.CNI.L7Note != "":
		out.Why = "Cilium does not give here: " + outcome.CNI.L7Note
	case !outcome.CNI.L7:
		out.Why = "Cilium does not give here: its L7 proxy is off or its agents do not enforce policy"
	default:
		return nil
	}
	return out
}

func orUnknown(name string) string {
	if name == "" {
		return "unknown"
	}
	return name
}

// syncCilium keeps wi's CiliumNetworkPolicies as desired: it creates the
// missing ones, repairs those it owns that drifted (a whole-object update
// with a resourceVersion precondition), deletes those it owns that are no
// longer desired, and never modifies or deletes one it does not own. It
// reads each object it desires, that status lists or that cached (the
// namespace's, from the cache) holds as wi's, directly from the API server
// (they are few). It returns the
// references of the objects in place, and those objects as the server
// holds them after the sync.
func (r *WorkloadIsolationReconciler) syncCilium(ctx context.Context, wi *isolationv1alpha1.WorkloadIsolation,
	desired []*unstructured.Unstructured, cached []unstructured.Unstructured) ([]isolationv1alpha1.PolicyReference, map[string]*unstructured.Unstructured, *status.Failure, error) {
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
	// What status no longer lists (a sync cut short) is still found
	// among the cached policies wi owns.
	for i := range cached {
		if _, ok := names[cached[i].GetName()]; !ok && ownsObject(&cached[i], wi) {
			names[cached[i].GetName()] = nil
		}
	}
	var refs []isolationv1alpha1.PolicyReference
	var failure *status.Failure
	fail := func(f *status.Failure) {
		if failure == nil {
			failure = f
		}
	}
	// Repairs are tracked like the NetworkPolicies': another writer that
	// keeps changing a policy makes it Contested.
	note := func(name, haveVersion, writer string, now time.Time) {
		key := ciliumRepairKey(name)
		if r.changedByOthers(wi, key, haveVersion) {
			if contested := r.recordRepair(wi, key, writer, now); contested != nil {
				fail(contested)
			}
		}
	}
	notConverged := func(name string) *status.Failure {
		return &status.Failure{Reason: isolationv1alpha1.ReasonNotConverged, Message: fmt.Sprintf(
			"CiliumNetworkPolicy %s/%s differs from the spec right after the operator wrote it: something rewrites it; the operator backs off", wi.Namespace, name)}
	}
	inPlace := map[string]*unstructured.Unstructured{}
	for _, name := range slices.Sorted(maps.Keys(names)) {
		want := names[name]
		have := &unstructured.Unstructured{}
		have.SetGroupVersionKind(ciliumpolicy.GVK)
		err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: wi.Namespace, Name: name}, have)
		found := err == nil
		if err != nil && !kerrors.IsNotFound(err) {
			return refs, inPlace, failure, fmt.Errorf("reading CiliumNetworkPolicy %s: %w", name, err)
		}
		owned := found && ownsObject(have, wi)
		now := time.Now()
		switch {
		case want == nil && owned:
			uid, rv := have.GetUID(), have.GetResourceVersion()
			if err := r.Delete(ctx, have, client.Preconditions{UID: &uid, ResourceVersion: &rv}); client.IgnoreNotFound(err) != nil {
				return refs, inPlace, failure, fmt.Errorf("deleting CiliumNetworkPolicy %s: %w", name, err)
			}
			inPlace[name] = nil // gone, whatever the cache still holds
			r.wrote(wi, ciliumRepairKey(name), "")
		case want == nil:
		case found && !owned:
			// Left untouched; the other policies are still kept.
			fail(&status.Failure{Reason: isolationv1alpha1.ReasonNameConflict, Stalled: true, Message: fmt.Sprintf(
				"CiliumNetworkPolicy %s/%s exists and was not created by this WorkloadIsolation; it is left untouched. Rename the WorkloadIsolation or remove that object", wi.Namespace, name)})
		case !found:
			created := want.DeepCopy()
			if err := r.Create(ctx, created, client.FieldOwner(FieldOwner)); err != nil {
				return refs, inPlace, failure, fmt.Errorf("creating CiliumNetworkPolicy %s: %w", name, err)
			}
			refs = append(refs, isolationv1alpha1.PolicyReference{Kind: ciliumpolicy.Kind, Name: name})
			inPlace[name] = created
			note(name, "", "", now) // one it had written: deleted by someone else
			r.wrote(wi, ciliumRepairKey(name), created.GetResourceVersion())
			if !upToDate(created, want) {
				fail(notConverged(name))
			}
		default:
			refs = append(refs, isolationv1alpha1.PolicyReference{Kind: ciliumpolicy.Kind, Name: name})
			inPlace[name] = have
			if upToDate(have, want) {
				continue
			}
			// A whole-object update (with have's resourceVersion as
			// precondition): fields someone else added, in spec or as
			// specs, go too, which an apply of the operator's own fields
			// would leave.
			repaired := have.DeepCopy()
			repaired.Object["spec"] = runtime.DeepCopyJSONValue(want.Object["spec"])
			delete(repaired.Object, "specs")
			labels := repaired.GetLabels()
			if labels == nil {
				labels = map[string]string{}
			}
			maps.Copy(labels, want.GetLabels())
			repaired.SetLabels(labels)
			repaired.SetOwnerReferences(mergeOwners(want.GetOwnerReferences(), have.GetOwnerReferences()))
			if err := r.Update(ctx, repaired, client.FieldOwner(FieldOwner)); err != nil {
				return refs, inPlace, failure, fmt.Errorf("repairing CiliumNetworkPolicy %s: %w", name, err)
			}
			inPlace[name] = repaired
			note(name, have.GetResourceVersion(), lastWriter(have), now)
			r.wrote(wi, ciliumRepairKey(name), repaired.GetResourceVersion())
			// What the server keeps must be what was meant: anything that
			// rewrites it at once (an admission policy) would otherwise be
			// fought on every reconcile.
			if !upToDate(repaired, want) {
				fail(notConverged(name))
			}
		}
	}
	return refs, inPlace, failure, nil
}

// ciliumRepairKey names a CiliumNetworkPolicy in the repair log, apart
// from a NetworkPolicy of the same name.
func ciliumRepairKey(name string) string { return ciliumpolicy.Kind + " " + name }

// mergeOwners is the operator's owner references and the others' that
// control nothing.
func mergeOwners(ours, theirs []metav1.OwnerReference) []metav1.OwnerReference {
	out := slices.Clone(ours)
	for _, ref := range theirs {
		if (ref.Controller == nil || !*ref.Controller) && !slices.ContainsFunc(out, func(o metav1.OwnerReference) bool { return o.UID == ref.UID }) {
			out = append(out, ref)
		}
	}
	return out
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

// upToDate: the same spec and no other rules (specs), and the generated
// labels and owner reference.
func upToDate(have, want *unstructured.Unstructured) bool {
	if _, extra := have.Object["specs"]; extra {
		return false
	}
	for k, v := range want.GetLabels() {
		if have.GetLabels()[k] != v {
			return false
		}
	}
	if !metav1.IsControlledBy(have, &metav1.ObjectMeta{UID: want.GetOwnerReferences()[0].UID}) {
		return false
	}
	return equality.Semantic.DeepEqual(have.Object["spec"], want.Object["spec"])
}

// unstructuredReferences names objects for status.policies.
func unstructuredReferences(objs []*unstructured.Unstructured) []isolationv1alpha1.PolicyReference {
	refs := make([]isolationv1alpha1.PolicyReference, 0, len(objs))
	for _, o := range objs {
		refs = append(refs, isolationv1alpha1.PolicyReference{Kind: o.GetKind(), Name: o.GetName()})
	}
	return refs
}

// ciliumReferences keeps the Cilium entries of status.policies.
func ciliumReferences(refs []isolationv1alpha1.PolicyReference) []isolationv1alpha1.PolicyReference {
	var out []isolationv1alpha1.PolicyReference
	for _, ref := range refs {
		if ref.Kind == ciliumpolicy.Kind {
			out = append(out, ref)
		}
	}
	return out
}
