package controller_test

import (
	"context"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
)

// adminDeny is a policy an administrator wrote, whose name happens to be one
// the operator would generate.
func adminDeny(namespace, name string) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: map[string]string{"team": "platform"}},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
		},
	}
}

// unchanged matches a policy that still is, field for field, what was read.
func unchanged(ctx context.Context, np *networkingv1.NetworkPolicy) func() (string, error) {
	return func() (string, error) {
		got, err := getPolicy(ctx, np.Namespace, np.Name)()
		if err != nil {
			return "", err
		}
		if got.UID != np.UID || got.ResourceVersion != np.ResourceVersion || len(got.OwnerReferences) > 0 {
			return "changed", nil
		}
		return "unchanged", nil
	}
}

func readyMessage(wi *isolationv1alpha1.WorkloadIsolation) string {
	if c := meta.FindStatusCondition(wi.Status.Conditions, isolationv1alpha1.ConditionReady); c != nil {
		return c.Message
	}
	return ""
}

// idle waits until the manager has made no write for a while, and returns
// how many it made in the settle window that follows.
func writesWhileIdle() int64 {
	before := managerWrites.Load()
	time.Sleep(settle)
	return managerWrites.Load() - before
}

var _ = Describe("Ownership", func() {
	var (
		ctx context.Context
		ns  string
	)

	BeforeEach(func() {
		ctx = context.Background()
		ns = newNamespace(ctx, "tenant")
	})

	It("never modifies or deletes a foreign policy that carries a generated name", func() {
		platform := adminDeny(ns, "platform-default-deny")
		Expect(k8sClient.Create(ctx, platform)).To(Succeed())

		wi := seedIsolation(ns)
		wi.Name = "platform"
		Expect(k8sClient.Create(ctx, wi)).To(Succeed())
		Eventually(getIsolation(ctx, wi), timeout, interval).Should(And(
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionFalse, isolationv1alpha1.ReasonNameConflict),
			haveCondition(isolationv1alpha1.ConditionPoliciesApplied, metav1.ConditionFalse, isolationv1alpha1.ReasonNameConflict),
			WithTransform(readyMessage, ContainSubstring("platform-default-deny")),
		))
		Consistently(unchanged(ctx, platform), settle, interval).Should(Equal("unchanged"))
		Expect(policyNames(ctx, ns)()).To(ConsistOf("platform-default-deny"),
			"no allow policy may be written while the default-deny is not the operator's")
		Expect(getIsolation(ctx, wi)().Status.Policies).To(BeEmpty(), "status lists only policies in place")

		// Deleting the WorkloadIsolation must leave the administrator's
		// policy alone (the garbage collector runs in this suite).
		Expect(k8sClient.Delete(ctx, wi)).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8sClient.Get(ctx, client.ObjectKeyFromObject(wi), &isolationv1alpha1.WorkloadIsolation{}))
		}, timeout, interval).Should(BeTrue())
		Consistently(unchanged(ctx, platform), settle, interval).Should(Equal("unchanged"))
	})

	It("takes a generated name once the foreign policy holding it is gone", func() {
		foreignAllow := adminDeny(ns, "local-ai-allow-nginx")
		Expect(k8sClient.Create(ctx, foreignAllow)).To(Succeed())
		wi := seedIsolation(ns)
		Expect(k8sClient.Create(ctx, wi)).To(Succeed())
		Eventually(getIsolation(ctx, wi), timeout, interval).Should(
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionFalse, isolationv1alpha1.ReasonNameConflict))
		Eventually(policyNames(ctx, ns), timeout, interval).Should(ConsistOf("local-ai-allow-nginx", "local-ai-default-deny"),
			"the default-deny only restricts and is written")
		Consistently(unchanged(ctx, foreignAllow), settle, interval).Should(Equal("unchanged"))

		Expect(k8sClient.Delete(ctx, foreignAllow)).To(Succeed())
		Eventually(getIsolation(ctx, wi), timeout, interval).Should(
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionTrue, isolationv1alpha1.ReasonReconciled))
		np, err := getPolicy(ctx, ns, "local-ai-allow-nginx")()
		Expect(err).NotTo(HaveOccurred())
		Expect(metav1.GetControllerOf(np)).NotTo(BeNil())
	})

	It("does not adopt a policy created at a generated name while in Audit mode", func() {
		wi := seedIsolation(ns)
		wi.Spec.Mode = isolationv1alpha1.ModeAudit
		Expect(k8sClient.Create(ctx, wi)).To(Succeed())
		Eventually(getIsolation(ctx, wi), timeout, interval).Should(
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionTrue, isolationv1alpha1.ReasonAuditOnly))
		meanwhile := adminDeny(ns, "local-ai-default-deny")
		Expect(k8sClient.Create(ctx, meanwhile)).To(Succeed())

		updateIsolation(ctx, wi, func(wi *isolationv1alpha1.WorkloadIsolation) { wi.Spec.Mode = isolationv1alpha1.ModeEnforce })
		Eventually(getIsolation(ctx, wi), timeout, interval).Should(
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionFalse, isolationv1alpha1.ReasonNameConflict))
		Consistently(unchanged(ctx, meanwhile), settle, interval).Should(Equal("unchanged"))
	})

	It("reports colliding generated names on both resources and writes nothing contested", func() {
		// "a" with rule "b-default-deny" and "a-allow-b" both generate
		// a-allow-b-default-deny.
		a := seedIsolation(ns)
		a.Name = "a"
		a.Spec.Ingress[0].Name = "b-default-deny"
		Expect(k8sClient.Create(ctx, a)).To(Succeed())
		Eventually(getIsolation(ctx, a), timeout, interval).Should(
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionTrue, isolationv1alpha1.ReasonReconciled))
		contested, err := getPolicy(ctx, ns, "a-allow-b-default-deny")()
		Expect(err).NotTo(HaveOccurred())

		b := seedIsolation(ns)
		b.Name = "a-allow-b"
		b.Spec.Ingress = nil
		Expect(k8sClient.Create(ctx, b)).To(Succeed())
		for _, wi := range []*isolationv1alpha1.WorkloadIsolation{a, b} {
			Eventually(getIsolation(ctx, wi), timeout, interval).Should(And(
				haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionFalse, isolationv1alpha1.ReasonNameConflict),
				WithTransform(readyMessage, ContainSubstring("a-allow-b-default-deny")),
			), "collision reported on %s", wi.Name)
		}
		Consistently(func() (string, error) {
			np, err := getPolicy(ctx, ns, "a-allow-b-default-deny")()
			return np.ResourceVersion, err
		}, settle, interval).Should(Equal(contested.ResourceVersion), "the contested policy must not flip between owners")
		Expect(writesWhileIdle()).To(BeZero())

		Expect(k8sClient.Delete(ctx, b)).To(Succeed())
		Eventually(getIsolation(ctx, a), timeout, interval).Should(
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionTrue, isolationv1alpha1.ReasonReconciled))
	})
})

