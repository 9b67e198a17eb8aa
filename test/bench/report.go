package main

import (
	"fmt"
	"strings"
	"time"
)

func printMarkdown(r Results) {
	mib := func(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
	lat := func(p Percentiles) string {
		return fmt.Sprintf("%s / %s / %s (%d samples)", ms(p.P50), ms(p.P95), ms(p.P99), p.Samples)
	}
	row := func(measure, value, target string) { fmt.Printf("| %s | %s | %s |\n", measure, value, target) }
	header := func(title string) { fmt.Printf("\n| %s | Value | Target |\n|---|---|---|\n", title) }

	for _, s := range r.Scale {
		header("Scale: " + s.String())
		var ops, bares, ratios, writes, reads, cpu, machine, restarts []string
		for _, run := range s.Runs {
			ops = append(ops, run.Operator.Round(time.Millisecond).String())
			bares = append(bares, run.BareClient.Round(time.Millisecond).String())
			ratios = append(ratios, fmt.Sprintf("%.2f", run.Ratio))
			writes = append(writes, fmt.Sprint(run.Writes))
			cpu = append(cpu, fmt.Sprintf("%.1f s", run.CPUSeconds))
			reads = append(reads, fmt.Sprint(run.Reads))
			machine = append(machine, fmt.Sprintf("%s → %s", run.BareProcessCPU, run.OperatorProcessCPU))
			restarts = append(restarts, fmt.Sprint(run.WatchRestarts))
		}
		row("Operator: create N, wait until all Ready (per run)", strings.Join(ops, ", "), "")
		row("Bare client: same writes (per run)", strings.Join(bares, ", "), "")
		row("Ratio operator / bare (per run)", strings.Join(ratios, ", "), "")
		row("Ratio, median", fmt.Sprintf("%.2f", s.MedianRatio), "≤ 1.25")
		row("Operator writes until converged (per run)", strings.Join(writes, ", "), fmt.Sprintf("minimum %d (3 per WorkloadIsolation)", 3*s.WorkloadIsolations))
		row("Operator CPU until converged (per run)", strings.Join(cpu, ", "), "")
		row("Operator reads from the API server until converged (per run)", strings.Join(reads, ", "), "")
		row("API server / etcd / benchmark CPU: bare client → operator run (per run)", strings.Join(machine, "; "), "")
		row("Benchmark's watch resumed during the operator's run (per run)", strings.Join(restarts, ", "), "")
		row(fmt.Sprintf("Operator writes during %s idle", s.IdleWindow), fmt.Sprint(s.IdleWrites), "0")
		row("Rule edit → policy updated, p50 / p95 / p99", lat(s.EditLatency), "p99 ≤ 250 ms")
		row("Policy deleted → restored, p50 / p95 / p99", lat(s.RestoreLatency), "p99 ≤ 250 ms")
		for _, m := range s.Memory {
			target := ""
			if m.WorkloadIsolations > 0 {
				target = "RSS ≤ 300 MiB"
			}
			row(fmt.Sprintf("Memory at P=%d, N=%d: heap in use / RSS / live heap", m.Pods, m.WorkloadIsolations),
				mib(m.HeapInUse)+" / "+mib(m.RSS)+" / "+mib(m.LiveHeap), target)
		}
		row("Slope per pod: heap in use / RSS / live heap", fmt.Sprintf("%.0f B / %.0f B / %.0f B", s.HeapBytesPerPod, s.RSSBytesPerPod, s.LiveBytesPerPod), "RSS ≤ 1024 B")
		row("Slope per WorkloadIsolation (with its 2 policies): heap in use / RSS / live heap",
			fmt.Sprintf("%.0f B / %.0f B / %.0f B", s.HeapBytesPerWI, s.RSSBytesPerWI, s.LiveBytesPerWI), "")
	}
	if c := r.PodChurn; c != nil {
		header(fmt.Sprintf("Pod churn at N=%d: %d pod events per second", r.Scale[0].WorkloadIsolations, c.Rate))
		for _, p := range c.Phases {
			target := ""
			if strings.HasPrefix(p.Pods, "not") {
				target = "0 writes"
			}
			row(fmt.Sprintf("Pods %s: %d events in %s (%.0f per second); writes / reconciles / CPU seconds per 1,000 events",
				p.Pods, p.Events, p.Duration.Round(time.Second), float64(p.Events)/p.Duration.Seconds()),
				fmt.Sprintf("%.0f / %.0f / %.2f", p.WritesPer1000, p.ReconcilesPer1000, p.CPUSecondsPer1000), target)
		}
		row("Rule edit → policy updated during churn", lat(c.EditLatency), "p99 ≤ 250 ms")
		row("Policy deleted → restored during churn", lat(c.RestoreLatency), "p99 ≤ 250 ms")
	}
	if c := r.NamespaceChurn; c != nil {
		header(fmt.Sprintf("Namespace churn at N=%d: %d namespaces created, then labelled", c.WorkloadIsolations, c.Namespaces))
		row("Namespace events", fmt.Sprint(c.Events), "")
		row(fmt.Sprintf("Reconciles (isolations with an exposure: %d)", c.ExposedIsolations), fmt.Sprint(c.Reconciles), "proportional to the isolations affected")
		row("Reconciles per namespace event / CPU per event", fmt.Sprintf("%.2f / %.2f ms", c.ReconcilesPerEvent, c.CPUMillisPerEvent), "")
		row("Writes", fmt.Sprint(c.Writes), "")
	}
	if c := r.Restart; c != nil {
		header(fmt.Sprintf("Restart at N=%d, nothing changed", c.WorkloadIsolations))
		row("Process start → ready (caches synced)", c.Ready.Round(time.Millisecond).String(), "")
		row("Process start → every WorkloadIsolation re-evaluated", c.Reevaluated.Round(time.Millisecond).String(), "")
		row(fmt.Sprintf("Writes until re-evaluated and %s after", c.QuietWindow), fmt.Sprint(c.Writes), "0")
	}
	if c := r.Failover; c != nil {
		header("Failover: two replicas with leader election, a generated policy deleted as the leader goes")
		row(fmt.Sprintf("Leader killed (lease not released; lease duration %s) → policy restored", c.LeaseDuration), c.Killed.Round(time.Millisecond).String(), "")
		row("Leader stopped (lease released) → policy restored", c.Stopped.Round(time.Millisecond).String(), "")
	}
}
