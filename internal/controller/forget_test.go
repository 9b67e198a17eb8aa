package controller

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/localcp"
)

func entries(m interface{ Range(func(k, v any) bool) }) int {
	n := 0
	m.Range(func(any, any) bool { n++; return true })
	return n
}

// localAI is a WorkloadIsolation as the server returns it.
func localAI() *isolationv1alpha1.WorkloadIsolation {
	return &isolationv1alpha1.WorkloadIsolation{
		ObjectMeta: metav1.ObjectMeta{Name: "local-ai", Namespace: "local-ai", UID: "uid-1"},
		Spec: isolationv1alpha1.WorkloadIsolationSpec{Target: isolationv1alpha1.Target{
			PodSelector: &isolationv1alpha1.LabelSelector{MatchLabels: map[string]string{"app": "local-ai"}},
		}},
	}
}

// What the reconciler remembers per object (the last Event per condition,
// the last status written) goes with the object, so memory does not grow
// with every resource ever created.
func TestReconcilerForgetsDeletedObjects(t *testing.T) {
	ctx := context.Background()
	wi := localAI()
	allowAll := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "allow-all", Namespace: "local-ai"},
		Spec:       networkingv1.NetworkPolicySpec{Ingress: []networkingv1.NetworkPolicyIngressRule{{}}},
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "local-ai", Labels: map[string]string{"app": "local-ai"}}}
	server := fake.NewClientBuilder().WithScheme(localcp.Scheme()).WithObjects(wi, allowAll, pod).WithStatusSubresource(wi).Build()
	r := &WorkloadIsolationReconciler{Client: server, Recorder: events.NewFakeRecorder(10)}
	req := reconcile.Request{NamespacedName: client.ObjectKeyFromObject(wi)}
	if _, err := r.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	if entries(&r.recorded) == 0 || entries(&r.written) == 0 {
		t.Fatalf("expected remembered state after a widened reconcile: %d events, %d statuses", entries(&r.recorded), entries(&r.written))
	}
	if err := server.Delete(ctx, wi); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	if n, m := entries(&r.recorded), entries(&r.written); n != 0 || m != 0 {
		t.Errorf("after deletion the reconciler still remembers %d events and %d statuses", n, m)
	}
}

// The status this process wrote is remembered only until the cache holds
// it: a copy of every status kept for the life of the resource would cost
// memory per resource on large clusters.
func TestReconcilerForgetsWrittenStatusOnceCached(t *testing.T) {
	ctx := context.Background()
	wi := localAI()
	server := fake.NewClientBuilder().WithScheme(localcp.Scheme()).WithObjects(wi).WithStatusSubresource(wi).Build()
	r := &WorkloadIsolationReconciler{Client: server, Recorder: events.NewFakeRecorder(10)}
	if _, err := r.Reconcile(ctx, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(wi)}); err != nil {
		t.Fatal(err)
	}
	if entries(&r.written) != 1 {
		t.Fatalf("%d statuses remembered after a status write, want 1", entries(&r.written))
	}
	// The cache sees versions older than the write: still remembered.
	old := wi.DeepCopy()
	old.ResourceVersion = "1"
	r.cacheCaughtUp(ctx, event.UpdateEvent{ObjectOld: wi, ObjectNew: old}, nil)
	if entries(&r.written) != 1 {
		t.Error("the written status was forgotten before the cache held it")
	}
	// The cache sees the write: forgotten.
	current := &isolationv1alpha1.WorkloadIsolation{}
	if err := server.Get(ctx, client.ObjectKeyFromObject(wi), current); err != nil {
		t.Fatal(err)
	}
	r.cacheCaughtUp(ctx, event.UpdateEvent{ObjectOld: old, ObjectNew: current}, nil)
	if n := entries(&r.written); n != 0 {
		t.Errorf("%d statuses remembered after the cache caught up, want 0", n)
	}
}

// A reconcile reads what the server holds once: the watch bringing this
// process's last status write into the cache in the middle of a reconcile
// must neither hide a change nor turn an unchanged outcome into a doomed
// write.
func TestStatusBaselineHoldsWhileTheCacheCatchesUp(t *testing.T) {
	ctx := context.Background()
	setup := func() (client.Client, *WorkloadIsolationReconciler, *isolationv1alpha1.WorkloadIsolation, *isolationv1alpha1.WorkloadIsolation) {
		wi := localAI()
		server := fake.NewClientBuilder().WithScheme(localcp.Scheme()).WithObjects(wi).WithStatusSubresource(wi).Build()
		r := &WorkloadIsolationReconciler{Client: server, Recorder: events.NewFakeRecorder(10)}
		// The cache holds a status with two exposures.
		stale := &isolationv1alpha1.WorkloadIsolation{}
		if err := server.Get(ctx, client.ObjectKeyFromObject(wi), stale); err != nil {
			t.Fatal(err)
		}
		stale.Status.Exposure = []isolationv1alpha1.Exposure{{Policy: "p1", Summary: "p1"}, {Policy: "p2", Summary: "p2"}}
		if err := server.Status().Update(ctx, stale); err != nil {
			t.Fatal(err)
		}
		// A reconcile writes one exposure; the cache has not seen it yet.
		written := stale.DeepCopy()
		written.Status.Exposure = written.Status.Exposure[:1]
		if err := r.patchStatus(ctx, stale.DeepCopy(), &stale.Status, written); err != nil {
			t.Fatal(err)
		}
		return server, r, stale, written
	}

	// The next reconcile reads its last write, then the stale cached copy;
	// the write reaches the cache meanwhile (before or after the copy is
	// compared); its outcome is unchanged: nothing to write.
	key := client.ObjectKeyFromObject(localAI())
	server, r, stale, written := setup()
	last := r.lastWrite(key)
	r.cacheCaughtUp(ctx, event.UpdateEvent{ObjectOld: stale, ObjectNew: written}, nil)
	base := r.serverStatus(stale, last)
	unchanged := stale.DeepCopy()
	unchanged.Status = *written.Status.DeepCopy()
	if err := r.patchStatus(ctx, stale, base, unchanged); err != nil {
		t.Errorf("an unchanged outcome sent a status write: %v", err)
	}
	onServer := &isolationv1alpha1.WorkloadIsolation{}
	if err := server.Get(ctx, key, onServer); err != nil {
		t.Fatal(err)
	}
	if onServer.ResourceVersion != written.ResourceVersion {
		t.Errorf("an unchanged outcome was written again: resourceVersion %s, was %s", onServer.ResourceVersion, written.ResourceVersion)
	}

	// Same, but the second exposure is back: the change must be written,
	// or fail with a conflict and be retried, never be skipped.
	server, r, stale, written = setup()
	last = r.lastWrite(key)
	r.cacheCaughtUp(ctx, event.UpdateEvent{ObjectOld: stale, ObjectNew: written}, nil)
	changed := stale.DeepCopy()
	err := r.patchStatus(ctx, stale, r.serverStatus(stale, last), changed)
	if err := server.Get(ctx, key, onServer); err != nil {
		t.Fatal(err)
	}
	if !apierrors.IsConflict(err) && len(onServer.Status.Exposure) != 2 {
		t.Errorf("a changed outcome was skipped (error %v): the server holds %d exposures, the reconcile found 2", err, len(onServer.Status.Exposure))
	}
}
