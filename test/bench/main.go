// Command bench measures the operator at cluster scale on the local control
// plane, with the operator running as its real binary in its own process:
//
//   - convergence: time from creating N WorkloadIsolations (over M namespaces
//     with P pods) until all are Ready, against the time a bare client needs
//     for the same minimal writes (2 NetworkPolicies and 1 status update per
//     resource) on a fresh control plane; their ratio;
//   - idle writes: write requests the operator sends during an idle window
//     after convergence (its own client metrics);
//   - single-change latency (p50/p95/p99): a rule edit until the policy
//     reflects it, and a deleted policy until it is restored;
//   - memory (heap in use, RSS) at two pod counts and after the
//     WorkloadIsolations, with the per-object slopes.
//
// It prints a Markdown table and writes JSON (--json). Run it with
// `make bench` (full size) or `make bench-smoke` (small, as CI does).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/localcp"
	"github.com/isolator-dev/isolator/internal/policy"
	"github.com/isolator-dev/isolator/internal/preset"
)

type options struct {
	manager, crds, jsonPath string
	namespaces, pods, wis   int
	idle                    time.Duration
	samples                 int
	parallel                int
	qps                     int
	workers                 int
	cpuProfile              string
}

// Results is what a run measured; it is also the JSON output.
type Results struct {
	Namespaces, Pods, WorkloadIsolations int
	OperatorConvergence                  time.Duration
	ConvergenceWrites                    int64
	BareClient                           time.Duration
	Ratio                                float64
	IdleWindow                           time.Duration
	IdleWrites                           int64
	EditLatency, RestoreLatency          Percentiles
	Memory                               []MemoryPoint
	HeapBytesPerPod, HeapBytesPerWI      float64
	RSSBytesPerPod, RSSBytesPerWI        float64
}

// Percentiles of a latency distribution.
type Percentiles struct {
	Samples       int
	P50, P95, P99 time.Duration
}

// MemoryPoint is the operator's memory at one size.
type MemoryPoint struct {
	Pods, WorkloadIsolations int
	HeapInUse, RSS           float64
}

func main() {
	var o options
	flag.StringVar(&o.manager, "manager", "bin/manager", "Operator binary.")
	flag.StringVar(&o.crds, "crds", "config/crd/bases", "CRD directory.")
	flag.StringVar(&o.jsonPath, "json", "bench.json", "Where to write the results as JSON.")
	flag.IntVar(&o.namespaces, "namespaces", 100, "M: namespaces.")
	flag.IntVar(&o.pods, "pods", 10000, "P: pods (API objects only).")
	flag.IntVar(&o.wis, "workloadisolations", 1000, "N: WorkloadIsolations.")
	flag.DurationVar(&o.idle, "idle", 60*time.Second, "Idle window for counting writes.")
	flag.IntVar(&o.samples, "samples", 100, "Samples per latency measurement.")
	flag.IntVar(&o.parallel, "parallel", 32, "Concurrent requests of the benchmark's own client.")
	flag.IntVar(&o.qps, "operator-qps", 1000, "--kube-api-qps of the operator (its burst is twice that).")
	flag.IntVar(&o.workers, "operator-workers", 16, "--max-concurrent-reconciles of the operator.")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "Write the operator's CPU profile during convergence to this file (go tool pprof).")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintf(os.Stderr, "bench FAILED: %v\n", err)
		os.Exit(1)
	}
}

