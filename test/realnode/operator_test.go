package realnode

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/action"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/test/realnode/images"
)

const (
	release    = "isolator"
	operatorNS = "isolator-system"
	// leaseName is the operator's leader election Lease.
	leaseName = "isolator.isolation.isolator.dev"
	// upgradeTimeout bounds a helm upgrade; the measured time is printed.
	upgradeTimeout = 3 * time.Minute
)

var operatorLabels = map[string]string{"app.kubernetes.io/name": "isolator", "app.kubernetes.io/instance": release}

// TestOperatorOnARealCluster runs the operator as users do, from the Helm
// chart, and the walkthrough with real pods behind its policies. The steps
// build on each other and run in order.
func TestOperatorOnARealCluster(t *testing.T) {
	e := need(t)
	ctx := context.Background()
	steps := []struct {
		name string
		run  func(context.Context, *testing.T, *clusterEnv)
	}{
		{"helm install --wait: the operator Pod becomes Ready", testInstall},
		{"the chart's NetworkPolicy keeps the metrics scrape and the probes working", testMetricsAndProbes},
		{"walkthrough with real Deployments, a real Service and kube-router", testWalkthrough},
		{"egress: LocalAI reaches DNS and the object store only", testEgressWalkthrough},
		{"guard: a tenant's widening NetworkPolicy is refused and traffic stays blocked", testGuard},
		{"helm upgrade to two replicas and a new pod template, leader election on", testUpgrade},
		{"failover after deleting the leader Pod", testFailover},
		{"helm uninstall leaves only the CRD", testUninstall},
		{"KKP: an ApplicationInstallation's values through the chart", testKKPInstall},
	}
	for _, s := range steps {
		if !t.Run(s.name, func(t *testing.T) { s.run(ctx, t, e) }) {
			t.Fatalf("step %q failed; the later steps build on it", s.name)
		}
	}
}

func testInstall(ctx context.Context, t *testing.T, e *clusterEnv) {
	install := action.NewInstall(e.helm(t, operatorNS))
	install.ReleaseName, install.Namespace, install.CreateNamespace = release, operatorNS, true
	install.Wait, install.Timeout = true, 3*time.Minute
	begin := time.Now()
	if _, err := install.RunWithContext(ctx, loadChart(t), localImage(nil)); err != nil {
		t.Fatalf("helm install: %v\n%s", err, e.describePods(ctx, operatorNS))
	}
	t.Logf("helm install --wait: %s", time.Since(begin).Round(100*time.Millisecond))
	pod := e.waitPod(ctx, t, operatorNS, operatorLabels)
	t.Logf("operator Pod %s Ready on %s, IP %s", pod.Name, pod.Spec.NodeName, pod.Status.PodIP)
	if pod.Spec.Containers[0].Image != images.Operator {
		t.Errorf("operator image %s, want the locally built %s", pod.Spec.Containers[0].Image, images.Operator)
	}
}

// testMetricsAndProbes scrapes the operator's metrics through its Service
// from the namespace the chart's NetworkPolicy admits, with a token of a
// ServiceAccount bound to the chart's metrics reader role, and from a
// namespace it does not admit; the kubelet's probes keep the Pod Ready.
func testMetricsAndProbes(ctx context.Context, t *testing.T, e *clusterEnv) {
	np := &networkingv1.NetworkPolicy{}
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: operatorNS, Name: release}, np); err != nil {
		t.Fatalf("the chart's NetworkPolicy: %v", err)
	}
	svc := &corev1.Service{}
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: operatorNS, Name: release + "-metrics"}, svc); err != nil {
		services := &corev1.ServiceList{}
		_ = e.c.List(ctx, services, client.InNamespace(operatorNS))
		t.Fatalf("metrics Service: %v (services: %v)", err, serviceNames(services))
	}
	metricsURL := fmt.Sprintf("https://%s:%d/metrics", svc.Spec.ClusterIP, svc.Spec.Ports[0].Port)
	scraper := func(ns string) *corev1.Pod {
		e.namespace(ctx, t, ns, nil)
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "scraper", Namespace: ns}}
		if err := e.c.Create(ctx, sa); err != nil {
			t.Fatal(err)
		}
		crb := &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "isolator-metrics-scraper-" + ns},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: release + "-metrics-reader"},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "scraper", Namespace: ns}},
		}
		if err := e.c.Create(ctx, crb); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = e.c.Delete(context.Background(), crb) })
		return e.probePod(ctx, t, ns, "scraper", map[string]string{"app": "scraper"}, "scraper",
			"--bearer-token-file=/var/run/secrets/kubernetes.io/serviceaccount/token", "--insecure-skip-verify", "--targets="+metricsURL)
	}
	allowed, other := scraper("monitoring"), scraper("team-scrape")
	since := time.Now()
	got := map[string]result{}
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		for ns, pod := range map[string]*corev1.Pod{"monitoring": allowed, "team-scrape": other} {
			// A probe pod that does not answer yet is asked again.
			if rs, err := probeResults(ctx, pod.Status.PodIP); err == nil {
				got[ns] = rs[metricsURL]
			}
		}
		// A scrape from monitoring succeeds (HTTP 200 with the token);
		// one from elsewhere gets no answer at all.
		return got["monitoring"].fresh(since) && got["monitoring"].OK &&
			got["team-scrape"].fresh(since) && !got["team-scrape"].reached(), nil
	})
	if err != nil {
		t.Fatalf("metrics scrape through the chart's NetworkPolicy: want monitoring allowed and team-scrape blocked, got %+v", got)
	}
	t.Logf("metrics scrape %s: from monitoring HTTP %d; from team-scrape blocked (%s)", metricsURL, got["monitoring"].Status, got["team-scrape"].Error)
	// The kubelet probes the Pod through the same NetworkPolicy.
	pod := e.waitPod(ctx, t, operatorNS, operatorLabels)
	if n := pod.Status.ContainerStatuses[0].RestartCount; n != 0 {
		t.Errorf("the operator restarted %d times: its liveness probe fails", n)
	}
}

