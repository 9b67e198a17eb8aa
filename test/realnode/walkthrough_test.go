package realnode

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/test/realnode/images"
)

// matrixTimeout bounds how long a step waits for the dataplane.
const matrixTimeout = 30 * time.Second

// LocalAI's pods carry the labels of the LocalAI Helm chart.
var localAILabels = map[string]string{"app.kubernetes.io/name": "local-ai", "app.kubernetes.io/instance": "local-ai"}

// testWalkthrough replays the walkthrough on real pods: the OpenAI-compatible
// test server as LocalAI behind a Service, an ingress-nginx-like client, and
// test pods elsewhere, each probing LocalAI's Service on both ports and its
// pod IP continuously. kube-router's firewall enforces the policies.
func testWalkthrough(ctx context.Context, t *testing.T, e *clusterEnv) {
	for _, ns := range []string{"local-ai", "nginx", "team-a"} {
		e.namespace(ctx, t, ns, nil)
	}
	server, targets, urls := e.openAIServer(ctx, t, "local-ai", "local-ai", localAILabels)
	watch := "--targets=" + strings.Join(urls, ",")
	sourcePods := map[source]*corev1.Pod{}
	var sources []source
	for _, s := range []struct {
		source
		labels map[string]string
	}{
		{source{"nginx", "nginx"}, map[string]string{"app.kubernetes.io/name": "ingress-nginx", "app.kubernetes.io/component": "controller"}},
		{source{"test-nginx", "nginx"}, map[string]string{"run": "test-connectivity"}},
		{source{"test-local-ai", "local-ai"}, map[string]string{"run": "test-connectivity"}},
		{source{"team-client", "team-a"}, map[string]string{"app": "client"}},
	} {
		sourcePods[s.source] = e.probePod(ctx, t, s.namespace, s.name, s.labels, "", watch)
		sources = append(sources, s.source)
	}
	t.Logf("LocalAI pod %s, %s; probes from %d pods", server.Status.PodIP, targets[0].name, len(sources))

	expect := func(step string, want matrix) time.Duration {
		t.Helper()
		return expectMatrix(ctx, t, step, sourcePods, want)
	}

	// 1. Before any WorkloadIsolation everything reaches LocalAI.
	expect("1 no isolation", allAllowed(sources, targets))

	// 2. The sample WorkloadIsolation: only the ingress-nginx controller, on 8080.
	wi := sampleIsolation(t)
	if err := e.c.Create(ctx, wi); err != nil {
		t.Fatal(err)
	}
	took := expect("2 isolated", newMatrix(sources, targets, "nginx:8080"))
	t.Logf("apply to enforcement on real pods: %s", took.Round(time.Millisecond))
	waitIsolation(ctx, t, e.c, wi, isolationv1alpha1.ConditionEnforced, metav1.ConditionTrue, "kube-router enforces NetworkPolicy")
	waitIsolation(ctx, t, e.c, wi, isolationv1alpha1.ConditionIsolated, metav1.ConditionTrue, "")

	// 3. Someone adds an allow-all policy: traffic flows again, and the
	// WorkloadIsolation says its isolation is widened.
	allowAll := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "allow-all-ingress", Namespace: "local-ai"},
		Spec: networkingv1.NetworkPolicySpec{
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress:     []networkingv1.NetworkPolicyIngressRule{{}},
		},
	}
	if err := e.c.Create(ctx, allowAll); err != nil {
		t.Fatal(err)
	}
	expect("3 widened", allAllowed(sources, targets))
	waitIsolation(ctx, t, e.c, wi, isolationv1alpha1.ConditionIsolated, metav1.ConditionFalse, "allow-all-ingress")

	// 4. Remove it and allow a second namespace: traffic follows.
	if err := e.c.Delete(ctx, allowAll); err != nil {
		t.Fatal(err)
	}
	expect("4a allow-all removed", newMatrix(sources, targets, "nginx:8080"))
	waitIsolation(ctx, t, e.c, wi, isolationv1alpha1.ConditionIsolated, metav1.ConditionTrue, "")
	current := &isolationv1alpha1.WorkloadIsolation{}
	if err := e.c.Get(ctx, client.ObjectKeyFromObject(wi), current); err != nil {
		t.Fatal(err)
	}
	current.Spec.Ingress[0].From = append(current.Spec.Ingress[0].From, isolationv1alpha1.IngressPeer{
		NamespaceSelector: &isolationv1alpha1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "team-a"}},
	})
	if err := e.c.Update(ctx, current); err != nil {
		t.Fatal(err)
	}
	expect("4b second namespace allowed", newMatrix(sources, targets, "nginx:8080", "team-client:8080"))

	// 5. Delete the WorkloadIsolation: garbage collection removes the
	// policies and traffic flows again.
	if err := e.c.Delete(ctx, current); err != nil {
		t.Fatal(err)
	}
	expect("5 deleted", allAllowed(sources, targets))
	policies := &networkingv1.NetworkPolicyList{}
	if err := e.c.List(ctx, policies, client.InNamespace("local-ai")); err != nil {
		t.Fatal(err)
	}
	if len(policies.Items) != 0 {
		t.Errorf("garbage collection left %d policies", len(policies.Items))
	}
}

