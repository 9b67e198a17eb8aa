package controller

import (
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/status"
)

// Repairs of one policy within the contest window that mark it as contested:
// someone keeps changing it back.
const (
	DefaultContestWindow = time.Minute
	contestThreshold     = 3
)

// repairLog remembers when the policies of one WorkloadIsolation were
// repaired, and by whose change.
type repairLog struct {
	mu    sync.Mutex
	times map[string][]time.Time
	by    map[string]string
}

// contestWindow is the reconciler's window, DefaultContestWindow when unset.
func (r *WorkloadIsolationReconciler) contestWindow() time.Duration {
	if r.ContestWindow > 0 {
		return r.ContestWindow
	}
	return DefaultContestWindow
}

// nearContest reports whether one more repair of the named policy would mark
// it as contested; the caller then reads who changed it (the cache holds no
// managed fields).
func (r *WorkloadIsolationReconciler) nearContest(owner types.NamespacedName, name string, now time.Time) bool {
	v, ok := r.repairs.Load(owner)
	if !ok {
		return false
	}
	log := v.(*repairLog)
	log.mu.Lock()
	defer log.mu.Unlock()
	cutoff := now.Add(-r.contestWindow())
	n := 0
	for _, t := range log.times[name] {
		if !t.Before(cutoff) {
			n++
		}
	}
	return n >= contestThreshold-1
}

// recordRepair notes a repair of the named policy, changed before it by
// writer (a field manager, or "" when not known), and returns a failure when
// the policy was repaired contestThreshold times within the window: the
// operator keeps repairing it (the isolation wins each time), but the
// resource must not look healthy while another writer keeps re-opening it.
func (r *WorkloadIsolationReconciler) recordRepair(owner types.NamespacedName, name, writer string, now time.Time) *status.Failure {
	v, _ := r.repairs.LoadOrStore(owner, &repairLog{times: map[string][]time.Time{}, by: map[string]string{}})
	log := v.(*repairLog)
	log.mu.Lock()
	defer log.mu.Unlock()
	cutoff := now.Add(-r.contestWindow())
	times := slices.DeleteFunc(log.times[name], func(t time.Time) bool { return t.Before(cutoff) })
	log.times[name] = append(times, now)
	if writer != "" {
		log.by[name] = writer
	}
	return log.contested(name, r.contestWindow())
}

// contestedFailure reports a policy of owner that is still contested (its
// repairs within the window reached the threshold), nil otherwise.
func (r *WorkloadIsolationReconciler) contestedFailure(owner types.NamespacedName, now time.Time) *status.Failure {
	v, ok := r.repairs.Load(owner)
	if !ok {
		return nil
	}
	log := v.(*repairLog)
	log.mu.Lock()
	defer log.mu.Unlock()
	cutoff := now.Add(-r.contestWindow())
	for _, name := range slices.Sorted(maps.Keys(log.times)) {
		log.times[name] = slices.DeleteFunc(log.times[name], func(t time.Time) bool { return t.Before(cutoff) })
		if len(log.times[name]) == 0 {
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

func (l *repairLog) contested(name string, window time.Duration) *status.Failure {
	n := len(l.times[name])
	if n < contestThreshold {
		return nil
	}
	writer := l.by[name]
	if writer == "" {
		writer = "another writer"
	} else {
		writer = "field manager " + writer
	}
	return &status.Failure{Reason: isolationv1alpha1.ReasonContested, Message: fmt.Sprintf(
		"NetworkPolicy %s was changed away from the spec by %s and repaired %d times within %s; the operator keeps repairing it, but something keeps re-opening it",
		name, writer, n, window)}
}

// lastWriter returns the field manager of the most recent change to np by
// someone other than the operator.
func lastWriter(np *networkingv1.NetworkPolicy) string {
	var name string
	var at time.Time
	for _, e := range np.ManagedFields {
		if e.Manager == FieldOwner || e.Time == nil {
			continue
		}
		if name == "" || !e.Time.Time.Before(at) {
			name, at = e.Manager, e.Time.Time
		}
	}
	return name
}
