package adminoracle

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// engine is the np-guard child process.
var engine *npguard

// TestMain builds and starts the np-guard process. When it cannot, every
// test fails: under CI, a suite that cannot run must not pass.
func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "adminoracle-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	bin := filepath.Join(dir, "npguard")
	build := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", bin, ".")
	build.Dir = "npguard"
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "building the np-guard oracle (test/adminoracle/npguard): %v\n", err)
		return 1
	}
	// np-guard's engine may write a cache log into its working directory.
	engine, err = startNPGuard(bin, dir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "starting the np-guard oracle: %v\n", err)
		return 1
	}
	defer engine.close()
	return m.Run()
}

// npguard talks to the child process: one JSON request a line, one JSON
// response a line.
type npguard struct {
	cmd *exec.Cmd
	in  *bufio.Writer
	out *bufio.Scanner
	// closeIn closes the child's stdin, which ends it.
	closeIn func() error
}

// query is one connection: source and destination ("namespace/pod" or an
// address), protocol, destination port.
type query struct {
	Src      string `json:"src"`
	Dst      string `json:"dst"`
	Protocol string `json:"protocol"`
	Port     int    `json:"port"`
}

func startNPGuard(bin, dir string) (*npguard, error) {
	cmd := exec.Command(bin)
	cmd.Dir = dir
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	out := bufio.NewScanner(stdout)
	out.Buffer(make([]byte, 0, 1<<20), 64<<20)
	return &npguard{cmd: cmd, in: bufio.NewWriterSize(stdin, 1<<20), out: out, closeIn: stdin.Close}, nil
}

func (n *npguard) close() {
	_ = n.closeIn()
	_ = n.cmd.Wait()
}

// allowed asks np-guard, for the cluster made of objects (each with its
// kind set), which of the connections it allows.
func (n *npguard) allowed(objects []any, queries []query) ([]bool, error) {
	line, err := json.Marshal(struct {
		Objects []any   `json:"objects"`
		Queries []query `json:"queries"`
	}{objects, queries})
	if err != nil {
		return nil, err
	}
	if _, err := n.in.Write(append(line, '\n')); err != nil {
		return nil, err
	}
	if err := n.in.Flush(); err != nil {
		return nil, err
	}
	if !n.out.Scan() {
		return nil, fmt.Errorf("np-guard ended: %v", n.out.Err())
	}
	var resp struct {
		Allowed []bool `json:"allowed"`
		Error   string `json:"error"`
	}
	if err := json.Unmarshal(n.out.Bytes(), &resp); err != nil {
		return nil, err
	}
	if resp.Error != "" {
		return nil, fmt.Errorf("np-guard: %s", resp.Error)
	}
	if len(resp.Allowed) != len(queries) {
		return nil, fmt.Errorf("np-guard answered %d of %d queries", len(resp.Allowed), len(queries))
	}
	return resp.Allowed, nil
}
