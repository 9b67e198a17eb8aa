// Package e2e proves the isolation with a real NetworkPolicy dataplane and
// real TCP connections: kube-router's network policy firewall (iptables and
// ipset, as k3s embeds it) enforces the operator's policies between "pods"
// that are Linux network namespaces on a bridge, driven by the local
// kube-apiserver. kube-router v2.1.0 is a test-only dataplane here: it is
// built into bin/ by `make e2e`, never shipped, and, since that version has
// reported security flaws, it runs only inside this harness, on loopback and
// on the harness's own network namespaces.
package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/localcp"
)

func TestMain(m *testing.M) {
	if addrs := os.Getenv(serveEnv); addrs != "" {
		serve(addrs)
	}
	if addr := os.Getenv(getEnv); addr != "" {
		get(addr)
	}
	os.Exit(m.Run())
}

var (
	localAI    = netPod{name: "local-ai", namespace: "local-ai", labels: map[string]string{"app.kubernetes.io/name": "local-ai"}, ip: subnet + "10"}
	nginx      = netPod{name: "nginx", namespace: "nginx", labels: map[string]string{"app.kubernetes.io/name": "ingress-nginx"}, ip: subnet + "11"}
	testNginx  = netPod{name: "test-nginx", namespace: "nginx", labels: map[string]string{"run": "test-connectivity"}, ip: subnet + "12"}
	testLocal  = netPod{name: "test-local-ai", namespace: "local-ai", labels: map[string]string{"run": "test-connectivity"}, ip: subnet + "13"}
	teamClient = netPod{name: "team-client", namespace: "team-a", labels: map[string]string{"app": "client"}, ip: subnet + "14"}
	allPods    = []netPod{localAI, nginx, testNginx, testLocal, teamClient}

	// Every step probes every source against LocalAI's API port and a
	// second port that no rule allows.
	sources = []netPod{nginx, testNginx, testLocal, teamClient}
	targets = []target{{localAI, "8080"}, {localAI, "9090"}}
	timeout = 20 * time.Second
)

func TestWalkthrough(t *testing.T) {
	preflight(t)
	start := time.Now()
	kubeRouter, manager := binary(t, "KUBE_ROUTER", "kube-router"), binary(t, "MANAGER", "manager")
	t.Cleanup(cleanupKubeRouter)
	setupNetwork(t, allPods)

	cp, err := localcp.Start(localcp.Options{CRDDirectoryPaths: []string{"../../config/crd/bases"}, GarbageCollector: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Stop() })
	ctx := context.Background()
	c, err := client.New(cp.Config, client.Options{Scheme: localcp.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	createCluster(ctx, t, c)
	startProcess(t, "server", "ip", "netns", "exec", localAI.netns(), "env", serveEnv+"=:8080,:9090", os.Args[0], "-test.run=^$")
	startProcess(t, "kube-router", kubeRouter, "--run-firewall=true", "--run-router=false", "--run-service-proxy=false",
		"--kubeconfig="+cp.Kubeconfig, "--hostname-override="+nodeName, "--health-port=0", "--metrics-port=0")
	operator, err := localcp.StartOperator(ctx, manager, cp.Kubeconfig, filepath.Join(t.TempDir(), "manager.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(operator.Stop)

	// expect probes the whole matrix until it is as expected, prints the
	// observed matrix, and fails with the mismatches after the timeout.
	expect := func(step string, want matrix) time.Duration {
		t.Helper()
		begin := time.Now()
		var got matrix
		err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
			got = observe(want, reaches)
			return len(mismatches(want, got)) == 0, nil
		})
		took := time.Since(begin)
		if err != nil {
			t.Fatalf("step %s: connectivity not as expected after %s:\n%s%s", step, timeout, format(want, got),
				"mismatches:\n  "+strings.Join(mismatches(want, got), "\n  "))
		}
		t.Logf("step %s: connectivity as expected after %s:\n%s", step, took.Round(time.Millisecond), format(want, got))
		return took
	}

	// 1. Before any WorkloadIsolation everything reaches LocalAI.
	expect("1 no isolation", allAllowed(sources, targets))

	// 2. The sample WorkloadIsolation: only the ingress-nginx controller, on 8080.
	wi := sample(t)
	if err := c.Create(ctx, wi); err != nil {
		t.Fatal(err)
	}
	took := expect("2 isolated", newMatrix(sources, targets, "nginx:8080"))
	t.Logf("apply to enforcement: %s", took.Round(time.Millisecond))
	// CNI detection sees the kube-router DaemonSet object and reports enforcement.
	waitCondition(ctx, t, c, wi, isolationv1alpha1.ConditionEnforced, metav1.ConditionTrue, "kube-router enforces NetworkPolicy")

	// 3. Someone adds an allow-all policy: traffic flows again, and the
	// WorkloadIsolation says its isolation is widened.
	allowAll := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "allow-all-ingress", Namespace: "local-ai"},
		Spec: networkingv1.NetworkPolicySpec{
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress:     []networkingv1.NetworkPolicyIngressRule{{}},
		},
	}
	if err := c.Create(ctx, allowAll); err != nil {
		t.Fatal(err)
	}
	expect("3 widened", allAllowed(sources, targets))
	waitCondition(ctx, t, c, wi, isolationv1alpha1.ConditionIsolated, metav1.ConditionFalse, "allow-all-ingress")

	// 4. Remove it and allow a second namespace: traffic follows.
	if err := c.Delete(ctx, allowAll); err != nil {
		t.Fatal(err)
	}
	expect("4a allow-all removed", newMatrix(sources, targets, "nginx:8080"))
	waitCondition(ctx, t, c, wi, isolationv1alpha1.ConditionIsolated, metav1.ConditionTrue, "")
	current := &isolationv1alpha1.WorkloadIsolation{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(wi), current); err != nil {
		t.Fatal(err)
	}
	current.Spec.Ingress[0].From = append(current.Spec.Ingress[0].From, isolationv1alpha1.IngressPeer{
		NamespaceSelector: &isolationv1alpha1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "team-a"}},
	})
	if err := c.Update(ctx, current); err != nil {
		t.Fatal(err)
	}
	expect("4b second namespace allowed", newMatrix(sources, targets, "nginx:8080", "team-client:8080"))

	// 5. Delete the WorkloadIsolation: garbage collection removes the
	// policies and traffic flows again.
	if err := c.Delete(ctx, current); err != nil {
		t.Fatal(err)
	}
	expect("5 deleted", allAllowed(sources, targets))
	policies := &networkingv1.NetworkPolicyList{}
	if err := c.List(ctx, policies, client.InNamespace("local-ai")); err != nil {
		t.Fatal(err)
	}
	if len(policies.Items) != 0 {
		t.Errorf("garbage collection left %d policies", len(policies.Items))
	}
	t.Logf("suite run time: %s", time.Since(start).Round(time.Second))
}

