// Command realnode brings a real one-node Kubernetes cluster up on this
// machine and takes it down again, leaving nothing behind:
//
//	realnode up     build the images, start the cluster, wait for the Node
//	realnode down   stop the cluster and remove everything it made
//	realnode check  list anything of the cluster left on the host (exit 1 if any)
//
// It needs root, the binaries of `hack/setup-envtest.sh` with
// ENVTEST_WITH_KCM=1 and ENVTEST_WITH_NODE=1, kube-router, and Debian's
// containerd, runc, containernetworking-plugins, iptables, ipset and
// nftables. `make realnode-up` provides them.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/isolator-dev/isolator/test/realnode/cluster"
	"github.com/isolator-dev/isolator/test/realnode/images"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "realnode:", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "realnode: "+format+"\n", args...)
}

func run(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: realnode up|down|check [flags]")
	}
	cfg := cluster.DefaultConfig()
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.StringVar(&cfg.StateDir, "state", cfg.StateDir, "State directory: records, certificates, data and logs.")
	fs.StringVar(&cfg.BinDir, "bin-dir", "", "Directory with etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and kube-proxy.")
	fs.StringVar(&cfg.KubeRouter, "kube-router", "", "kube-router binary (the NetworkPolicy dataplane).")
	root := fs.String("root", ".", "The project's root directory (for building the operator image).")
	imageDir := fs.String("images", "bin/realnode-images", "Directory the image tarballs are built into.")
	if args[0] == "supervise" {
		if len(args) != 2 {
			return fmt.Errorf("usage: realnode supervise <state dir>")
		}
		return supervise(args[1])
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	// down and check act on the cluster the state directory describes,
	// with the names and subnets it was brought up with.
	recorded := false
	if args[0] != "up" {
		if stored, err := cluster.ReadConfig(cfg.StateDir); err == nil {
			cfg, recorded = stored, true
		}
	}
	switch args[0] {
	case "up":
		return up(cfg, *root, *imageDir)
	case "down":
		start := time.Now()
		if err := cfg.Down(logf); err != nil {
			return err
		}
		logf("down in %s", time.Since(start).Round(100*time.Millisecond))
		if !recorded {
			return nil
		}
		return check(cfg)
	case "check":
		return check(cfg)
	default:
		return fmt.Errorf("unknown command %q: want up, down or check", args[0])
	}
}

func up(cfg cluster.Config, root, imageDir string) error {
	if cfg.BinDir == "" || cfg.KubeRouter == "" {
		return fmt.Errorf("--bin-dir and --kube-router are required")
	}
	for _, p := range []*string{&cfg.BinDir, &cfg.KubeRouter, &imageDir} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		*p = abs
	}
	cfg.ImageDir = imageDir
	self, err := os.Executable()
	if err != nil {
		return err
	}
	start := time.Now()
	if _, err := images.BuildAll(root, cfg.ImageDir); err != nil {
		return fmt.Errorf("building images: %w", err)
	}
	logf("images built in %s", time.Since(start).Round(100*time.Millisecond))
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	t, err := cfg.Up(ctx, self, logf)
	if err != nil {
		return fmt.Errorf("%w\n(the logs are in %s; `realnode down` removes what was made)", err, cfg.LogDir())
	}
	logf("components started in %s, node Ready in %s, kube-router Ready in %s", t.ComponentsStarted.Round(100*time.Millisecond), t.NodeReady.Round(100*time.Millisecond), t.DataplaneReady.Round(100*time.Millisecond))
	fmt.Printf("export KUBECONFIG=%s\n", cfg.Kubeconfig())
	return nil
}

func check(cfg cluster.Config) error {
	left, err := cfg.Leftovers()
	if err != nil {
		return err
	}
	if len(left) > 0 {
		return fmt.Errorf("left on the host:\n  %s", strings.Join(left, "\n  "))
	}
	logf("nothing of the cluster is left on the host")
	return nil
}

func supervise(stateDir string) error {
	cfg, err := cluster.ReadConfig(stateDir)
	if err != nil {
		return err
	}
	return cluster.Supervise(cfg, func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "%s supervisor: %s\n", time.Now().Format(time.RFC3339), fmt.Sprintf(format, args...))
	})
}