func run(o options) error {
	if o.wis < 1 || o.namespaces < 1 || o.pods < o.wis {
		return errors.New("need at least one namespace and WorkloadIsolation, and at least as many pods as WorkloadIsolations")
	}
	ctx := context.Background()
	res := Results{Namespaces: o.namespaces, Pods: o.pods, WorkloadIsolations: o.wis, IdleWindow: o.idle}

	log("bare client: %d WorkloadIsolations with their writes, on a fresh control plane", o.wis)
	bare, err := bareClient(ctx, o)
	if err != nil {
		return err
	}
	res.BareClient = bare

	cp, err := localcp.Start(localcp.Options{CRDDirectoryPaths: []string{o.crds}})
	if err != nil {
		return err
	}
	defer func() { _ = cp.Stop() }()
	c, err := newClient(cp.Config, o.parallel)
	if err != nil {
		return err
	}
	logPath := filepath.Join(os.TempDir(), "isolator-bench-manager.log")
	operator, err := localcp.StartOperator(ctx, o.manager, cp.Kubeconfig, logPath,
		"--kube-api-qps="+strconv.Itoa(o.qps), "--kube-api-burst="+strconv.Itoa(2*o.qps),
		"--max-concurrent-reconciles="+strconv.Itoa(o.workers), "--zap-log-level=error")
	if err != nil {
		return err
	}
	defer operator.Stop()
	log("operator %s running (logs: %s)", o.manager, logPath)
	metricsAddr, pprofAddr := operator.MetricsAddr, operator.PprofAddr

	small := o.pods / 10
	log("creating %d namespaces and %d pods", o.namespaces, small)
	if err := createScene(ctx, c, o, 0, small); err != nil {
		return err
	}
	if err := settleAndRecord(&res, metricsAddr, small, 0); err != nil {
		return err
	}
	log("creating %d more pods", o.pods-small)
	if err := createScene(ctx, c, o, small, o.pods); err != nil {
		return err
	}
	if err := settleAndRecord(&res, metricsAddr, o.pods, 0); err != nil {
		return err
	}

	log("creating %d WorkloadIsolations and waiting until all are Ready", o.wis)
	profiled := make(chan error, 1)
	if o.cpuProfile != "" {
		go func() { profiled <- cpuProfile(pprofAddr, o.cpuProfile) }()
	}
	writesBefore, err := operatorWrites(metricsAddr)
	if err != nil {
		return err
	}
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- waitAllReady(ctx, c, o.wis) }()
	if err := parallel(o.wis, o.parallel, func(i int) error { return c.Create(ctx, isolation(i, o)) }); err != nil {
		return err
	}
	if err := <-done; err != nil {
		return err
	}
	res.OperatorConvergence = time.Since(start)
	writesAfter, err := operatorWrites(metricsAddr)
	if err != nil {
		return err
	}
	res.ConvergenceWrites = writesAfter - writesBefore
	if o.cpuProfile != "" {
		if err := <-profiled; err != nil {
			return err
		}
	}
	res.Ratio = res.OperatorConvergence.Seconds() / res.BareClient.Seconds()
	if err := settleAndRecord(&res, metricsAddr, o.pods, o.wis); err != nil {
		return err
	}

	log("counting the operator's writes over an idle window of %s", o.idle)
	before, err := operatorWrites(metricsAddr)
	if err != nil {
		return err
	}
	time.Sleep(o.idle)
	after, err := operatorWrites(metricsAddr)
	if err != nil {
		return err
	}
	res.IdleWrites = after - before

	log("measuring %d rule edits and %d policy restores", o.samples, o.samples)
	if res.EditLatency, err = editLatency(ctx, c, o); err != nil {
		return err
	}
	if res.RestoreLatency, err = restoreLatency(ctx, c, o); err != nil {
		return err
	}
	slopes(&res)
	printMarkdown(res)
	data, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(o.jsonPath, data, 0o644)
}

func log(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s bench: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func newClient(cfg *rest.Config, parallel int) (client.WithWatch, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = float32(parallel*100), parallel*200
	return client.NewWithWatch(cfg, client.Options{Scheme: localcp.Scheme()})
}

// parallel runs f(0..n-1) on `workers` goroutines and returns the first error.
func parallel(n, workers int, f func(int) error) error {
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}

func nsName(i int) string { return fmt.Sprintf("bench-%03d", i) }

// isolation i targets the pods labelled app=workload-i in namespace i%M.
func isolation(i int, o options) *isolationv1alpha1.WorkloadIsolation {
	return &isolationv1alpha1.WorkloadIsolation{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("workload-%d", i), Namespace: nsName(i % o.namespaces)},
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

// createScene creates the namespaces (first call) and pods from..to-1: pod j
// belongs to workload j%N, in that workload's namespace.
func createScene(ctx context.Context, c client.Client, o options, from, to int) error {
	if from == 0 {
		if err := parallel(o.namespaces, o.parallel, func(i int) error {
			return c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nsName(i), Labels: map[string]string{"team": fmt.Sprintf("team-%d", i%10)}}})
		}); err != nil {
			return err
		}
	}
	return parallel(to-from, o.parallel, func(k int) error {
		j := from + k
		w := j % o.wis
		return c.Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				Name: fmt.Sprintf("workload-%d-%d", w, j), Namespace: nsName(w % o.namespaces),
				Labels: map[string]string{"app": fmt.Sprintf("workload-%d", w), "app.kubernetes.io/part-of": "bench", "pod-template-hash": strconv.Itoa(j % 7)},
			},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: "registry.example/model-server:1", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}}},
		})
	})
}

// bareClient measures the API server's own limit: on a fresh control plane a
// client creates each WorkloadIsolation and does what the operator must do
// for it, with no reads and no reconciliation: apply its 2 NetworkPolicies
// and write its status once.
func bareClient(ctx context.Context, o options) (time.Duration, error) {
	cp, err := localcp.Start(localcp.Options{CRDDirectoryPaths: []string{o.crds}})
	if err != nil {
		return 0, err
	}
	defer func() { _ = cp.Stop() }()
	c, err := newClient(cp.Config, o.parallel)
	if err != nil {
		return 0, err
	}
	if err := parallel(o.namespaces, o.parallel, func(i int) error {
		return c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nsName(i)}})
	}); err != nil {
		return 0, err
	}
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
	// Warm up discovery, the CRD's storage and connections, as the
	// operator's control plane is warm when it is measured.
	for k := range o.parallel {
		warm := isolation(k, o)
		warm.Name = fmt.Sprintf("warm-up-%d", k)
		if err := write(warm); err != nil {
			return 0, err
		}
	}
	start := time.Now()
	err = parallel(o.wis, o.parallel, func(i int) error { return write(isolation(i, o)) })
	return time.Since(start), err
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