func serviceNames(l *corev1.ServiceList) []string {
	var out []string
	for _, s := range l.Items {
		out = append(out, s.Name)
	}
	return out
}

// probePod runs the probe image watching the given targets.
func (e *clusterEnv) probePod(ctx context.Context, t *testing.T, ns, name string, labels map[string]string, serviceAccount string, args ...string) *corev1.Pod {
	t.Helper()
	return e.deployment(ctx, t, ns, name, labels, images.Probe, append([]string{"watch", "--interval=200ms", "--timeout=2s"}, args...), "/healthz:8081", serviceAccount)
}

func testUpgrade(ctx context.Context, t *testing.T, e *clusterEnv) {
	upgrade := func(values map[string]any) time.Duration {
		t.Helper()
		up := action.NewUpgrade(e.helm(t, operatorNS))
		up.Namespace, up.Wait, up.Timeout = operatorNS, true, upgradeTimeout
		begin := time.Now()
		if _, err := up.RunWithContext(ctx, release, loadChart(t), localImage(values)); err != nil {
			t.Fatalf("helm upgrade: %v after %s\n%s", err, time.Since(begin).Round(time.Second), e.describePods(ctx, operatorNS))
		}
		return time.Since(begin)
	}
	scaled := upgrade(map[string]any{"replicas": 2, "podDisruptionBudget": map[string]any{"enabled": true, "minAvailable": 1}})
	t.Logf("helm upgrade --wait to replicas 2 with a PodDisruptionBudget: %s", scaled.Round(100*time.Millisecond))
	rolled := upgrade(map[string]any{"replicas": 2, "podDisruptionBudget": map[string]any{"enabled": true, "minAvailable": 1}, "logLevel": "debug"})
	t.Logf("helm upgrade --wait with a new pod template (logLevel debug), 2 replicas, leader election on: %s (bound %s)", rolled.Round(100*time.Millisecond), upgradeTimeout)
	pods := e.operatorPods(ctx, t)
	if len(pods) != 2 {
		t.Fatalf("%d operator pods after the upgrade, want 2", len(pods))
	}
	for _, p := range pods {
		if !strings.Contains(strings.Join(p.Spec.Containers[0].Args, " "), "debug") {
			t.Errorf("pod %s runs the old template: %v", p.Name, p.Spec.Containers[0].Args)
		}
		if !podReady(&p) {
			t.Errorf("pod %s not Ready", p.Name)
		}
	}
	// A node drain evicts through the PodDisruptionBudget: one of the two
	// may go.
	pdb := &policyv1.PodDisruptionBudget{}
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: operatorNS, Name: release}, pdb); err != nil {
		t.Fatal(err)
	}
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		err := e.c.Get(ctx, client.ObjectKeyFromObject(pdb), pdb)
		return err == nil && pdb.Status.DisruptionsAllowed == 1, nil
	}); err != nil {
		t.Fatalf("PodDisruptionBudget allows %d disruptions with 2 Ready pods, want 1", pdb.Status.DisruptionsAllowed)
	}
	e.drain(ctx, t, pods)
	pods = e.operatorPods(ctx, t)
	var leader string
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		leader = e.leader(ctx, t)
		for _, p := range pods {
			if p.Name == leader {
				return true, nil
			}
		}
		return false, nil
	}); err != nil {
		t.Fatalf("none of the new pods leads (Lease holder %q)", leader)
	}
	t.Logf("leader %s; PodDisruptionBudget allows %d disruption", leader, pdb.Status.DisruptionsAllowed)
}

