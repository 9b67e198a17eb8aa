package controller

import (
	"maps"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unique"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/ciliumpolicy"
	"github.com/isolator-dev/isolator/internal/cni"
)

// slimObjects is the cache's default transform. Every object loses its
// managed fields. The metadata of Pods and Namespaces, the most numerous
// objects the operator caches, is cut down to what it reads (identity,
// labels, deletion), and its repeated strings and label sets are shared:
// annotations, owner references and finalizers, often the larger part of a
// pod's metadata, are dropped. NetworkPolicies and WorkloadIsolations lose
// their annotations (kubectl apply keeps a second copy of the whole object
// there) and share their repeated strings and selectors.
func slimObjects(in any) (any, error) {
	switch o := in.(type) {
	case *metav1.PartialObjectMetadata:
		if o.APIVersion == "v1" && (o.Kind == "Pod" || o.Kind == "Namespace") {
			return slimMetadata(o), nil
		}
	case *networkingv1.NetworkPolicy:
		slimPolicy(o)
		return o, nil
	case *isolationv1alpha1.WorkloadIsolation:
		slimIsolation(o)
		return o, nil
	case *unstructured.Unstructured:
		switch o.GroupVersionKind() {
		case ciliumpolicy.EndpointGVK:
			return slimEndpoint(o), nil
		case ciliumpolicy.GVK, ciliumpolicy.ClusterwideGVK:
			return slimCiliumPolicy(o), nil
		}
	}
	return stripManagedFields(in)
}

// slimEndpoint keeps of a CiliumEndpoint its identity, state and security
// identity: what coverage reads.
func slimEndpoint(u *unstructured.Unstructured) *unstructured.Unstructured {
	out := &unstructured.Unstructured{Object: map[string]any{}}
	out.SetGroupVersionKind(ciliumpolicy.EndpointGVK)
	out.SetName(u.GetName())
	out.SetNamespace(intern(u.GetNamespace()))
	out.SetUID(u.GetUID())
	out.SetResourceVersion(u.GetResourceVersion())
	if state, ok, _ := unstructured.NestedString(u.Object, "status", "state"); ok {
		_ = unstructured.SetNestedField(out.Object, intern(state), "status", "state")
	}
	if id, ok, _ := unstructured.NestedInt64(u.Object, "status", "identity", "id"); ok {
		_ = unstructured.SetNestedField(out.Object, id, "status", "identity", "id")
	}
	return out
}

// slimCiliumPolicy keeps of a Cilium policy what the sync and the
// analysis read: its identity, labels, owners and rules. Annotations (such
// as kubectl's copy of the whole object), managed fields and status are
// dropped.
func slimCiliumPolicy(u *unstructured.Unstructured) *unstructured.Unstructured {
	out := &unstructured.Unstructured{Object: map[string]any{}}
	out.SetGroupVersionKind(u.GroupVersionKind())
	out.SetName(u.GetName())
	out.SetNamespace(intern(u.GetNamespace()))
	out.SetUID(u.GetUID())
	out.SetResourceVersion(u.GetResourceVersion())
	out.SetGeneration(u.GetGeneration())
	out.SetLabels(u.GetLabels())
	out.SetOwnerReferences(u.GetOwnerReferences())
	for _, field := range []string{"spec", "specs"} {
		if v, ok := u.Object[field]; ok {
			out.Object[field] = v
		}
	}
	return out
}

// endpointOf reads what coverage needs from a cached CiliumEndpoint.
func endpointOf(u *unstructured.Unstructured) cni.Endpoint {
	state, _, _ := unstructured.NestedString(u.Object, "status", "state")
	id, _, _ := unstructured.NestedInt64(u.Object, "status", "identity", "id")
	return cni.Endpoint{State: state, Identity: id}
}

var stripManagedFields = cache.TransformStripManagedFields()

