package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
)

// PodChurnResult is the pod churn scenario: two phases at the same rate,
// first with pods that no WorkloadIsolation selects, then with target pods.
type PodChurnResult struct {
	Rate   int
	Phases []ChurnPhase
	// Rule edits and policy restores measured while the churn ran.
	EditLatency, RestoreLatency Percentiles
}

// ChurnPhase is the operator's cost over one churn phase, until its queue
// was empty again.
type ChurnPhase struct {
	Pods       string
	Events     int
	Duration   time.Duration
	Writes     int64
	Reconciles int64
	CPUSeconds float64
	// Per 1,000 pod events.
	WritesPer1000, ReconcilesPer1000, CPUSecondsPer1000 float64
}

// NamespaceChurnResult is the namespace churn scenario.
type NamespaceChurnResult struct {
	Namespaces, Events int
	Writes             int64
	Reconciles         int64
	CPUSeconds         float64
	// Per namespace event.
	ReconcilesPerEvent, CPUMillisPerEvent float64
	// WorkloadIsolations is how many existed; ExposedIsolations how many
	// reported an exposure (the ones a namespace event can affect).
	WorkloadIsolations, ExposedIsolations int
}

// churnMix says which pods a churn phase creates.
type churnMix int

const (
	bystanders churnMix = iota // pods no WorkloadIsolation selects
	targets                    // pods a WorkloadIsolation selects
	mixed                      // both, alternately
)

func (m churnMix) String() string {
	return [...]string{"not selected by any WorkloadIsolation", "selected by a WorkloadIsolation", "of both kinds, alternately"}[m]
}

// podChurn runs three phases at the configured rate: pods no
// WorkloadIsolation selects, then target pods, each measured alone; then
// both kinds while rule edits and policy restores are timed.
func podChurn(ctx context.Context, s *scene) (*PodChurnResult, error) {
	res := &PodChurnResult{Rate: s.o.churnRate}
	for _, mix := range []churnMix{bystanders, targets} {
		phase, err := s.churnPhase(ctx, mix)
		if err != nil {
			return nil, err
		}
		res.Phases = append(res.Phases, phase)
	}
	log("pod churn: %d pod events per second for %s, pods %s, with rule edits and policy restores timed", s.o.churnRate, s.o.churnDuration, mixed)
	var edits, restores []time.Duration
	phaseCtx, stop := context.WithTimeout(ctx, s.o.churnDuration)
	defer stop()
	var wg sync.WaitGroup
	var probeErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for k := 0; phaseCtx.Err() == nil; k++ {
			d, err := s.editOnce(ctx, 3*k+1, int32(10000+k))
			if err != nil {
				probeErr = err
				return
			}
			edits = append(edits, d)
			if d, err = s.restoreOnce(ctx, s.nextRestore()); err != nil {
				probeErr = err
				return
			}
			restores = append(restores, d)
			time.Sleep(100 * time.Millisecond)
		}
	}()
	_, err := s.churnPods(phaseCtx, mixed)
	stop()
	wg.Wait()
	if err := errors.Join(err, probeErr); err != nil {
		return nil, err
	}
	res.EditLatency, res.RestoreLatency = percentiles(edits), percentiles(restores)
	return res, s.settle(ctx)
}

// churnPhase measures the operator's cost of one kind of pod churn, until
// its queue is empty again.
func (s *scene) churnPhase(ctx context.Context, mix churnMix) (ChurnPhase, error) {
	log("pod churn: %d pod events per second for %s, pods %s", s.o.churnRate, s.o.churnDuration, mix)
	if err := s.settle(ctx); err != nil {
		return ChurnPhase{}, err
	}
	before, err := readCounters(s.operator.MetricsAddr)
	if err != nil {
		return ChurnPhase{}, err
	}
	phaseCtx, stop := context.WithTimeout(ctx, s.o.churnDuration)
	start := time.Now()
	events, err := s.churnPods(phaseCtx, mix)
	stop()
	if err != nil {
		return ChurnPhase{}, err
	}
	took := time.Since(start)
	if err := s.settle(ctx); err != nil {
		return ChurnPhase{}, err
	}
	after, err := readCounters(s.operator.MetricsAddr)
	if err != nil {
		return ChurnPhase{}, err
	}
	d := after.Sub(before)
	per := 1000 / float64(max(events, 1))
	log("%d pod events in %s: %d writes, %d reconciles, %.2f CPU seconds", events, took.Round(time.Millisecond), d.Writes, d.Reconciles, d.CPUSeconds)
	return ChurnPhase{
		Pods: mix.String(), Events: events, Duration: took, Writes: d.Writes, Reconciles: d.Reconciles, CPUSeconds: d.CPUSeconds,
		WritesPer1000: float64(d.Writes) * per, ReconcilesPer1000: float64(d.Reconciles) * per, CPUSecondsPer1000: d.CPUSeconds * per,
	}, nil
}