var _ = Describe("Drift repair", func() {
	var (
		ctx context.Context
		ns  string
		wi  *isolationv1alpha1.WorkloadIsolation
	)

	BeforeEach(func() {
		ctx = context.Background()
		ns = newNamespace(ctx, "drift")
		wi = seedIsolation(ns)
		Expect(k8sClient.Create(ctx, wi)).To(Succeed())
		Eventually(getIsolation(ctx, wi), timeout, interval).Should(
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionTrue, isolationv1alpha1.ReasonReconciled))
	})

	It("removes an egress rule another field manager added to the default-deny, and goes idle", func() {
		np, err := getPolicy(ctx, ns, "local-ai-default-deny")()
		Expect(err).NotTo(HaveOccurred())
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
		np.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{}}}}}
		before := managerWrites.Load()
		Expect(k8sClient.Update(ctx, np, client.FieldOwner("kubectl-edit"))).To(Succeed())
		Eventually(func() (networkingv1.NetworkPolicySpec, error) {
			np, err := getPolicy(ctx, ns, "local-ai-default-deny")()
			return np.Spec, err
		}, timeout, interval).Should(Equal(networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": "local-ai"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		}))
		Eventually(writesWhileIdle, 3*timeout, interval).Should(BeZero())
		GinkgoWriter.Printf("writes from the edit until idle: %d\n", managerWrites.Load()-before)
		AddReportEntry("writes after a foreign egress edit", managerWrites.Load()-before)
		Expect(managerWrites.Load()-before).To(BeNumerically("<=", 10), "a repair converges in a few writes")
	})

	It("keeps repairing a policy another writer keeps re-opening, and says so", func() {
		before := managerWrites.Load()
		edits := 0
		for range 8 {
			np, err := getPolicy(ctx, ns, "local-ai-allow-nginx")()
			Expect(err).NotTo(HaveOccurred())
			if np.Spec.Ingress[0].Ports != nil {
				np.Spec.Ingress[0].Ports = nil // every port
				Expect(client.IgnoreNotFound(k8sClient.Update(ctx, np, client.FieldOwner("gitops-sync")))).To(Succeed())
				edits++
			}
			time.Sleep(300 * time.Millisecond)
		}
		Eventually(getIsolation(ctx, wi), timeout, interval).Should(And(
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionFalse, isolationv1alpha1.ReasonContested),
			WithTransform(readyMessage, ContainSubstring("local-ai-allow-nginx")),
		))
		Expect(readyMessage(getIsolation(ctx, wi)())).To(ContainSubstring("gitops-sync"))
		np, err := getPolicy(ctx, ns, "local-ai-allow-nginx")()
		Expect(err).NotTo(HaveOccurred())
		Expect(np.Spec.Ingress[0].Ports).NotTo(BeEmpty(), "the isolation wins each time")
		GinkgoWriter.Printf("%d foreign edits, %d operator writes\n", edits, managerWrites.Load()-before)
		Expect(managerWrites.Load()-before).To(BeNumerically("<=", 3*edits), "one repair per edit, not a storm")

		// Once the other writer stops, the resource turns healthy again.
		Eventually(getIsolation(ctx, wi), 3*timeout, interval).Should(
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionTrue, isolationv1alpha1.ReasonReconciled))
	})

	It("does not report the policy of a rule it just removed", func() {
		updateIsolation(ctx, wi, func(wi *isolationv1alpha1.WorkloadIsolation) {
			wi.Spec.Ingress = append(wi.Spec.Ingress, isolationv1alpha1.IngressRule{
				Name: "everyone", From: []isolationv1alpha1.IngressPeer{{NamespaceSelector: &isolationv1alpha1.LabelSelector{}}},
			})
		})
		Eventually(policyNames(ctx, ns), timeout, interval).Should(ContainElement("local-ai-allow-everyone"))
		Eventually(getIsolation(ctx, wi), timeout, interval).Should(
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionTrue, isolationv1alpha1.ReasonReconciled))
		since := metav1.NowMicro()

		updateIsolation(ctx, wi, func(wi *isolationv1alpha1.WorkloadIsolation) { wi.Spec.Ingress = wi.Spec.Ingress[:1] })
		Eventually(policyNames(ctx, ns), timeout, interval).ShouldNot(ContainElement("local-ai-allow-everyone"))
		Consistently(func() []string {
			events := &eventsv1.EventList{}
			Expect(k8sClient.List(ctx, events, client.InNamespace(ns))).To(Succeed())
			var warnings []string
			for _, e := range events.Items {
				if e.Regarding.Name == wi.Name && e.Type == corev1.EventTypeWarning && !e.EventTime.Before(&since) {
					warnings = append(warnings, e.Reason+": "+e.Note)
				}
			}
			return warnings
		}, settle, interval).Should(BeEmpty(), "removing a rule must not flap Isolated")
		Expect(getIsolation(ctx, wi)()).To(
			haveCondition(isolationv1alpha1.ConditionIsolated, metav1.ConditionTrue, isolationv1alpha1.ReasonOnlyDeclaredSources))
	})
})

