package controller_test

import (
	"context"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/ciliumpolicy"
	"github.com/isolator-dev/isolator/internal/intent"
)

// withHTTP narrows wi's first ingress rule to the OpenAI inference preset
// and one more request.
func withHTTP(wi *isolationv1alpha1.WorkloadIsolation) {
	wi.Spec.Ingress[0].HTTP = &isolationv1alpha1.HTTPAllow{
		Presets:  []string{"openai-inference"},
		Requests: []isolationv1alpha1.HTTPRequest{{Method: "GET", Path: "/readyz"}},
	}
}

// httpRequests lists the HTTP rules of a CiliumNetworkPolicy's first
// ingress rule as "METHOD path-pattern".
func httpRequests(u *unstructured.Unstructured) []string {
	ingress, _, _ := unstructured.NestedSlice(u.Object, "spec", "ingress")
	if len(ingress) == 0 {
		return nil
	}
	toPorts, _, _ := unstructured.NestedSlice(ingress[0].(map[string]any), "toPorts")
	if len(toPorts) == 0 {
		return nil
	}
	rules, _, _ := unstructured.NestedSlice(toPorts[0].(map[string]any), "rules", "http")
	var out []string
	for _, r := range rules {
		m := r.(map[string]any)
		method, _ := m["method"].(string)
		path, _ := m["path"].(string)
		out = append(out, method+" "+path)
	}
	return out
}

