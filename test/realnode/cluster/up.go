package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/isolator-dev/isolator/test/realnode/images"
)

// Timings are what Up measured.
type Timings struct {
	// ComponentsStarted is from the start until every process runs.
	ComponentsStarted time.Duration
	// NodeReady is from the start until the Node is Ready.
	NodeReady time.Duration
	// DataplaneReady is from the start until kube-router's DaemonSet pod
	// is Ready.
	DataplaneReady time.Duration
}

// Cleanup removes what an earlier run left, recognised by the records in
// the state directory. It does nothing when there are none.
func (c Config) Cleanup(logf func(string, ...any)) error {
	r, err := c.loadRecords()
	if err == nil && r.Supervisor.alive() {
		logf("stopping the cluster recorded in %s", c.recordsFile())
	}
	if errors.Is(err, fs.ErrNotExist) {
		if exists(c.StateDir) {
			return fmt.Errorf("%s exists without the harness's records: it was not made by this harness; remove it yourself", c.StateDir)
		}
		return nil
	}
	if err != nil {
		return err
	}
	logf("removing the cluster recorded in %s", c.recordsFile())
	return c.teardown(r, logf)
}

// Up brings the cluster up: it removes an earlier run's leftovers, refuses
// when something else occupies the cluster's names or subnets, then creates
// the network namespace and link, the cgroups and the state, starts the
// supervisor (the binary supervisor, given the arguments "supervise
// <state dir>") inside the namespaces, and waits until the Node is Ready.
// When Up fails, what it made stays recorded for Down.
func (c Config) Up(ctx context.Context, supervisor string, logf func(string, ...any)) (Timings, error) {
	var t Timings
	begin := time.Now()
	// A running cluster is stopped only by Down, never by another Up.
	if exists(c.StateDir) {
		held, err := c.lock()
		if errors.Is(err, errRunning) {
			return t, fmt.Errorf("a cluster is running from %s: stop it with `realnode down --state %s` first", c.StateDir, c.StateDir)
		}
		if err != nil {
			return t, err
		}
		_ = held.Close()
	}
	if err := c.Cleanup(logf); err != nil {
		return t, err
	}
	occupied, err := c.Occupied()
	if err != nil {
		return t, err
	}
	if len(occupied) > 0 {
		return t, fmt.Errorf("refusing to start: not made by this harness, but in its way:\n  %s", strings.Join(occupied, "\n  "))
	}
	if err := os.MkdirAll(c.StateDir, 0o700); err != nil {
		return t, err
	}
	r := &records{}
	if err := c.saveRecords(r); err != nil {
		return t, err
	}
	if err := os.MkdirAll(c.LogDir(), 0o700); err != nil {
		return t, err
	}
	data, _ := json.Marshal(c)
	if err := os.WriteFile(c.path("config.json"), data, 0o600); err != nil {
		return t, err
	}
	if err := c.pki(); err != nil {
		return t, err
	}
	if err := c.configFiles(); err != nil {
		return t, err
	}
	if err := c.network(r); err != nil {
		return t, err
	}
	if err := c.cgroups(r); err != nil {
		return t, err
	}
	// kube-router runs as a DaemonSet pod; its image is the binary alone.
	if err := images.Pack(c.KubeRouter, KubeRouterImage, c.path("images", "kube-router.tar"), kubeRouterImage); err != nil {
		return t, fmt.Errorf("packing kube-router: %w", err)
	}
	if err := c.startSupervisor(r, supervisor); err != nil {
		return t, err
	}
	if err := poll(ctx, 3*time.Minute, func() bool {
		if !r.Supervisor.alive() {
			return true
		}
		return exists(c.path("supervisor.ready"))
	}, "the cluster's components"); err != nil {
		return t, c.withLog(err, "supervisor")
	}
	if !r.Supervisor.alive() {
		return t, c.withLog(errors.New("the supervisor exited"), "supervisor")
	}
	t.ComponentsStarted = time.Since(begin)
	cs, err := c.Clientset()
	if err != nil {
		return t, err
	}
	if err := poll(ctx, 2*time.Minute, func() bool { return c.nodeReady(ctx, cs) }, "Node "+c.NodeName+" Ready"); err != nil {
		return t, c.withLog(err, "kubelet")
	}
	t.NodeReady = time.Since(begin)
	if err := c.dataplane(ctx, cs); err != nil {
		return t, c.withLog(err, "kubelet")
	}
	t.DataplaneReady = time.Since(begin)
	return t, nil
}

// Down stops the cluster and removes everything it made on the host.
func (c Config) Down(logf func(string, ...any)) error {
	return c.Cleanup(logf)
}

// ReadConfig reads the configuration Up stored in the state directory.
func ReadConfig(stateDir string) (Config, error) {
	var c Config
	data, err := os.ReadFile(filepath.Join(stateDir, "config.json"))
	if err != nil {
		return c, err
	}
	return c, json.Unmarshal(data, &c)
}