var _ = Describe("Declared sources", func() {
	It("warns, without failing Ready, while a presetNamespace does not exist", func() {
		ctx := context.Background()
		ns := newNamespace(ctx, "sources")
		target := fmt.Sprintf("ingress-%d", nsCounter.Add(1))
		wi := seedIsolation(ns)
		wi.Spec.Ingress[0].From[0].PresetNamespace = target
		Expect(k8sClient.Create(ctx, wi)).To(Succeed())
		Eventually(getIsolation(ctx, wi), timeout, interval).Should(And(
			haveCondition(isolationv1alpha1.ConditionSourcesFound, metav1.ConditionFalse, isolationv1alpha1.ReasonNamespaceNotFound),
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionTrue, isolationv1alpha1.ReasonReconciled),
		))
		c := meta.FindStatusCondition(getIsolation(ctx, wi)().Status.Conditions, isolationv1alpha1.ConditionSourcesFound)
		Expect(c.Message).To(ContainSubstring("rule nginx: preset ingress-nginx points at namespace " + target + ", which does not exist"))

		Expect(k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: target}})).To(Succeed())
		Eventually(getIsolation(ctx, wi), timeout, interval).Should(
			haveCondition(isolationv1alpha1.ConditionSourcesFound, metav1.ConditionTrue, isolationv1alpha1.ReasonSourcesFound))
	})
})