var _ = Describe("Layer-7 rules on Cilium", Ordered, func() {
	ctx := context.Background()
	var wi *isolationv1alpha1.WorkloadIsolation
	var cc *ciliumCluster
	ciliumConfig := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "cilium-config", Namespace: "kube-system"},
		Data:       map[string]string{"enable-policy": "default"},
	}
	cnp := func(name string) func() (*unstructured.Unstructured, error) {
		return func() (*unstructured.Unstructured, error) {
			u := &unstructured.Unstructured{}
			u.SetAPIVersion("cilium.io/v2")
			u.SetKind("CiliumNetworkPolicy")
			err := cc.c.Get(ctx, client.ObjectKey{Namespace: wi.Namespace, Name: name}, u)
			return u, err
		}
	}
	notFound := WithTransform(func(err error) bool { return err != nil && client.IgnoreNotFound(err) == nil }, BeTrue())
	npErr := func(name string) func() error {
		return func() error {
			return cc.c.Get(ctx, client.ObjectKey{Namespace: wi.Namespace, Name: name}, &unstructured.Unstructured{Object: map[string]any{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy"}})
		}
	}
	cnpErr := func(name string) func() error {
		return func() error { _, err := cnp(name)(); return err }
	}

	BeforeAll(func() {
		requireCiliumCRDs()
		cc = startCiliumCluster()
		DeferCleanup(cc.stop)
		Expect(cc.c.Create(ctx, ciliumConfig.DeepCopy())).To(Succeed())
		cc.runCiliumAgent(ctx)
		wi = seedIsolation(cc.namespace(ctx, "http-cilium"))
		Expect(cc.c.Create(ctx, wi)).To(Succeed())
		Eventually(npErr("local-ai-allow-nginx"), timeout, interval).Should(Succeed())
	})

	It("replaces the rule's NetworkPolicy with a CiliumNetworkPolicy that admits only the listed requests", func() {
		cc.updateSpec(ctx, wi, withHTTP)
		Eventually(cnp("local-ai-http-nginx"), timeout, interval).Should(WithTransform(httpRequests, And(
			ContainElement(`POST ^/v1/chat/completions(\?.*)?$`),
			ContainElement(`GET ^/v1/models(\?.*)?$`),
			ContainElement(`GET ^/readyz(\?.*)?$`),
			Not(ContainElement(ContainSubstring("/models/apply"))),
			HaveLen(18),
		)))
		// An L4 allow of the same sources would admit every request.
		Eventually(npErr("local-ai-allow-nginx"), timeout, interval).Should(notFound)
		policy, err := cnp("local-ai-http-nginx")()
		Expect(err).NotTo(HaveOccurred())
		Expect(metav1.IsControlledBy(policy, cc.isolation(ctx, wi)())).To(BeTrue())
		ingress, _, _ := unstructured.NestedSlice(policy.Object, "spec", "ingress")
		Expect(ingress).To(HaveLen(1))
		Expect(ingress[0]).To(HaveKeyWithValue("fromEndpoints", []any{map[string]any{
			"matchLabels": map[string]any{
				"k8s:app.kubernetes.io/name":                                     "ingress-nginx",
				"k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name": "nginx",
			},
			"matchExpressions": []any{map[string]any{"key": "k8s:io.kubernetes.pod.namespace", "operator": "Exists"}},
		}}))
		Eventually(cc.isolation(ctx, wi), timeout, interval).Should(And(
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionTrue, isolationv1alpha1.ReasonReconciled),
			haveCondition(isolationv1alpha1.ConditionEnforced, metav1.ConditionTrue, "CNIEnforcesPolicy"),
			WithTransform(func(w *isolationv1alpha1.WorkloadIsolation) []isolationv1alpha1.PolicyReference {
				return w.Status.Policies
			},
				ContainElement(isolationv1alpha1.PolicyReference{Kind: "CiliumNetworkPolicy", Name: "local-ai-http-nginx"})),
		))
		// What the API server stores equals what is rendered.
		rv := policy.GetResourceVersion()
		Consistently(cnp("local-ai-http-nginx"), settle, interval).Should(
			WithTransform(func(u *unstructured.Unstructured) string { return u.GetResourceVersion() }, Equal(rv)))
	})

	It("renders only what Cilium's CRD accepts, applied server-side", func() {
		rich := seedIsolation(wi.Namespace)
		rich.Name, rich.UID = "rich", "0b5e6c2a-0000-0000-0000-000000000001"
		rich.Spec.Ingress = append(rich.Spec.Ingress, isolationv1alpha1.IngressRule{Name: "lan",
			From: []isolationv1alpha1.IngressPeer{
				{IPBlock: &isolationv1alpha1.IPBlock{CIDR: "192.168.0.0/16", Except: []string{"192.168.1.0/24"}}},
				{NamespaceSelector: &isolationv1alpha1.LabelSelector{MatchExpressions: []isolationv1alpha1.LabelSelectorRequirement{{Key: "team", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"a", "b"}}}},
					PodSelector: &isolationv1alpha1.LabelSelector{MatchExpressions: []isolationv1alpha1.LabelSelectorRequirement{{Key: "canary", Operator: metav1.LabelSelectorOpDoesNotExist}}}},
			},
			Ports: []isolationv1alpha1.Port{{Port: ptr.To(intstr.FromString("http"))}, {Port: ptr.To(intstr.FromInt32(8443))}},
			HTTP:  &isolationv1alpha1.HTTPAllow{Requests: []isolationv1alpha1.HTTPRequest{{Method: "GET", Path: "/v1/models"}, {Path: "/a+b(c)"}}}})
		withHTTP(rich)
		rich.Spec.Egress = []isolationv1alpha1.EgressRule{
			{Name: "models", To: []isolationv1alpha1.EgressPeer{{Preset: "huggingface"}}},
			{Name: "any-port", To: []isolationv1alpha1.EgressPeer{{Hosts: []string{"cdn.example.com", "*.example.org"}}}, Ports: []isolationv1alpha1.Port{{Protocol: corev1.ProtocolUDP}}},
		}
		in, err := intent.FromSpec(rich, *rich.Spec.Target.PodSelector.LabelSelector(), testPresets)
		Expect(err).NotTo(HaveOccurred())
		http, err := ciliumpolicy.HTTP(in)
		Expect(err).NotTo(HaveOccurred())
		hosts, err := ciliumpolicy.Hosts(in)
		Expect(err).NotTo(HaveOccurred())
		dns, err := ciliumpolicy.DNSHost(in)
		Expect(err).NotTo(HaveOccurred())
		objects := append(http, hosts, dns)
		Expect(objects).To(HaveLen(4))
		for _, u := range objects {
			Expect(cc.c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u.DeepCopy()), client.FieldOwner("isolator"), client.DryRunAll)).To(Succeed(), u.GetName())
		}
	})

	It("removes a policy it owns that status no longer lists", func() {
		// As left by a sync cut short: owned by the WorkloadIsolation,
		// labelled as generated, no longer desired, not in status.
		current := cc.isolation(ctx, wi)()
		stale := &unstructured.Unstructured{}
		stale.SetAPIVersion("cilium.io/v2")
		stale.SetKind("CiliumNetworkPolicy")
		stale.SetNamespace(wi.Namespace)
		stale.SetName("local-ai-http-old")
		stale.SetLabels(map[string]string{"app.kubernetes.io/managed-by": "isolator", "isolation.isolator.dev/workloadisolation": "local-ai"})
		stale.SetOwnerReferences([]metav1.OwnerReference{{APIVersion: "isolation.isolator.dev/v1alpha1", Kind: "WorkloadIsolation",
			Name: current.Name, UID: current.UID, Controller: ptr.To(true)}})
		Expect(unstructured.SetNestedField(stale.Object, map[string]any{}, "spec", "endpointSelector")).To(Succeed())
		Expect(unstructured.SetNestedSlice(stale.Object, []any{map[string]any{"fromEntities": []any{"world"}}}, "spec", "ingress")).To(Succeed())
		Expect(cc.c.Create(ctx, stale)).To(Succeed())
		Eventually(cnpErr("local-ai-http-old"), timeout, interval).Should(notFound)
	})

	It("repairs a copy widened to every request", func() {
		policy, err := cnp("local-ai-http-nginx")()
		Expect(err).NotTo(HaveOccurred())
		ingress, _, _ := unstructured.NestedSlice(policy.Object, "spec", "ingress")
		unstructured.RemoveNestedField(ingress[0].(map[string]any), "toPorts")
		Expect(unstructured.SetNestedSlice(policy.Object, ingress, "spec", "ingress")).To(Succeed())
		Expect(cc.c.Update(ctx, policy)).To(Succeed())
		Eventually(cnp("local-ai-http-nginx"), timeout, interval).Should(WithTransform(httpRequests, HaveLen(18)))

		// Rules added beside the operator's, as specs, go too.
		policy, err = cnp("local-ai-http-nginx")()
		Expect(err).NotTo(HaveOccurred())
		policy.Object["specs"] = []any{map[string]any{"endpointSelector": map[string]any{}, "ingress": []any{map[string]any{"fromEntities": []any{"world"}}}}}
		Expect(cc.c.Update(ctx, policy)).To(Succeed())
		Eventually(cnp("local-ai-http-nginx"), timeout, interval).Should(WithTransform(func(u *unstructured.Unstructured) bool {
			_, ok := u.Object["specs"]
			return ok
		}, BeFalse()))
	})

	It("fails closed and says so when Cilium's L7 proxy is off", func() {
		config := &corev1.ConfigMap{}
		Expect(cc.c.Get(ctx, client.ObjectKeyFromObject(ciliumConfig), config)).To(Succeed())
		config.Data["enable-l7-proxy"] = "false"
		Expect(cc.c.Update(ctx, config)).To(Succeed())
		Eventually(cc.isolation(ctx, wi), timeout, interval).Should(And(
			haveCondition(isolationv1alpha1.ConditionEnforced, metav1.ConditionFalse, isolationv1alpha1.ReasonL7RulesNotEnforced),
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionFalse, isolationv1alpha1.ReasonL7RulesNotEnforced),
			WithTransform(conditionMessage(isolationv1alpha1.ConditionReady), And(ContainSubstring("nginx"), ContainSubstring("L7 proxy is off"), ContainSubstring("admits nothing"))),
		))
		// The HTTP policy stays (an agent without its L7 proxy refuses it,
		// so the traffic stays denied), and no L4 allow admits every
		// request.
		Consistently(cnpErr("local-ai-http-nginx"), settle, interval).Should(Succeed())
		Consistently(npErr("local-ai-allow-nginx"), settle, interval).Should(notFound)

		delete(config.Data, "enable-l7-proxy")
		Expect(cc.c.Update(ctx, config)).To(Succeed())
		Eventually(cc.isolation(ctx, wi), timeout, interval).Should(
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionTrue, isolationv1alpha1.ReasonReconciled))
	})

	It("lets the target reach hosts by name, with its lookups seen by Cilium's DNS proxy, and nothing else", func() {
		cc.updateSpec(ctx, wi, func(w *isolationv1alpha1.WorkloadIsolation) {
			w.Spec.Egress = []isolationv1alpha1.EgressRule{{Name: "models", To: []isolationv1alpha1.EgressPeer{{Preset: "huggingface"}}}}
		})
		Eventually(cnp("local-ai-egress-hosts"), timeout, interval).Should(WithTransform(func(u *unstructured.Unstructured) []any {
			egress, _, _ := unstructured.NestedSlice(u.Object, "spec", "egress")
			var fqdns []any
			for _, e := range egress {
				if f, ok := e.(map[string]any)["toFQDNs"]; ok {
					fqdns = append(fqdns, f.([]any)...)
				}
			}
			return fqdns
		}, ContainElements(map[string]any{"matchName": "huggingface.co"}, map[string]any{"matchPattern": "*.xethub.hf.co"})))
		// A NetworkPolicy cannot name hosts, and one without peers would
		// allow every destination.
		Consistently(npErr("local-ai-egress-models"), settle, interval).Should(notFound)
		Eventually(cc.isolation(ctx, wi), timeout, interval).Should(And(
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionTrue, isolationv1alpha1.ReasonReconciled),
			WithTransform(func(w *isolationv1alpha1.WorkloadIsolation) isolationv1alpha1.EgressState { return w.Status.Egress },
				Equal(isolationv1alpha1.EgressIsolated)),
		))

		config := &corev1.ConfigMap{}
		Expect(cc.c.Get(ctx, client.ObjectKeyFromObject(ciliumConfig), config)).To(Succeed())
		config.Data["enable-l7-proxy"] = "false"
		Expect(cc.c.Update(ctx, config)).To(Succeed())
		Eventually(cc.isolation(ctx, wi), timeout, interval).Should(And(
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionFalse, isolationv1alpha1.ReasonL7RulesNotEnforced),
			WithTransform(conditionMessage(isolationv1alpha1.ConditionEnforced), ContainSubstring("egress rule models (host names)")),
			WithTransform(func(w *isolationv1alpha1.WorkloadIsolation) isolationv1alpha1.EgressState { return w.Status.Egress },
				Equal(isolationv1alpha1.EgressNotIsolated)),
		))
		Consistently(cnpErr("local-ai-egress-hosts"), settle, interval).Should(Succeed())
		delete(config.Data, "enable-l7-proxy")
		Expect(cc.c.Update(ctx, config)).To(Succeed())
		Eventually(cc.isolation(ctx, wi), timeout, interval).Should(
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionTrue, isolationv1alpha1.ReasonReconciled))
		cc.updateSpec(ctx, wi, func(w *isolationv1alpha1.WorkloadIsolation) { w.Spec.Egress = nil })
		Eventually(cnpErr("local-ai-egress-hosts"), timeout, interval).Should(notFound)
	})

	It("reports a writer that keeps re-opening its HTTP policy as Contested, and keeps repairing", func() {
		for range 3 {
			policy, err := cnp("local-ai-http-nginx")()
			Expect(err).NotTo(HaveOccurred())
			ingress, _, _ := unstructured.NestedSlice(policy.Object, "spec", "ingress")
			unstructured.RemoveNestedField(ingress[0].(map[string]any), "toPorts")
			Expect(unstructured.SetNestedSlice(policy.Object, ingress, "spec", "ingress")).To(Succeed())
			Expect(cc.c.Update(ctx, policy, client.FieldOwner("gitops"))).To(Succeed())
			Eventually(cnp("local-ai-http-nginx"), timeout, interval).Should(WithTransform(httpRequests, HaveLen(18)))
		}
		Eventually(cc.isolation(ctx, wi), timeout, interval).Should(And(
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionFalse, isolationv1alpha1.ReasonContested),
			WithTransform(conditionMessage(isolationv1alpha1.ConditionReady), And(
				ContainSubstring("CiliumNetworkPolicy local-ai-http-nginx"), ContainSubstring(`field manager "gitops"`))),
		))
	})

	It("goes back to a NetworkPolicy when http is removed", func() {
		cc.updateSpec(ctx, wi, func(w *isolationv1alpha1.WorkloadIsolation) { w.Spec.Ingress[0].HTTP = nil })
		Eventually(npErr("local-ai-allow-nginx"), timeout, interval).Should(Succeed())
		Eventually(cnpErr("local-ai-http-nginx"), timeout, interval).Should(notFound)
	})
})