// expectMatrix waits until every probe of want's targets that finished after
// the step began, read from each source pod's /results, matches want,
// confirms it with a second round of fresh probes, prints the matrix and
// returns the time to the first match.
func expectMatrix(ctx context.Context, t *testing.T, step string, sourcePods map[source]*corev1.Pod, want matrix) time.Duration {
	t.Helper()
	begin := time.Now()
	var got matrix
	var took time.Duration
	since := begin
	confirmed := false
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, matrixTimeout, true, func(ctx context.Context) (bool, error) {
		results := map[source]map[string]result{}
		for s, pod := range sourcePods {
			rs, err := probeResults(ctx, pod.Status.PodIP)
			if err != nil {
				return false, nil //nolint:nilerr // a pod's results may be out of reach while policies change: retry
			}
			results[s] = rs
		}
		for _, rs := range results {
			for _, to := range want.targets {
				if !rs[to.url].fresh(since) {
					return false, nil
				}
			}
		}
		got = observe(want, func(from source, to target) bool { return results[from][to.url].reached() })
		if len(mismatches(want, got)) != 0 {
			since, took, confirmed = time.Now(), 0, false
			return false, nil
		}
		if took == 0 {
			took, since = time.Since(begin), time.Now()
			return false, nil
		}
		confirmed = true
		return true, nil
	})
	if err != nil || !confirmed {
		t.Fatalf("step %s: connectivity not as expected after %s:\n%s%s", step, matrixTimeout, format(want, got),
			"mismatches:\n  "+strings.Join(mismatches(want, got), "\n  "))
	}
	t.Logf("step %s: connectivity as expected after %s (confirmed by a second round):\n%s", step, took.Round(time.Millisecond), format(want, got))
	return took
}

func waitIsolation(ctx context.Context, t *testing.T, c client.Client, wi *isolationv1alpha1.WorkloadIsolation, typ string, status metav1.ConditionStatus, message string) {
	t.Helper()
	var cond *metav1.Condition
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, matrixTimeout, true, func(ctx context.Context) (bool, error) {
		got := &isolationv1alpha1.WorkloadIsolation{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(wi), got); err != nil {
			return false, err
		}
		cond = meta.FindStatusCondition(got.Status.Conditions, typ)
		return cond != nil && cond.Status == status && strings.Contains(cond.Message, message), nil
	})
	if err != nil {
		t.Fatalf("%s=%s (%q) not reported: %v; last: %+v", typ, status, message, err, cond)
	}
}

// openAIServer runs the OpenAI-compatible test server (ports 8080 and
// 9090) as a Deployment with a Service of the same name, and returns its
// Pod and the probe targets: the Service on both ports and the pod IP on
// 8080, with their URLs.
func (e *clusterEnv) openAIServer(ctx context.Context, t *testing.T, ns, name string, labels map[string]string) (*corev1.Pod, []target, []string) {
	t.Helper()
	server := e.deployment(ctx, t, ns, name, labels, images.TestServer,
		[]string{"--listen=:8080,:9090"}, "/readyz:8080", "")
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{
			{Name: "http", Port: 8080, TargetPort: intstr.FromInt32(8080)},
			{Name: "other", Port: 9090, TargetPort: intstr.FromInt32(9090)},
		}},
	}
	if err := e.c.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	service := fmt.Sprintf("Service %s/%s", ns, name)
	targets := []target{
		{name: service, port: "8080", url: fmt.Sprintf("http://%s:8080/v1/models", svc.Spec.ClusterIP)},
		{name: service, port: "9090", url: fmt.Sprintf("http://%s:9090/v1/models", svc.Spec.ClusterIP)},
		{name: "Pod " + server.Status.PodIP, port: "8080", url: fmt.Sprintf("http://%s:8080/v1/models", server.Status.PodIP)},
	}
	var urls []string
	for _, to := range targets {
		urls = append(urls, to.url)
	}
	return server, targets, urls
}