// drain evicts the operator pods as a node drain does, through the
// Eviction API: the PodDisruptionBudget lets one go and refuses the second
// until the replacement is Ready; then the second goes too.
func (e *clusterEnv) drain(ctx context.Context, t *testing.T, pods []corev1.Pod) {
	t.Helper()
	evict := func(p corev1.Pod) error {
		return e.cs.PolicyV1().Evictions(p.Namespace).Evict(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace}})
	}
	if err := evict(pods[0]); err != nil {
		t.Fatalf("evicting %s with 2 Ready replicas: %v", pods[0].Name, err)
	}
	if err := evict(pods[1]); !apierrors.IsTooManyRequests(err) {
		t.Fatalf("evicting the second replica right after the first: %v, want 429 Too Many Requests from the PodDisruptionBudget", err)
	}
	begin := time.Now()
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(context.Context) (bool, error) {
		return evict(pods[1]) == nil, nil
	}); err != nil {
		t.Fatalf("the second replica could not be evicted after the first was replaced: %v", err)
	}
	t.Logf("drain through the PodDisruptionBudget: one replica evicted at once, the second refused (429), then evicted %s later once the replacement was Ready",
		time.Since(begin).Round(100*time.Millisecond))
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		ready := 0
		for _, p := range e.operatorPods(ctx, t) {
			if podReady(&p) {
				ready++
			}
		}
		return ready == 2, nil
	}); err != nil {
		t.Fatalf("two Ready replicas not restored after the drain:\n%s", e.describePods(ctx, operatorNS))
	}
}

func (e *clusterEnv) operatorPods(ctx context.Context, t *testing.T) []corev1.Pod {
	t.Helper()
	pods := &corev1.PodList{}
	if err := e.c.List(ctx, pods, client.InNamespace(operatorNS), client.MatchingLabels(operatorLabels)); err != nil {
		t.Fatal(err)
	}
	var out []corev1.Pod
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out
}

// leader is the Pod that holds the leader election Lease.
func (e *clusterEnv) leader(ctx context.Context, t *testing.T) string {
	t.Helper()
	lease := &coordinationv1.Lease{}
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: operatorNS, Name: leaseName}, lease); err != nil {
		t.Fatal(err)
	}
	if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity == "" {
		return ""
	}
	pod, _, _ := strings.Cut(*lease.Spec.HolderIdentity, "_")
	return pod
}

// testFailover deletes the leader Pod; once the standby holds the Lease, a
// generated policy is deleted and the new leader restores it.
func testFailover(ctx context.Context, t *testing.T, e *clusterEnv) {
	wi := sampleIsolation(t)
	if err := e.c.Create(ctx, wi); err != nil {
		t.Fatal(err)
	}
	waitIsolation(ctx, t, e.c, wi, isolationv1alpha1.ConditionReady, metav1.ConditionTrue, "")
	deny := &networkingv1.NetworkPolicy{}
	key := client.ObjectKey{Namespace: wi.Namespace, Name: wi.Name + "-default-deny"}
	if err := e.c.Get(ctx, key, deny); err != nil {
		t.Fatal(err)
	}
	old := e.leader(ctx, t)
	if old == "" {
		t.Fatal("no leader")
	}
	begin := time.Now()
	if err := e.c.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: old, Namespace: operatorNS}}); err != nil {
		t.Fatal(err)
	}
	var newLeader string
	if err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		newLeader = e.leader(ctx, t)
		return newLeader != "" && newLeader != old, nil
	}); err != nil {
		t.Fatalf("no other pod took the Lease after deleting leader %s", old)
	}
	leaderAt := time.Since(begin)
	deleted := time.Now()
	if err := e.c.Delete(ctx, deny); err != nil {
		t.Fatal(err)
	}
	if err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		got := &networkingv1.NetworkPolicy{}
		return e.c.Get(ctx, key, got) == nil && got.UID != deny.UID, nil
	}); err != nil {
		t.Fatalf("%s not restored by the new leader %s", key.Name, newLeader)
	}
	t.Logf("failover: leader %s deleted; %s holds the Lease after %s; a policy deleted then is restored by it after %s",
		old, newLeader, leaderAt.Round(10*time.Millisecond), time.Since(deleted).Round(10*time.Millisecond))
	if err := e.c.Delete(ctx, wi); err != nil {
		t.Fatal(err)
	}
}

