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
// its metrics, health and pprof endpoints on free loopback ports.
type Operator struct {
	MetricsAddr, ProbeAddr, PprofAddr string
	// LogPath is the file the operator logs to.
	LogPath string

	cmd    *exec.Cmd
	exited chan struct{}
	err    error
}

// StartOperator runs binary against kubeconfig with extra flags, and waits
// until its /readyz answers (its caches have synced and the CNI has been
// classified).
func StartOperator(ctx context.Context, binary, kubeconfig, logPath string, args ...string) (*Operator, error) {
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
	}, args...)...)
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
	_ = o.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-o.exited:
	case <-time.After(10 * time.Second):
		_ = o.cmd.Process.Kill()
		<-o.exited
	}
}

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
