// Package realnode proves Isolator on a real one-node Kubernetes cluster:
// the operator runs as Pods from the Helm chart (probes, leader election,
// rolling upgrades, failover), and the walkthrough runs with real
// Deployments whose traffic crosses a real bridge, a real Service (kube-proxy
// nftables) and kube-router's NetworkPolicy firewall (the test-only
// dataplane). TestMain brings the cluster up with package cluster, runs the
// suite, then proves that a killed run is cleaned up by the next one and
// that teardown leaves nothing on the host.
package realnode

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/isolator-dev/isolator/test/realnode/cluster"
	"github.com/isolator-dev/isolator/test/realnode/images"
)

// ciEnv is the variable CI systems set to true.
const ciEnv = "CI"

var (
	// unavailable says why the cluster could not be brought up; the tests
	// fail with it.
	unavailable string
	// env is the running cluster.
	env *clusterEnv
)

// testConfig keeps the suite's cluster apart from one a person keeps up
// with `make demo CLUSTER=real`: other names, subnets and state directory.
func testConfig() cluster.Config {
	c := cluster.DefaultConfig()
	c.Name = "isornt"
	c.StateDir = "/var/lib/isolator-realnode-test"
	c.LinkNet = netip.MustParsePrefix("10.240.80.0/30")
	c.PodNet = netip.MustParsePrefix("10.240.81.0/24")
	c.ServiceNet = netip.MustParsePrefix("10.240.82.0/24")
	c.BinDir = os.Getenv("REALNODE_BIN_DIR")
	c.KubeRouter = os.Getenv("KUBE_ROUTER")
	c.SandboxImage = images.Pause
	return c
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s realnode: %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	cfg := testConfig()
	if missing := prerequisites(cfg); len(missing) > 0 {
		unavailable = "the real-node suite needs: " + strings.Join(missing, "; ")
		logf("%s", unavailable)
		return m.Run()
	}
	// An earlier run that died is removed first, so that the host is
	// compared with itself as it was without the cluster.
	if err := cfg.Cleanup(logf); err != nil {
		logf("removing an earlier run: %v", err)
		return 1
	}
	before := cluster.HostPathsPresent()
	root, _ := filepath.Abs(filepath.Join("..", ".."))
	start := time.Now()
	imageDir := filepath.Join(root, "bin", "realnode-images")
	if _, err := images.BuildAll(root, imageDir); err != nil {
		logf("building the images: %v", err)
		return 1
	}
	cfg.ImageDir = imageDir
	logf("images built in %s", time.Since(start).Round(100*time.Millisecond))
	supervisor := os.Getenv("REALNODE_SUPERVISOR")
	ctx := context.Background()
	t, err := cfg.Up(ctx, supervisor, logf)
	if err != nil {
		logf("bringing the cluster up: %v", err)
		_ = cfg.Down(logf)
		return 1
	}
	logf("cluster up: components started in %s, node Ready in %s, kube-router Ready in %s", t.ComponentsStarted.Round(100*time.Millisecond), t.NodeReady.Round(100*time.Millisecond), t.DataplaneReady.Round(100*time.Millisecond))
	env, err = newClusterEnv(cfg)
	code := 1
	if err != nil {
		logf("connecting to the cluster: %v", err)
	} else {
		code = m.Run()
	}
	if err := recoverFromKilledRun(ctx, cfg, supervisor); err != nil {
		logf("FAIL: %v", err)
		code = 1
	}
	begin := time.Now()
	if err := cfg.Down(logf); err != nil {
		logf("FAIL: teardown: %v", err)
		code = 1
	}
	logf("teardown in %s", time.Since(begin).Round(100*time.Millisecond))
	if err := nothingLeft(cfg, before); err != nil {
		logf("FAIL: %v", err)
		code = 1
	} else {
		logf("nothing of the cluster is left on the host")
	}
	return code
}

// prerequisites lists what is missing to run the cluster.
func prerequisites(cfg cluster.Config) []string {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (network and mount namespaces, cgroups)")
	}
	for _, tool := range []string{"containerd", "runc", "ctr", "nsenter", "unshare", "ip", "iptables", "ipset", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool+" (Debian packages containerd runc iproute2 iptables ipset nftables util-linux)")
		}
	}
	if _, err := os.Stat("/usr/lib/cni/bridge"); err != nil {
		missing = append(missing, "/usr/lib/cni/bridge (Debian package containernetworking-plugins)")
	}
	if _, err := os.Stat("/proc/sys/net/bridge/bridge-nf-call-iptables"); err != nil {
		missing = append(missing, "netfilter on bridges (modprobe br_netfilter)")
	}
	for _, b := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"} {
		if _, err := os.Stat(filepath.Join(cfg.BinDir, b)); cfg.BinDir == "" || err != nil {
			missing = append(missing, b+" in $REALNODE_BIN_DIR (run the suite with `make realnode-test`)")
		}
	}
	for _, v := range []string{"KUBE_ROUTER", "REALNODE_SUPERVISOR"} {
		if p := os.Getenv(v); p == "" || !exists(p) {
			missing = append(missing, "$"+v+" (run the suite with `make realnode-test`)")
		}
	}
	return missing
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// recoverFromKilledRun kills every process of the cluster as a killed test
// run or a stopped machine would, leaving its namespace, link, routes,
// cgroups and state behind, then brings a cluster up again: Up must remove
// the leftovers by its records and start.
func recoverFromKilledRun(ctx context.Context, cfg cluster.Config, supervisor string) error {
	logf("killing every process of the cluster (SIGKILL), as a killed run would")
	if err := cfg.KillAll(); err != nil {
		return err
	}
	left, err := cfg.Leftovers()
	if err != nil {
		return err
	}
	if len(left) == 0 {
		return fmt.Errorf("killing the processes left nothing behind; the recovery would prove nothing")
	}
	logf("a killed run leaves %d things behind, among them: %s", len(left), left[0])
	begin := time.Now()
	t, err := cfg.Up(ctx, supervisor, logf)
	if err != nil {
		return fmt.Errorf("bringing the cluster up after a killed run: %w", err)
	}
	logf("after a killed run: cluster up again in %s (node Ready)", time.Since(begin).Round(100*time.Millisecond))
	_ = t
	return nil
}

// nothingLeft checks the host after teardown: none of the cluster's names,
// subnets, cgroups, state, mounts or processes, and the places containerd,
// CNI plugins and the kubelet write to by default exist exactly as before
// the run.
func nothingLeft(cfg cluster.Config, before map[string]bool) error {
	left, err := cfg.Leftovers()
	if err != nil {
		return err
	}
	for d, was := range cluster.HostPathsPresent() {
		if was != before[d] {
			left = append(left, fmt.Sprintf("%s: existed before the run %t, after it %t", d, before[d], was))
		}
	}
	if len(left) > 0 {
		return fmt.Errorf("left on the host after teardown:\n  %s", strings.Join(left, "\n  "))
	}
	return nil
}

// need returns the cluster, or fails the test with the reason when the
// cluster could not be brought up: a suite that cannot run never passes.
func need(t *testing.T) *clusterEnv {
	t.Helper()
	if unavailable != "" {
		t.Fatal(unavailable)
	}
	return env
}
