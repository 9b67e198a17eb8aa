package localcp

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// Operator is the operator binary running against a control plane, with
// its metrics, health and pprof endpoints on free loopback ports. Its
// metrics are plain HTTP (--metrics-secure=false) for the local tools that
// scrape them; --metrics-secure=true serves them as a cluster does.
type Operator struct {
	MetricsAddr, ProbeAddr, PprofAddr string
	// LogPath is the file the operator logs to.
	LogPath string

	cmd    *exec.Cmd
	exited chan struct{}
	err    error
}

// StartOperator runs binary against kubeconfig with extra flags (which win
// over the defaults it sets), and waits until its /readyz answers: its caches
// have synced. With leader election that holds for standbys too; the CNI is
// classified only by the leader, shortly after it starts.
func StartOperator(ctx context.Context, binary, kubeconfig, logPath string, args ...string) (*Operator, error) {
	return StartOperatorEnv(ctx, nil, binary, kubeconfig, logPath, args...)
}

// StartOperatorEnv is StartOperator with environment variables added to
// this process's, such as GOMEMLIMIT.
func StartOperatorEnv(ctx context.Context, env []string, binary, kubeconfig, logPath string, args ...string) (*Operator, error) {
	if _, err := os.Stat(binary); err != nil {
		return nil, fmt.Errorf("operator binary %s not found: build it with `make build`", binary)
	}
	o := &Operator{LogPath: logPath, exited: make(chan struct{})}
	for _, addr := range []*string{&o.MetricsAddr, &o.ProbeAddr, &o.PprofAddr} {
		a, err := FreeAddress()
		if err != nil {
			return nil, err
		}
		*addr = a
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	o.cmd = exec.Command(binary, append([]string{
		"--kubeconfig=" + kubeconfig, "--metrics-bind-address=" + o.MetricsAddr,
		"--health-probe-bind-address=" + o.ProbeAddr, "--pprof-bind-address=" + o.PprofAddr,
		"--metrics-secure=false",
	}, args...)...)
	if env != nil {
		o.cmd.Env = append(os.Environ(), env...)
	}
	o.cmd.Stdout, o.cmd.Stderr = logFile, logFile
	if err := o.cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("starting the operator: %w", err)
	}
	go func() {
		o.err = o.cmd.Wait()
		_ = logFile.Close()
		close(o.exited)
	}()
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		select {
		case <-o.exited:
			return false, fmt.Errorf("the operator exited (logs: %s): %w", logPath, o.err)
		default:
		}
		return ready(ctx, "http://"+o.ProbeAddr+"/readyz"), nil
	})
	if err != nil {
		o.Stop()
		return nil, fmt.Errorf("waiting for the operator to become ready (logs: %s): %w", logPath, err)
	}
	return o, nil
}

// Stop asks the operator to shut down, and kills it after 10 seconds.
func (o *Operator) Stop() {
	select {
	case <-o.exited:
		return
	default:
	}
	_ = o.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-o.exited:
	case <-time.After(10 * time.Second):
		_ = o.cmd.Process.Kill()
		<-o.exited
	}
}

// PID is the operator's process id.
func (o *Operator) PID() int { return o.cmd.Process.Pid }

// Signal sends sig to the operator's process.
func (o *Operator) Signal(sig os.Signal) error { return o.cmd.Process.Signal(sig) }

// Exited is closed when the operator's process has exited.
func (o *Operator) Exited() <-chan struct{} { return o.exited }

// ready reports whether url answers 200; a refused connection is "not yet".
func ready(ctx context.Context, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// FreeAddress returns a loopback address with a port that is free now.
func FreeAddress() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String(), nil
}

// Kill ends the operator at once (SIGKILL), as a crashed or evicted process
// ends: it neither finishes its work nor releases its leader lease.
func (o *Operator) Kill() {
	select {
	case <-o.exited:
		return
	default:
	}
	_ = o.cmd.Process.Kill()
	<-o.exited
}
