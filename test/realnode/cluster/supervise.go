package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// privateDirs are the host directories the cluster gets a private, empty
// copy of in its mount namespace (tmpfs): containerd's shims keep sockets
// under /run/containerd, network namespaces live under /run/netns, CNI
// plugins keep state under /var/lib/cni, the kubelet its device plugin
// socket under /var/lib/kubelet, and container logs go to /var/log. Nothing
// the cluster writes there reaches the host, and no directory is made on the
// host to mount over. The state directory, when it lies beneath one of them,
// is bound back at its own path.
var privateDirs = []string{"/run", "/var/lib", "/var/log"}

// HostPaths are host paths a cluster on this machine must leave as they
// were: the places containerd, CNI plugins and the kubelet write to by
// default.
var HostPaths = []string{"/run/containerd", "/run/netns", "/var/lib/cni", "/var/lib/kubelet", "/var/lib/containerd", "/var/log/containers", "/var/log/pods", "/opt/containerd", "/etc/cni"}

// kernelTunables are the machine-wide sysctls the kubelet sets with no way to
// stop it. Inside the mount namespace a file holding the value it wants is
// bind-mounted over each, so the host's values stay as they are.
var kernelTunables = map[string]string{
	"vm/overcommit_memory":      "1",
	"vm/panic_on_oom":           "0",
	"kernel/panic":              "10",
	"kernel/panic_on_oops":      "1",
	"kernel/keys/root_maxkeys":  "1000000",
	"kernel/keys/root_maxbytes": "25000000",
}

// component is one process of the cluster.
type component struct {
	name string
	args []string
	cmd  *exec.Cmd
}

