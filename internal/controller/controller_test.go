package controller_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	. "github.com/onsi/gomega/gstruct"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/controller"
	"github.com/isolator-dev/isolator/internal/preset"
)

var testPresets preset.Catalog

const (
	timeout  = 10 * time.Second
	interval = 50 * time.Millisecond
)

var nsCounter atomic.Int64

// newNamespace creates a namespace with a unique name derived from prefix.
func newNamespace(ctx context.Context, prefix string) string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", prefix, nsCounter.Add(1))}}
	Expect(k8sClient.Create(ctx, ns)).To(Succeed())
	return ns.Name
}

func createPod(ctx context.Context, namespace, name string, labels map[string]string) *corev1.Pod {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}},
	}
	Expect(k8sClient.Create(ctx, pod)).To(Succeed())
	return pod
}

func seedIsolation(namespace string) *isolationv1alpha1.WorkloadIsolation {
	return &isolationv1alpha1.WorkloadIsolation{
		ObjectMeta: metav1.ObjectMeta{Name: "local-ai", Namespace: namespace},
		Spec: isolationv1alpha1.WorkloadIsolationSpec{
			Target: isolationv1alpha1.Target{PodSelector: &isolationv1alpha1.LabelSelector{
				MatchLabels: map[string]string{"app.kubernetes.io/name": "local-ai"},
			}},
			Ingress: []isolationv1alpha1.IngressRule{{
				Name:  "nginx",
				From:  []isolationv1alpha1.IngressPeer{{Preset: "ingress-nginx"}},
				Ports: []isolationv1alpha1.Port{{Protocol: corev1.ProtocolTCP, Port: ptr.To(intstr.FromInt32(8080))}},
			}},
		},
	}
}

func getPolicy(ctx context.Context, namespace, name string) func() (*networkingv1.NetworkPolicy, error) {
	return func() (*networkingv1.NetworkPolicy, error) {
		np := &networkingv1.NetworkPolicy{}
		err := k8sClient.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, np)
		return np, err
	}
}

func policyNames(ctx context.Context, namespace string) func() []string {
	return func() []string {
		list := &networkingv1.NetworkPolicyList{}
		Expect(k8sClient.List(ctx, list, client.InNamespace(namespace))).To(Succeed())
		var names []string
		for _, np := range list.Items {
			names = append(names, np.Name)
		}
		return names
	}
}

func getIsolation(ctx context.Context, wi *isolationv1alpha1.WorkloadIsolation) func() *isolationv1alpha1.WorkloadIsolation {
	return func() *isolationv1alpha1.WorkloadIsolation {
		out := &isolationv1alpha1.WorkloadIsolation{}
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(wi), out)).To(Succeed())
		return out
	}
}

// haveCondition matches a WorkloadIsolation whose condition t has the status
// and reason, for the current generation.
func haveCondition(t string, s metav1.ConditionStatus, reason string) OmegaMatcher {
	return WithTransform(func(wi *isolationv1alpha1.WorkloadIsolation) string {
		c := meta.FindStatusCondition(wi.Status.Conditions, t)
		if c == nil {
			return "<absent>"
		}
		if c.ObservedGeneration != wi.Generation || wi.Status.ObservedGeneration != wi.Generation {
			return fmt.Sprintf("stale: observed %d of %d", c.ObservedGeneration, wi.Generation)
		}
		return string(c.Status) + "/" + c.Reason
	}, Equal(string(s)+"/"+reason))
}

func kstatusOf(wi *isolationv1alpha1.WorkloadIsolation) status.Status {
	content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(wi)
	Expect(err).NotTo(HaveOccurred())
	res, err := status.Compute(&unstructured.Unstructured{Object: content})
	Expect(err).NotTo(HaveOccurred())
	return res.Status
}

// updateIsolation applies change to the latest version, retrying on conflicts.
func updateIsolation(ctx context.Context, wi *isolationv1alpha1.WorkloadIsolation, change func(*isolationv1alpha1.WorkloadIsolation)) {
	Eventually(func() error {
		latest := &isolationv1alpha1.WorkloadIsolation{}
		if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(wi), latest); err != nil {
			return err
		}
		change(latest)
		return k8sClient.Update(ctx, latest)
	}, timeout, interval).Should(Succeed())
}