// cpuProfile records 10 seconds of the operator's CPU profile.
func cpuProfile(addr, path string) error {
	resp, err := http.Get("http://" + addr + "/debug/pprof/profile?seconds=10")
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
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
	for ctx.Err() == nil {
		w, err := c.Watch(ctx, &isolationv1alpha1.WorkloadIsolationList{})
		if err != nil {
			return err
		}
		for ev := range w.ResultChan() {
			wi, ok := ev.Object.(*isolationv1alpha1.WorkloadIsolation)
			if !ok {
				continue // a bookmark or an error status: the watch ends
			}
			cond := meta.FindStatusCondition(wi.Status.Conditions, isolationv1alpha1.ConditionReady)
			ready[wi.Namespace+"/"+wi.Name] = cond != nil && cond.Status == metav1.ConditionTrue && wi.Status.ObservedGeneration == wi.Generation
			if count() == n {
				w.Stop()
				return nil
			}
		}
		w.Stop()
	}
	return fmt.Errorf("only %d of %d WorkloadIsolations became Ready: %w", count(), n, ctx.Err())
}

// scrape reads the operator's Prometheus metrics and returns the sum of the
// samples of a metric whose labels contain all of the given pairs.
func scrape(addr string) (string, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return "", err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	return string(body), err
}

func sample(text, name string, match func(labels string) bool) float64 {
	total := 0.0
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := strings.TrimPrefix(line, name)
		labels := ""
		if strings.HasPrefix(rest, "{") {
			end := strings.Index(rest, "}")
			labels, rest = rest[1:end], rest[end+1:]
		} else if !strings.HasPrefix(rest, " ") {
			continue
		}
		if match != nil && !match(labels) {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err == nil {
			total += v
		}
	}
	return total
}

// operatorWrites counts the operator's own write requests, from
// client-go's rest_client_requests_total in the operator's metrics.
func operatorWrites(addr string) (int64, error) {
	text, err := scrape(addr)
	if err != nil {
		return 0, err
	}
	writes := sample(text, "rest_client_requests_total", func(labels string) bool {
		for _, m := range []string{"POST", "PUT", "PATCH", "DELETE"} {
			if strings.Contains(labels, `method="`+m+`"`) {
				return true
			}
		}
		return false
	})
	return int64(writes), nil
}

// settleAndRecord waits for the operator to go quiet, then records memory.
func settleAndRecord(res *Results, addr string, pods, wis int) error {
	time.Sleep(3 * time.Second)
	text, err := scrape(addr)
	if err != nil {
		return err
	}
	point := MemoryPoint{Pods: pods, WorkloadIsolations: wis,
		HeapInUse: sample(text, "go_memstats_heap_inuse_bytes", nil),
		RSS:       sample(text, "process_resident_memory_bytes", nil)}
	res.Memory = append(res.Memory, point)
	log("memory at %d pods, %d WorkloadIsolations: heap in use %.1f MiB, RSS %.1f MiB", pods, wis, point.HeapInUse/(1<<20), point.RSS/(1<<20))
	return nil
}

func slopes(res *Results) {
	if len(res.Memory) < 3 {
		return
	}
	a, b, c := res.Memory[0], res.Memory[1], res.Memory[2]
	if dp := float64(b.Pods - a.Pods); dp > 0 {
		res.HeapBytesPerPod, res.RSSBytesPerPod = (b.HeapInUse-a.HeapInUse)/dp, (b.RSS-a.RSS)/dp
	}
	if dw := float64(c.WorkloadIsolations - b.WorkloadIsolations); dw > 0 {
		res.HeapBytesPerWI, res.RSSBytesPerWI = (c.HeapInUse-b.HeapInUse)/dw, (c.RSS-b.RSS)/dw
	}
}

