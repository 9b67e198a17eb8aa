package controller_test

import (
	"context"
	"os"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/controller"
	"github.com/isolator-dev/isolator/internal/localcp"
)

// ciliumCRDs holds Cilium 1.19.4's CRDs, beside the repository.
var ciliumCRDs = filepath.Join("..", "..", "..", "shared", "fixtures", "crds", "cilium-1.19.4")

// requireCiliumCRDs fails the spec, never skips it, when the fixtures are
// missing: a test that cannot run must not pass.
func requireCiliumCRDs() {
	if _, err := os.Stat(ciliumCRDs); err != nil {
		Fail("Cilium CRD fixtures not found at " + ciliumCRDs + " (they sit beside the repository as ../shared): " + err.Error())
	}
}

// ciliumCluster is a control plane of its own that serves Cilium's API
// (which also makes CNI detection see Cilium's API group, so it must not be
// shared with the other specs), with a manager running the reconciler.
type ciliumCluster struct {
	cp     *localcp.ControlPlane
	c      client.Client
	cancel context.CancelFunc
}

func startCiliumCluster() *ciliumCluster { return startClusterWithCRDs(ciliumCRDs) }

// startClusterWithCRDs starts a control plane of its own that serves these
// CRDs besides the operator's, with a manager running the reconciler.
func startClusterWithCRDs(crds ...string) *ciliumCluster {
	cp, err := localcp.Start(localcp.Options{
		CRDDirectoryPaths: append([]string{filepath.Join("..", "..", "config", "crd", "bases")}, crds...),
		GarbageCollector:  true,
	})
	Expect(err).NotTo(HaveOccurred())
	c, err := client.New(cp.Config, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	mgr, err := ctrl.NewManager(cp.Config, ctrl.Options{
		Scheme: scheme, Cache: controller.CacheOptions(),
		Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
		// The suite's own manager registered the same controller names.
		Controller: ctrlconfig.Controller{SkipNameValidation: ptr.To(true)},
	})
	Expect(err).NotTo(HaveOccurred())
	detector := &controller.CNIDetector{}
	Expect(detector.SetupWithManager(mgr)).To(Succeed())
	Expect((&controller.WorkloadIsolationReconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Presets: testPresets,
		Recorder: mgr.GetEventRecorder("isolator"), CNI: detector,
	}).SetupWithManager(mgr)).To(Succeed())
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer GinkgoRecover()
		Expect(mgr.Start(ctx)).To(Succeed())
	}()
	Expect(mgr.GetCache().WaitForCacheSync(ctx)).To(BeTrue())
	return &ciliumCluster{cp: cp, c: c, cancel: cancel}
}

// runCiliumAgent creates Cilium 1.19.4's agent DaemonSet in kube-system,
// with the status of one ready agent.
func (cc *ciliumCluster) runCiliumAgent(ctx context.Context) {
	ds := daemonSet("kube-system", "cilium",
		corev1.Container{Name: "cilium-agent", Image: "quay.io/cilium/cilium:v1.19.4", Args: []string{"--config-dir=/tmp/cilium/config-map"}})
	Expect(cc.c.Create(ctx, ds)).To(Succeed())
	ds.Status = appsv1.DaemonSetStatus{ObservedGeneration: ds.Generation, DesiredNumberScheduled: 1, CurrentNumberScheduled: 1,
		UpdatedNumberScheduled: 1, NumberReady: 1, NumberAvailable: 1}
	Expect(cc.c.Status().Update(ctx, ds)).To(Succeed())
}

// conditionMessage transforms a WorkloadIsolation into the message of its
// condition t.
func conditionMessage(t string) func(*isolationv1alpha1.WorkloadIsolation) string {
	return func(w *isolationv1alpha1.WorkloadIsolation) string {
		if c := apimeta.FindStatusCondition(w.Status.Conditions, t); c != nil {
			return c.Message
		}
		return ""
	}
}

