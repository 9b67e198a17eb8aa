package controller_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
)

// maxSizeIsolation is a WorkloadIsolation at the CRD's maximum sizes: 32
// rules of 32 sources (every namespace, some pods) and 32 ports each.
func maxSizeIsolation(namespace, name string) *isolationv1alpha1.WorkloadIsolation {
	wi := &isolationv1alpha1.WorkloadIsolation{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: isolationv1alpha1.WorkloadIsolationSpec{Target: isolationv1alpha1.Target{
			PodSelector: &isolationv1alpha1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": "local-ai"}},
		}},
	}
	for r := range 32 {
		rule := isolationv1alpha1.IngressRule{Name: fmt.Sprintf("rule-%02d", r)}
		for p := range 32 {
			rule.From = append(rule.From, isolationv1alpha1.IngressPeer{
				NamespaceSelector: &isolationv1alpha1.LabelSelector{},
				PodSelector:       &isolationv1alpha1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("client-%d-%d", r, p)}},
			})
		}
		for port := range 32 {
			rule.Ports = append(rule.Ports, isolationv1alpha1.Port{Protocol: corev1.ProtocolTCP, Port: ptr.To(intstr.FromInt32(int32(8000 + port)))})
		}
		wi.Spec.Ingress = append(wi.Spec.Ingress, rule)
	}
	return wi
}

var _ = Describe("Bounded work", Serial, func() {
	It("reconciles resources at the maximum sizes quickly and still protects others promptly while they churn", func() {
		ctx := context.Background()
		var namespaces []string
		for range 100 {
			namespaces = append(namespaces, newNamespace(ctx, "scale"))
		}
		big := newNamespace(ctx, "big")
		createPod(ctx, big, "local-ai-0", map[string]string{"app.kubernetes.io/name": "local-ai"})
		var large []*isolationv1alpha1.WorkloadIsolation
		for i := range 8 {
			wi := maxSizeIsolation(big, fmt.Sprintf("large-%d", i))
			Expect(k8sClient.Create(ctx, wi)).To(Succeed())
			large = append(large, wi)
		}
		for _, wi := range large {
			Eventually(getIsolation(ctx, wi), 60*time.Second, interval).Should(
				haveCondition(isolationv1alpha1.ConditionPoliciesApplied, metav1.ConditionTrue, isolationv1alpha1.ReasonApplied))
		}

		// One reconcile of a large resource, timed (reads from the cache).
		var writes atomic.Int64
		r := countingReconciler(&writes)
		start := time.Now()
		_, err := r.Reconcile(ctx, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(large[0])})
		// The running manager may have written the status meanwhile: a
		// conflict is the optimistic lock at work, not a failure.
		Expect(err == nil || apierrors.IsConflict(err)).To(BeTrue(), "%v", err)
		reconcileTime := time.Since(start)
		GinkgoWriter.Printf("reconcile of a maximum-size WorkloadIsolation (32x32x32, 100+ namespaces): %s\n", reconcileTime)
		AddReportEntry("maximum-size reconcile", reconcileTime.String())
		if c := meta.FindStatusCondition(getIsolation(ctx, large[0])().Status.Conditions, isolationv1alpha1.ConditionIsolated); c != nil {
			GinkgoWriter.Printf("its Isolated condition: %s/%s\n", c.Status, c.Reason)
		}

		// Elsewhere, a small resource whose policy is deleted while every
		// namespace is relabelled.
		other := newNamespace(ctx, "other")
		small := seedIsolation(other)
		Expect(k8sClient.Create(ctx, small)).To(Succeed())
		Eventually(getIsolation(ctx, small), timeout, interval).Should(
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionTrue, isolationv1alpha1.ReasonReconciled))

		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer GinkgoRecover()
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ns := &corev1.Namespace{}
				Expect(k8sClient.Get(ctx, types.NamespacedName{Name: namespaces[i%len(namespaces)]}, ns)).To(Succeed())
				ns.Labels["churn"] = fmt.Sprint(i)
				Expect(k8sClient.Update(ctx, ns)).To(Succeed())
			}
		}()
		time.Sleep(time.Second)
		np, err := getPolicy(ctx, other, "local-ai-allow-nginx")()
		Expect(err).NotTo(HaveOccurred())
		deleted := time.Now()
		Expect(k8sClient.Delete(ctx, np)).To(Succeed())
		Eventually(func() (types.UID, error) {
			restored, err := getPolicy(ctx, other, "local-ai-allow-nginx")()
			return restored.UID, err
		}, 30*time.Second, 10*time.Millisecond).ShouldNot(Equal(np.UID))
		restoreTime := time.Since(deleted)
		close(stop)
		wg.Wait()
		GinkgoWriter.Printf("policy restored %s after deletion, while 100 namespaces were relabelled and 8 maximum-size resources existed\n", restoreTime)
		AddReportEntry("restore under namespace churn", restoreTime.String())
	})
})

var _ = Describe("Status at the largest inputs", func() {
	It("is still written when the target selector and the widening policies are as large as the API admits", func() {
		ctx := context.Background()
		ns := newNamespace(ctx, "huge")
		podLabels := map[string]string{}
		selector := &isolationv1alpha1.LabelSelector{MatchLabels: map[string]string{}}
		for i := range 32 {
			key := fmt.Sprintf("%s.example/k%02d%s", strings.Repeat("d", 240), i, strings.Repeat("k", 60))
			podLabels[key] = strings.Repeat("v", 63)
			selector.MatchLabels[key] = strings.Repeat("v", 63)
		}
		for i := range 16 {
			req := isolationv1alpha1.LabelSelectorRequirement{Key: fmt.Sprintf("example.com/x%02d", i), Operator: metav1.LabelSelectorOpNotIn}
			for j := range 64 {
				req.Values = append(req.Values, fmt.Sprintf("%s%02d", strings.Repeat("w", 61), j))
			}
			selector.MatchExpressions = append(selector.MatchExpressions, req)
		}
		createPod(ctx, ns, "local-ai-0", podLabels)
		wi := seedIsolation(ns)
		wi.Spec.Target.PodSelector = selector
		Expect(k8sClient.Create(ctx, wi)).To(Succeed())
		Eventually(getIsolation(ctx, wi), timeout, interval).Should(
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionTrue, isolationv1alpha1.ReasonReconciled))
		Expect(len(getIsolation(ctx, wi)().Status.Target)).To(BeNumerically("<=", 4096))

		// 40 foreign allow-all policies with names as long as allowed.
		for i := range 40 {
			Expect(k8sClient.Create(ctx, &networkingv1.NetworkPolicy{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%02d", strings.Repeat("p", 250), i), Namespace: ns},
				Spec:       networkingv1.NetworkPolicySpec{Ingress: []networkingv1.NetworkPolicyIngressRule{{}}},
			})).To(Succeed())
		}
		Eventually(getIsolation(ctx, wi), 2*timeout, interval).Should(And(
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionFalse, isolationv1alpha1.ReasonWidenedByPolicy),
			WithTransform(readyMessage, ContainSubstring("and 30 more")),
		))
	})
})
