package controller

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/isolator-dev/isolator/internal/analysis"
)

// namespaceSnapshot holds the cluster's namespaces as the analysis reads
// them, built from the cache once per change instead of once per reconcile:
// with M namespaces and N WorkloadIsolations, listing them in every
// reconcile costs N·M. A namespace created, deleted or relabelled
// invalidates it (the handler runs after the cache has the change), and the
// next reader rebuilds it.
type namespaceSnapshot struct {
	// watched is set once a namespace watch invalidates the snapshot;
	// without one every reader lists.
	watched    atomic.Bool
	generation atomic.Uint64

	mu    sync.Mutex
	built uint64 // the generation the snapshot was built at, plus one
	list  []analysis.Object
	names map[string]bool
}

// invalidate marks the snapshot out of date.
func (s *namespaceSnapshot) invalidate() { s.generation.Add(1) }

// get returns the namespaces and the set of their names. Callers must not
// modify either.
func (s *namespaceSnapshot) get(ctx context.Context, r client.Reader) ([]analysis.Object, map[string]bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	generation := s.generation.Load()
	if s.watched.Load() && s.built == generation+1 {
		return s.list, s.names, nil
	}
	namespaces := &metav1.PartialObjectMetadataList{}
	namespaces.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("NamespaceList"))
	if err := r.List(ctx, namespaces, client.UnsafeDisableDeepCopy); err != nil {
		return nil, nil, fmt.Errorf("listing namespaces: %w", err)
	}
	list := make([]analysis.Object, 0, len(namespaces.Items))
	names := make(map[string]bool, len(namespaces.Items))
	for _, ns := range namespaces.Items {
		list = append(list, analysis.Object{Name: ns.Name, Labels: ns.Labels})
		names[ns.Name] = true
	}
	// A change after the generation was read leaves the snapshot marked
	// out of date, so the next reader lists again.
	s.list, s.names, s.built = list, names, generation+1
	return list, names, nil
}
