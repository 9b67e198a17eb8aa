package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/localcp"
	"github.com/isolator-dev/isolator/internal/policy"
)

// RestartResult is the restart scenario: the operator stopped and started
// again with nothing changed.
type RestartResult struct {
	WorkloadIsolations int
	// Ready is the time from starting the process until /readyz answers
	// (caches synced); Reevaluated until it has reconciled at least once
	// per WorkloadIsolation and its queue is empty.
	Ready, Reevaluated time.Duration
	Reconciles         int64
	// Writes the new process sent until re-evaluated and over the quiet
	// window after it.
	Writes      int64
	QuietWindow time.Duration
	// Changed are the objects (WorkloadIsolations, NetworkPolicies, Events)
	// created or changed meanwhile.
	Changed []string
}

// FailoverResult is the failover scenario: two replicas with leader
// election, a generated policy deleted as the leader goes away.
type FailoverResult struct {
	// LeaseDuration is the operator's --leader-elect-lease-duration (its
	// default): how long a standby waits for a lease that was not released.
	LeaseDuration time.Duration
	// Killed: the leader is killed (SIGKILL) and cannot release its lease.
	Killed time.Duration
	// Stopped: the leader is stopped (SIGTERM) and releases its lease.
	Stopped time.Duration
}

const quietWindow = 10 * time.Second

func restart(ctx context.Context, s *scene) (*RestartResult, error) {
	n := s.size.WorkloadIsolations
	log("restart: stopping the operator and starting it again, nothing changed")
	if err := s.settle(ctx); err != nil {
		return nil, err
	}
	versionsBefore, err := s.versions(ctx)
	if err != nil {
		return nil, err
	}
	s.operator.Stop()
	start := time.Now()
	op, err := s.startOperator(ctx, "manager-restarted")
	if err != nil {
		return nil, err
	}
	s.operator = op
	res := &RestartResult{WorkloadIsolations: n, Ready: time.Since(start), QuietWindow: quietWindow}
	if res.Reevaluated, err = reevaluated(ctx, op, n, start); err != nil {
		return nil, err
	}
	time.Sleep(quietWindow)
	c, err := readCounters(op.MetricsAddr)
	if err != nil {
		return nil, err
	}
	res.Writes, res.Reconciles = c.Writes, c.Reconciles
	versionsAfter, err := s.versions(ctx)
	if err != nil {
		return nil, err
	}
	for key, rv := range versionsAfter {
		if versionsBefore[key] != rv {
			res.Changed = append(res.Changed, key)
		}
	}
	slices.Sort(res.Changed)
	log("restart: ready after %s, all %d re-evaluated after %s, %d writes; objects changed: %v", res.Ready.Round(time.Millisecond), n,
		res.Reevaluated.Round(time.Millisecond), res.Writes, res.Changed)
	return res, nil
}

// reevaluated waits until op has reconciled at least n times, its queue is
// empty and no reconcile is in progress, and returns the time since start.
func reevaluated(ctx context.Context, op *localcp.Operator, n int, start time.Time) (time.Duration, error) {
	var took time.Duration
	err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 10*time.Minute, true, func(context.Context) (bool, error) {
		c, err := readCounters(op.MetricsAddr)
		if err != nil {
			return false, err
		}
		took = time.Since(start)
		return c.Reconciles >= int64(n) && c.QueueDepth == 0 && c.ActiveWorkers == 0, nil
	})
	return took, err
}

func failover(ctx context.Context, s *scene) (*FailoverResult, error) {
	const lease = 15 * time.Second // the operator's default
	res := &FailoverResult{LeaseDuration: lease}
	log("failover: two replicas with leader election")
	s.operator.Stop()
	replicas := map[string]*localcp.Operator{}
	defer func() {
		for _, op := range replicas {
			op.Stop()
		}
	}()
	startReplica := func(name string) error {
		op, err := s.startOperator(ctx, name, "--leader-elect", "--leader-election-namespace=default")
		if err != nil {
			return err
		}
		replicas[name] = op
		return nil
	}
	for _, name := range []string{"replica-a", "replica-b"} {
		if err := startReplica(name); err != nil {
			return nil, err
		}
	}
	var err error
	for _, how := range []string{"killed", "stopped"} {
		var leader string
		if leader, err = s.awaitLeader(ctx, replicas); err != nil {
			return nil, err
		}
		if err := s.settleOn(ctx, replicas[leader]); err != nil {
			return nil, err
		}
		key := client.ObjectKey{Namespace: nsName(0), Name: policy.DefaultDenyName("workload-0")}
		np := &networkingv1.NetworkPolicy{}
		if err := s.c.Get(ctx, key, np); err != nil {
			return nil, err
		}
		// The policy is deleted once the leader has exited, so that only
		// the new leader can restore it; the time counts from the signal.
		start := time.Now()
		if how == "killed" {
			replicas[leader].Kill()
		} else {
			replicas[leader].Stop()
		}
		if err := s.c.Delete(ctx, np); err != nil {
			return nil, err
		}
		if err := waitRestored(ctx, s.c, key, np.UID, 4*lease); err != nil {
			return nil, err
		}
		took := time.Since(start)
		log("failover: leader %s %s, deleted policy restored after %s", leader, how, took.Round(time.Millisecond))
		if how == "killed" {
			res.Killed = took
			delete(replicas, leader)
			if err := startReplica("replica-c"); err != nil {
				return nil, err
			}
		} else {
			res.Stopped = took
		}
	}
	return res, nil
}

// awaitLeader returns the replica whose metrics say it leads.
func (s *scene) awaitLeader(ctx context.Context, replicas map[string]*localcp.Operator) (string, error) {
	var leader string
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 2*time.Minute, true, func(context.Context) (bool, error) {
		for name, op := range replicas {
			c, err := readCounters(op.MetricsAddr)
			if err != nil {
				continue // stopping
			}
			if c.Leader {
				leader = name
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return "", errors.Join(fmt.Errorf("no replica became leader"), err)
	}
	return leader, nil
}

// versions returns the resourceVersions of the WorkloadIsolations,
// NetworkPolicies and Events.
func (s *scene) versions(ctx context.Context) (map[string]string, error) {
	out := map[string]string{}
	for kind, list := range map[string]client.ObjectList{
		"WorkloadIsolation": &isolationv1alpha1.WorkloadIsolationList{},
		"NetworkPolicy":     &networkingv1.NetworkPolicyList{},
		"Event":             &eventsv1.EventList{},
	} {
		if err := s.c.List(ctx, list); err != nil {
			return nil, err
		}
		if err := meta.EachListItem(list, func(o runtime.Object) error {
			obj := o.(client.Object)
			out[kind+" "+obj.GetNamespace()+"/"+obj.GetName()] = obj.GetResourceVersion()
			return nil
		}); err != nil {
			return nil, err
		}
	}
	return out, nil
}
