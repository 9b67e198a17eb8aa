package controller_test

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
)

func exposures(wi *isolationv1alpha1.WorkloadIsolation) []isolationv1alpha1.Exposure {
	return wi.Status.Exposure
}

var _ = Describe("Isolation analysis", func() {
	var (
		ctx context.Context
		ns  string
		wi  *isolationv1alpha1.WorkloadIsolation
	)

	BeforeEach(func() {
		ctx = context.Background()
		ns = newNamespace(ctx, "local-ai")
		createPod(ctx, ns, "local-ai-0", map[string]string{"app.kubernetes.io/name": "local-ai"})
		wi = seedIsolation(ns)
		Expect(k8sClient.Create(ctx, wi)).To(Succeed())
		Eventually(getIsolation(ctx, wi), timeout, interval).Should(And(
			haveCondition(isolationv1alpha1.ConditionIsolated, metav1.ConditionTrue, isolationv1alpha1.ReasonOnlyDeclaredSources),
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionTrue, isolationv1alpha1.ReasonReconciled),
		))
	})

	It("reports an allow-all policy added by someone else, and recovers when it is removed", func() {
		allowAll := &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: "allow-all-ingress", Namespace: ns},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{},
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
				Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{}}}}},
			},
		}
		start := time.Now()
		Expect(k8sClient.Create(ctx, allowAll)).To(Succeed())
		Eventually(getIsolation(ctx, wi), timeout, 10*time.Millisecond).Should(And(
			haveCondition(isolationv1alpha1.ConditionIsolated, metav1.ConditionFalse, isolationv1alpha1.ReasonWidenedByPolicy),
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionFalse, isolationv1alpha1.ReasonWidenedByPolicy),
		))
		AddReportEntry("allow-all policy to Isolated=False", time.Since(start).String())
		GinkgoWriter.Printf("allow-all policy reported after %s\n", time.Since(start))

		got := getIsolation(ctx, wi)()
		Expect(exposures(got)).To(Equal([]isolationv1alpha1.Exposure{{
			Policy: "allow-all-ingress", Direction: "Ingress", Summary: "allow-all-ingress: all pods in all namespaces, all ports",
		}}))
		isolated := meta.FindStatusCondition(got.Status.Conditions, isolationv1alpha1.ConditionIsolated)
		Expect(isolated.Message).To(ContainSubstring("allow-all-ingress"))
		Expect(policyNames(ctx, ns)()).To(ContainElements("local-ai-default-deny", "local-ai-allow-nginx"), "the operator never deletes a foreign policy")

		Expect(k8sClient.Delete(ctx, allowAll)).To(Succeed())
		Eventually(getIsolation(ctx, wi), timeout, interval).Should(And(
			haveCondition(isolationv1alpha1.ConditionIsolated, metav1.ConditionTrue, isolationv1alpha1.ReasonOnlyDeclaredSources),
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionTrue, isolationv1alpha1.ReasonReconciled),
			WithTransform(exposures, BeEmpty()),
		))
	})

	It("does not report a narrower policy, such as a chart's own", func() {
		chart := &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: "local-ai-chart", Namespace: ns},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": "local-ai"}},
				Ingress: []networkingv1.NetworkPolicyIngressRule{{
					From: []networkingv1.NetworkPolicyPeer{{
						NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "nginx"}},
						PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": "ingress-nginx", "app.kubernetes.io/component": "controller"}},
					}},
					Ports: []networkingv1.NetworkPolicyPort{{Port: ptr.To(intstr.FromInt32(8080))}},
				}},
			},
		}
		Expect(k8sClient.Create(ctx, chart)).To(Succeed())
		Consistently(getIsolation(ctx, wi), settle, interval).Should(
			haveCondition(isolationv1alpha1.ConditionIsolated, metav1.ConditionTrue, isolationv1alpha1.ReasonOnlyDeclaredSources))
	})

	It("re-evaluates when a namespace gains the labels a foreign policy selects", func() {
		team := &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: "allow-team-ml", Namespace: ns},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{},
				Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{
					NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "ml-" + ns}},
				}}}},
			},
		}
		Expect(k8sClient.Create(ctx, team)).To(Succeed())
		// No namespace has the label yet: the grant is latent, and reported
		// all the same (it opens the workload the moment one does).
		Eventually(getIsolation(ctx, wi), timeout, interval).Should(And(
			haveCondition(isolationv1alpha1.ConditionIsolated, metav1.ConditionFalse, isolationv1alpha1.ReasonWidenedByPolicy),
			WithTransform(exposures, ConsistOf(HaveField("Summary", And(
				HavePrefix("allow-team-ml: all pods in namespaces team=ml-"+ns+", all ports"), ContainSubstring("(latent"))))),
		))

		other := &corev1.Namespace{}
		Expect(k8sClient.Get(ctx, client.ObjectKey{Name: newNamespace(ctx, "team")}, other)).To(Succeed())
		other.Labels["team"] = "ml-" + ns
		Expect(k8sClient.Update(ctx, other)).To(Succeed())
		Eventually(getIsolation(ctx, wi), timeout, interval).Should(And(
			haveCondition(isolationv1alpha1.ConditionIsolated, metav1.ConditionFalse, isolationv1alpha1.ReasonWidenedByPolicy),
			WithTransform(exposures, ConsistOf(HaveField("Summary", "allow-team-ml: all pods in namespaces team=ml-"+ns+", all ports"))),
		), "once a namespace carries the label, the widening is open")
	})

	It("flags another WorkloadIsolation that selects the same pods, on both", func() {
		second := seedIsolation(ns)
		second.Name = "local-ai-monitoring"
		second.Spec.Ingress[0].Name = "monitoring"
		second.Spec.Ingress[0].From = []isolationv1alpha1.IngressPeer{{Preset: "monitoring"}}
		Expect(k8sClient.Create(ctx, second)).To(Succeed())
		// Namespaces nginx and monitoring do not exist here: each resource's
		// rule is a latent widening of the other's isolation, on both.
		for _, pair := range [][2]*isolationv1alpha1.WorkloadIsolation{{wi, second}, {second, wi}} {
			Eventually(getIsolation(ctx, pair[0]), timeout, interval).Should(And(
				haveCondition(isolationv1alpha1.ConditionIsolated, metav1.ConditionFalse, isolationv1alpha1.ReasonWidenedByPolicy),
				WithTransform(exposures, ContainElement(And(
					HaveField("WorkloadIsolation", pair[1].Name),
					HaveField("Summary", ContainSubstring("(latent")),
				))),
			), "%s reports %s", pair[0].Name, pair[1].Name)
		}

		// Once monitoring exists, local-ai's isolation is truly widened.
		monitoring := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "monitoring"}}
		Expect(client.IgnoreAlreadyExists(k8sClient.Create(ctx, monitoring))).To(Succeed())
		Eventually(getIsolation(ctx, wi), timeout, interval).Should(And(
			haveCondition(isolationv1alpha1.ConditionIsolated, metav1.ConditionFalse, isolationv1alpha1.ReasonWidenedByPolicy),
			WithTransform(exposures, ContainElement(And(
				HaveField("Policy", "local-ai-monitoring-allow-monitoring"),
				HaveField("Summary", Not(ContainSubstring("(latent"))),
			))),
		))
	})
})