var _ = Describe("Layer-7 rules without an L7 CNI", func() {
	ctx := context.Background()

	It("admits nothing for the rule, writes no L4 allow, and keeps Ready False with the reason", func() {
		wi := seedIsolation(newNamespace(ctx, "http-no-l7"))
		withHTTP(wi)
		Expect(k8sClient.Create(ctx, wi)).To(Succeed())
		Eventually(getIsolation(ctx, wi), timeout, interval).Should(And(
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionFalse, isolationv1alpha1.ReasonL7RulesNotEnforced),
			haveCondition(isolationv1alpha1.ConditionPoliciesApplied, metav1.ConditionTrue, isolationv1alpha1.ReasonApplied),
		))
		Expect(policyNames(ctx, wi.Namespace)()).To(ConsistOf("local-ai-default-deny"))
	})

	It("leaves hosts unreachable, writes no NetworkPolicy for them, and keeps Ready False with the reason", func() {
		wi := seedIsolation(newNamespace(ctx, "hosts-no-l7"))
		wi.Spec.Egress = []isolationv1alpha1.EgressRule{{Name: "models", To: []isolationv1alpha1.EgressPeer{{Hosts: []string{"huggingface.co"}}}}}
		Expect(k8sClient.Create(ctx, wi)).To(Succeed())
		Eventually(getIsolation(ctx, wi), timeout, interval).Should(And(
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionFalse, isolationv1alpha1.ReasonL7RulesNotEnforced),
			WithTransform(func(w *isolationv1alpha1.WorkloadIsolation) isolationv1alpha1.EgressState { return w.Status.Egress },
				Equal(isolationv1alpha1.EgressNotIsolated)),
		))
		Expect(policyNames(ctx, wi.Namespace)()).To(ConsistOf("local-ai-default-deny", "local-ai-allow-nginx", "local-ai-dns"))
	})

	It("rejects http on a rule without TCP port numbers or names", func() {
		wi := seedIsolation(newNamespace(ctx, "http-invalid"))
		withHTTP(wi)
		wi.Spec.Ingress[0].Ports = nil
		err := k8sClient.Create(ctx, wi)
		Expect(err).To(MatchError(ContainSubstring("http needs ports, each TCP with a port and without endPort")))
	})
})

