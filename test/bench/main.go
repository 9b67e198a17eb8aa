// Command bench measures the operator at cluster scale on the local control
// plane, with the operator running as its real binary in its own process.
// Scenarios (see docs/performance.md):
//
//   - scale: for each size (M namespaces, P pods, N WorkloadIsolations), the
//     time from creating N WorkloadIsolations until all are Ready against
//     the time a bare client needs for the same minimal writes, over several
//     runs; writes until converged and in an idle window; single-change
//     latencies; memory and its slopes per pod and per WorkloadIsolation;
//   - pod churn: pods created and deleted continuously, once not selected
//     by any WorkloadIsolation and once selected, with the operator's
//     writes, reconciles and CPU per 1,000 pod events and the change
//     latencies measured meanwhile;
//   - namespace churn: namespaces created and labelled;
//   - restart: the operator restarted with nothing changed;
//   - failover: two replicas with leader election, the leader killed or
//     stopped, a generated policy deleted at once.
//
// The scenarios after scale run on the first size's control plane. It
// prints Markdown and writes JSON (--json). Run it with `make bench` (full
// size) or `make bench-smoke` (small, as CI does).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/isolator-dev/isolator/internal/localcp"
)

type options struct {
	manager, crds, jsonPath string
	sizes                   []Size
	runs                    int
	idle                    time.Duration
	samples                 int
	parallel                int
	qps                     int
	workers                 int
	cpuProfile, heapProfile string

	churnRate      int
	churnDuration  time.Duration
	namespaceChurn int
	restart        bool
	failover       bool
	memoryLimit    resource.Quantity
}

// Size is one scale of the scale scenario.
type Size struct {
	Namespaces, Pods, WorkloadIsolations int
}

func (s Size) String() string {
	return fmt.Sprintf("M=%d namespaces, P=%d pods, N=%d WorkloadIsolations", s.Namespaces, s.Pods, s.WorkloadIsolations)
}

// Results is what a run measured; it is also the JSON output.
type Results struct {
	Date           string
	Scale          []ScaleResult
	PodChurn       *PodChurnResult       `json:",omitempty"`
	NamespaceChurn *NamespaceChurnResult `json:",omitempty"`
	Restart        *RestartResult        `json:",omitempty"`
	Failover       *FailoverResult       `json:",omitempty"`
}

func main() {
	var o options
	var sizes string
	flag.StringVar(&o.manager, "manager", "bin/manager", "Operator binary.")
	flag.StringVar(&o.crds, "crds", "config/crd/bases", "CRD directory.")
	flag.StringVar(&o.jsonPath, "json", "bench.json", "Where to write the results as JSON.")
	flag.StringVar(&sizes, "sizes", "100:10000:1000,1000:100000:10000",
		"Sizes of the scale scenario, comma-separated M:P:N (namespaces:pods:WorkloadIsolations); the other scenarios run at the first.")
	flag.IntVar(&o.runs, "runs", 3, "Convergence runs per size (each on fresh control planes); the median ratio is reported.")
	flag.DurationVar(&o.idle, "idle", 60*time.Second, "Idle window for counting writes.")
	flag.IntVar(&o.samples, "samples", 100, "Samples per latency measurement.")
	flag.IntVar(&o.parallel, "parallel", 32, "Concurrent requests of the benchmark's own client.")
	flag.IntVar(&o.qps, "operator-qps", 1000, "--kube-api-qps of the operator (its burst is twice that).")
	flag.IntVar(&o.workers, "operator-workers", 16, "--max-concurrent-reconciles of the operator.")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "Write the operator's CPU profile during the first convergence (for as long as the bare client took) to this file, suffixed with N (go tool pprof).")
	flag.StringVar(&o.heapProfile, "heapprofile", "", "Write the operator's heap profile after the first run of each size to this file, suffixed with N.")
	flag.IntVar(&o.churnRate, "pod-churn-rate", 50, "Pod events per second in the pod churn scenario (half creates, half deletes); 0 skips it.")
	flag.DurationVar(&o.churnDuration, "pod-churn-duration", 60*time.Second, "Length of each of the two pod churn phases (pods no WorkloadIsolation selects, then target pods).")
	flag.IntVar(&o.namespaceChurn, "namespace-churn", 200, "Namespaces created and then labelled in the namespace churn scenario; 0 skips it.")
	flag.BoolVar(&o.restart, "restart", true, "Run the restart scenario.")
	flag.BoolVar(&o.failover, "failover", true, "Run the failover scenario.")
	memoryLimit := flag.String("operator-memory-limit", "320Mi",
		"The operator's container memory limit to emulate (the chart's default); the operator sets its Go memory limit to 85% of it. 0 runs without.")
	flag.Parse()
	ctrllog.SetLogger(logr.Discard())
	var err error
	if o.memoryLimit, err = resource.ParseQuantity(*memoryLimit); err != nil {
		err = fmt.Errorf("--operator-memory-limit: %w", err)
	} else if o.sizes, err = parseSizes(sizes); err == nil {
		err = run(o)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench FAILED: %v\n", err)
		os.Exit(1)
	}
}

