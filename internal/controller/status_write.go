package controller

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
)

// DefaultResync is how often a healthy WorkloadIsolation is reconciled again
// when nothing happened, as a backstop for missed events.
const DefaultResync = 10 * time.Minute

// writtenStatus is the last status this process wrote for one object.
type writtenStatus struct {
	uid             types.UID
	resourceVersion string
	status          isolationv1alpha1.WorkloadIsolationStatus
}

// patchStatus writes the status when it differs from server, what the
// server holds (serverStatus): the cached copy, unless this process wrote
// the status since and the cache has not caught up with that write yet. A
// stale cache can therefore not hide a change. The patch carries the cached
// resourceVersion (optimistic locking), so a patch computed from a stale
// copy fails with a conflict and is retried instead of overwriting newer
// status.
func (r *WorkloadIsolationReconciler) patchStatus(ctx context.Context, cached *isolationv1alpha1.WorkloadIsolation,
	server *isolationv1alpha1.WorkloadIsolationStatus, after *isolationv1alpha1.WorkloadIsolation) error {
	if equality.Semantic.DeepEqual(*server, after.Status) {
		return nil
	}
	patch := client.MergeFromWithOptions(cached, client.MergeFromWithOptimisticLock{})
	if err := r.Status().Patch(ctx, after, patch); err != nil {
		return client.IgnoreNotFound(fmt.Errorf("updating status: %w", err))
	}
	r.written.Store(client.ObjectKeyFromObject(after), &writtenStatus{uid: after.UID, resourceVersion: after.ResourceVersion, status: *after.Status.DeepCopy()})
	return nil
}

// lastWrite returns the status this process last wrote for key, nil when
// none is remembered. It is read before the cached copy: cacheCaughtUp may
// drop it at any moment once the cache holds the write, and a copy read
// before a write reached the cache must still be compared with that write.
func (r *WorkloadIsolationReconciler) lastWrite(key types.NamespacedName) *writtenStatus {
	if v, ok := r.written.Load(key); ok {
		return v.(*writtenStatus)
	}
	return nil
}

// serverStatus returns what the server holds of cached's status, given
// last (lastWrite, read before cached): last's status when the cache has not
// caught up with that write yet (so that an unchanged outcome computes
// exactly what the server holds, transition times included, and writes
// nothing), the cached status otherwise. Versions are compared as the
// integers etcd issues; where they cannot be compared the cached copy is
// taken, and a stale one costs only a conflict and a retry.
func (r *WorkloadIsolationReconciler) serverStatus(cached *isolationv1alpha1.WorkloadIsolation, last *writtenStatus) *isolationv1alpha1.WorkloadIsolationStatus {
	if last != nil && last.uid == cached.UID && olderVersion(cached.ResourceVersion, last.resourceVersion) {
		return &last.status
	}
	if last != nil {
		r.written.CompareAndDelete(client.ObjectKeyFromObject(cached), last)
	}
	return &cached.Status
}

// olderVersion reports whether resourceVersion a is known to be older than b.
func olderVersion(a, b string) bool {
	x, err1 := strconv.ParseUint(a, 10, 64)
	y, err2 := strconv.ParseUint(b, 10, 64)
	return err1 == nil && err2 == nil && x < y
}

// cacheCaughtUp drops the status remembered for an object once the cache
// holds that write or a newer version: from then on the cached copy is what
// the server holds, and a copy of every status kept beyond that would cost
// memory per resource.
func (r *WorkloadIsolationReconciler) cacheCaughtUp(_ context.Context, e event.UpdateEvent, _ workqueue) {
	key := client.ObjectKeyFromObject(e.ObjectNew)
	v, ok := r.written.Load(key)
	if !ok {
		return
	}
	last := v.(*writtenStatus)
	if last.uid != e.ObjectNew.GetUID() || !olderVersion(e.ObjectNew.GetResourceVersion(), last.resourceVersion) {
		r.written.CompareAndDelete(key, v)
	}
}

// forget drops what the reconciler remembers of a deleted object.
func (r *WorkloadIsolationReconciler) forget(key types.NamespacedName) {
	r.written.Delete(key)
	r.repairs.Delete(key)
	r.portChecks.Delete(key)
	for _, t := range eventConditions {
		r.recorded.Delete(recordKey(key, t))
	}
}

// resyncAfter returns the resync interval with up to 10% jitter, so that
// resources created together do not come back together.
func (r *WorkloadIsolationReconciler) resyncAfter() time.Duration {
	d := r.Resync
	if d == 0 {
		d = DefaultResync
	}
	if d < 0 {
		return 0
	}
	return d + time.Duration(rand.Int64N(int64(d/10)+1))
}

// eventConditions are the conditions whose transitions are recorded as Events.
var eventConditions = []string{isolationv1alpha1.ConditionReady, isolationv1alpha1.ConditionIsolated, isolationv1alpha1.ConditionEnforced}

func recordKey(key types.NamespacedName, condition string) string {
	return key.String() + "/" + condition
}

// recordTransition emits an Event when Ready, Isolated or Enforced changes
// status or reason: Normal when it turns True, Warning otherwise. A
// condition's first appearance is recorded only when it is False, so that
// creating many healthy resources does not write as many Events.
func (r *WorkloadIsolationReconciler) recordTransition(before, after *isolationv1alpha1.WorkloadIsolation) {
	if r.Recorder == nil {
		return
	}
	for _, t := range eventConditions {
		was := meta.FindStatusCondition(before.Status.Conditions, t)
		now := meta.FindStatusCondition(after.Status.Conditions, t)
		if was != nil && was.Reason == isolationv1alpha1.ReasonPending {
			was = nil // the API server's placeholder, not a state of ours
		}
		if now == nil || (was != nil && was.Status == now.Status && was.Reason == now.Reason) ||
			(was == nil && now.Status != metav1.ConditionFalse) {
			continue
		}
		key, state := recordKey(client.ObjectKeyFromObject(after), t), string(after.UID)+"/"+string(now.Status)+"/"+now.Reason
		if last, ok := r.recorded.Swap(key, state); ok && last == state {
			continue
		}
		eventType := corev1.EventTypeNormal
		if now.Status != metav1.ConditionTrue {
			eventType = corev1.EventTypeWarning
		}
		r.Recorder.Eventf(after, nil, eventType, now.Reason, t, "%s", now.Message)
	}
}
