package realnode

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/test/realnode/images"
)

const (
	// dnsAnswer is the address the test DNS server gives every name.
	dnsAnswer = "192.0.2.10"
	// dnsName is the name LocalAI's probe resolves.
	dnsName = "minio.minio.svc.cluster.local"
)

// testEgressWalkthrough isolates LocalAI's outbound traffic on real pods: a
// probe sidecar in the LocalAI pod resolves a name through a DNS server pod
// labelled as the cluster DNS (over UDP and TCP 53) and connects to an
// object store (MinIO's labels, port 9000), a pod standing for the cloud
// metadata service and another pod. kube-router's firewall enforces the
// egress policies.
func testEgressWalkthrough(ctx context.Context, t *testing.T, e *clusterEnv) {
	for _, ns := range []string{"local-ai", "cloud", "minio", "team-a"} {
		e.namespace(ctx, t, ns, nil)
	}
	dns := e.dnsServer(ctx, t)
	minio := e.deployment(ctx, t, "minio", "minio", map[string]string{"app.kubernetes.io/name": "minio"}, images.Probe,
		[]string{"serve", "--listen=:9000"}, "/:9000", "")
	metadata := e.deployment(ctx, t, "cloud", "metadata", map[string]string{"app": "metadata"}, images.Probe,
		[]string{"serve", "--listen=:8080"}, "/:8080", "")
	other := e.deployment(ctx, t, "team-a", "other", map[string]string{"app": "other"}, images.Probe,
		[]string{"serve", "--listen=:8080"}, "/:8080", "")
	t.Cleanup(func() {
		for _, d := range []client.ObjectKey{{Namespace: "kube-system", Name: "dns"}, {Namespace: "minio", Name: "minio"},
			{Namespace: "cloud", Name: "metadata"}, {Namespace: "team-a", Name: "other"}} {
			_ = e.c.Delete(context.Background(), &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: d.Namespace, Name: d.Name}})
		}
	})

	dnsUDP := target{name: "DNS udp kube-system/dns", port: "53", url: fmt.Sprintf("dns+udp://%s:53/%s", dns.Status.PodIP, dnsName)}
	dnsTCP := target{name: "DNS tcp kube-system/dns", port: "53", url: fmt.Sprintf("dns+tcp://%s:53/%s", dns.Status.PodIP, dnsName)}
	objectStore := target{name: "object store minio/minio", port: "9000", url: fmt.Sprintf("http://%s:9000/", minio.Status.PodIP)}
	metadataSvc := target{name: "metadata cloud/metadata", port: "8080", url: fmt.Sprintf("http://%s:8080/latest/meta-data/", metadata.Status.PodIP)}
	otherPod := target{name: "other team-a/other", port: "8080", url: fmt.Sprintf("http://%s:8080/", other.Status.PodIP)}
	targets := []target{dnsUDP, dnsTCP, objectStore, metadataSvc, otherPod}

	localAI := e.addProbeSidecar(ctx, t, targets)
	from := source{"local-ai", "local-ai"}
	sourcePods := map[source]*corev1.Pod{from: localAI}
	t.Logf("LocalAI pod %s probes DNS %s, object store %s, metadata %s, other %s", localAI.Status.PodIP,
		dns.Status.PodIP, minio.Status.PodIP, metadata.Status.PodIP, other.Status.PodIP)
	expect := func(step string, allowed ...target) time.Duration {
		t.Helper()
		want := newMatrix([]source{from}, targets)
		for _, to := range allowed {
			want.cells[probeOf(from, to)] = true
		}
		return expectMatrix(ctx, t, step, sourcePods, want)
	}

	// 1. Before egress isolation LocalAI reaches everything.
	expect("egress 1 not isolated", targets...)
	rs, err := probeResults(ctx, localAI.Status.PodIP)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{dnsUDP.url, dnsTCP.url} {
		if r := rs[u]; !r.OK || r.Answer != dnsAnswer {
			t.Fatalf("%s: %+v, want the answer %s", u, r, dnsAnswer)
		}
	}

	// 2. Egress to the object store only; DNS stays allowed by default.
	wi := egressIsolation(e.cfg.HostIP())
	if err := e.c.Create(ctx, wi); err != nil {
		t.Fatal(err)
	}
	took := expect("egress 2 isolated: DNS and the object store only", dnsUDP, dnsTCP, objectStore)
	t.Logf("egress: apply to enforcement on real pods: %s", took.Round(time.Millisecond))
	waitIsolation(ctx, t, e.c, wi, isolationv1alpha1.ConditionReady, metav1.ConditionTrue, "")
	got := waitEgress(ctx, t, e.c, wi, isolationv1alpha1.EgressIsolated, "")
	var names []string
	for _, p := range got.Status.Policies {
		names = append(names, p.Name)
	}
	t.Logf("status.egress %s, Ready True; policies: %s", got.Status.Egress, strings.Join(names, ", "))

	// 3. Someone lets the LocalAI pods reach everything: traffic flows
	// again, and the WorkloadIsolation reports the egress exposure.
	allowAll := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "allow-all-egress", Namespace: "local-ai"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: localAILabels},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			Egress:      []networkingv1.NetworkPolicyEgressRule{{}},
		},
	}
	if err := e.c.Create(ctx, allowAll); err != nil {
		t.Fatal(err)
	}
	expect("egress 3 widened by allow-all-egress", targets...)
	waitIsolation(ctx, t, e.c, wi, isolationv1alpha1.ConditionIsolated, metav1.ConditionFalse, "allow-all-egress")
	got = waitEgress(ctx, t, e.c, wi, isolationv1alpha1.EgressNotIsolated, "allow-all-egress")
	for _, x := range got.Status.Exposure {
		t.Logf("status.egress %s; exposure %s (%s): %s", got.Status.Egress, x.Policy, x.Direction, x.Summary)
	}

	// 4. Removing it closes the egress again.
	if err := e.c.Delete(ctx, allowAll); err != nil {
		t.Fatal(err)
	}
	expect("egress 4 allow-all-egress removed", dnsUDP, dnsTCP, objectStore)
	waitIsolation(ctx, t, e.c, wi, isolationv1alpha1.ConditionIsolated, metav1.ConditionTrue, "")
	waitEgress(ctx, t, e.c, wi, isolationv1alpha1.EgressIsolated, "")

	if err := e.c.Delete(ctx, wi); err != nil {
		t.Fatal(err)
	}
	expect("egress 5 deleted", targets...)
}