// slimMetadata keeps of a Pod's or Namespace's metadata what the operator
// reads. The namespace is interned and the labels shared: the same strings
// and the same label sets recur across thousands of pods.
func slimMetadata(m *metav1.PartialObjectMetadata) *metav1.PartialObjectMetadata {
	out := &metav1.PartialObjectMetadata{
		TypeMeta: metav1.TypeMeta{APIVersion: intern(m.APIVersion), Kind: intern(m.Kind)},
		ObjectMeta: metav1.ObjectMeta{
			Name:              m.Name,
			Namespace:         intern(m.Namespace),
			UID:               m.UID,
			ResourceVersion:   m.ResourceVersion,
			DeletionTimestamp: m.DeletionTimestamp,
		},
	}
	out.Labels = podLabels.share(m.Labels)
	return out
}

// slimObjectMeta drops managed fields and annotations, which the operator
// never reads, and shares the namespace, labels and owner kinds.
func slimObjectMeta(m *metav1.ObjectMeta) {
	m.ManagedFields = nil
	m.Annotations = nil
	m.Namespace = intern(m.Namespace)
	m.Labels = policyLabels.share(m.Labels)
	for i := range m.OwnerReferences {
		ref := &m.OwnerReferences[i]
		ref.APIVersion, ref.Kind = intern(ref.APIVersion), intern(ref.Kind)
	}
}

// slimPolicy shares what NetworkPolicies repeat: generated policies select
// the same pods as their WorkloadIsolation and the same preset sources as
// one another.
func slimPolicy(np *networkingv1.NetworkPolicy) {
	slimObjectMeta(&np.ObjectMeta)
	shareSelector(&np.Spec.PodSelector)
	for i := range np.Spec.Ingress {
		sharePeers(np.Spec.Ingress[i].From)
	}
	for i := range np.Spec.Egress {
		sharePeers(np.Spec.Egress[i].To)
	}
}

func sharePeers(peers []networkingv1.NetworkPolicyPeer) {
	for i := range peers {
		shareSelector(peers[i].PodSelector)
		shareSelector(peers[i].NamespaceSelector)
	}
}

func shareSelector(s *metav1.LabelSelector) {
	if s == nil {
		return
	}
	s.MatchLabels = policyLabels.share(s.MatchLabels)
	for i := range s.MatchExpressions {
		e := &s.MatchExpressions[i]
		e.Key = intern(e.Key)
		for j := range e.Values {
			e.Values[j] = intern(e.Values[j])
		}
	}
}

// slimIsolation shares what WorkloadIsolations repeat: the target selector
// (also in status and in the generated policies), and the status texts,
// most of which are the same on every resource (the CNI and its evidence,
// condition types, reasons and messages).
func slimIsolation(wi *isolationv1alpha1.WorkloadIsolation) {
	slimObjectMeta(&wi.ObjectMeta)
	if sel := wi.Spec.Target.PodSelector; sel != nil {
		sel.MatchLabels = policyLabels.share(sel.MatchLabels)
	}
	st := &wi.Status
	shareSelector(st.TargetSelector)
	// Decoding grows slices by doubling; the cache keeps them for long.
	st.Conditions = slices.Clone(st.Conditions)
	for i := range st.Conditions {
		c := &st.Conditions[i]
		c.Type, c.Status, c.Reason, c.Message = intern(c.Type), metav1.ConditionStatus(intern(string(c.Status))), intern(c.Reason), intern(c.Message)
	}
	for i := range st.Policies {
		st.Policies[i].Kind = intern(st.Policies[i].Kind)
	}
	if cni := st.CNI; cni != nil {
		cni.Name, cni.Version, cni.Source, cni.Evidence = intern(cni.Name), intern(cni.Version), intern(cni.Source), intern(cni.Evidence)
	}
}