// Supervise runs inside the cluster's network namespace and private mount
// namespace (Up starts it there): it makes the private mounts, starts every
// component in order, and on SIGTERM stops them in reverse order and kills
// whatever is left in the cluster's cgroups.
func Supervise(c Config, logf func(string, ...any)) error {
	held, err := c.lock()
	if err != nil {
		return fmt.Errorf("locking %s: %w", c.StateDir, err)
	}
	defer func() { _ = held.Close() }()
	if err := c.joinCgroups(); err != nil {
		return err
	}
	if err := c.privateMounts(); err != nil {
		return err
	}
	if err := os.WriteFile("/proc/sys/net/bridge/bridge-nf-call-iptables", []byte("1"), 0o644); err != nil {
		return fmt.Errorf("enabling netfilter on the bridge (is br_netfilter loaded?): %w", err)
	}
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644); err != nil {
		return err
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	var started []*component
	defer func() {
		for i := len(started) - 1; i >= 0; i-- {
			started[i].stop(logf)
		}
		dirs, _ := c.cgroupDirs()
		self := strconv.Itoa(os.Getpid())
		for _, d := range dirs {
			for _, pid := range cgroupPIDs(d) {
				if strconv.Itoa(pid) != self {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		logf("stopped")
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { <-stop; cancel() }()

	for _, step := range c.steps() {
		if ctx.Err() != nil {
			return nil
		}
		if step.comp != nil {
			if err := step.comp.start(c.LogDir()); err != nil {
				return err
			}
			started = append(started, step.comp)
			logf("started %s (PID %d)", step.comp.name, step.comp.cmd.Process.Pid)
		}
		if step.wait != nil {
			if err := step.wait(ctx); err != nil {
				return err
			}
		}
	}
	logf("all components started")
	if err := os.WriteFile(c.path("supervisor.ready"), nil, 0o600); err != nil {
		return err
	}
	exited := make(chan string, len(started))
	for _, comp := range started {
		go func() { _ = comp.cmd.Wait(); exited <- comp.name }()
	}
	select {
	case <-ctx.Done():
		return nil
	case name := <-exited:
		return fmt.Errorf("%s exited; its log is %s", name, filepath.Join(c.LogDir(), name+".log"))
	}
}

type step struct {
	comp *component
	wait func(context.Context) error
}

func (c Config) steps() []step {
	bin := func(name string) string { return filepath.Join(c.BinDir, name) }
	pki := func(name string) string { return c.path("pki", name) }
	node := c.NodeIP().String()
	return []step{
		{comp: &component{name: "etcd", args: []string{bin("etcd"),
			"--data-dir", c.path("etcd"), "--listen-client-urls", "http://127.0.0.1:2379",
			"--advertise-client-urls", "http://127.0.0.1:2379", "--listen-peer-urls", "http://127.0.0.1:2380",
			"--initial-advertise-peer-urls", "http://127.0.0.1:2380", "--initial-cluster", "default=http://127.0.0.1:2380",
			"--unsafe-no-fsync", "--log-level", "warn"}}},
		{comp: &component{name: "kube-apiserver", args: []string{bin("kube-apiserver"),
			"--etcd-servers", "http://127.0.0.1:2379", "--advertise-address", node, "--bind-address", "0.0.0.0",
			"--secure-port", "6443", "--service-cluster-ip-range", c.ServiceNet.String(),
			"--client-ca-file", pki("ca.crt"), "--tls-cert-file", pki("apiserver.crt"), "--tls-private-key-file", pki("apiserver.key"),
			"--kubelet-client-certificate", pki("apiserver-kubelet-client.crt"), "--kubelet-client-key", pki("apiserver-kubelet-client.key"),
			"--kubelet-certificate-authority", pki("ca.crt"), "--kubelet-preferred-address-types", "InternalIP,Hostname",
			"--service-account-issuer", "https://kubernetes.default.svc.cluster.local", "--service-account-key-file", pki("sa.pub"),
			"--service-account-signing-key-file", pki("sa.key"), "--authorization-mode", "Node,RBAC",
			"--allow-privileged=true", "--profiling=false", "--v=1"}},
			wait: c.waitAPIReady},
		{comp: &component{name: "kube-controller-manager", args: []string{bin("kube-controller-manager"),
			"--kubeconfig", pki("controller-manager.kubeconfig"), "--authentication-kubeconfig", pki("controller-manager.kubeconfig"),
			"--authorization-kubeconfig", pki("controller-manager.kubeconfig"), "--use-service-account-credentials=true",
			"--service-account-private-key-file", pki("sa.key"), "--root-ca-file", pki("ca.crt"),
			"--leader-elect=false", "--bind-address", "127.0.0.1", "--profiling=false", "--v=1"}}},
		{comp: &component{name: "kube-scheduler", args: []string{bin("kube-scheduler"),
			"--kubeconfig", pki("scheduler.kubeconfig"), "--authentication-kubeconfig", pki("scheduler.kubeconfig"),
			"--authorization-kubeconfig", pki("scheduler.kubeconfig"),
			"--leader-elect=false", "--bind-address", "127.0.0.1", "--profiling=false"}}},
		{comp: &component{name: "containerd", args: []string{"containerd", "--config", c.path("containerd", "config.toml")}},
			wait: c.importImages},
		{comp: &component{name: "kubelet", args: []string{bin("kubelet"),
			"--config", c.path("kubelet", "config.yaml"), "--kubeconfig", pki("kubelet.kubeconfig"),
			"--root-dir", c.path("kubelet", "root"), "--hostname-override", c.NodeName, "--node-ip", node, "--v=1"}},
		},
		{comp: &component{name: "kube-proxy", args: []string{bin("kube-proxy"), "--config", c.path("kube-proxy", "config.yaml")}}},
	}
}

func (comp *component) start(logDir string) error {
	log, err := os.OpenFile(filepath.Join(logDir, comp.name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	comp.cmd = exec.Command(comp.args[0], comp.args[1:]...)
	comp.cmd.Stdout, comp.cmd.Stderr = log, log
	if err := comp.cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", comp.name, err)
	}
	return nil
}

func (comp *component) stop(logf func(string, ...any)) {
	if comp.cmd.ProcessState != nil {
		return
	}
	_ = comp.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _, _ = comp.cmd.Process.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		logf("%s did not stop within 10s; killing it", comp.name)
		_ = comp.cmd.Process.Kill()
		<-done
	}
}

// joinCgroups moves the supervisor, and so every process it starts, into
// <root>/system in every hierarchy, where teardown finds them.
func (c Config) joinCgroups() error {
	dirs, err := c.cgroupDirs()
	if err != nil {
		return err
	}
	for _, d := range dirs {
		sys := filepath.Join(d, "system")
		if err := os.MkdirAll(sys, 0o755); err != nil {
			return err
		}
		if err := inheritCpuset(sys); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(sys, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
			return fmt.Errorf("joining cgroup %s: %w", sys, err)
		}
	}
	return nil
}

// inheritCpuset copies cpuset.cpus and cpuset.mems from the parent, which a
// new cpuset cgroup needs before it can hold a process.
func inheritCpuset(dir string) error {
	for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
		parent, err := os.ReadFile(filepath.Join(filepath.Dir(dir), f))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, f), parent, 0o644); err != nil {
			return fmt.Errorf("setting %s of %s: %w", f, dir, err)
		}
	}
	return nil
}

// privateMounts runs in the private mount namespace: tmpfs over each of
// privateDirs, with the state directory bound back, and files over the
// kubelet's kernel tunables.
func (c Config) privateMounts() error {
	state, err := os.Open(c.StateDir)
	if err != nil {
		return err
	}
	defer func() { _ = state.Close() }()
	for _, d := range privateDirs {
		if err := syscall.Mount("tmpfs", d, "tmpfs", 0, "mode=0755"); err != nil {
			return fmt.Errorf("mounting tmpfs on %s: %w", d, err)
		}
		if !strings.HasPrefix(c.StateDir, d+"/") {
			continue
		}
		if err := os.MkdirAll(c.StateDir, 0o700); err != nil {
			return err
		}
		// The state directory's own inode, reached through the open
		// descriptor now that its path is hidden.
		src := fmt.Sprintf("/proc/self/fd/%d", state.Fd())
		if err := syscall.Mount(src, c.StateDir, "", syscall.MS_BIND, ""); err != nil {
			return fmt.Errorf("binding the state directory back over the tmpfs on %s: %w", d, err)
		}
	}
	dir := c.path("sysctl")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for key, value := range kernelTunables {
		target := filepath.Join("/proc/sys", key)
		if !exists(target) {
			continue
		}
		file := filepath.Join(dir, filepath.Base(filepath.Dir(key))+"."+filepath.Base(key))
		if err := os.WriteFile(file, []byte(value+"\n"), 0o644); err != nil {
			return err
		}
		if err := syscall.Mount(file, target, "", syscall.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind-mounting over %s: %w", target, err)
		}
	}
	return nil
}

// lock takes the cluster's lock, an exclusive flock on the state directory,
// which the supervisor holds for its life: Up refuses while it is held.
func (c Config) lock() (*os.File, error) {
	f, err := os.Open(c.StateDir)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, errRunning
		}
		return nil, err
	}
	return f, nil
}