// egressIsolation isolates LocalAI both ways: egress to the minio preset
// only (DNS on by default), ingress only from the host on the probe
// sidecar's results port. kube-router admits traffic to a pod from its own
// node's addresses whatever the policies (iptables addrtype LOCAL), but the
// test reads the results from the host, which is outside the node's network
// namespace (hostIP, the host's end of the link): without this rule the
// default-deny ingress would hide the results.
func egressIsolation(hostIP netip.Addr) *isolationv1alpha1.WorkloadIsolation {
	return &isolationv1alpha1.WorkloadIsolation{
		ObjectMeta: metav1.ObjectMeta{Name: "local-ai-egress", Namespace: "local-ai"},
		Spec: isolationv1alpha1.WorkloadIsolationSpec{
			Target: isolationv1alpha1.Target{PodSelector: &isolationv1alpha1.LabelSelector{
				MatchLabels: map[string]string{"app.kubernetes.io/name": "local-ai"},
			}},
			Ingress: []isolationv1alpha1.IngressRule{{
				Name:  "probe-results",
				From:  []isolationv1alpha1.IngressPeer{{IPBlock: &isolationv1alpha1.IPBlock{CIDR: netip.PrefixFrom(hostIP, 32).String()}}},
				Ports: []isolationv1alpha1.Port{{Protocol: corev1.ProtocolTCP, Port: ptr.To(intstr.FromInt32(resultsPort))}},
			}},
			Egress: []isolationv1alpha1.EgressRule{{
				Name: "object-store",
				To:   []isolationv1alpha1.EgressPeer{{Preset: "minio"}},
			}},
		},
	}
}