func binary(t *testing.T, env, name string) string {
	t.Helper()
	path := os.Getenv(env)
	if path == "" {
		path = filepath.Join("..", "..", "bin", name)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("%s not found at %s: run the suite with `make e2e`", name, path)
	}
	abs, _ := filepath.Abs(path)
	return abs
}

func startProcess(t *testing.T, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	log, err := os.Create(filepath.Join(t.TempDir(), name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			data, _ := os.ReadFile(log.Name())
			t.Logf("%s log (tail):\n%s", name, tail(string(data), 40))
		}
	})
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// createCluster creates the Node, whose InternalIP is the bridge address,
// the namespaces, and running Pods whose hostIP is the node's and whose
// podIP is their network namespace's address.
func createCluster(ctx context.Context, t *testing.T, c client.Client) {
	t.Helper()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName, Labels: map[string]string{"kubernetes.io/hostname": nodeName}}}
	if err := c.Create(ctx, node); err != nil {
		t.Fatal(err)
	}
	node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: hostIP}, {Type: corev1.NodeHostName, Address: nodeName}}
	node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
	if err := c.Status().Update(ctx, node); err != nil {
		t.Fatal(err)
	}
	// The DaemonSet kube-router would run as in a cluster; here the harness
	// runs the binary, and the object tells CNI detection about it.
	labels := map[string]string{"k8s-app": "kube-router"}
	if err := c.Create(ctx, &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-router", Namespace: "kube-system", Labels: labels},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{Containers: []corev1.Container{{
				Name: "kube-router", Image: "docker.io/cloudnativelabs/kube-router:v2.1.0",
				Args: []string{"--run-firewall=true", "--run-router=false", "--run-service-proxy=false"},
			}}}},
		},
	}); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"local-ai", "nginx", "team-a"} {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range allPods {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: p.name, Namespace: p.namespace, Labels: p.labels},
			Spec: corev1.PodSpec{NodeName: nodeName, Containers: []corev1.Container{{
				Name: "main", Image: "registry.example/e2e:1", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
			}}},
		}
		if err := c.Create(ctx, pod); err != nil {
			t.Fatal(err)
		}
		pod.Status = corev1.PodStatus{
			Phase: corev1.PodRunning, HostIP: hostIP, HostIPs: []corev1.HostIP{{IP: hostIP}},
			PodIP: p.ip, PodIPs: []corev1.PodIP{{IP: p.ip}},
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
		}
		if err := c.Status().Update(ctx, pod); err != nil {
			t.Fatal(err)
		}
	}
}

func sample(t *testing.T) *isolationv1alpha1.WorkloadIsolation {
	t.Helper()
	data, err := os.ReadFile("../../config/samples/isolation_v1alpha1_workloadisolation.yaml")
	if err != nil {
		t.Fatal(err)
	}
	wi := &isolationv1alpha1.WorkloadIsolation{}
	if err := yaml.Unmarshal(data, wi); err != nil {
		t.Fatal(err)
	}
	return wi
}

func waitCondition(ctx context.Context, t *testing.T, c client.Client, wi *isolationv1alpha1.WorkloadIsolation, typ string, status metav1.ConditionStatus, message string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		got := &isolationv1alpha1.WorkloadIsolation{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(wi), got); err != nil {
			return false, err
		}
		cond := meta.FindStatusCondition(got.Status.Conditions, typ)
		return cond != nil && cond.Status == status && strings.Contains(cond.Message, message), nil
	})
	if err != nil {
		t.Fatalf("%s=%s (%q) not reported: %v", typ, status, message, err)
	}
}
