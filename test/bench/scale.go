package main

import (
	"context"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/localcp"
	"github.com/isolator-dev/isolator/internal/policy"
	"github.com/isolator-dev/isolator/internal/preset"
)

// ScaleResult is the scale scenario at one size.
type ScaleResult struct {
	Size
	// Runs are the convergence runs, each on a fresh control plane.
	Runs        []ConvergenceRun
	MedianRatio float64
	// The rest is measured in the first run.
	IdleWindow                      time.Duration
	IdleWrites                      int64
	EditLatency, RestoreLatency     Percentiles
	Memory                          []MemoryPoint
	HeapBytesPerPod, HeapBytesPerWI float64
	RSSBytesPerPod, RSSBytesPerWI   float64
	LiveBytesPerPod, LiveBytesPerWI float64
}

// ConvergenceRun is one measurement of the operator against the bare client.
type ConvergenceRun struct {
	Operator, BareClient time.Duration
	Ratio                float64
	// Writes the operator sent until all were Ready, and the CPU seconds
	// it used meanwhile.
	Writes     int64
	CPUSeconds float64
	// Reads the operator sent to the API server (GET, LIST, WATCH;
	// cached reads send none).
	Reads int64
	// CPU time of the control plane and the benchmark during the bare
	// client's writes and during the operator's convergence: all of them
	// share the machine's cores with the operator.
	BareProcessCPU, OperatorProcessCPU ProcessCPU
	// WatchRestarts counts the times the benchmark's watch of
	// WorkloadIsolations ended and was resumed during the operator's run.
	WatchRestarts int64
}

// Percentiles of a latency distribution.
type Percentiles struct {
	Samples       int
	P50, P95, P99 time.Duration
}

// MemoryPoint is the operator's memory at one size: heap in use and RSS as
// the operator runs, and the live heap after a forced collection.
type MemoryPoint struct {
	Pods, WorkloadIsolations int
	HeapInUse, RSS, LiveHeap float64
}

// scene is a control plane with the operator running against it.
type scene struct {
	o        options
	size     Size
	cp       *localcp.ControlPlane
	c        client.WithWatch
	operator *localcp.Operator
	// churn counts pods created by the churn scenarios.
	churn int
	// restores counts the policy restores timed.
	restores int
}

// nextRestore returns the WorkloadIsolation whose policy the next restore
// deletes: 7 steps on, so that (7 not dividing N) the same one comes again
// only after N restores, not often enough to be reported as contested.
func (s *scene) nextRestore() int {
	s.restores++
	return 7 * s.restores
}

func operatorArgs(o options, extra ...string) []string {
	return append([]string{"--kube-api-qps=" + strconv.Itoa(o.qps), "--kube-api-burst=" + strconv.Itoa(2*o.qps),
		"--max-concurrent-reconciles=" + strconv.Itoa(o.workers), "--zap-log-level=error"}, extra...)
}

// operatorEnv gives the operator the Go memory limit it sets itself in a
// container with --operator-memory-limit (85% of it), as the chart runs it.
func (o options) operatorEnv() []string {
	if o.memoryLimit.IsZero() {
		return []string{"AUTOMEMLIMIT=off"}
	}
	return []string{fmt.Sprintf("GOMEMLIMIT=%d", o.memoryLimit.Value()*85/100)}
}

func (s *scene) startOperator(ctx context.Context, name string, extra ...string) (*localcp.Operator, error) {
	logPath := filepath.Join(os.TempDir(), "isolator-bench-"+name+".log")
	op, err := localcp.StartOperatorEnv(ctx, s.o.operatorEnv(), s.o.manager, s.cp.Kubeconfig, logPath, operatorArgs(s.o, extra...)...)
	if err != nil {
		return nil, err
	}
	log("operator %s running (logs: %s)", name, logPath)
	return op, nil
}