// dnsServer runs the probe's DNS server in kube-system with the cluster
// DNS's label, listening on 53 as non-root: the safe sysctl
// net.ipv4.ip_unprivileged_port_start=0 lets the pod's user bind it.
func (e *clusterEnv) dnsServer(ctx context.Context, t *testing.T) *corev1.Pod {
	t.Helper()
	labels := map[string]string{"k8s-app": "kube-dns"}
	container := testContainer("main", images.Probe, []string{"dns", "--listen=:53", "--address=" + dnsAnswer}, "")
	container.ReadinessProbe = &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(53)}},
		PeriodSeconds: 1,
	}
	d := deploymentOf("kube-system", "dns", labels, container, "")
	d.Spec.Template.Spec.SecurityContext = &corev1.PodSecurityContext{
		Sysctls: []corev1.Sysctl{{Name: "net.ipv4.ip_unprivileged_port_start", Value: "0"}},
	}
	if err := e.c.Create(ctx, d); err != nil {
		t.Fatal(err)
	}
	return e.waitPod(ctx, t, "kube-system", labels)
}

// addProbeSidecar adds a probe container watching targets to the LocalAI
// Deployment of the walkthrough (its results on resultsPort, which the
// OpenAI-compatible server in the same pod does not use) and returns the rolled-out pod once it is
// the only one and Ready.
func (e *clusterEnv) addProbeSidecar(ctx context.Context, t *testing.T, targets []target) *corev1.Pod {
	t.Helper()
	var urls []string
	for _, to := range targets {
		urls = append(urls, to.url)
	}
	d := &appsv1.Deployment{}
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: "local-ai", Name: "local-ai"}, d); err != nil {
		t.Fatal(err)
	}
	d.Spec.Template.Spec.Containers = append(d.Spec.Template.Spec.Containers, testContainer("probe", images.Probe,
		[]string{"watch", "--interval=200ms", "--timeout=2s", fmt.Sprintf("--listen=:%d", resultsPort), "--targets=" + strings.Join(urls, ",")},
		fmt.Sprintf("/healthz:%d", resultsPort)))
	if err := e.c.Update(ctx, d); err != nil {
		t.Fatal(err)
	}
	var pod *corev1.Pod
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		pods := &corev1.PodList{}
		if err := e.c.List(ctx, pods, client.InNamespace("local-ai"), client.MatchingLabels(localAILabels)); err != nil {
			return false, err
		}
		if len(pods.Items) != 1 {
			return false, nil
		}
		p := &pods.Items[0]
		hasProbe := slices.ContainsFunc(p.Spec.Containers, func(c corev1.Container) bool { return c.Name == "probe" })
		pod = p
		return hasProbe && p.DeletionTimestamp == nil && podReady(p), nil
	})
	if err != nil {
		t.Fatalf("LocalAI with its probe sidecar not rolled out: %v\n%s", err, e.describePods(ctx, "local-ai"))
	}
	return pod
}

// waitEgress waits until status.egress is state and, when policy is set, an
// exposure with direction Egress names it; it returns the WorkloadIsolation.
func waitEgress(ctx context.Context, t *testing.T, c client.Client, wi *isolationv1alpha1.WorkloadIsolation, state isolationv1alpha1.EgressState, policy string) *isolationv1alpha1.WorkloadIsolation {
	t.Helper()
	got := &isolationv1alpha1.WorkloadIsolation{}
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, matrixTimeout, true, func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(wi), got); err != nil {
			return false, err
		}
		if got.Status.Egress != state {
			return false, nil
		}
		return policy == "" || slices.ContainsFunc(got.Status.Exposure, func(x isolationv1alpha1.Exposure) bool {
			return x.Policy == policy && x.Direction == "Egress"
		}), nil
	})
	if err != nil {
		t.Fatalf("status.egress %s with an Egress exposure %q not reported: %v; last: egress %q, exposure %+v", state, policy, err, got.Status.Egress, got.Status.Exposure)
	}
	return got
}
