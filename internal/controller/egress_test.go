package controller_test

import (
	"context"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
)

var _ = Describe("Egress isolation", func() {
	ctx := context.Background()

	It("writes the egress policies, owns them and repairs a widened or deleted one; Audit writes none", func() {
		ns := newNamespace(ctx, "egress")
		wi := seedIsolation(ns)
		wi.Spec.Egress = []isolationv1alpha1.EgressRule{{Name: "models", To: []isolationv1alpha1.EgressPeer{{Preset: "minio"}}}}
		Expect(k8sClient.Create(ctx, wi)).To(Succeed())
		Eventually(policyNames(ctx, ns), timeout, interval).Should(ConsistOf(
			"local-ai-default-deny", "local-ai-allow-nginx", "local-ai-dns", "local-ai-egress-models"))
		deny, err := getPolicy(ctx, ns, "local-ai-default-deny")()
		Expect(err).NotTo(HaveOccurred())
		Expect(deny.Spec.PolicyTypes).To(ConsistOf(networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress))
		Eventually(getIsolation(ctx, wi), timeout, interval).Should(
			WithTransform(func(w *isolationv1alpha1.WorkloadIsolation) int32 { return w.Status.PolicyCount }, Equal(int32(4))))

		// Someone widens the DNS policy to everywhere: the next repair
		// puts the declared destinations back.
		dns, err := getPolicy(ctx, ns, "local-ai-dns")()
		Expect(err).NotTo(HaveOccurred())
		declared := dns.Spec.Egress
		dns.Spec.Egress = append(dns.Spec.Egress, networkingv1.NetworkPolicyEgressRule{})
		Expect(k8sClient.Update(ctx, dns)).To(Succeed())
		Eventually(func() []networkingv1.NetworkPolicyEgressRule {
			np, err := getPolicy(ctx, ns, "local-ai-dns")()
			Expect(err).NotTo(HaveOccurred())
			return np.Spec.Egress
		}, timeout, interval).Should(Equal(declared))

		// A deleted egress policy comes back.
		models, err := getPolicy(ctx, ns, "local-ai-egress-models")()
		Expect(err).NotTo(HaveOccurred())
		Expect(k8sClient.Delete(ctx, models)).To(Succeed())
		Eventually(func() bool {
			np, err := getPolicy(ctx, ns, "local-ai-egress-models")()
			return err == nil && np.UID != models.UID
		}, timeout, interval).Should(BeTrue())

		// Audit mode: the egress policies are computed, listed, not written.
		current := getIsolation(ctx, wi)()
		current.Spec.Mode = isolationv1alpha1.ModeAudit
		Expect(k8sClient.Update(ctx, current)).To(Succeed())
		Eventually(policyNames(ctx, ns), timeout, interval).Should(BeEmpty())
		Eventually(getIsolation(ctx, wi), timeout, interval).Should(And(
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionTrue, isolationv1alpha1.ReasonAuditOnly),
			WithTransform(func(w *isolationv1alpha1.WorkloadIsolation) []isolationv1alpha1.PolicyReference {
				return w.Status.Policies
			},
				ContainElements(isolationv1alpha1.PolicyReference{Kind: "NetworkPolicy", Name: "local-ai-dns"},
					isolationv1alpha1.PolicyReference{Kind: "NetworkPolicy", Name: "local-ai-egress-models"})),
			WithTransform(func(w *isolationv1alpha1.WorkloadIsolation) isolationv1alpha1.EgressState { return w.Status.Egress },
				Equal(isolationv1alpha1.EgressNotIsolated)),
		))
	})
})