// churnPods creates and deletes pods until ctx ends and returns the number
// of pod events (creates and deletes) it caused: each tick creates a pod
// and, once a pool of 5 seconds' worth of pods lives, the next tick deletes
// the oldest. Target pods join workload-(13k%N); the others carry an app
// label no WorkloadIsolation selects. The pods still alive at the end are
// deleted, and counted, too.
func (s *scene) churnPods(ctx context.Context, mix churnMix) (int, error) {
	interval := time.Second / time.Duration(s.o.churnRate)
	pool := 5 * s.o.churnRate
	var live []*corev1.Pod
	events := 0
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for k := 0; ; k++ {
		select {
		case <-ctx.Done():
			return events + len(live), s.cleanUp(live)
		case <-ticker.C:
		}
		if len(live) >= pool {
			if err := client.IgnoreNotFound(s.c.Delete(context.Background(), live[0])); err != nil {
				return events, err
			}
			live = live[1:]
			events++
			continue
		}
		w := (k * 13) % s.size.WorkloadIsolations
		app := fmt.Sprintf("bystander-%d", k)
		if mix == targets || (mix == mixed && k%2 == 0) {
			app = fmt.Sprintf("workload-%d", w)
		}
		s.churn++
		p := pod(fmt.Sprintf("churn-%d", s.churn), nsName(w%s.size.Namespaces), app, k)
		if err := s.c.Create(context.Background(), p); err != nil {
			return events, err
		}
		live = append(live, p)
		events++
	}
}

// cleanUp deletes the churn pods still alive.
func (s *scene) cleanUp(pods []*corev1.Pod) error {
	return parallel(len(pods), 8, func(i int) error {
		return client.IgnoreNotFound(s.c.Delete(context.Background(), pods[i]))
	})
}

// namespaceChurn creates namespaces, then labels each of them.
func namespaceChurn(ctx context.Context, s *scene) (*NamespaceChurnResult, error) {
	n := s.o.namespaceChurn
	log("namespace churn: creating and then labelling %d namespaces", n)
	if err := s.settle(ctx); err != nil {
		return nil, err
	}
	before, err := readCounters(s.operator.MetricsAddr)
	if err != nil {
		return nil, err
	}
	name := func(i int) string { return fmt.Sprintf("churn-ns-%d", i) }
	if err := parallel(n, 8, func(i int) error {
		return s.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name(i), Labels: map[string]string{"team": "churn"}}})
	}); err != nil {
		return nil, err
	}
	if err := parallel(n, 8, func(i int) error {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name(i)}}
		return s.c.Patch(ctx, ns, client.RawPatch("application/merge-patch+json", []byte(`{"metadata":{"labels":{"churn":"labelled"}}}`)))
	}); err != nil {
		return nil, err
	}
	if err := s.settle(ctx); err != nil {
		return nil, err
	}
	after, err := readCounters(s.operator.MetricsAddr)
	if err != nil {
		return nil, err
	}
	d := after.Sub(before)
	res := &NamespaceChurnResult{Namespaces: n, Events: 2 * n, Writes: d.Writes, Reconciles: d.Reconciles, CPUSeconds: d.CPUSeconds,
		WorkloadIsolations: s.size.WorkloadIsolations}
	res.ReconcilesPerEvent = float64(d.Reconciles) / float64(res.Events)
	res.CPUMillisPerEvent = 1000 * d.CPUSeconds / float64(res.Events)
	if res.ExposedIsolations, err = s.exposed(ctx); err != nil {
		return nil, err
	}
	log("%d namespace events: %d reconciles, %d writes, %.3f CPU seconds", res.Events, d.Reconciles, d.Writes, d.CPUSeconds)
	return res, nil
}

func (s *scene) exposed(ctx context.Context) (int, error) {
	list := &isolationv1alpha1.WorkloadIsolationList{}
	if err := s.c.List(ctx, list); err != nil {
		return 0, err
	}
	n := 0
	for _, wi := range list.Items {
		if len(wi.Status.Exposure) > 0 {
			n++
		}
	}
	return n, nil
}