var _ = Describe("Named ports", func() {
	It("warns, without failing Ready, while no target container declares a named port", func() {
		ctx := context.Background()
		ns := newNamespace(ctx, "ports")
		createPod(ctx, ns, "local-ai-0", map[string]string{"app.kubernetes.io/name": "local-ai"})
		wi := seedIsolation(ns)
		wi.Spec.Ingress[0].Ports[0].Port = ptr.To(intstr.FromString("http-api"))
		Expect(k8sClient.Create(ctx, wi)).To(Succeed())
		Eventually(getIsolation(ctx, wi), timeout, interval).Should(And(
			haveCondition(isolationv1alpha1.ConditionSourcesFound, metav1.ConditionFalse, isolationv1alpha1.ReasonNamedPortNotDeclared),
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionTrue, isolationv1alpha1.ReasonReconciled),
		))
		c := meta.FindStatusCondition(getIsolation(ctx, wi)().Status.Conditions, isolationv1alpha1.ConditionSourcesFound)
		Expect(c.Message).To(Equal("rule nginx: named port http-api is declared by no container of the target pods"))

		Expect(k8sClient.DeleteAllOf(ctx, &corev1.Pod{}, client.InNamespace(ns))).To(Succeed())
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "local-ai-1", Namespace: ns, Labels: map[string]string{"app.kubernetes.io/name": "local-ai"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "api", Image: "localai/localai:v2",
				Ports: []corev1.ContainerPort{{Name: "http-api", ContainerPort: 8080}}}}},
		}
		Expect(k8sClient.Create(ctx, pod)).To(Succeed())
		Eventually(getIsolation(ctx, wi), timeout, interval).Should(
			haveCondition(isolationv1alpha1.ConditionSourcesFound, metav1.ConditionTrue, isolationv1alpha1.ReasonSourcesFound))
	})
})

