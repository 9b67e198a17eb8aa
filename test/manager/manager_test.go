// Package manager tests the operator binary as a cluster runs it, against the
// local control plane: two replicas with leader election (both ready, the
// standby takes over when the leader is killed or stopped, and restores a
// deleted policy), and metrics served only to authorized clients.
package manager

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/localcp"
)

const (
	// operatorNamespace holds the leader election Lease.
	operatorNamespace = "isolator-system"
	leaseName         = "isolator.isolation.isolator.dev"
	restoredPolicy    = "local-ai-default-deny"
)

// managerBinary is the operator binary under test: $MANAGER, or built from
// ./cmd into a temporary directory.
var managerBinary string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	managerBinary = os.Getenv("MANAGER")
	if managerBinary == "" {
		dir, err := os.MkdirTemp("", "isolator-manager-test-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer func() { _ = os.RemoveAll(dir) }()
		managerBinary = filepath.Join(dir, "manager")
		build := exec.Command("go", "build", "-o", managerBinary, "./cmd")
		build.Dir = filepath.Join("..", "..")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building the manager: %v\n%s", err, out)
			return 1
		}
	}
	return m.Run()
}

func startControlPlane(t *testing.T) (*localcp.ControlPlane, client.Client) {
	t.Helper()
	if _, err := localcp.Assets(false); err != nil {
		t.Fatal(err)
	}
	cp, err := localcp.Start(localcp.Options{CRDDirectoryPaths: []string{filepath.Join("..", "..", "config", "crd", "bases")}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Stop() })
	c, err := client.New(cp.Config, client.Options{Scheme: localcp.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	return cp, c
}

// createWalkthrough creates the operator's namespace and the walkthrough:
// the LocalAI pod and the sample WorkloadIsolation.
func createWalkthrough(ctx context.Context, t *testing.T, c client.Client) *isolationv1alpha1.WorkloadIsolation {
	t.Helper()
	for _, obj := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNamespace}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "local-ai"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "nginx"}},
		&corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "local-ai-0", Namespace: "local-ai", Labels: map[string]string{"app.kubernetes.io/name": "local-ai"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "api", Image: "localai/localai:latest-cpu"}}},
		},
	} {
		if err := c.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	sample, err := os.ReadFile(filepath.Join("..", "..", "config", "samples", "isolation_v1alpha1_workloadisolation.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	wi := &isolationv1alpha1.WorkloadIsolation{}
	if err := yaml.Unmarshal(sample, wi); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, wi); err != nil {
		t.Fatal(err)
	}
	return wi
}

// startReplica starts one replica with leader election and waits until its
// /readyz answers 200.
func startReplica(ctx context.Context, t *testing.T, cp *localcp.ControlPlane, name string, args ...string) *localcp.Operator {
	t.Helper()
	op, err := localcp.StartOperator(ctx, managerBinary, cp.Kubeconfig, filepath.Join(t.TempDir(), name+".log"),
		append([]string{"--leader-elect", "--leader-election-namespace=" + operatorNamespace}, args...)...)
	if err != nil {
		t.Fatalf("replica %s must become ready (leader or standby): %v", name, err)
	}
	t.Cleanup(op.Stop)
	return op
}

// leads reports whether the replica holds the lease, from controller-runtime's
// leader_election_master_status metric.
func leads(ctx context.Context, op *localcp.Operator) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+op.MetricsAddr+"/metrics", nil)
	if err != nil {
		return false, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return false, err
	}
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	return strings.Contains(string(body), `leader_election_master_status{name="`+leaseName+`"} 1`), nil
}

// electedOf waits until exactly one of the replicas leads, and returns it
// first.
func electedOf(ctx context.Context, t *testing.T, a, b *localcp.Operator) (leader, standby *localcp.Operator) {
	t.Helper()
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		aLeads, err := leads(ctx, a)
		if err != nil {
			return false, err
		}
		bLeads, err := leads(ctx, b)
		if err != nil {
			return false, err
		}
		switch {
		case aLeads && bLeads:
			return false, fmt.Errorf("both replicas lead")
		case aLeads:
			leader, standby = a, b
		case bLeads:
			leader, standby = b, a
		}
		return leader != nil, nil
	})
	if err != nil {
		t.Fatalf("no leader elected: %v", err)
	}
	return leader, standby
}

