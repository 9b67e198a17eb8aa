package realnode

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
)

// A connectivity matrix, printed as the upstream NetworkPolicy e2e suite
// prints its truth tables: one row per source pod, one column per
// destination pod and port, one cell per probe.

// source is a pod that probes the targets.
type source struct{ name, namespace string }

// target is a destination and port: a Service or a pod.
type target struct {
	// name says what is probed, such as "local-ai/local-ai".
	name string
	port string
	// url is what the source requests.
	url string
}

func (d target) String() string { return d.name + ":" + d.port }

// probe names one connection attempt: a source pod ("namespace/name") to a
// destination pod and port ("namespace/name:port").
type probe struct{ from, to string }

func probeOf(from source, to target) probe {
	return probe{from.namespace + "/" + from.name, to.String()}
}

func (p probe) String() string { return p.from + " -> " + p.to }

// matrix holds, for every source and destination, whether the connection
// succeeds (observed) or should succeed (expected).
type matrix struct {
	sources []source
	targets []target
	cells   map[probe]bool
}

// newMatrix is the matrix of sources × targets where exactly the listed
// probes ("<source pod>:<port>") are allowed.
func newMatrix(sources []source, targets []target, allowed ...string) matrix {
	m := matrix{sources: sources, targets: targets, cells: map[probe]bool{}}
	for _, from := range sources {
		for _, to := range targets {
			m.cells[probeOf(from, to)] = slices.Contains(allowed, from.name+":"+to.port)
		}
	}
	return m
}

// allAllowed is the matrix in which every source reaches every target.
func allAllowed(sources []source, targets []target) matrix {
	m := newMatrix(sources, targets)
	for p := range m.cells {
		m.cells[p] = true
	}
	return m
}

// observe asks every cell of want's matrix at once and returns what it saw.
func observe(want matrix, reaches func(from source, to target) bool) matrix {
	got := matrix{sources: want.sources, targets: want.targets, cells: map[probe]bool{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, from := range want.sources {
		for _, to := range want.targets {
			wg.Go(func() {
				ok := reaches(from, to)
				mu.Lock()
				got.cells[probeOf(from, to)] = ok
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	return got
}

// mismatches lists the probes whose observed result differs from the
// expected one, with both, in row order.
func mismatches(want, got matrix) []string {
	var out []string
	for _, from := range want.sources {
		for _, to := range want.targets {
			p := probeOf(from, to)
			if want.cells[p] != got.cells[p] {
				out = append(out, fmt.Sprintf("%s: expected %s, observed %s", p, verdict(want.cells[p]), verdict(got.cells[p])))
			}
		}
	}
	return out
}

func verdict(allowed bool) string {
	if allowed {
		return "allowed"
	}
	return "blocked"
}

// matrixLegend explains the cells of a printed matrix.
const matrixLegend = ". allowed, as expected   - blocked, as expected   " +
	"X. allowed, expected blocked   X- blocked, expected allowed"

// cell is the symbol of one probe: its observed result, prefixed with X when
// that is not the expected one.
func cell(expected, observed bool) string {
	symbol := "-"
	if observed {
		symbol = "."
	}
	if expected != observed {
		return "X" + symbol
	}
	return symbol
}

// format renders the truth table of got against want: rows are sources,
// columns destination:port.
func format(want, got matrix) string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 4, 3, ' ', 0)
	header := []string{"source \\ destination:port"}
	for _, to := range want.targets {
		header = append(header, to.String())
	}
	_, _ = fmt.Fprintln(w, strings.Join(header, "\t"))
	for _, from := range want.sources {
		row := []string{from.namespace + "/" + from.name}
		for _, to := range want.targets {
			p := probeOf(from, to)
			row = append(row, cell(want.cells[p], got.cells[p]))
		}
		_, _ = fmt.Fprintln(w, strings.Join(row, "\t"))
	}
	_ = w.Flush()
	fmt.Fprintf(&b, "legend: %s\n", matrixLegend)
	return b.String()
}

// The walkthrough's shape, for the tests of the matrix itself.
var (
	sources = []source{{"nginx", "nginx"}, {"test-nginx", "nginx"}, {"test-local-ai", "local-ai"}, {"team-client", "team-a"}}
	targets = []target{{name: "local-ai/local-ai", port: "8080", url: "http://a:8080/"}, {name: "local-ai/local-ai", port: "9090", url: "http://a:9090/"}}
)

func TestMatrixPrintsEveryProbeAndMarksMismatches(t *testing.T) {
	want := newMatrix(sources, targets, "nginx:8080", "team-client:8080")
	got := newMatrix(sources, targets, "nginx:8080", "test-nginx:9090")
	table := format(want, got)
	t.Logf("\n%s", table)
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if len(lines) != 1+len(sources)+1 {
		t.Fatalf("want a header, %d rows and a legend, got:\n%s", len(sources), table)
	}
	for _, col := range []string{"source \\ destination:port", "local-ai/local-ai:8080", "local-ai/local-ai:9090"} {
		if !strings.Contains(lines[0], col) {
			t.Errorf("header %q lacks %q", lines[0], col)
		}
	}
	rows := map[string][]string{}
	for _, line := range lines[1 : 1+len(sources)] {
		fields := strings.Fields(line)
		rows[fields[0]] = fields[1:]
	}
	wantRows := map[string][]string{
		"nginx/nginx":            {".", "-"},
		"nginx/test-nginx":       {"-", "X."},
		"local-ai/test-local-ai": {"-", "-"},
		"team-a/team-client":     {"X-", "-"},
	}
	for src, cells := range wantRows {
		if !slices.Equal(rows[src], cells) {
			t.Errorf("row %s = %q, want %q", src, rows[src], cells)
		}
	}
	if !strings.HasPrefix(lines[len(lines)-1], "legend: ") {
		t.Errorf("no legend: %q", lines[len(lines)-1])
	}
	wantMismatches := []string{
		"nginx/test-nginx -> local-ai/local-ai:9090: expected blocked, observed allowed",
		"team-a/team-client -> local-ai/local-ai:8080: expected allowed, observed blocked",
	}
	if m := mismatches(want, got); !slices.Equal(m, wantMismatches) {
		t.Errorf("mismatches = %q, want %q", m, wantMismatches)
	}
	if m := mismatches(want, want); len(m) != 0 {
		t.Errorf("a matrix differs from itself: %q", m)
	}
}

func TestObserveProbesEveryCell(t *testing.T) {
	want := allAllowed(sources, targets)
	var mu sync.Mutex
	seen := map[string]int{}
	got := observe(want, func(from source, to target) bool {
		mu.Lock()
		defer mu.Unlock()
		seen[from.name+" "+to.url]++
		return from.name == "nginx" && to.port == "8080"
	})
	if len(seen) != len(sources)*len(targets) {
		t.Errorf("probed %d distinct cells, want %d: %v", len(seen), len(sources)*len(targets), seen)
	}
	for cell, n := range seen {
		if n != 1 {
			t.Errorf("%s probed %d times", cell, n)
		}
	}
	if m := mismatches(newMatrix(sources, targets, "nginx:8080"), got); len(m) != 0 {
		t.Errorf("observed matrix differs from the probe results: %q", m)
	}
}