// scaleRun measures one convergence at size on a fresh control plane: the
// operator runs while the namespaces and pods are created (memory recorded
// at P/10 and P pods), is stopped while the bare client does its writes in
// namespaces of its own and removes them again, and is started afresh
// before the WorkloadIsolations are created. Both are measured against the
// same cluster. more runs on the scene before it is torn down.
func scaleRun(ctx context.Context, o options, size Size, run int, sr *ScaleResult, more func(*scene) error) error {
	log("%s, run %d of %d", size, run+1, o.runs)
	cp, err := localcp.Start(localcp.Options{CRDDirectoryPaths: []string{o.crds}})
	if err != nil {
		return err
	}
	defer func() { _ = cp.Stop() }()
	c, err := newClient(cp.Config, o.parallel)
	if err != nil {
		return err
	}
	s := &scene{o: o, size: size, cp: cp, c: c}
	if s.operator, err = s.startOperator(ctx, "manager"); err != nil {
		return err
	}
	// The operator in place at the end: the scenarios replace it.
	defer func() { s.operator.Stop() }()

	record := run == 0
	small := size.Pods / 10
	log("creating %d namespaces and %d pods", size.Namespaces, small)
	if err := s.createPods(ctx, 0, small); err != nil {
		return err
	}
	if record {
		if err := s.recordMemory(sr, small, 0); err != nil {
			return err
		}
	}
	log("creating %d more pods", size.Pods-small)
	if err := s.createPods(ctx, small, size.Pods); err != nil {
		return err
	}
	if record {
		if err := s.recordMemory(sr, size.Pods, 0); err != nil {
			return err
		}
	}
	s.operator.Stop()
	log("bare client: %d WorkloadIsolations with their writes, operator stopped", size.WorkloadIsolations)
	bare, bareCPU, err := s.bareClient(ctx)
	if err != nil {
		return err
	}
	op, err := s.startOperator(ctx, "manager")
	if err != nil {
		return err
	}
	s.operator = op
	// The operator's start (discovery, its caches' lists) is not part of
	// the convergence measured next.
	if record {
		if err := s.recordMemory(sr, size.Pods, 0); err != nil {
			return err
		}
	} else if err := s.settle(ctx); err != nil {
		return err
	}

	log("creating %d WorkloadIsolations and waiting until all are Ready", size.WorkloadIsolations)
	profiled := make(chan error, 1)
	if o.cpuProfile != "" && record {
		// As long as the bare client took: most of the convergence, not
		// only its start.
		seconds := max(10, int(bare.Seconds()))
		go func() {
			path := fmt.Sprintf("%s.%d", o.cpuProfile, size.WorkloadIsolations)
			profiled <- profile(s.operator.PprofAddr, fmt.Sprintf("profile?seconds=%d", seconds), path)
		}()
	} else {
		profiled <- nil
	}
	before, err := readCounters(s.operator.MetricsAddr)
	if err != nil {
		return err
	}
	operatorCPU, err := readProcessCPU()
	if err != nil {
		return err
	}
	watchRestarts.Store(0)
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- waitAllReady(ctx, c, size.WorkloadIsolations) }()
	if err := parallel(size.WorkloadIsolations, o.parallel, func(i int) error { return c.Create(ctx, isolation(i, size)) }); err != nil {
		return err
	}
	if err := <-done; err != nil {
		return err
	}
	took := time.Since(start)
	// Writes still under way when the last status arrived count too.
	if err := s.settle(ctx); err != nil {
		return err
	}
	after, err := readCounters(s.operator.MetricsAddr)
	if err != nil {
		return err
	}
	if operatorCPU, err = processCPUSince(operatorCPU); err != nil {
		return err
	}
	if err := <-profiled; err != nil {
		return err
	}
	d := after.Sub(before)
	cr := ConvergenceRun{Operator: took, BareClient: bare, Ratio: took.Seconds() / bare.Seconds(), Writes: d.Writes, CPUSeconds: d.CPUSeconds,
		Reads: d.Reads, BareProcessCPU: bareCPU, OperatorProcessCPU: operatorCPU, WatchRestarts: watchRestarts.Load()}
	sr.Runs = append(sr.Runs, cr)
	log("run %d: operator %s, bare client %s, ratio %.2f, %d writes, %d reads, %.1f operator CPU seconds; "+
		"API server / etcd / benchmark CPU: %s with the bare client, %s with the operator; %d watch restarts", run+1,
		took.Round(time.Millisecond), bare.Round(time.Millisecond), cr.Ratio, cr.Writes, cr.Reads, cr.CPUSeconds, bareCPU, operatorCPU, cr.WatchRestarts)
	if record {
		if err := s.recordMemory(sr, size.Pods, size.WorkloadIsolations); err != nil {
			return err
		}
		if o.heapProfile != "" {
			path := fmt.Sprintf("%s.%d", o.heapProfile, size.WorkloadIsolations)
			if err := profile(s.operator.PprofAddr, "heap?gc=1", path); err != nil {
				return err
			}
			log("heap profile: %s", path)
		}
	}
	return more(s)
}