func (cc *ciliumCluster) stop() {
	cc.cancel()
	Expect(cc.cp.Stop()).To(Succeed())
}

// dnsHost reads the CiliumNetworkPolicy local-ai-dns-host in namespace.
func (cc *ciliumCluster) dnsHost(ctx context.Context, namespace string) func() (*unstructured.Unstructured, error) {
	return func() (*unstructured.Unstructured, error) {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion("cilium.io/v2")
		u.SetKind("CiliumNetworkPolicy")
		err := cc.c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "local-ai-dns-host"}, u)
		return u, err
	}
}

func (cc *ciliumCluster) isolation(ctx context.Context, wi *isolationv1alpha1.WorkloadIsolation) func() *isolationv1alpha1.WorkloadIsolation {
	return func() *isolationv1alpha1.WorkloadIsolation {
		out := &isolationv1alpha1.WorkloadIsolation{}
		Expect(cc.c.Get(ctx, client.ObjectKeyFromObject(wi), out)).To(Succeed())
		return out
	}
}

func (cc *ciliumCluster) namespace(ctx context.Context, name string) string {
	Expect(cc.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})).To(Succeed())
	return name
}

// updateSpec changes wi's spec on its latest version, again when the
// operator's status write got in between.
func (cc *ciliumCluster) updateSpec(ctx context.Context, wi *isolationv1alpha1.WorkloadIsolation, change func(*isolationv1alpha1.WorkloadIsolation)) {
	Eventually(func() error {
		current := cc.isolation(ctx, wi)()
		change(current)
		return cc.c.Update(ctx, current)
	}, timeout, interval).Should(Succeed())
}

func egressTo(u *unstructured.Unstructured) []any {
	egress, _, _ := unstructured.NestedSlice(u.Object, "spec", "egress")
	return egress
}

