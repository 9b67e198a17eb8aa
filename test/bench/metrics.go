package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
)

// Counters are the operator's own figures, read from its Prometheus
// metrics endpoint.
type Counters struct {
	// Writes are client-go's write requests (POST, PUT, PATCH, DELETE),
	// Reads the others (GET: gets, lists and watches).
	Writes, Reads int64
	// Reconciles of the WorkloadIsolation controller.
	Reconciles int64
	// CPUSeconds of the operator process.
	CPUSeconds float64
	// QueueDepth of the WorkloadIsolation controller's work queue, and
	// ActiveWorkers: reconciles in progress.
	QueueDepth, ActiveWorkers int64
	// HeapInUse, HeapAlloc (live and not yet collected objects) and RSS in
	// bytes.
	HeapInUse, HeapAlloc, RSS float64
	// Leader is whether this replica holds the leader lease.
	Leader bool
}

// Sub returns the counters accumulated since before.
func (c Counters) Sub(before Counters) Counters {
	return Counters{
		Writes:     c.Writes - before.Writes,
		Reads:      c.Reads - before.Reads,
		Reconciles: c.Reconciles - before.Reconciles,
		CPUSeconds: c.CPUSeconds - before.CPUSeconds,
	}
}

func readCounters(addr string) (Counters, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return Counters{}, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return Counters{}, err
	}
	text := string(body)
	workloadisolation := func(labels string) bool { return strings.Contains(labels, `controller="workloadisolation"`) }
	return Counters{
		Writes: int64(sample(text, "rest_client_requests_total", func(labels string) bool {
			for _, m := range []string{"POST", "PUT", "PATCH", "DELETE"} {
				if strings.Contains(labels, `method="`+m+`"`) {
					return true
				}
			}
			return false
		})),
		Reads: int64(sample(text, "rest_client_requests_total", func(labels string) bool {
			return strings.Contains(labels, `method="GET"`)
		})),
		Reconciles:    int64(sample(text, "controller_runtime_reconcile_total", workloadisolation)),
		CPUSeconds:    sample(text, "process_cpu_seconds_total", nil),
		QueueDepth:    int64(sample(text, "workqueue_depth", func(labels string) bool { return strings.Contains(labels, `name="workloadisolation"`) })),
		ActiveWorkers: int64(sample(text, "controller_runtime_active_workers", workloadisolation)),
		HeapInUse:     sample(text, "go_memstats_heap_inuse_bytes", nil),
		HeapAlloc:     sample(text, "go_memstats_heap_alloc_bytes", nil),
		RSS:           sample(text, "process_resident_memory_bytes", nil),
		Leader:        sample(text, "leader_election_master_status", nil) > 0,
	}, nil
}

// sample returns the sum of the samples of a metric whose labels pass match
// (all of them when match is nil).
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

// profile saves one of the operator's pprof profiles: "profile?seconds=10"
// (CPU) or "heap".
func profile(addr, which, path string) error {
	resp, err := http.Get("http://" + addr + "/debug/pprof/" + which)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("pprof %s: %s", which, resp.Status)
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}