// testUninstall removes the release: every object of the chart goes, the
// CRD (from the chart's crds/ directory, which Helm never deletes) stays,
// and with it the users' WorkloadIsolations.
func testUninstall(ctx context.Context, t *testing.T, e *clusterEnv) {
	un := action.NewUninstall(e.helm(t, operatorNS))
	un.Wait, un.Timeout = true, 2*time.Minute
	begin := time.Now()
	if _, err := un.Run(release); err != nil {
		t.Fatal(err)
	}
	t.Logf("helm uninstall --wait: %s", time.Since(begin).Round(100*time.Millisecond))
	left := e.chartObjects(ctx, t, release)
	if len(left) > 0 {
		t.Errorf("helm uninstall left the chart's objects: %s", strings.Join(left, ", "))
	}
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		return len(e.operatorPods(ctx, t)) == 0, nil
	}); err != nil {
		t.Errorf("operator pods still run after uninstall")
	}
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := e.c.Get(ctx, client.ObjectKey{Name: "workloadisolations.isolation.isolator.dev"}, crd); err != nil {
		t.Errorf("the CRD is gone after uninstall: %v", err)
	}
	// The leader election Lease belongs to the release too.
	leases := &coordinationv1.LeaseList{}
	if err := e.c.List(ctx, leases, client.InNamespace(operatorNS)); err != nil {
		t.Fatal(err)
	}
	for _, l := range leases.Items {
		t.Errorf("helm uninstall left Lease %s/%s", l.Namespace, l.Name)
	}
	// Helm never deletes the namespace --create-namespace made; the KKP
	// step creates it again with its own labels.
	e.deleteNamespace(ctx, t, operatorNS)
}

// chartObjects lists the objects of kinds the chart creates that carry the
// release's instance label.
func (e *clusterEnv) chartObjects(ctx context.Context, t *testing.T, instance string) []string {
	t.Helper()
	sel := metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=" + instance}
	var out []string
	add := func(kind string, names []string, err error) {
		if err != nil && !apierrors.IsNotFound(err) {
			t.Fatalf("listing %s: %v", kind, err)
		}
		for _, n := range names {
			out = append(out, kind+" "+n)
		}
	}
	cs := e.cs
	d, err := cs.AppsV1().Deployments("").List(ctx, sel)
	add("Deployment", metaNames(d.Items, func(i int) string { return d.Items[i].Namespace + "/" + d.Items[i].Name }), err)
	s, err := cs.CoreV1().Services("").List(ctx, sel)
	add("Service", metaNames(s.Items, func(i int) string { return s.Items[i].Namespace + "/" + s.Items[i].Name }), err)
	sa, err := cs.CoreV1().ServiceAccounts("").List(ctx, sel)
	add("ServiceAccount", metaNames(sa.Items, func(i int) string { return sa.Items[i].Namespace + "/" + sa.Items[i].Name }), err)
	cm, err := cs.CoreV1().ConfigMaps("").List(ctx, sel)
	add("ConfigMap", metaNames(cm.Items, func(i int) string { return cm.Items[i].Namespace + "/" + cm.Items[i].Name }), err)
	r, err := cs.RbacV1().Roles("").List(ctx, sel)
	add("Role", metaNames(r.Items, func(i int) string { return r.Items[i].Namespace + "/" + r.Items[i].Name }), err)
	rb, err := cs.RbacV1().RoleBindings("").List(ctx, sel)
	add("RoleBinding", metaNames(rb.Items, func(i int) string { return rb.Items[i].Namespace + "/" + rb.Items[i].Name }), err)
	cr, err := cs.RbacV1().ClusterRoles().List(ctx, sel)
	add("ClusterRole", metaNames(cr.Items, func(i int) string { return cr.Items[i].Name }), err)
	crb, err := cs.RbacV1().ClusterRoleBindings().List(ctx, sel)
	add("ClusterRoleBinding", metaNames(crb.Items, func(i int) string { return crb.Items[i].Name }), err)
	np, err := cs.NetworkingV1().NetworkPolicies("").List(ctx, sel)
	add("NetworkPolicy", metaNames(np.Items, func(i int) string { return np.Items[i].Namespace + "/" + np.Items[i].Name }), err)
	pdb, err := cs.PolicyV1().PodDisruptionBudgets("").List(ctx, sel)
	add("PodDisruptionBudget", metaNames(pdb.Items, func(i int) string { return pdb.Items[i].Namespace + "/" + pdb.Items[i].Name }), err)
	return out
}

func metaNames[T any](items []T, name func(int) string) []string {
	out := make([]string, 0, len(items))
	for i := range items {
		out = append(out, name(i))
	}
	return out
}

func sampleIsolation(t *testing.T) *isolationv1alpha1.WorkloadIsolation {
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
