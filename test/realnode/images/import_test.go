package images

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startContainerd runs a private containerd (no CRI plugin) in its own mount
// namespace, so the mounts of unpacking never reach the host, and returns its
// socket. Everything it made is removed when the test ends.
func startContainerd(t *testing.T) string {
	t.Helper()
	var missing []string
	for _, bin := range []string{"containerd", "ctr", "unshare"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, bin)
		}
	}
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	if len(missing) > 0 {
		t.Fatalf("a private containerd needs %s (run the module's tests with `make realnode-test`)", strings.Join(missing, ", "))
	}

	// A short directory: a unix socket path must stay under 108 bytes.
	dir, err := os.MkdirTemp("", "ctr")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	sock := filepath.Join(dir, "c.sock")
	config := fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.internal.v1.tracing",
  "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = %[3]q
[ttrpc]
  address = %[4]q
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = %[5]q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), sock, sock+".ttrpc", filepath.Join(dir, "opt"))
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "containerd", "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		_ = logFile.Close()
	})

	deadline := time.Now().Add(10 * time.Second)
	for {
		if fi, err := os.Stat(sock); err == nil && fi.Mode()&os.ModeSocket != 0 {
			return sock
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(logFile.Name())
			t.Fatalf("containerd exited:\n%s", log)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logFile.Name())
			t.Fatalf("containerd socket did not appear:\n%s", log)
		}
	}
}

func TestImportLoadsAndUnpacksTheImage(t *testing.T) {
	sock := startContainerd(t)
	out := filepath.Join(t.TempDir(), "pause.tar")
	if err := Pack(buildPause(t), Pause, out, Options{Path: "/pause", User: "65535:65535"}); err != nil {
		t.Fatal(err)
	}
	if err := Import(sock, out); err != nil {
		t.Fatal(err)
	}

	check, err := exec.Command("ctr", "--address", sock, "--namespace", "k8s.io", "images", "check").CombinedOutput()
	if err != nil {
		t.Fatalf("ctr images check: %v\n%s", err, check)
	}
	var line string
	for _, l := range strings.Split(string(check), "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == Pause {
			line = l
		}
	}
	if line == "" {
		t.Fatalf("%s not in the k8s.io namespace:\n%s", Pause, check)
	}
	if f := strings.Fields(line); !strings.Contains(line, "complete") || f[len(f)-1] != "true" {
		t.Errorf("%s not complete and unpacked: %s", Pause, line)
	}
}

func TestImportFailsFast(t *testing.T) {
	tarPath := filepath.Join(t.TempDir(), "x.tar")
	if err := os.WriteFile(tarPath, []byte("not a tar"), 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := Import(filepath.Join(t.TempDir(), "none.sock"), tarPath); err == nil {
		t.Error("import into a missing socket succeeded")
	}
	if err := Import(tarPath, tarPath); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("import into a regular file: %v", err)
	}
	if err := Import("", tarPath); err == nil {
		t.Error("import with no address succeeded")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("failing took %v", d)
	}
}

func TestImportReportsCtrErrors(t *testing.T) {
	sock := startContainerd(t)
	tarPath := filepath.Join(t.TempDir(), "x.tar")
	if err := os.WriteFile(tarPath, []byte("not a tar"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := Import(sock, tarPath)
	if err == nil || !strings.Contains(err.Error(), "ctr images import") {
		t.Fatalf("import of a broken tarball: %v", err)
	}
}