// editLatency changes a rule's port and times until the policy carries it.
func editLatency(ctx context.Context, c client.Client, o options) (Percentiles, error) {
	var samples []time.Duration
	for k := range o.samples {
		i := k % o.wis
		key := client.ObjectKey{Namespace: nsName(i % o.namespaces), Name: fmt.Sprintf("workload-%d", i)}
		port := int32(9000 + k)
		start := time.Now()
		patch := fmt.Sprintf(`{"spec":{"ingress":[{"name":"nginx","from":[{"preset":"ingress-nginx"}],"ports":[{"protocol":"TCP","port":%d}]}]}}`, port)
		wi := &isolationv1alpha1.WorkloadIsolation{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
		if err := c.Patch(ctx, wi, client.RawPatch("application/merge-patch+json", []byte(patch))); err != nil {
			return Percentiles{}, err
		}
		err := waitFor(ctx, func() (bool, error) {
			np := &networkingv1.NetworkPolicy{}
			if err := c.Get(ctx, client.ObjectKey{Namespace: key.Namespace, Name: policy.AllowName(key.Name, "nginx")}, np); err != nil {
				return false, client.IgnoreNotFound(err)
			}
			return len(np.Spec.Ingress) == 1 && len(np.Spec.Ingress[0].Ports) == 1 && np.Spec.Ingress[0].Ports[0].Port.IntVal == port, nil
		})
		if err != nil {
			return Percentiles{}, fmt.Errorf("edit of %s not applied: %w", key, err)
		}
		samples = append(samples, time.Since(start))
	}
	return percentiles(samples), nil
}

// restoreLatency deletes a generated policy and times until it is back.
func restoreLatency(ctx context.Context, c client.Client, o options) (Percentiles, error) {
	var samples []time.Duration
	for k := range o.samples {
		i := (k * 7) % o.wis
		key := client.ObjectKey{Namespace: nsName(i % o.namespaces), Name: policy.DefaultDenyName(fmt.Sprintf("workload-%d", i))}
		np := &networkingv1.NetworkPolicy{}
		if err := c.Get(ctx, key, np); err != nil {
			return Percentiles{}, err
		}
		start := time.Now()
		if err := c.Delete(ctx, np); err != nil {
			return Percentiles{}, err
		}
		err := waitFor(ctx, func() (bool, error) {
			restored := &networkingv1.NetworkPolicy{}
			if err := c.Get(ctx, key, restored); err != nil {
				return false, client.IgnoreNotFound(err)
			}
			return restored.UID != np.UID, nil
		})
		if err != nil {
			return Percentiles{}, fmt.Errorf("%s not restored: %w", key, err)
		}
		samples = append(samples, time.Since(start))
	}
	return percentiles(samples), nil
}

func waitFor(ctx context.Context, cond func() (bool, error)) error {
	return wait.PollUntilContextTimeout(ctx, 2*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) { return cond() })
}

func percentiles(samples []time.Duration) Percentiles {
	sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
	at := func(q float64) time.Duration {
		idx := int(q*float64(len(samples)+1)) - 1
		idx = min(max(idx, 0), len(samples)-1)
		return samples[idx]
	}
	return Percentiles{Samples: len(samples), P50: at(0.50), P95: at(0.95), P99: at(0.99)}
}

func printMarkdown(r Results) {
	mib := func(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
	fmt.Printf("\n| Measure (M=%d namespaces, P=%d pods, N=%d WorkloadIsolations) | Value |\n|---|---|\n", r.Namespaces, r.Pods, r.WorkloadIsolations)
	fmt.Printf("| Operator: create N and wait until all Ready | %s |\n", r.OperatorConvergence.Round(time.Millisecond))
	fmt.Printf("| Bare client: same writes (create, 2 policies, 1 status each) | %s |\n", r.BareClient.Round(time.Millisecond))
	fmt.Printf("| Ratio operator / bare | %.2f |\n", r.Ratio)
	fmt.Printf("| Operator writes until converged (minimum: 3 per WorkloadIsolation) | %d |\n", r.ConvergenceWrites)
	fmt.Printf("| Operator writes during %s idle | %d |\n", r.IdleWindow, r.IdleWrites)
	fmt.Printf("| Rule edit → policy updated, p50 / p95 / p99 (%d samples) | %s / %s / %s |\n", r.EditLatency.Samples, ms(r.EditLatency.P50), ms(r.EditLatency.P95), ms(r.EditLatency.P99))
	fmt.Printf("| Policy deleted → restored, p50 / p95 / p99 (%d samples) | %s / %s / %s |\n", r.RestoreLatency.Samples, ms(r.RestoreLatency.P50), ms(r.RestoreLatency.P95), ms(r.RestoreLatency.P99))
	for _, m := range r.Memory {
		fmt.Printf("| Memory at P=%d, N=%d: heap in use / RSS | %s / %s |\n", m.Pods, m.WorkloadIsolations, mib(m.HeapInUse), mib(m.RSS))
	}
	fmt.Printf("| Slope per pod: heap / RSS | %.0f B / %.0f B |\n", r.HeapBytesPerPod, r.RSSBytesPerPod)
	fmt.Printf("| Slope per WorkloadIsolation (with its 2 policies): heap / RSS | %.0f B / %.0f B |\n", r.HeapBytesPerWI, r.RSSBytesPerWI)
}