// Bounds of the label-set tables. Only label sets of at most
// maxSharedLabelBytes of text are shared (a pod's labels are usually a few
// hundred bytes; an outsized set gains little from sharing and must not be
// kept beyond its pod). A table holds two generations of label sets, each
// bounded in bytes: when the current one is full it becomes the previous
// one, whose sets are still found (and carried over when found), and the
// one before is dropped (label sets already shared stay shared). Label
// churn therefore cannot grow a table beyond twice its bound, and the pods
// of a workload that arrive far apart still share: a generation of the
// pods' table holds about 15,000 label sets of a Deployment's pods.
const (
	maxSharedLabelBytes   = 1024
	maxPodLabelTableBytes = 8 << 20
	maxPolicyLabelBytes   = 2 << 20
)

// labelSets hands out one map per distinct set of labels: the pods of one
// ReplicaSet carry the same labels, and a cached object's labels are never
// modified (reads copy them or only read them).
type labelSets struct {
	mu         sync.Mutex
	sets, prev map[string]map[string]string
	bytes      int
	limit      int
}

// Two tables, each with its own bound: the labels of pods and namespaces,
// and the labels and selectors of NetworkPolicies and WorkloadIsolations,
// which recur across a resource and its policies but rarely on pods, so that
// they do not crowd the pods' label sets out.
var (
	podLabels    = newLabelSets(maxPodLabelTableBytes)
	policyLabels = newLabelSets(maxPolicyLabelBytes)
)

func newLabelSets(limit int) *labelSets {
	return &labelSets{sets: map[string]map[string]string{}, limit: limit}
}

func (l *labelSets) share(in map[string]string) map[string]string {
	if len(in) == 0 {
		return in
	}
	size := 0
	for k, v := range in {
		size += len(k) + len(v)
	}
	if size > maxSharedLabelBytes {
		return in
	}
	// The key spells each label with the lengths of its key and value:
	// label texts are not all validated (a WorkloadIsolation's selector is
	// checked by the operator, after the cache), so no separator is safe.
	keys := slices.Sorted(maps.Keys(in))
	var b strings.Builder
	b.Grow(size + 8*len(keys))
	for _, k := range keys {
		b.WriteString(strconv.Itoa(len(k)))
		b.WriteByte(':')
		b.WriteString(k)
		b.WriteString(strconv.Itoa(len(in[k])))
		b.WriteByte(':')
		b.WriteString(in[k])
	}
	key := b.String()
	l.mu.Lock()
	defer l.mu.Unlock()
	if m, ok := l.sets[key]; ok && maps.Equal(m, in) {
		return m
	}
	m, ok := l.prev[key]
	if !ok || !maps.Equal(m, in) {
		// Keys recur across label sets and are interned. Values are not:
		// most recur only within their set (an app's name, a template
		// hash), which the shared map already holds once, and an interned
		// string costs more than its copy.
		m = make(map[string]string, len(in))
		for _, k := range keys {
			m[intern(k)] = in[k]
		}
	}
	cost := b.Cap() + size + mapBytes(len(in)) + 64 // the key, the strings, the map, the table's slot (as it grows)
	if l.bytes+cost > l.limit {
		l.prev, l.sets, l.bytes = l.sets, map[string]map[string]string{}, 0
	}
	l.sets[key] = m
	l.bytes += cost
	return m
}

// mapBytes estimates the memory of a map[string]string of n entries as Go
// lays it out: up to 8 entries in one group of 8 slots of 32 bytes plus its
// control word, more in a table of groups sized to the power of two at or
// above n/(7/8) slots; allocations round up (a quarter is allowed: large
// ones to whole pages).
func mapBytes(n int) int {
	const header, group = 48, 8 + 8*32
	if n <= 8 {
		return header + group
	}
	slots := 1 << bits.Len(uint((8*n+6)/7-1))
	return (header + 64 + 8 + slots/8*group) * 5 / 4
}

// intern returns a canonical copy of s. The canonical copy lives as long as
// any string returned for it; equal strings seen between two garbage
// collections share one copy.
func intern(s string) string {
	if s == "" {
		return ""
	}
	return unique.Make(s).Value()
}