// afterConvergence measures idle writes and single-change latencies.
func (s *scene) afterConvergence(ctx context.Context, sr *ScaleResult) error {
	log("counting the operator's writes over an idle window of %s", s.o.idle)
	before, err := readCounters(s.operator.MetricsAddr)
	if err != nil {
		return err
	}
	time.Sleep(s.o.idle)
	after, err := readCounters(s.operator.MetricsAddr)
	if err != nil {
		return err
	}
	sr.IdleWrites = after.Sub(before).Writes

	log("measuring %d rule edits and %d policy restores", s.o.samples, s.o.samples)
	var edits, restores []time.Duration
	for k := range s.o.samples {
		d, err := s.editOnce(ctx, k, int32(9000+k))
		if err != nil {
			return err
		}
		edits = append(edits, d)
	}
	for range s.o.samples {
		d, err := s.restoreOnce(ctx, s.nextRestore())
		if err != nil {
			return err
		}
		restores = append(restores, d)
	}
	sr.EditLatency, sr.RestoreLatency = percentiles(edits), percentiles(restores)
	return nil
}

func (sr *ScaleResult) summarise() {
	var ratios []float64
	for _, r := range sr.Runs {
		ratios = append(ratios, r.Ratio)
	}
	sr.MedianRatio = median(ratios)
	if len(sr.Memory) < 4 {
		return
	}
	// Pods: the first process, from P/10 to P pods. WorkloadIsolations: the
	// second, from none to N.
	a, b := sr.Memory[0], sr.Memory[1]
	if dp := float64(b.Pods - a.Pods); dp > 0 {
		sr.HeapBytesPerPod, sr.RSSBytesPerPod, sr.LiveBytesPerPod = (b.HeapInUse-a.HeapInUse)/dp, (b.RSS-a.RSS)/dp, (b.LiveHeap-a.LiveHeap)/dp
	}
	c, d := sr.Memory[2], sr.Memory[3]
	if dw := float64(d.WorkloadIsolations - c.WorkloadIsolations); dw > 0 {
		sr.HeapBytesPerWI, sr.RSSBytesPerWI, sr.LiveBytesPerWI = (d.HeapInUse-c.HeapInUse)/dw, (d.RSS-c.RSS)/dw, (d.LiveHeap-c.LiveHeap)/dw
	}
}

func nsName(i int) string { return fmt.Sprintf("bench-%03d", i) }

// isolation i targets the pods labelled app=workload-i in namespace i%M.
func isolation(i int, size Size) *isolationv1alpha1.WorkloadIsolation {
	return &isolationv1alpha1.WorkloadIsolation{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("workload-%d", i), Namespace: nsName(i % size.Namespaces)},
		Spec: isolationv1alpha1.WorkloadIsolationSpec{
			Target: isolationv1alpha1.Target{PodSelector: &isolationv1alpha1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("workload-%d", i)}}},
			Ingress: []isolationv1alpha1.IngressRule{{
				Name:  "nginx",
				From:  []isolationv1alpha1.IngressPeer{{Preset: "ingress-nginx"}},
				Ports: []isolationv1alpha1.Port{{Protocol: corev1.ProtocolTCP, Port: ptr.To(intstr.FromInt32(8080))}},
			}},
		},
	}
}

