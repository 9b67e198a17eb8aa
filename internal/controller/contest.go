package controller

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/status"
)

// Repairs of one policy within the contest window that mark it as contested:
// someone keeps changing it back, or deleting it.
const (
	DefaultContestWindow = time.Minute
	contestThreshold     = 3
)

// repairLog remembers, per policy of one WorkloadIsolation, the
// resourceVersion this process last wrote, when the policy was repaired
// after someone else changed or deleted it, and by whom.
type repairLog struct {
	mu    sync.Mutex
	uid   types.UID
	ours  []ownWrite
	times map[string][]time.Time
	by    map[string]string
}

// ownWrite is the resourceVersion this process last wrote of one policy. A
// resource has a few policies: a slice costs less than a map.
type ownWrite struct{ name, version string }

// contestWindow is the reconciler's window, DefaultContestWindow when unset.
func (r *WorkloadIsolationReconciler) contestWindow() time.Duration {
	if r.ContestWindow > 0 {
		return r.ContestWindow
	}
	return DefaultContestWindow
}

// repairLog returns the log of owner, a new one when owner is a new object
// of an old name (a delete and re-create may reach the operator as one
// event).
func (r *WorkloadIsolationReconciler) repairLog(owner *isolationv1alpha1.WorkloadIsolation) *repairLog {
	key := client.ObjectKeyFromObject(owner)
	if v, ok := r.repairs.Load(key); ok && v.(*repairLog).uid == owner.UID {
		return v.(*repairLog)
	}
	// Repairs are rare: their maps are made when the first one happens.
	log := &repairLog{uid: owner.UID}
	if v, loaded := r.repairs.LoadOrStore(key, log); loaded {
		if old := v.(*repairLog); old.uid == owner.UID {
			return old
		}
		r.repairs.Store(key, log)
	}
	return log
}

// keepOnly forgets the NetworkPolicies of owner not named in names
// (neither desired nor owned any more), so the log stays as small as the
// resource. Entries of other kinds (named with their kind) are left to
// their own sync.
func (r *WorkloadIsolationReconciler) keepOnly(owner *isolationv1alpha1.WorkloadIsolation, names map[string]bool) {
	log := r.repairLog(owner)
	log.mu.Lock()
	defer log.mu.Unlock()
	gone := func(name string) bool { return !names[name] && !strings.Contains(name, " ") }
	log.ours = slices.DeleteFunc(log.ours, func(w ownWrite) bool { return gone(w.name) })
	maps.DeleteFunc(log.by, func(name, _ string) bool { return gone(name) })
	maps.DeleteFunc(log.times, func(name string, _ []time.Time) bool { return gone(name) })
}

// changedByOthers reports whether a policy about to be written was changed
// (haveVersion) or deleted (haveVersion "") by someone else since this
// process last wrote it. A policy this process never wrote counts as
// changed by others only when it exists: after a restart, a spec change is
// not mistaken for a foreign one more than once.
func (r *WorkloadIsolationReconciler) changedByOthers(owner *isolationv1alpha1.WorkloadIsolation, name, haveVersion string) bool {
	log := r.repairLog(owner)
	log.mu.Lock()
	defer log.mu.Unlock()
	i := slices.IndexFunc(log.ours, func(w ownWrite) bool { return w.name == name })
	if haveVersion == "" {
		return i >= 0
	}
	return i < 0 || log.ours[i].version != haveVersion
}

// wrote records the resourceVersion a write of the named policy returned;
// an empty version forgets the policy (it was pruned).
func (r *WorkloadIsolationReconciler) wrote(owner *isolationv1alpha1.WorkloadIsolation, name, version string) {
	log := r.repairLog(owner)
	log.mu.Lock()
	defer log.mu.Unlock()
	i := slices.IndexFunc(log.ours, func(w ownWrite) bool { return w.name == name })
	switch {
	case version == "":
		if i >= 0 {
			log.ours = slices.Delete(log.ours, i, i+1)
		}
	case i >= 0:
		log.ours[i].version = version
	default:
		log.ours = append(log.ours, ownWrite{name, version})
	}
}

