package controller

import (
	"maps"
	"slices"
	"strings"
	"sync"
	"unique"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
)

// slimObjects is the cache's default transform. Every object loses its
// managed fields. The metadata of Pods and Namespaces, the most numerous
// objects the operator caches, is cut down to what it reads (identity,
// labels, deletion), and its repeated strings and label sets are shared:
// annotations, owner references and finalizers, often the larger part of a
// pod's metadata, are dropped.
func slimObjects(in any) (any, error) {
	if m, ok := in.(*metav1.PartialObjectMetadata); ok && m.APIVersion == "v1" && (m.Kind == "Pod" || m.Kind == "Namespace") {
		return slimMetadata(m), nil
	}
	return stripManagedFields(in)
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
	if len(m.Labels) > 0 {
		out.Labels = sharedLabels.share(m.Labels)
	}
	return out
}

// Bounds of the label-set table. Only label sets of at most
// maxSharedLabelBytes of text are shared (a pod's labels are usually a few
// hundred bytes; an outsized set gains little from sharing and must not be
// kept beyond its pod), and the table starts afresh once it holds
// maxLabelTableBytes (label sets already shared stay shared), so label churn
// cannot grow it: what it keeps beyond the live pods is bounded by bytes.
const (
	maxSharedLabelBytes = 1024
	maxLabelTableBytes  = 4 << 20
)

// labelSets hands out one map per distinct set of labels: the pods of one
// ReplicaSet carry the same labels, and a cached object's labels are never
// modified (reads copy them or only read them).
type labelSets struct {
	mu    sync.Mutex
	sets  map[string]map[string]string
	bytes int
}

var sharedLabels = &labelSets{sets: map[string]map[string]string{}}

func (l *labelSets) share(in map[string]string) map[string]string {
	size := 0
	for k, v := range in {
		size += len(k) + len(v)
	}
	if size > maxSharedLabelBytes {
		return in
	}
	keys := slices.Sorted(maps.Keys(in))
	var b strings.Builder
	b.Grow(size + 2*len(keys))
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte(0)
		b.WriteString(in[k])
		b.WriteByte(0)
	}
	key := b.String()
	l.mu.Lock()
	defer l.mu.Unlock()
	if m, ok := l.sets[key]; ok {
		return m
	}
	// The key, the map's strings and the map itself: a header and a group
	// of 8 slots of 32 bytes per 8 entries, with the table's own slot.
	cost := len(key) + size + 96 + 288*((len(in)+7)/8)
	if l.bytes+cost > maxLabelTableBytes {
		l.sets, l.bytes = map[string]map[string]string{}, 0
	}
	m := make(map[string]string, len(in))
	for _, k := range keys {
		m[intern(k)] = intern(in[k])
	}
	l.sets[key] = m
	l.bytes += cost
	return m
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