func (c Config) network(r *records) error {
	r.NetNS, r.NetNSDir = c.NetNS(), !exists("/run/netns")
	if err := c.saveRecords(r); err != nil {
		return err
	}
	if out, err := exec.Command("ip", "netns", "add", c.NetNS()).CombinedOutput(); err != nil {
		// Not made here (it appeared since Occupied looked): forget it.
		r.NetNS = ""
		_ = c.saveRecords(r)
		return fmt.Errorf("ip netns add %s: %w: %s", c.NetNS(), err, out)
	}
	r.Links = append(r.Links, c.HostLink())
	if err := c.saveRecords(r); err != nil {
		return err
	}
	if out, err := exec.Command("ip", "link", "add", c.HostLink(), "type", "veth", "peer", "name", "eth0", "netns", c.NetNS()).CombinedOutput(); err != nil {
		r.Links = r.Links[:len(r.Links)-1]
		_ = c.saveRecords(r)
		return fmt.Errorf("ip link add %s: %w: %s", c.HostLink(), err, out)
	}
	host := netip.PrefixFrom(c.HostIP(), c.LinkNet.Bits()).String()
	node := netip.PrefixFrom(c.NodeIP(), c.LinkNet.Bits()).String()
	ns := c.NetNS()
	cmds := [][]string{
		{"ip", "addr", "add", host, "dev", c.HostLink()},
		{"ip", "link", "set", c.HostLink(), "up"},
		{"ip", "-n", ns, "link", "set", "lo", "up"},
		{"ip", "-n", ns, "addr", "add", node, "dev", "eth0"},
		{"ip", "-n", ns, "link", "set", "eth0", "up"},
		{"ip", "-n", ns, "route", "add", "default", "via", c.HostIP().String()},
		// The host reaches pods and Services through the node.
		{"ip", "route", "add", c.PodNet.String(), "via", c.NodeIP().String(), "dev", c.HostLink()},
		{"ip", "route", "add", c.ServiceNet.String(), "via", c.NodeIP().String(), "dev", c.HostLink()},
	}
	for _, args := range cmds {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

func (c Config) cgroups(r *records) error {
	dirs, err := c.cgroupDirs()
	if err != nil {
		return err
	}
	for _, d := range dirs {
		r.Cgroups = append(r.Cgroups, d)
		if err := c.saveRecords(r); err != nil {
			return err
		}
		if err := os.Mkdir(d, 0o755); err != nil {
			// Not made here: forget it.
			r.Cgroups = r.Cgroups[:len(r.Cgroups)-1]
			_ = c.saveRecords(r)
			return err
		}
		if err := inheritCpuset(d); err != nil {
			return err
		}
	}
	return nil
}

// startSupervisor starts the supervisor in the cluster's network namespace
// and a private mount namespace, in a session of its own so that it outlives
// the caller.
func (c Config) startSupervisor(r *records, supervisor string) error {
	log, err := os.OpenFile(filepath.Join(c.LogDir(), "supervisor.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer func() { _ = log.Close() }()
	cmd := exec.Command("nsenter", "--net=/run/netns/"+c.NetNS(), "--",
		"unshare", "--mount", "--propagation", "private", "--",
		supervisor, "supervise", c.StateDir)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting the supervisor: %w", err)
	}
	// nsenter and unshare exec the next program: the PID stays the
	// supervisor's.
	r.Supervisor = &process{PID: cmd.Process.Pid, Start: startTime(cmd.Process.Pid)}
	go func() { _ = cmd.Wait() }()
	return c.saveRecords(r)
}

func (c Config) withLog(err error, name string) error {
	data, _ := os.ReadFile(filepath.Join(c.LogDir(), name+".log"))
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return fmt.Errorf("%w\n%s log (tail):\n%s", err, name, strings.Join(lines, "\n"))
}

// RESTConfig is the cluster administrator's client configuration. It holds
// the certificates themselves rather than their paths: client-go caches
// transports by TLS configuration, and a cluster brought up again writes new
// certificates to the same paths.
func (c Config) RESTConfig() (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig())
	if err != nil {
		return nil, err
	}
	for _, f := range []struct {
		path *string
		data *[]byte
	}{{&cfg.CAFile, &cfg.CAData}, {&cfg.CertFile, &cfg.CertData}, {&cfg.KeyFile, &cfg.KeyData}} {
		if *f.path == "" {
			continue
		}
		if *f.data, err = os.ReadFile(*f.path); err != nil {
			return nil, err
		}
		*f.path = ""
	}
	return cfg, nil
}

// Clientset is a client for the cluster administrator.
func (c Config) Clientset() (*kubernetes.Clientset, error) {
	cfg, err := c.RESTConfig()
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

func (c Config) nodeReady(ctx context.Context, cs *kubernetes.Clientset) bool {
	node, err := cs.CoreV1().Nodes().Get(ctx, c.NodeName, metav1.GetOptions{})
	if err != nil {
		return false
	}
	for _, cond := range node.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}