// pod returns pod number index (an API object, no node runs it) of a
// Deployment: the labels of its ReplicaSet, which all its pods share, an
// owner reference to that ReplicaSet and two annotations.
func pod(name, namespace, app string, index int) *corev1.Pod {
	templateHash := fmt.Sprintf("%08x", fnv32(app))
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: namespace,
			Labels: map[string]string{"app": app, "app.kubernetes.io/part-of": "bench", "pod-template-hash": templateHash},
			Annotations: map[string]string{
				"cni.projectcalico.org/podIP": fmt.Sprintf("10.%d.%d.%d/32", index>>16&255, index>>8&255, index&255),
				"prometheus.io/scrape":        "true",
			},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "apps/v1", Kind: "ReplicaSet", Name: app + "-" + templateHash,
				UID: types.UID(fmt.Sprintf("00000000-0000-4000-8000-0000%s", templateHash)), Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
			}},
		},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: "registry.example/model-server:1", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}}},
	}
}

// createPods creates the namespaces (first call) and pods from..to-1: pod j
// belongs to workload j%N, in that workload's namespace.
func (s *scene) createPods(ctx context.Context, from, to int) error {
	size := s.size
	if from == 0 {
		if err := parallel(size.Namespaces, s.o.parallel, func(i int) error {
			return s.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nsName(i), Labels: map[string]string{"team": fmt.Sprintf("team-%d", i%10)}}})
		}); err != nil {
			return err
		}
	}
	return parallel(to-from, s.o.parallel, func(k int) error {
		j := from + k
		w := j % size.WorkloadIsolations
		return s.c.Create(ctx, pod(fmt.Sprintf("workload-%d-%d", w, j), nsName(w%size.Namespaces), fmt.Sprintf("workload-%d", w), j))
	})
}

// bareClient measures the API server's own limit on the scene's cluster,
// with the operator stopped: a client creates each WorkloadIsolation (named
// bare-i, in the scene's namespaces) and does what the
// operator must do for it, with no reads and no reconciliation: apply its 2
// NetworkPolicies and write its status once. Afterwards it deletes what it
// created, so that the operator finds none of it. It returns the time the
// writes took and the CPU the machine's other processes used meanwhile.
func (s *scene) bareClient(ctx context.Context) (time.Duration, ProcessCPU, error) {
	c, size := s.c, s.size
	catalog := presets()
	write := func(wi *isolationv1alpha1.WorkloadIsolation) error {
		if err := c.Create(ctx, wi); err != nil {
			return err
		}
		nps, err := policy.Build(wi, *wi.Spec.Target.PodSelector.LabelSelector(), catalog)
		if err != nil {
			return err
		}
		for k := range nps {
			u, err := policy.ApplyObject(&nps[k], nil)
			if err != nil {
				return err
			}
			if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("bench"), client.ForceOwnership); err != nil {
				return err
			}
		}
		before := wi.DeepCopy()
		meta.SetStatusCondition(&wi.Status.Conditions, metav1.Condition{Type: "Ready", Status: metav1.ConditionTrue, Reason: "Reconciled", Message: "bare"})
		wi.Status.ObservedGeneration = wi.Generation
		return c.Status().Patch(ctx, wi, client.MergeFrom(before))
	}
	bareIsolation := func(i int, name string) *isolationv1alpha1.WorkloadIsolation {
		wi := isolation(i, size)
		wi.Name = name
		return wi
	}
	// Warm up discovery, the CRD's storage and connections, as the
	// operator's control plane is warm when it is measured.
	for k := range s.o.parallel {
		if err := write(bareIsolation(k, fmt.Sprintf("warm-up-%d", k))); err != nil {
			return 0, ProcessCPU{}, err
		}
	}
	// The operator's run carries the benchmark's watch of WorkloadIsolations
	// (waitAllReady); so does this one.
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go func() { _ = waitAllReady(watchCtx, c, -1) }()
	cpu, err := readProcessCPU()
	if err != nil {
		return 0, ProcessCPU{}, err
	}
	start := time.Now()
	err = parallel(size.WorkloadIsolations, s.o.parallel, func(i int) error { return write(bareIsolation(i, fmt.Sprintf("bare-%d", i))) })
	took := time.Since(start)
	stopWatch()
	if err != nil {
		return 0, ProcessCPU{}, err
	}
	if cpu, err = processCPUSince(cpu); err != nil {
		return 0, ProcessCPU{}, err
	}
	log("bare client took %s; deleting its objects", took.Round(time.Millisecond))
	return took, cpu, parallel(size.Namespaces, s.o.parallel, func(i int) error {
		in := client.InNamespace(nsName(i))
		if err := c.DeleteAllOf(ctx, &isolationv1alpha1.WorkloadIsolation{}, in); err != nil {
			return err
		}
		return c.DeleteAllOf(ctx, &networkingv1.NetworkPolicy{}, in)
	})
}

