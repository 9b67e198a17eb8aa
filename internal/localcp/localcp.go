// Package localcp runs the local control plane that the tests and the demo
// use: a real kube-apiserver and etcd (controller-runtime envtest), the
// project's CRDs, an admin kubeconfig on disk and, on request,
// kube-controller-manager's garbage collector. The binaries come from
// hack/setup-envtest.sh through KUBEBUILDER_ASSETS.
package localcp

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// AssetsEnv is the variable that names the directory of the binaries.
const AssetsEnv = "KUBEBUILDER_ASSETS"

// Options configures Start.
type Options struct {
	// CRDDirectoryPaths are installed before Start returns.
	CRDDirectoryPaths []string
	// GarbageCollector also runs kube-controller-manager's garbage collector,
	// so that deleting an owner deletes its dependents as in a real cluster.
	GarbageCollector bool
	// Log receives the garbage collector's output; nil discards it.
	Log *os.File
	// AdmissionPlugins are enabled in kube-apiserver besides its defaults,
	// e.g. OwnerReferencesPermissionEnforcement.
	AdmissionPlugins []string
}

// ControlPlane is a running local control plane.
type ControlPlane struct {
	Env *envtest.Environment
	// Config is an admin client configuration.
	Config *rest.Config
	// Kubeconfig is the path of an admin kubeconfig file for kubectl.
	Kubeconfig string

	dir string
	gc  *exec.Cmd
}

// Assets returns the directory of the control plane binaries, or an error
// that says how to provide them.
func Assets(withGC bool) (string, error) {
	dir := os.Getenv(AssetsEnv)
	if dir == "" {
		return "", fmt.Errorf("%s is not set: run through make (make test, make demo), or export %s=\"$(hack/setup-envtest.sh)\"", AssetsEnv, AssetsEnv)
	}
	bins := []string{"kube-apiserver", "etcd"}
	if withGC {
		bins = append(bins, "kube-controller-manager")
	}
	for _, b := range bins {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return "", fmt.Errorf("%s is missing from %s=%s: run `ENVTEST_WITH_KCM=1 hack/setup-envtest.sh` to provide it", b, AssetsEnv, dir)
		}
	}
	return dir, nil
}

// Start starts the control plane.
func Start(opts Options) (*ControlPlane, error) {
	assets, err := Assets(opts.GarbageCollector)
	if err != nil {
		return nil, err
	}
	cp := &ControlPlane{Env: &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     opts.CRDDirectoryPaths,
		ErrorIfCRDPathMissing: true,
	}}
	if len(opts.AdmissionPlugins) > 0 {
		cp.Env.ControlPlane.GetAPIServer().Configure().Append("enable-admission-plugins", strings.Join(opts.AdmissionPlugins, ","))
	}
	if cp.Config, err = cp.Env.Start(); err != nil {
		return nil, fmt.Errorf("starting kube-apiserver and etcd: %w", err)
	}
	if err := cp.writeKubeconfig(); err != nil {
		return nil, errors.Join(err, cp.Stop())
	}
	if opts.GarbageCollector {
		if err := cp.startGarbageCollector(filepath.Join(assets, "kube-controller-manager"), opts.Log); err != nil {
			return nil, errors.Join(err, cp.Stop())
		}
	}
	return cp, nil
}

func (cp *ControlPlane) writeKubeconfig() error {
	user, err := cp.Env.AddUser(envtest.User{Name: "isolator-admin", Groups: []string{"system:masters"}}, cp.Config)
	if err != nil {
		return fmt.Errorf("creating admin user: %w", err)
	}
	data, err := user.KubeConfig()
	if err != nil {
		return fmt.Errorf("rendering kubeconfig: %w", err)
	}
	if cp.dir, err = os.MkdirTemp("", "isolator-localcp-"); err != nil {
		return err
	}
	cp.Kubeconfig = filepath.Join(cp.dir, "kubeconfig")
	return os.WriteFile(cp.Kubeconfig, data, 0o600)
}

func (cp *ControlPlane) startGarbageCollector(bin string, log *os.File) error {
	cp.gc = exec.Command(bin,
		"--kubeconfig="+cp.Kubeconfig,
		"--controllers=garbagecollector",
		"--leader-elect=false",
		"--secure-port=0",
		"--use-service-account-credentials=false",
	)
	cp.gc.Stdout, cp.gc.Stderr = log, log
	if err := cp.gc.Start(); err != nil {
		return fmt.Errorf("starting kube-controller-manager: %w", err)
	}
	return nil
}

// Stop stops every process and removes the kubeconfig.
func (cp *ControlPlane) Stop() error {
	var errs []error
	if cp.gc != nil && cp.gc.Process != nil {
		_ = cp.gc.Process.Kill()
		_ = cp.gc.Wait()
	}
	if err := cp.Env.Stop(); err != nil {
		errs = append(errs, err)
	}
	if cp.dir != "" {
		errs = append(errs, os.RemoveAll(cp.dir))
	}
	return errors.Join(errs...)
}
