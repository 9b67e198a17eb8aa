package controller_test

import (
	"context"
	"fmt"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
)

var _ = Describe("Per-pod coverage on Cilium", Ordered, func() {
	ctx := context.Background()
	var cc *ciliumCluster
	var wi *isolationv1alpha1.WorkloadIsolation
	// endpoint writes the CiliumEndpoint of a pod as the agent would.
	endpoint := func(name, state string, identity int64) {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion("cilium.io/v2")
		u.SetKind("CiliumEndpoint")
		err := cc.c.Get(ctx, client.ObjectKey{Namespace: wi.Namespace, Name: name}, u)
		status := map[string]any{"state": state}
		if identity > 0 {
			status["identity"] = map[string]any{"id": identity}
		}
		u.Object["status"] = status
		if err != nil {
			u.SetNamespace(wi.Namespace)
			u.SetName(name)
			Expect(cc.c.Create(ctx, u)).To(Succeed())
			return
		}
		Expect(cc.c.Update(ctx, u)).To(Succeed())
	}

	// running writes the status the kubelet would for a running pod.
	running := func(pod *corev1.Pod, ip string) {
		pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}}
		Expect(cc.c.Status().Update(ctx, pod)).To(Succeed())
	}

	BeforeAll(func() {
		requireCiliumCRDs()
		cc = startCiliumCluster()
		DeferCleanup(cc.stop)
		cc.runCiliumAgent(ctx)
		wi = seedIsolation(cc.namespace(ctx, "coverage"))
		for i, name := range []string{"local-ai-0", "local-ai-1"} {
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: wi.Namespace, Labels: map[string]string{"app.kubernetes.io/name": "local-ai"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}},
			}
			Expect(cc.c.Create(ctx, pod)).To(Succeed())
			running(pod, fmt.Sprintf("10.0.0.%d", i+10))
		}
		Expect(cc.c.Create(ctx, wi)).To(Succeed())
	})

	It("counts the target pods with a ready CiliumEndpoint and names the others", func() {
		endpoint("local-ai-0", "ready", 51234)
		Eventually(cc.isolation(ctx, wi), timeout, interval).Should(And(
			haveCondition(isolationv1alpha1.ConditionEnforced, metav1.ConditionFalse, isolationv1alpha1.ReasonPodsNotManaged),
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionFalse, isolationv1alpha1.ReasonPodsNotManaged),
			WithTransform(enforcedMessage, ContainSubstring("1/2 target pods managed by Cilium: not managed: local-ai-1")),
		))
		// An endpoint still waiting for its identity does not count.
		endpoint("local-ai-1", "waiting-for-identity", 0)
		Consistently(cc.isolation(ctx, wi), "1s", interval).Should(
			haveCondition(isolationv1alpha1.ConditionEnforced, metav1.ConditionFalse, isolationv1alpha1.ReasonPodsNotManaged))
		endpoint("local-ai-1", "ready", 51234)
		Eventually(cc.isolation(ctx, wi), timeout, interval).Should(And(
			haveCondition(isolationv1alpha1.ConditionEnforced, metav1.ConditionTrue, isolationv1alpha1.ReasonCNIEnforces),
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionTrue, isolationv1alpha1.ReasonReconciled),
			WithTransform(enforcedMessage, HavePrefix("2/2 target pods managed by Cilium")),
		))
		// An agent that loses the pod (endpoint deleted) takes it back out.
		u := &unstructured.Unstructured{}
		u.SetAPIVersion("cilium.io/v2")
		u.SetKind("CiliumEndpoint")
		u.SetNamespace(wi.Namespace)
		u.SetName("local-ai-0")
		Expect(cc.c.Delete(ctx, u)).To(Succeed())
		Eventually(cc.isolation(ctx, wi), timeout, interval).Should(
			WithTransform(enforcedMessage, ContainSubstring("not managed: local-ai-0")))
		// A pod that has ended (evicted) has no network to guard: it is
		// left out, and the rest count.
		pod := &corev1.Pod{}
		Expect(cc.c.Get(ctx, client.ObjectKey{Namespace: wi.Namespace, Name: "local-ai-0"}, pod)).To(Succeed())
		pod.Status.Phase, pod.Status.Reason = corev1.PodFailed, "Evicted"
		Expect(cc.c.Status().Update(ctx, pod)).To(Succeed())
		// The pod's own status change is not an endpoint event; a label
		// change brings the isolation back as any pod change does.
		pod.Labels["evicted"] = "true"
		Expect(cc.c.Update(ctx, pod)).To(Succeed())
		Eventually(cc.isolation(ctx, wi), timeout, interval).Should(And(
			haveCondition(isolationv1alpha1.ConditionEnforced, metav1.ConditionTrue, isolationv1alpha1.ReasonCNIEnforces),
			WithTransform(enforcedMessage, HavePrefix("1/1 target pods managed by Cilium")),
		))
	})

	It("falls back to the agents where cilium-config disables the endpoint CRD, and says so", func() {
		Expect(cc.c.Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: "cilium-config", Namespace: "kube-system"},
			Data:       map[string]string{"disable-endpoint-crd": "true"},
		})).To(Succeed())
		Eventually(cc.isolation(ctx, wi), timeout, interval).Should(And(
			haveCondition(isolationv1alpha1.ConditionEnforced, metav1.ConditionTrue, isolationv1alpha1.ReasonCNIEnforces),
			WithTransform(enforcedMessage, ContainSubstring("Cilium maintains no CiliumEndpoints (disable-endpoint-crd=true")),
		))
	})
})

// enforcedMessage is the message of the Enforced condition.
func enforcedMessage(w *isolationv1alpha1.WorkloadIsolation) string {
	for _, c := range w.Status.Conditions {
		if c.Type == isolationv1alpha1.ConditionEnforced {
			return c.Message
		}
	}
	return ""
}