// reconciles returns how many times the manager has reconciled a
// WorkloadIsolation, from controller-runtime's own metric.
func reconciles() float64 {
	families, err := ctrlmetrics.Registry.Gather()
	Expect(err).NotTo(HaveOccurred())
	total := 0.0
	for _, f := range families {
		if f.GetName() != "controller_runtime_reconcile_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "controller" && l.GetValue() == "workloadisolation" {
					total += m.GetCounter().GetValue()
				}
			}
		}
	}
	return total
}

// expectNoRetryLoop waits until the manager has settled, then checks that
// it does not reconcile again for a while. A retry loop with an unchanged
// status writes nothing, so reconciles are counted, not writes.
func expectNoRetryLoop(what string) {
	GinkgoHelper()
	Eventually(func() float64 {
		before := reconciles()
		time.Sleep(500 * time.Millisecond)
		return reconciles() - before
	}, timeout, interval).Should(BeZero())
	before := reconciles()
	Consistently(func() float64 { return reconciles() - before }, settle, interval).Should(BeZero(), "no retry loop on %s", what)
}

// countingReconciler returns a reconciler reading from the manager's cache
// whose writes are counted.
func countingReconciler(writes *atomic.Int64) *controller.WorkloadIsolationReconciler {
	count := func() { writes.Add(1) }
	c := interceptor.NewClient(k8sClient, interceptor.Funcs{
		Get: func(ctx context.Context, _ client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			return reconcilerCache.Get(ctx, key, obj, opts...)
		},
		List: func(ctx context.Context, _ client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
			return reconcilerCache.List(ctx, list, opts...)
		},
		Create: func(ctx context.Context, cl client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			count()
			return cl.Create(ctx, obj, opts...)
		},
		Update: func(ctx context.Context, cl client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			count()
			return cl.Update(ctx, obj, opts...)
		},
		Patch: func(ctx context.Context, cl client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
			count()
			return cl.Patch(ctx, obj, patch, opts...)
		},
		Apply: func(ctx context.Context, cl client.WithWatch, obj runtime.ApplyConfiguration, opts ...client.ApplyOption) error {
			count()
			return cl.Apply(ctx, obj, opts...)
		},
		Delete: func(ctx context.Context, cl client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
			count()
			return cl.Delete(ctx, obj, opts...)
		},
		SubResourcePatch: func(ctx context.Context, cl client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
			count()
			return cl.SubResource(sub).Patch(ctx, obj, patch, opts...)
		},
		SubResourceUpdate: func(ctx context.Context, cl client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
			count()
			return cl.SubResource(sub).Update(ctx, obj, opts...)
		},
	})
	return &controller.WorkloadIsolationReconciler{Client: c, Presets: testPresets, CNI: testDetector}
}