var _ = Describe("Egress isolation on Cilium", Ordered, func() {
	ctx := context.Background()
	cilium := daemonSet("kube-system", "cilium",
		corev1.Container{Name: "cilium-agent", Image: "quay.io/cilium/cilium:v1.19.4", Args: []string{"--config-dir=/tmp/cilium/config-map"}})
	ciliumConfig := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "cilium-config", Namespace: "kube-system"},
		Data:       map[string]string{"enable-policy": "default"},
	}
	var wi *isolationv1alpha1.WorkloadIsolation
	var cc *ciliumCluster
	hostDNS := []any{map[string]any{
		"toEntities": []any{"host"},
		"toPorts": []any{map[string]any{"ports": []any{
			map[string]any{"port": "53", "protocol": "UDP"},
			map[string]any{"port": "53", "protocol": "TCP"},
		}}},
	}}

	BeforeAll(func() {
		requireCiliumCRDs()
		cc = startCiliumCluster()
		DeferCleanup(cc.stop)
		Expect(cc.c.Create(ctx, ciliumConfig.DeepCopy())).To(Succeed())
		ds := cilium.DeepCopy()
		Expect(cc.c.Create(ctx, ds)).To(Succeed())
		ds.Status = appsv1.DaemonSetStatus{ObservedGeneration: ds.Generation, DesiredNumberScheduled: 1, CurrentNumberScheduled: 1,
			UpdatedNumberScheduled: 1, NumberReady: 1, NumberAvailable: 1}
		Expect(cc.c.Status().Update(ctx, ds)).To(Succeed())
		wi = seedIsolation(cc.namespace(ctx, "egress-cilium"))
		wi.Spec.Egress = []isolationv1alpha1.EgressRule{}
		Expect(cc.c.Create(ctx, wi)).To(Succeed())
	})

	It("lets the target reach NodeLocal DNSCache on the node with a CiliumNetworkPolicy it owns, validated by Cilium's CRD", func() {
		Eventually(cc.dnsHost(ctx, wi.Namespace), timeout, interval).Should(
			WithTransform(egressTo, Equal(hostDNS)))
		cnp, err := cc.dnsHost(ctx, wi.Namespace)()
		Expect(err).NotTo(HaveOccurred())
		selector, _, _ := unstructured.NestedStringMap(cnp.Object, "spec", "endpointSelector", "matchLabels")
		Expect(selector).To(Equal(map[string]string{"app.kubernetes.io/name": "local-ai"}))
		current := cc.isolation(ctx, wi)()
		Expect(metav1.IsControlledBy(cnp, current)).To(BeTrue())
		Eventually(cc.isolation(ctx, wi), timeout, interval).Should(And(
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionTrue, isolationv1alpha1.ReasonReconciled),
			WithTransform(func(w *isolationv1alpha1.WorkloadIsolation) []isolationv1alpha1.PolicyReference {
				return w.Status.Policies
			},
				ContainElement(isolationv1alpha1.PolicyReference{Kind: "CiliumNetworkPolicy", Name: "local-ai-dns-host"})),
			WithTransform(func(w *isolationv1alpha1.WorkloadIsolation) int32 { return w.Status.PolicyCount }, Equal(int32(4))),
			WithTransform(func(w *isolationv1alpha1.WorkloadIsolation) isolationv1alpha1.EgressState { return w.Status.Egress },
				Equal(isolationv1alpha1.EgressIsolated)),
		))
		// What the API server stores equals what is rendered: no repair
		// loop, the object stays as written.
		settled, err := cc.dnsHost(ctx, wi.Namespace)()
		Expect(err).NotTo(HaveOccurred())
		rv := settled.GetResourceVersion()
		Consistently(cc.dnsHost(ctx, wi.Namespace), "2s", interval).Should(
			WithTransform(func(u *unstructured.Unstructured) string { return u.GetResourceVersion() }, Equal(rv)))
	})

	It("repairs a widened copy and restores a deleted one", func() {
		cnp, err := cc.dnsHost(ctx, wi.Namespace)()
		Expect(err).NotTo(HaveOccurred())
		Expect(unstructured.SetNestedSlice(cnp.Object, []any{map[string]any{"toEntities": []any{"world"}}}, "spec", "egress")).To(Succeed())
		Expect(cc.c.Update(ctx, cnp)).To(Succeed())
		Eventually(cc.dnsHost(ctx, wi.Namespace), timeout, interval).Should(WithTransform(egressTo, Equal(hostDNS)))

		uid := cnp.GetUID()
		Expect(cc.c.Delete(ctx, cnp)).To(Succeed())
		Eventually(cc.dnsHost(ctx, wi.Namespace), timeout, interval).Should(And(
			WithTransform(egressTo, Equal(hostDNS)),
			WithTransform(func(u *unstructured.Unstructured) bool { return u.GetUID() != uid }, BeTrue())))
	})

	It("keeps it while a name conflict stops the NetworkPolicies", func() {
		foreign := &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: "local-ai-egress-s3", Namespace: wi.Namespace},
			Spec:       networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}},
		}
		Expect(cc.c.Create(ctx, foreign)).To(Succeed())
		cc.updateSpec(ctx, wi, func(current *isolationv1alpha1.WorkloadIsolation) {
			current.Spec.Egress = []isolationv1alpha1.EgressRule{{Name: "s3", To: []isolationv1alpha1.EgressPeer{{Preset: "minio"}}}}
		})
		Eventually(cc.isolation(ctx, wi), timeout, interval).Should(
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionFalse, isolationv1alpha1.ReasonNameConflict))
		Consistently(cc.dnsHost(ctx, wi.Namespace), "2s", interval).Should(WithTransform(egressTo, Equal(hostDNS)))

		Expect(cc.c.Delete(ctx, foreign)).To(Succeed())
		cc.updateSpec(ctx, wi, func(current *isolationv1alpha1.WorkloadIsolation) {
			current.Spec.Egress = []isolationv1alpha1.EgressRule{}
		})
		Eventually(cc.isolation(ctx, wi), timeout, interval).Should(
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionTrue, isolationv1alpha1.ReasonReconciled))
	})

	It("reports a Cilium policy it did not write that opens the target, and not one that selects other pods", func() {
		// A target pod, managed by Cilium.
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "local-ai-0", Namespace: wi.Namespace, Labels: map[string]string{"app.kubernetes.io/name": "local-ai"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}}}
		Expect(cc.c.Create(ctx, pod)).To(Succeed())
		endpoint := &unstructured.Unstructured{Object: map[string]any{"status": map[string]any{"state": "ready", "identity": map[string]any{"id": int64(4242)}}}}
		endpoint.SetAPIVersion("cilium.io/v2")
		endpoint.SetKind("CiliumEndpoint")
		endpoint.SetNamespace(wi.Namespace)
		endpoint.SetName(pod.Name)
		Expect(cc.c.Create(ctx, endpoint)).To(Succeed())
		DeferCleanup(func() {
			Expect(cc.c.Delete(ctx, endpoint)).To(Succeed())
			Expect(cc.c.Delete(ctx, pod, client.GracePeriodSeconds(0))).To(Succeed())
		})
		Eventually(cc.isolation(ctx, wi), timeout, interval).Should(
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionTrue, isolationv1alpha1.ReasonReconciled))

		open := &unstructured.Unstructured{}
		open.SetAPIVersion("cilium.io/v2")
		open.SetKind("CiliumNetworkPolicy")
		open.SetNamespace(wi.Namespace)
		open.SetName("allow-world")
		Expect(unstructured.SetNestedField(open.Object, map[string]any{}, "spec", "endpointSelector")).To(Succeed())
		Expect(unstructured.SetNestedSlice(open.Object, []any{map[string]any{"toEntities": []any{"world"}}}, "spec", "egress")).To(Succeed())
		Expect(cc.c.Create(ctx, open)).To(Succeed())
		Eventually(cc.isolation(ctx, wi), timeout, interval).Should(And(
			haveCondition(isolationv1alpha1.ConditionIsolated, metav1.ConditionFalse, isolationv1alpha1.ReasonWidenedByPolicy),
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionFalse, isolationv1alpha1.ReasonWidenedByPolicy),
			WithTransform(func(w *isolationv1alpha1.WorkloadIsolation) []string {
				var out []string
				for _, e := range w.Status.Exposure {
					out = append(out, e.Policy+" "+e.Direction)
				}
				return out
			}, ContainElement("CiliumNetworkPolicy/egress-cilium/allow-world Egress")),
			WithTransform(func(w *isolationv1alpha1.WorkloadIsolation) isolationv1alpha1.EgressState { return w.Status.Egress },
				Equal(isolationv1alpha1.EgressNotIsolated)),
		))
		// Narrowed to other pods, it no longer concerns the target.
		Eventually(func() error {
			current := &unstructured.Unstructured{}
			current.SetGroupVersionKind(open.GroupVersionKind())
			if err := cc.c.Get(ctx, client.ObjectKeyFromObject(open), current); err != nil {
				return err
			}
			Expect(unstructured.SetNestedStringMap(current.Object, map[string]string{"app": "db"}, "spec", "endpointSelector", "matchLabels")).To(Succeed())
			return cc.c.Update(ctx, current)
		}, timeout, interval).Should(Succeed())
		Eventually(cc.isolation(ctx, wi), timeout, interval).Should(
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionTrue, isolationv1alpha1.ReasonReconciled))
		// A clusterwide one that admits the world to every pod does.
		world := &unstructured.Unstructured{}
		world.SetAPIVersion("cilium.io/v2")
		world.SetKind("CiliumClusterwideNetworkPolicy")
		world.SetName("world-to-everything")
		Expect(unstructured.SetNestedField(world.Object, map[string]any{}, "spec", "endpointSelector")).To(Succeed())
		Expect(unstructured.SetNestedSlice(world.Object, []any{map[string]any{"fromEntities": []any{"world"}}}, "spec", "ingress")).To(Succeed())
		Expect(cc.c.Create(ctx, world)).To(Succeed())
		Eventually(cc.isolation(ctx, wi), timeout, interval).Should(And(
			haveCondition(isolationv1alpha1.ConditionIsolated, metav1.ConditionFalse, isolationv1alpha1.ReasonWidenedByPolicy),
			WithTransform(conditionMessage(isolationv1alpha1.ConditionIsolated), ContainSubstring("CiliumClusterwideNetworkPolicy/world-to-everything")),
		))
		Expect(cc.c.Delete(ctx, world)).To(Succeed())
		Expect(cc.c.Delete(ctx, open)).To(Succeed())
		Eventually(cc.isolation(ctx, wi), timeout, interval).Should(And(
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionTrue, isolationv1alpha1.ReasonReconciled),
			WithTransform(func(w *isolationv1alpha1.WorkloadIsolation) isolationv1alpha1.EgressState { return w.Status.Egress },
				Equal(isolationv1alpha1.EgressIsolated)),
		))
	})

	It("never modifies or deletes a CiliumNetworkPolicy of that name it did not create", func() {
		other := seedIsolation(cc.namespace(ctx, "egress-cilium-foreign"))
		foreign := &unstructured.Unstructured{}
		foreign.SetAPIVersion("cilium.io/v2")
		foreign.SetKind("CiliumNetworkPolicy")
		foreign.SetNamespace(other.Namespace)
		foreign.SetName("local-ai-dns-host")
		Expect(unstructured.SetNestedField(foreign.Object, map[string]any{}, "spec", "endpointSelector")).To(Succeed())
		Expect(unstructured.SetNestedSlice(foreign.Object, []any{map[string]any{"toEntities": []any{"world"}}}, "spec", "egress")).To(Succeed())
		Expect(cc.c.Create(ctx, foreign)).To(Succeed())
		rv := foreign.GetResourceVersion()

		other.Spec.Egress = []isolationv1alpha1.EgressRule{}
		Expect(cc.c.Create(ctx, other)).To(Succeed())
		Eventually(cc.isolation(ctx, other), timeout, interval).Should(
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionFalse, isolationv1alpha1.ReasonNameConflict))
		Consistently(cc.dnsHost(ctx, other.Namespace), "2s", interval).Should(
			WithTransform(func(u *unstructured.Unstructured) string { return u.GetResourceVersion() }, Equal(rv)))
		Expect(cc.c.Delete(ctx, other)).To(Succeed())
		Consistently(cc.dnsHost(ctx, other.Namespace), "2s", interval).Should(
			WithTransform(func(u *unstructured.Unstructured) string { return u.GetResourceVersion() }, Equal(rv)))
	})

	It("removes it when egress is no longer isolated", func() {
		cc.updateSpec(ctx, wi, func(current *isolationv1alpha1.WorkloadIsolation) { current.Spec.Egress = nil })
		Eventually(func() error { _, err := cc.dnsHost(ctx, wi.Namespace)(); return err }, timeout, interval).
			Should(WithTransform(func(err error) bool { return err != nil && client.IgnoreNotFound(err) == nil }, BeTrue()))
		Eventually(cc.isolation(ctx, wi), timeout, interval).Should(And(
			WithTransform(func(w *isolationv1alpha1.WorkloadIsolation) int32 { return w.Status.PolicyCount }, Equal(int32(2))),
			WithTransform(func(w *isolationv1alpha1.WorkloadIsolation) isolationv1alpha1.EgressState { return w.Status.Egress },
				Equal(isolationv1alpha1.EgressNone)),
		))
	})
})