// nearContest reports whether one more repair of the named policy would mark
// it as contested; the caller then reads who changed it (the cache holds no
// managed fields).
func (r *WorkloadIsolationReconciler) nearContest(owner *isolationv1alpha1.WorkloadIsolation, name string, now time.Time) bool {
	log := r.repairLog(owner)
	log.mu.Lock()
	defer log.mu.Unlock()
	return len(log.recent(name, now.Add(-r.contestWindow()))) >= contestThreshold-1
}

// recordRepair notes a repair of the named policy after someone else
// changed (writer: their field manager, "" when not known) or deleted it,
// and returns a failure when it was repaired contestThreshold times within
// the window: the operator keeps repairing it (the isolation wins each
// time), but the resource must not look healthy while another writer keeps
// re-opening it.
func (r *WorkloadIsolationReconciler) recordRepair(owner *isolationv1alpha1.WorkloadIsolation, name, writer string, now time.Time) *status.Failure {
	log := r.repairLog(owner)
	log.mu.Lock()
	defer log.mu.Unlock()
	times := log.recent(name, now.Add(-r.contestWindow()))
	if len(times) == 0 {
		delete(log.by, name) // a new contest: forget who was behind the last one
	}
	if log.times == nil {
		log.times, log.by = map[string][]time.Time{}, map[string]string{}
	}
	log.times[name] = append(times, now)
	if writer != "" {
		log.by[name] = writer
	}
	return log.contested(name, r.contestWindow())
}

// contestedFailure reports a policy of owner that is still contested (its
// repairs within the window reached the threshold), nil otherwise.
func (r *WorkloadIsolationReconciler) contestedFailure(owner *isolationv1alpha1.WorkloadIsolation, now time.Time) *status.Failure {
	v, ok := r.repairs.Load(client.ObjectKeyFromObject(owner))
	if !ok || v.(*repairLog).uid != owner.UID {
		return nil
	}
	log := v.(*repairLog)
	log.mu.Lock()
	defer log.mu.Unlock()
	cutoff := now.Add(-r.contestWindow())
	for _, name := range slices.Sorted(maps.Keys(log.times)) {
		if len(log.recent(name, cutoff)) == 0 {
			delete(log.times, name)
			delete(log.by, name)
			continue
		}
		if f := log.contested(name, r.contestWindow()); f != nil {
			return f
		}
	}
	return nil
}

// recent drops the repairs of the named policy before cutoff and returns
// the rest.
func (l *repairLog) recent(name string, cutoff time.Time) []time.Time {
	times, ok := l.times[name]
	if !ok {
		return nil
	}
	times = slices.DeleteFunc(times, func(t time.Time) bool { return t.Before(cutoff) })
	l.times[name] = times
	return times
}

func (l *repairLog) contested(name string, window time.Duration) *status.Failure {
	n := len(l.times[name])
	if n < contestThreshold {
		return nil
	}
	writer := "another writer"
	if by := l.by[name]; by != "" {
		writer = fmt.Sprintf("field manager %q", by)
	}
	what := "NetworkPolicy " + name
	if strings.Contains(name, " ") {
		what = name // another kind, named with it (ciliumRepairKey)
	}
	return &status.Failure{Reason: isolationv1alpha1.ReasonContested, Message: fmt.Sprintf(
		"%s was changed away from the spec or deleted, by %s, and repaired %d times within %s; the operator keeps repairing it, but something keeps re-opening it",
		what, writer, n, window)}
}

// lastWriter returns the field manager of the most recent change to np by
// someone other than the operator.
func lastWriter(obj metav1.Object) string {
	var name string
	var at time.Time
	for _, e := range obj.GetManagedFields() {
		if e.Manager == FieldOwner || e.Time == nil {
			continue
		}
		if name == "" || !e.Time.Time.Before(at) {
			name, at = e.Manager, e.Time.Time
		}
	}
	return name
}