var _ = Describe("WorkloadIsolation controller", func() {
	var (
		ctx context.Context
		ns  string
	)

	BeforeEach(func() {
		ctx = context.Background()
		ns = newNamespace(ctx, "local-ai")
	})

	It("generates exactly the walkthrough's two policies for the seed case and reports Ready", func() {
		createPod(ctx, ns, "local-ai-0", map[string]string{"app.kubernetes.io/name": "local-ai"})
		createPod(ctx, ns, "local-ai-1", map[string]string{"app.kubernetes.io/name": "local-ai"})
		createPod(ctx, ns, "other", map[string]string{"app.kubernetes.io/name": "other"})
		wi := seedIsolation(ns)
		Expect(k8sClient.Create(ctx, wi)).To(Succeed())

		Eventually(getIsolation(ctx, wi), timeout, interval).Should(And(
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionTrue, isolationv1alpha1.ReasonReconciled),
			haveCondition(isolationv1alpha1.ConditionPoliciesApplied, metav1.ConditionTrue, isolationv1alpha1.ReasonApplied),
			haveCondition(isolationv1alpha1.ConditionIsolated, metav1.ConditionTrue, isolationv1alpha1.ReasonOnlyDeclaredSources),
		))
		Eventually(policyNames(ctx, ns), timeout, interval).Should(ConsistOf("local-ai-default-deny", "local-ai-allow-nginx"))

		deny, err := getPolicy(ctx, ns, "local-ai-default-deny")()
		Expect(err).NotTo(HaveOccurred())
		Expect(deny.Spec).To(Equal(networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": "local-ai"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		}))
		allow, err := getPolicy(ctx, ns, "local-ai-allow-nginx")()
		Expect(err).NotTo(HaveOccurred())
		Expect(allow.Spec).To(Equal(networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": "local-ai"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From: []networkingv1.NetworkPolicyPeer{{
					NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "nginx"}},
					PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": "ingress-nginx"}},
				}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(intstr.FromInt32(8080))}},
			}},
		}))
		for _, np := range []*networkingv1.NetworkPolicy{deny, allow} {
			Expect(np.Labels).To(HaveKeyWithValue("app.kubernetes.io/managed-by", "isolator"))
			Expect(metav1.GetControllerOf(np)).To(PointTo(MatchFields(IgnoreExtras, Fields{
				"Kind": Equal("WorkloadIsolation"), "Name": Equal("local-ai"), "BlockOwnerDeletion": Equal(ptr.To(true)),
			})))
			Expect(np.ManagedFields).To(ContainElement(MatchFields(IgnoreExtras, Fields{
				"Manager": Equal(controller.FieldOwner),
			})))
		}

		got := getIsolation(ctx, wi)()
		Expect(got.Status.Policies).To(Equal([]isolationv1alpha1.PolicyReference{
			{Kind: "NetworkPolicy", Name: "local-ai-default-deny"},
			{Kind: "NetworkPolicy", Name: "local-ai-allow-nginx"},
		}))
		Expect(got.Status.PolicyCount).To(Equal(int32(2)))
		Expect(got.Status.Target).To(Equal("app.kubernetes.io/name=local-ai"))
		Expect(got.Status.TargetSelector).To(Equal(&metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": "local-ai"}}))
		Expect(got.Status.SelectedPods).To(Equal(int32(2)))
		Expect(got.Spec.Mode).To(Equal(isolationv1alpha1.ModeEnforce), "mode defaults to Enforce")
		Expect(kstatusOf(got)).To(Equal(status.CurrentStatus))
	})

	It("follows pods coming and going in status.selectedPods", func() {
		wi := seedIsolation(ns)
		Expect(k8sClient.Create(ctx, wi)).To(Succeed())
		Eventually(getIsolation(ctx, wi), timeout, interval).Should(haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionTrue, isolationv1alpha1.ReasonReconciled))
		Expect(getIsolation(ctx, wi)().Status.SelectedPods).To(BeZero())

		pod := createPod(ctx, ns, "local-ai-0", map[string]string{"app.kubernetes.io/name": "local-ai"})
		Eventually(func() int32 { return getIsolation(ctx, wi)().Status.SelectedPods }, timeout, interval).Should(Equal(int32(1)))

		pod.Labels = map[string]string{"app.kubernetes.io/name": "moved-away"}
		Expect(k8sClient.Update(ctx, pod)).To(Succeed())
		Eventually(func() int32 { return getIsolation(ctx, wi)().Status.SelectedPods }, timeout, interval).Should(BeZero())
	})

	Context("drift", func() {
		var wi *isolationv1alpha1.WorkloadIsolation

		BeforeEach(func() {
			wi = seedIsolation(ns)
			Expect(k8sClient.Create(ctx, wi)).To(Succeed())
			Eventually(policyNames(ctx, ns), timeout, interval).Should(HaveLen(2))
		})

		It("restores a generated policy that was deleted by hand", func() {
			np, err := getPolicy(ctx, ns, "local-ai-allow-nginx")()
			Expect(err).NotTo(HaveOccurred())
			Expect(k8sClient.Delete(ctx, np)).To(Succeed())
			Eventually(func() (types.UID, error) {
				restored, err := getPolicy(ctx, ns, "local-ai-allow-nginx")()
				return restored.UID, err
			}, timeout, interval).ShouldNot(Equal(np.UID))
		})

		It("restores the allowed port after someone widens it", func() {
			np, err := getPolicy(ctx, ns, "local-ai-allow-nginx")()
			Expect(err).NotTo(HaveOccurred())
			np.Spec.Ingress[0].Ports[0].Port = ptr.To(intstr.FromInt32(9090))
			Expect(k8sClient.Update(ctx, np)).To(Succeed())
			Eventually(func() (intstr.IntOrString, error) {
				np, err := getPolicy(ctx, ns, "local-ai-allow-nginx")()
				if err != nil {
					return intstr.IntOrString{}, err
				}
				return *np.Spec.Ingress[0].Ports[0].Port, nil
			}, timeout, interval).Should(Equal(intstr.FromInt32(8080)))
		})

		It("removes an ingress rule someone added to the default-deny policy", func() {
			np, err := getPolicy(ctx, ns, "local-ai-default-deny")()
			Expect(err).NotTo(HaveOccurred())
			np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{}} // allow everything
			Expect(k8sClient.Update(ctx, np)).To(Succeed())
			Eventually(func() ([]networkingv1.NetworkPolicyIngressRule, error) {
				np, err := getPolicy(ctx, ns, "local-ai-default-deny")()
				return np.Spec.Ingress, err
			}, timeout, interval).Should(BeEmpty())
		})

		It("restores the generated label when someone removes it", func() {
			np, err := getPolicy(ctx, ns, "local-ai-default-deny")()
			Expect(err).NotTo(HaveOccurred())
			delete(np.Labels, "app.kubernetes.io/managed-by")
			Expect(k8sClient.Update(ctx, np)).To(Succeed())
			Eventually(func() (map[string]string, error) {
				np, err := getPolicy(ctx, ns, "local-ai-default-deny")()
				return np.Labels, err
			}, timeout, interval).Should(HaveKeyWithValue("app.kubernetes.io/managed-by", "isolator"))
		})
	})

	It("prunes the policy of a removed rule and replaces the policy of a renamed rule", func() {
		wi := seedIsolation(ns)
		wi.Spec.Ingress = append(wi.Spec.Ingress, isolationv1alpha1.IngressRule{
			Name: "monitoring", From: []isolationv1alpha1.IngressPeer{{Preset: "monitoring"}},
		})
		Expect(k8sClient.Create(ctx, wi)).To(Succeed())
		Eventually(policyNames(ctx, ns), timeout, interval).Should(ConsistOf(
			"local-ai-default-deny", "local-ai-allow-nginx", "local-ai-allow-monitoring"))

		updateIsolation(ctx, wi, func(wi *isolationv1alpha1.WorkloadIsolation) { wi.Spec.Ingress = wi.Spec.Ingress[:1] })
		Eventually(policyNames(ctx, ns), timeout, interval).Should(ConsistOf("local-ai-default-deny", "local-ai-allow-nginx"))

		updateIsolation(ctx, wi, func(wi *isolationv1alpha1.WorkloadIsolation) { wi.Spec.Ingress[0].Name = "ingress" })
		Eventually(policyNames(ctx, ns), timeout, interval).Should(ConsistOf("local-ai-default-deny", "local-ai-allow-ingress"))

		updateIsolation(ctx, wi, func(wi *isolationv1alpha1.WorkloadIsolation) { wi.Spec.Ingress = nil })
		Eventually(policyNames(ctx, ns), timeout, interval).Should(ConsistOf("local-ai-default-deny"))
		Eventually(func() []isolationv1alpha1.PolicyReference { return getIsolation(ctx, wi)().Status.Policies }, timeout, interval).
			Should(Equal([]isolationv1alpha1.PolicyReference{{Kind: "NetworkPolicy", Name: "local-ai-default-deny"}}))
	})

	It("makes no writes once converged, whether reconciled directly or left idle", func() {
		wi := seedIsolation(ns)
		createPod(ctx, ns, "local-ai-0", map[string]string{"app.kubernetes.io/name": "local-ai"})
		Expect(k8sClient.Create(ctx, wi)).To(Succeed())
		Eventually(getIsolation(ctx, wi), timeout, interval).Should(And(
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionTrue, isolationv1alpha1.ReasonReconciled),
			WithTransform(func(wi *isolationv1alpha1.WorkloadIsolation) int32 { return wi.Status.SelectedPods }, Equal(int32(1))),
		))
		// Let the manager's cache catch up with its own last writes.
		Eventually(func() int64 {
			before := managerWrites.Load()
			time.Sleep(500 * time.Millisecond)
			return managerWrites.Load() - before
		}, timeout, interval).Should(BeZero())

		var writes atomic.Int64
		r := countingReconciler(&writes)
		for range 20 {
			_, err := r.Reconcile(ctx, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(wi)})
			Expect(err).NotTo(HaveOccurred())
		}
		Expect(writes.Load()).To(BeZero(), "20 reconciles of an unchanged resource must not write")

		before := managerWrites.Load()
		Consistently(func() int64 { return managerWrites.Load() - before }, settle, interval).Should(BeZero())
	})

	It("deletes nothing when the target workload disappears, waits, and follows the recreated workload's selector", func() {
		deploy := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "local-ai-local-ai", Namespace: ns},
			Spec: appsv1.DeploymentSpec{
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": "local-ai"}},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app.kubernetes.io/name": "local-ai"}},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "api", Image: "localai/localai:v2"}}},
				},
			},
		}
		Expect(k8sClient.Create(ctx, deploy.DeepCopy())).To(Succeed())
		wi := seedIsolation(ns)
		wi.Spec.Target = isolationv1alpha1.Target{WorkloadRef: &isolationv1alpha1.WorkloadRef{Kind: "Deployment", Name: deploy.Name}}
		Expect(k8sClient.Create(ctx, wi)).To(Succeed())
		Eventually(getIsolation(ctx, wi), timeout, interval).Should(haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionTrue, isolationv1alpha1.ReasonReconciled))
		Expect(getIsolation(ctx, wi)().Status.Target).To(Equal("app.kubernetes.io/name=local-ai"))

		Expect(k8sClient.Delete(ctx, deploy)).To(Succeed())
		Eventually(getIsolation(ctx, wi), timeout, interval).Should(And(
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionFalse, isolationv1alpha1.ReasonTargetNotFound),
			haveCondition(isolationv1alpha1.ConditionPoliciesApplied, metav1.ConditionFalse, isolationv1alpha1.ReasonTargetNotFound),
		))
		Consistently(policyNames(ctx, ns), settle, interval).Should(ConsistOf("local-ai-default-deny", "local-ai-allow-nginx"),
			"policies must stay in place while the target is missing")
		Expect(kstatusOf(getIsolation(ctx, wi)())).To(Equal(status.InProgressStatus))

		recreated := deploy.DeepCopy()
		recreated.ResourceVersion = ""
		recreated.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": "local-ai", "tier": "api"}}
		recreated.Spec.Template.Labels = map[string]string{"app.kubernetes.io/name": "local-ai", "tier": "api"}
		Expect(k8sClient.Create(ctx, recreated)).To(Succeed())
		Eventually(getIsolation(ctx, wi), timeout, interval).Should(haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionTrue, isolationv1alpha1.ReasonReconciled))
		Eventually(func() (map[string]string, error) {
			np, err := getPolicy(ctx, ns, "local-ai-default-deny")()
			return np.Spec.PodSelector.MatchLabels, err
		}, timeout, interval).Should(Equal(map[string]string{"app.kubernetes.io/name": "local-ai", "tier": "api"}))

		events := &eventsv1.EventList{}
		Eventually(func() []string {
			Expect(k8sClient.List(ctx, events, client.InNamespace(ns))).To(Succeed())
			var reasons []string
			for _, e := range events.Items {
				if e.Regarding.Name == wi.Name && e.Type == corev1.EventTypeWarning {
					reasons = append(reasons, e.Reason)
				}
			}
			return reasons
		}, timeout, interval).Should(ContainElement(isolationv1alpha1.ReasonTargetNotFound))
	})

	It("keeps the last applied policies and stalls, without retrying, on an unknown preset", func() {
		wi := seedIsolation(ns)
		Expect(k8sClient.Create(ctx, wi)).To(Succeed())
		Eventually(policyNames(ctx, ns), timeout, interval).Should(HaveLen(2))

		updateIsolation(ctx, wi, func(wi *isolationv1alpha1.WorkloadIsolation) {
			wi.Spec.Ingress[0].From[0].Preset = "ingress-nginxx"
		})
		Eventually(getIsolation(ctx, wi), timeout, interval).Should(And(
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionFalse, isolationv1alpha1.ReasonUnknownPreset),
			haveCondition(isolationv1alpha1.ConditionStalled, metav1.ConditionTrue, isolationv1alpha1.ReasonUnknownPreset),
		))
		ready := meta.FindStatusCondition(getIsolation(ctx, wi)().Status.Conditions, isolationv1alpha1.ConditionReady)
		Expect(ready.Message).To(ContainSubstring(`unknown preset "ingress-nginxx"`))
		Expect(ready.Message).To(ContainSubstring("ingress-nginx"), "the message lists the known presets")
		Expect(kstatusOf(getIsolation(ctx, wi)())).To(Equal(status.FailedStatus))

		expectNoRetryLoop("an unknown preset")
		np, err := getPolicy(ctx, ns, "local-ai-allow-nginx")()
		Expect(err).NotTo(HaveOccurred())
		Expect(np.Spec.Ingress[0].From[0].PodSelector.MatchLabels).To(HaveKeyWithValue("app.kubernetes.io/name", "ingress-nginx"))

		updateIsolation(ctx, wi, func(wi *isolationv1alpha1.WorkloadIsolation) {
			wi.Spec.Ingress[0].From[0].Preset = "ingress-nginx"
		})
		Eventually(getIsolation(ctx, wi), timeout, interval).Should(And(
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionTrue, isolationv1alpha1.ReasonReconciled),
			WithTransform(func(wi *isolationv1alpha1.WorkloadIsolation) *metav1.Condition {
				return meta.FindStatusCondition(wi.Status.Conditions, isolationv1alpha1.ConditionStalled)
			}, BeNil()),
		))
	})

	It("resolves administrator presets and points a preset at another namespace", func() {
		wi := seedIsolation(ns)
		wi.Spec.Ingress = []isolationv1alpha1.IngressRule{
			{Name: "metrics", From: []isolationv1alpha1.IngressPeer{{Preset: "monitoring"}}},
			{Name: "ingress", From: []isolationv1alpha1.IngressPeer{{Preset: "ingress-nginx", PresetNamespace: "ingress-system"}}},
		}
		Expect(k8sClient.Create(ctx, wi)).To(Succeed())
		Eventually(getPolicy(ctx, ns, "local-ai-allow-metrics"), timeout, interval).Should(WithTransform(
			func(np *networkingv1.NetworkPolicy) map[string]string {
				return np.Spec.Ingress[0].From[0].PodSelector.MatchLabels
			},
			HaveKeyWithValue("app.kubernetes.io/name", "prometheus")))
		Eventually(getPolicy(ctx, ns, "local-ai-allow-ingress"), timeout, interval).Should(WithTransform(
			func(np *networkingv1.NetworkPolicy) map[string]string {
				return np.Spec.Ingress[0].From[0].NamespaceSelector.MatchLabels
			},
			Equal(map[string]string{"kubernetes.io/metadata.name": "ingress-system"})))
	})

	It("writes no policy in Audit mode, lists what it would write, and removes earlier policies when switched to Audit", func() {
		wi := seedIsolation(ns)
		wi.Spec.Mode = isolationv1alpha1.ModeAudit
		Expect(k8sClient.Create(ctx, wi)).To(Succeed())
		Eventually(getIsolation(ctx, wi), timeout, interval).Should(And(
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionTrue, isolationv1alpha1.ReasonAuditOnly),
			haveCondition(isolationv1alpha1.ConditionPoliciesApplied, metav1.ConditionFalse, isolationv1alpha1.ReasonAuditOnly),
		))
		Expect(getIsolation(ctx, wi)().Status.Policies).To(HaveLen(2))
		Consistently(policyNames(ctx, ns), settle, interval).Should(BeEmpty())

		updateIsolation(ctx, wi, func(wi *isolationv1alpha1.WorkloadIsolation) { wi.Spec.Mode = isolationv1alpha1.ModeEnforce })
		Eventually(policyNames(ctx, ns), timeout, interval).Should(HaveLen(2))
		updateIsolation(ctx, wi, func(wi *isolationv1alpha1.WorkloadIsolation) { wi.Spec.Mode = isolationv1alpha1.ModeAudit })
		Eventually(policyNames(ctx, ns), timeout, interval).Should(BeEmpty())
	})

	It("keeps generated names valid and stable for long names", func() {
		wi := seedIsolation(ns)
		wi.Name = strings.Repeat("a", 60)
		wi.Spec.Ingress[0].Name = strings.Repeat("b", 63)
		Expect(k8sClient.Create(ctx, wi)).To(Succeed())
		Eventually(getIsolation(ctx, wi), timeout, interval).Should(haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionTrue, isolationv1alpha1.ReasonReconciled))
		for _, ref := range getIsolation(ctx, wi)().Status.Policies {
			Expect(len(ref.Name)).To(BeNumerically("<=", 63))
			_, err := getPolicy(ctx, ns, ref.Name)()
			Expect(err).NotTo(HaveOccurred())
		}
	})

	It("leaves nothing behind when the WorkloadIsolation is deleted (garbage collection)", func() {
		wi := seedIsolation(ns)
		Expect(k8sClient.Create(ctx, wi)).To(Succeed())
		Eventually(policyNames(ctx, ns), timeout, interval).Should(HaveLen(2))
		Expect(k8sClient.Delete(ctx, wi)).To(Succeed())
		Eventually(policyNames(ctx, ns), 30*time.Second, interval).Should(BeEmpty())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8sClient.Get(ctx, client.ObjectKeyFromObject(wi), &isolationv1alpha1.WorkloadIsolation{}))
		}, timeout, interval).Should(BeTrue())
	})
})