func parseSizes(s string) ([]Size, error) {
	var out []Size
	for _, part := range strings.Split(s, ",") {
		var v [3]int
		fields := strings.Split(strings.TrimSpace(part), ":")
		if len(fields) != 3 {
			return nil, fmt.Errorf("--sizes: %q is not M:P:N", part)
		}
		for i, f := range fields {
			n, err := strconv.Atoi(f)
			if err != nil || n < 1 {
				return nil, fmt.Errorf("--sizes: %q: want positive integers", part)
			}
			v[i] = n
		}
		size := Size{Namespaces: v[0], Pods: v[1], WorkloadIsolations: v[2]}
		if size.Pods < size.WorkloadIsolations {
			return nil, fmt.Errorf("--sizes: %q: need at least as many pods as WorkloadIsolations", part)
		}
		out = append(out, size)
	}
	return out, nil
}

func run(o options) error {
	if o.runs < 1 {
		return errors.New("--runs must be at least 1")
	}
	ctx := context.Background()
	res := Results{Date: time.Now().UTC().Format(time.DateOnly)}
	for si, size := range o.sizes {
		sr := ScaleResult{Size: size, IdleWindow: o.idle}
		for r := range o.runs {
			first := r == 0
			more := func(s *scene) error {
				if !first {
					return nil
				}
				if err := s.afterConvergence(ctx, &sr); err != nil {
					return err
				}
				if si == 0 {
					return otherScenarios(ctx, s, &res)
				}
				return nil
			}
			if err := scaleRun(ctx, o, size, r, &sr, more); err != nil {
				return err
			}
		}
		sr.summarise()
		res.Scale = append(res.Scale, sr)
	}
	printMarkdown(res)
	data, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(o.jsonPath, data, 0o644)
}

// otherScenarios runs churn, restart and failover on the first size's scene.
func otherScenarios(ctx context.Context, s *scene, res *Results) error {
	if s.o.churnRate > 0 {
		r, err := podChurn(ctx, s)
		if err != nil {
			return fmt.Errorf("pod churn: %w", err)
		}
		res.PodChurn = r
	}
	if s.o.namespaceChurn > 0 {
		r, err := namespaceChurn(ctx, s)
		if err != nil {
			return fmt.Errorf("namespace churn: %w", err)
		}
		res.NamespaceChurn = r
	}
	if s.o.restart {
		r, err := restart(ctx, s)
		if err != nil {
			return fmt.Errorf("restart: %w", err)
		}
		res.Restart = r
	}
	if s.o.failover {
		r, err := failover(ctx, s)
		if err != nil {
			return fmt.Errorf("failover: %w", err)
		}
		res.Failover = r
	}
	return nil
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

func median(values []float64) float64 {
	if len(values) == 0 {
		return 0
	}
	s := slices.Clone(values)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