var _ = Describe("Cilium's API served after the operator started", Ordered, func() {
	ctx := context.Background()
	var cc *ciliumCluster
	var wi *isolationv1alpha1.WorkloadIsolation

	BeforeAll(func() {
		requireCiliumCRDs()
		cc = startClusterWithCRDs()
		DeferCleanup(cc.stop)
		cc.runCiliumAgent(ctx)
		wi = seedIsolation(cc.namespace(ctx, "late-cilium"))
		Expect(cc.c.Create(ctx, wi)).To(Succeed())
	})

	It("proves nothing about Cilium's policies it does not read", func() {
		// No Cilium policy can exist yet.
		Eventually(cc.isolation(ctx, wi), timeout, interval).Should(
			haveCondition(isolationv1alpha1.ConditionIsolated, metav1.ConditionTrue, isolationv1alpha1.ReasonOnlyDeclaredSources))
		// Nothing else changes: the CRDs' arrival alone re-evaluates.
		_, err := envtest.InstallCRDs(cc.cp.Config, envtest.CRDInstallOptions{Paths: []string{
			filepath.Join(ciliumCRDs, "ciliumnetworkpolicies.yaml"), filepath.Join(ciliumCRDs, "ciliumclusterwidenetworkpolicies.yaml")}})
		Expect(err).NotTo(HaveOccurred())
		Eventually(cc.isolation(ctx, wi), timeout, interval).Should(And(
			haveCondition(isolationv1alpha1.ConditionIsolated, metav1.ConditionFalse, isolationv1alpha1.ReasonUnanalysedPolicies),
			WithTransform(conditionMessage(isolationv1alpha1.ConditionIsolated), And(
				ContainSubstring("CiliumNetworkPolicies (served now, not when the operator started; restart the operator)"),
				ContainSubstring("CiliumClusterwideNetworkPolicies"))),
		))
	})
})