func presets() preset.Catalog {
	list, err := preset.Parse(preset.BuiltinYAML())
	if err != nil {
		panic(err)
	}
	c, err := preset.NewCatalog(list)
	if err != nil {
		panic(err)
	}
	return c
}

func waitAllReady(ctx context.Context, c client.WithWatch, n int) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	ready := map[string]bool{}
	count := func() int {
		k := 0
		for _, r := range ready {
			if r {
				k++
			}
		}
		return k
	}
	// A watch that ends (the API server's timeout, or a watcher it drops
	// for falling behind) resumes from the last event seen: starting over
	// would have the API server send every WorkloadIsolation again, load
	// that the operator's run does not cause. Only a resourceVersion too
	// old to resume from starts over.
	resourceVersion := ""
	for ctx.Err() == nil {
		w, err := c.Watch(ctx, &isolationv1alpha1.WorkloadIsolationList{},
			&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: resourceVersion, AllowWatchBookmarks: true}})
		if err != nil {
			if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
				resourceVersion = ""
				continue
			}
			return err
		}
		for ev := range w.ResultChan() {
			if ev.Type == watch.Error {
				if status := apierrors.FromObject(ev.Object); apierrors.IsResourceExpired(status) || apierrors.IsGone(status) {
					resourceVersion = ""
				}
				break
			}
			wi, ok := ev.Object.(*isolationv1alpha1.WorkloadIsolation)
			if !ok {
				continue
			}
			resourceVersion = wi.ResourceVersion
			if ev.Type == watch.Bookmark {
				continue
			}
			cond := meta.FindStatusCondition(wi.Status.Conditions, isolationv1alpha1.ConditionReady)
			ready[wi.Namespace+"/"+wi.Name] = cond != nil && cond.Status == metav1.ConditionTrue && wi.Status.ObservedGeneration == wi.Generation
			if count() == n {
				w.Stop()
				return nil
			}
		}
		w.Stop()
		watchRestarts.Add(1)
	}
	return fmt.Errorf("only %d of %d WorkloadIsolations became Ready: %w", count(), n, ctx.Err())
}

// watchRestarts counts the benchmark's resumed watches, reported per run.
var watchRestarts atomic.Int64

// recordMemory waits for the operator to go quiet, then records its memory.
func (s *scene) recordMemory(sr *ScaleResult, pods, wis int) error {
	if err := s.settle(context.Background()); err != nil {
		return err
	}
	c, err := readCounters(s.operator.MetricsAddr)
	if err != nil {
		return err
	}
	point := MemoryPoint{Pods: pods, WorkloadIsolations: wis, HeapInUse: c.HeapInUse, RSS: c.RSS}
	// The live heap: what is allocated right after a collection, which the
	// heap profile endpoint forces.
	if err := profile(s.operator.PprofAddr, "heap?gc=1", os.DevNull); err != nil {
		return err
	}
	if c, err = readCounters(s.operator.MetricsAddr); err != nil {
		return err
	}
	point.LiveHeap = c.HeapAlloc
	sr.Memory = append(sr.Memory, point)
	log("memory at %d pods, %d WorkloadIsolations: heap in use %.1f MiB, RSS %.1f MiB, live heap %.1f MiB",
		pods, wis, point.HeapInUse/(1<<20), point.RSS/(1<<20), point.LiveHeap/(1<<20))
	return nil
}