var errRunning = errors.New("a cluster is running")

// waitAPIReady waits for kube-apiserver's /readyz; kube-controller-manager
// exits when it starts before RBAC is ready.
func (c Config) waitAPIReady(ctx context.Context) error {
	client, err := c.adminHTTP()
	if err != nil {
		return err
	}
	url := "https://" + c.NodeIP().String() + ":6443/readyz"
	return poll(ctx, 60*time.Second, func() bool {
		resp, err := client.Get(url)
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, "kube-apiserver ready")
}

// adminHTTP is an HTTP client with the administrator's certificate.
func (c Config) adminHTTP() (*http.Client, error) {
	cert, err := tls.LoadX509KeyPair(c.path("pki", "admin.crt"), c.path("pki", "admin.key"))
	if err != nil {
		return nil, err
	}
	caPEM, err := os.ReadFile(c.path("pki", "ca.crt"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12},
	}}, nil
}

// importImages waits for containerd's socket and imports every image
// tarball, the pause image among them, before the kubelet starts.
func (c Config) importImages(ctx context.Context) error {
	if err := poll(ctx, 30*time.Second, func() bool {
		return exec.Command("ctr", "--address", c.ContainerdSocket(), "version").Run() == nil
	}, "containerd serving"); err != nil {
		return err
	}
	tars, _ := filepath.Glob(filepath.Join(c.ImageDir, "*.tar"))
	own, _ := filepath.Glob(c.path("images", "*.tar"))
	tars = append(tars, own...)
	for _, t := range tars {
		if out, err := exec.CommandContext(ctx, "ctr", "--address", c.ContainerdSocket(), "-n", "k8s.io",
			"images", "import", "--no-unpack=false", t).CombinedOutput(); err != nil {
			return fmt.Errorf("importing %s: %w: %s", t, err, out)
		}
	}
	return nil
}

func poll(ctx context.Context, timeout time.Duration, ok func() bool, what string) error {
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s", timeout, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return nil
}