var _ = Describe("Objects the API server rejects", func() {
	It("stalls with the server's message instead of retrying for ever", func() {
		ctx := context.Background()
		ns := newNamespace(ctx, "invalid")
		wi := seedIsolation(ns)
		wi.Spec.Ingress[0].From[0].Preset = "legacy-lan"
		Expect(k8sClient.Create(ctx, wi)).To(Succeed())
		Eventually(getIsolation(ctx, wi), timeout, interval).Should(And(
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionFalse, isolationv1alpha1.ReasonInvalidSpec),
			haveCondition(isolationv1alpha1.ConditionStalled, metav1.ConditionTrue, isolationv1alpha1.ReasonInvalidSpec),
			WithTransform(readyMessage, ContainSubstring("10.0.0.1/8")),
		))
		expectNoRetryLoop("a 422")
	})
})

var _ = Describe("Verdicts that cannot be verified", func() {
	var (
		ctx context.Context
		ns  string
	)

	BeforeEach(func() {
		ctx = context.Background()
		ns = newNamespace(ctx, "verify")
		createPod(ctx, ns, "local-ai-0", map[string]string{"app.kubernetes.io/name": "local-ai"})
	})

	It("does not keep Isolated=True while the spec cannot be resolved", func() {
		wi := seedIsolation(ns)
		Expect(k8sClient.Create(ctx, wi)).To(Succeed())
		Eventually(getIsolation(ctx, wi), timeout, interval).Should(
			haveCondition(isolationv1alpha1.ConditionIsolated, metav1.ConditionTrue, isolationv1alpha1.ReasonOnlyDeclaredSources))

		updateIsolation(ctx, wi, func(wi *isolationv1alpha1.WorkloadIsolation) { wi.Spec.Ingress[0].From[0].Preset = "no-such-preset" })
		Expect(k8sClient.Create(ctx, &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: "open", Namespace: ns},
			Spec:       networkingv1.NetworkPolicySpec{Ingress: []networkingv1.NetworkPolicyIngressRule{{}}},
		})).To(Succeed())
		Eventually(getIsolation(ctx, wi), timeout, interval).Should(And(
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionFalse, isolationv1alpha1.ReasonUnknownPreset),
			haveCondition(isolationv1alpha1.ConditionIsolated, metav1.ConditionUnknown, isolationv1alpha1.ReasonNotVerified),
		))
	})

	It("keeps restoring the policies of a workload that was deleted while its pods run on", func() {
		deploy := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "local-ai", Namespace: ns},
			Spec: appsv1.DeploymentSpec{
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": "local-ai"}},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app.kubernetes.io/name": "local-ai"}},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "api", Image: "localai/localai:v2"}}},
				},
			},
		}
		Expect(k8sClient.Create(ctx, deploy)).To(Succeed())
		wi := seedIsolation(ns)
		wi.Spec.Target = isolationv1alpha1.Target{WorkloadRef: &isolationv1alpha1.WorkloadRef{Kind: "Deployment", Name: deploy.Name}}
		Expect(k8sClient.Create(ctx, wi)).To(Succeed())
		Eventually(getIsolation(ctx, wi), timeout, interval).Should(
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionTrue, isolationv1alpha1.ReasonReconciled))

		// An orphaning delete: the pods stay (there is no Deployment
		// controller here, so they would anyway).
		Expect(k8sClient.Delete(ctx, deploy, client.PropagationPolicy(metav1.DeletePropagationOrphan))).To(Succeed())
		Eventually(getIsolation(ctx, wi), timeout, interval).Should(
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionFalse, isolationv1alpha1.ReasonTargetNotFound))
		np, err := getPolicy(ctx, ns, "local-ai-default-deny")()
		Expect(err).NotTo(HaveOccurred())
		Expect(k8sClient.Delete(ctx, np)).To(Succeed())
		Eventually(func() (types.UID, error) {
			restored, err := getPolicy(ctx, ns, "local-ai-default-deny")()
			return restored.UID, err
		}, timeout, interval).ShouldNot(Equal(np.UID))
		Expect(getIsolation(ctx, wi)()).To(
			haveCondition(isolationv1alpha1.ConditionIsolated, metav1.ConditionTrue, isolationv1alpha1.ReasonOnlyDeclaredSources))
	})
})