// settle waits until the operator's work queue has stayed empty, with no
// reconcile in progress, for 3 s.
func (s *scene) settle(ctx context.Context) error {
	return s.settleOn(ctx, s.operator)
}

func (s *scene) settleOn(ctx context.Context, op *localcp.Operator) error {
	quiet := time.Time{}
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 10*time.Minute, true, func(context.Context) (bool, error) {
		c, err := readCounters(op.MetricsAddr)
		if err != nil {
			return false, err
		}
		if c.QueueDepth > 0 || c.ActiveWorkers > 0 {
			quiet = time.Time{}
			return false, nil
		}
		if quiet.IsZero() {
			quiet = time.Now()
		}
		return time.Since(quiet) >= 3*time.Second, nil
	})
}

// editOnce changes workload-(i%N)'s rule port and times until the policy
// carries it.
func (s *scene) editOnce(ctx context.Context, i int, port int32) (time.Duration, error) {
	i %= s.size.WorkloadIsolations
	key := client.ObjectKey{Namespace: nsName(i % s.size.Namespaces), Name: fmt.Sprintf("workload-%d", i)}
	start := time.Now()
	patch := fmt.Sprintf(`{"spec":{"ingress":[{"name":"nginx","from":[{"preset":"ingress-nginx"}],"ports":[{"protocol":"TCP","port":%d}]}]}}`, port)
	wi := &isolationv1alpha1.WorkloadIsolation{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
	if err := s.c.Patch(ctx, wi, client.RawPatch("application/merge-patch+json", []byte(patch))); err != nil {
		return 0, err
	}
	err := waitFor(ctx, func() (bool, error) {
		np := &networkingv1.NetworkPolicy{}
		if err := s.c.Get(ctx, client.ObjectKey{Namespace: key.Namespace, Name: policy.AllowName(key.Name, "nginx")}, np); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		return len(np.Spec.Ingress) == 1 && len(np.Spec.Ingress[0].Ports) == 1 && np.Spec.Ingress[0].Ports[0].Port.IntVal == port, nil
	})
	if err != nil {
		return 0, fmt.Errorf("edit of %s not applied: %w", key, err)
	}
	return time.Since(start), nil
}

// restoreOnce deletes workload-(i%N)'s default-deny policy and times until
// it is back.
func (s *scene) restoreOnce(ctx context.Context, i int) (time.Duration, error) {
	i %= s.size.WorkloadIsolations
	key := client.ObjectKey{Namespace: nsName(i % s.size.Namespaces), Name: policy.DefaultDenyName(fmt.Sprintf("workload-%d", i))}
	np := &networkingv1.NetworkPolicy{}
	if err := s.c.Get(ctx, key, np); err != nil {
		return 0, err
	}
	start := time.Now()
	if err := s.c.Delete(ctx, np); err != nil {
		return 0, err
	}
	if err := waitRestored(ctx, s.c, key, np.UID, 30*time.Second); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

func waitRestored(ctx context.Context, c client.Client, key client.ObjectKey, old types.UID, timeout time.Duration) error {
	err := wait.PollUntilContextTimeout(ctx, 2*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		restored := &networkingv1.NetworkPolicy{}
		if err := c.Get(ctx, key, restored); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		return restored.UID != old, nil
	})
	if err != nil {
		return fmt.Errorf("%s not restored: %w", key, err)
	}
	return nil
}

func waitFor(ctx context.Context, cond func() (bool, error)) error {
	return wait.PollUntilContextTimeout(ctx, 2*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) { return cond() })
}

func percentiles(samples []time.Duration) Percentiles {
	if len(samples) == 0 {
		return Percentiles{}
	}
	sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
	at := func(q float64) time.Duration {
		idx := int(q*float64(len(samples)+1)) - 1
		idx = min(max(idx, 0), len(samples)-1)
		return samples[idx]
	}
	return Percentiles{Samples: len(samples), P50: at(0.50), P95: at(0.95), P99: at(0.99)}
}

func fnv32(s string) uint32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(s))
	return h.Sum32()
}