func waitReady(ctx context.Context, t *testing.T, c client.Client, wi *isolationv1alpha1.WorkloadIsolation) {
	t.Helper()
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		got := &isolationv1alpha1.WorkloadIsolation{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(wi), got); err != nil {
			return false, err
		}
		ready := meta.FindStatusCondition(got.Status.Conditions, isolationv1alpha1.ConditionReady)
		if ready == nil || ready.Status != metav1.ConditionTrue || got.Status.ObservedGeneration != got.Generation {
			return false, nil
		}
		return true, c.Get(ctx, client.ObjectKey{Namespace: wi.Namespace, Name: restoredPolicy}, &networkingv1.NetworkPolicy{})
	})
	if err != nil {
		t.Fatalf("the walkthrough did not become Ready with its policies: %v", err)
	}
}

var signalName = map[syscall.Signal]string{syscall.SIGKILL: "SIGKILL", syscall.SIGTERM: "SIGTERM"}

// TestFailover runs two replicas with leader election: both report ready
// (the standby too, so that a rolling upgrade can proceed); the leader is
// killed or stopped by its PID; the generated policy is deleted while no
// replica reconciles; the standby takes over and restores it. It prints the
// failover time, from the signal to the policy restored.
func TestFailover(t *testing.T) {
	ctx := context.Background()
	cp, c := startControlPlane(t)
	wi := createWalkthrough(ctx, t, c)
	short := []string{"--leader-elect-lease-duration=4s", "--leader-elect-renew-deadline=3s", "--leader-elect-retry-period=500ms"}

	for _, tc := range []struct {
		name string
		sig  syscall.Signal
		args []string
		// bound is a generous upper limit of the failover time.
		bound time.Duration
	}{
		{"SIGKILL, default lease timings", syscall.SIGKILL, nil, 40 * time.Second},
		{"SIGTERM, default lease timings", syscall.SIGTERM, nil, 15 * time.Second},
		{"SIGKILL, short lease timings", syscall.SIGKILL, short, 15 * time.Second},
		{"SIGTERM, short lease timings", syscall.SIGTERM, short, 10 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := startReplica(ctx, t, cp, "a", tc.args...)
			b := startReplica(ctx, t, cp, "b", tc.args...)
			leader, standby := electedOf(ctx, t, a, b)
			waitReady(ctx, t, c, wi)

			start := time.Now()
			if err := leader.Signal(tc.sig); err != nil {
				t.Fatal(err)
			}
			select {
			case <-leader.Exited():
			case <-time.After(20 * time.Second):
				t.Fatalf("the leader (pid %d) did not exit after %s", leader.PID(), tc.sig)
			}
			exited := time.Since(start)
			policy := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: wi.Namespace, Name: restoredPolicy}}
			if err := c.Delete(ctx, policy); err != nil {
				t.Fatal(err)
			}
			err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
				err := c.Get(ctx, client.ObjectKeyFromObject(policy), &networkingv1.NetworkPolicy{})
				if apierrors.IsNotFound(err) {
					return false, nil
				}
				return err == nil, err
			})
			if err != nil {
				t.Fatalf("the standby (pid %d) did not restore %s: %v (logs: %s)", standby.PID(), restoredPolicy, err, standby.LogPath)
			}
			failover := time.Since(start)
			t.Logf("failover after %s to the leader (pid %d, exited after %s): policy restored by the standby (pid %d) %s after the signal",
				signalName[tc.sig], leader.PID(), exited.Round(time.Millisecond), standby.PID(), failover.Round(100*time.Millisecond))
			if isLeader, err := leads(ctx, standby); err != nil || !isLeader {
				t.Errorf("the standby must lead now: %v, %v", isLeader, err)
			}
			if failover > tc.bound {
				t.Errorf("failover took %s, more than %s", failover, tc.bound)
			}
		})
	}
}
