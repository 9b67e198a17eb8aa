package controller_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	anpv1alpha1 "sigs.k8s.io/network-policy-api/apis/v1alpha1"
	cnpv1alpha2 "sigs.k8s.io/network-policy-api/apis/v1alpha2"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
)

// networkPolicyAPICRDs holds the network-policy-api CRDs
// (AdminNetworkPolicy, BaselineAdminNetworkPolicy, ClusterNetworkPolicy),
// beside the repository.
var networkPolicyAPICRDs = filepath.Join("..", "..", "..", "shared", "fixtures", "crds", "network-policy-api")

func guardLayer(layer isolationv1alpha1.GuardLayerName) func(*isolationv1alpha1.WorkloadIsolation) isolationv1alpha1.GuardLayer {
	return func(w *isolationv1alpha1.WorkloadIsolation) isolationv1alpha1.GuardLayer {
		for _, l := range w.Status.Guard {
			if l.Layer == layer {
				return l
			}
		}
		return isolationv1alpha1.GuardLayer{}
	}
}

func exposedPolicies(w *isolationv1alpha1.WorkloadIsolation) []string {
	var out []string
	for _, e := range w.Status.Exposure {
		out = append(out, e.Policy)
	}
	return out
}

var _ = Describe("The guard's dataplane layer", Ordered, func() {
	ctx := context.Background()
	var cc *ciliumCluster
	calico := daemonSet("kube-system", "canal",
		corev1.Container{Name: "calico-node", Image: "quay.io/calico/node:v3.30.2"},
		corev1.Container{Name: "kube-flannel", Image: "quay.io/coreos/flannel:v0.26.7"})
	var wi *isolationv1alpha1.WorkloadIsolation

	anp := func(w *isolationv1alpha1.WorkloadIsolation) func() (*anpv1alpha1.AdminNetworkPolicy, error) {
		return func() (*anpv1alpha1.AdminNetworkPolicy, error) {
			out := &anpv1alpha1.AdminNetworkPolicy{}
			err := cc.c.Get(ctx, client.ObjectKey{Name: "isolator-" + string(w.UID)}, out)
			return out, err
		}
	}
	setAgents := func(image string, desired, ready int32) {
		ds := &appsv1.DaemonSet{}
		Expect(cc.c.Get(ctx, client.ObjectKeyFromObject(calico), ds)).To(Succeed())
		ds.Spec.Template.Spec.Containers[0].Image = image
		Expect(cc.c.Update(ctx, ds)).To(Succeed())
		ds.Status = appsv1.DaemonSetStatus{ObservedGeneration: ds.Generation, DesiredNumberScheduled: desired, CurrentNumberScheduled: desired,
			UpdatedNumberScheduled: desired, NumberReady: ready, NumberAvailable: ready}
		Expect(cc.c.Status().Update(ctx, ds)).To(Succeed())
	}
	setCalico := func(image string) { setAgents(image, 1, 1) }

	BeforeAll(func() {
		if _, err := os.Stat(networkPolicyAPICRDs); err != nil {
			Fail("network-policy-api CRD fixtures not found at " + networkPolicyAPICRDs + " (they sit beside the repository as ../shared): " + err.Error())
		}
		cc = startClusterWithCRDs(networkPolicyAPICRDs)
		DeferCleanup(cc.stop)
		for _, obj := range guardObjects("admin-tier") {
			Expect(cc.c.Create(ctx, obj)).To(Succeed())
		}
		ds := calico.DeepCopy()
		Expect(cc.c.Create(ctx, ds)).To(Succeed())
		setCalico(calico.Spec.Template.Spec.Containers[0].Image)
		wi = seedIsolation(cc.namespace(ctx, "admin-tier"))
		Expect(cc.c.Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "local-ai-0", Namespace: wi.Namespace, Labels: map[string]string{"app.kubernetes.io/name": "local-ai"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}},
		})).To(Succeed())
		wi.Spec.Guard = isolationv1alpha1.GuardEnforce
		// Egress with every kind of destination, so that the API server's
		// validation of both admin-tier APIs sees networks, pods and
		// named ports side by side.
		wi.Spec.Egress = []isolationv1alpha1.EgressRule{{
			Name: "store",
			To: []isolationv1alpha1.EgressPeer{
				{IPBlock: &isolationv1alpha1.IPBlock{CIDR: "10.0.0.0/8", Except: []string{"10.96.0.0/12"}}},
				{NamespaceSelector: &isolationv1alpha1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "minio"}}},
			},
			Ports: []isolationv1alpha1.Port{
				{Protocol: corev1.ProtocolTCP, Port: ptr.To(intstr.FromInt32(9000))},
				{Protocol: corev1.ProtocolTCP, Port: ptr.To(intstr.FromString("s3"))},
			},
		}}
		Expect(cc.c.Create(ctx, wi)).To(Succeed())
	})

	It("writes an AdminNetworkPolicy on Calico 3.30 that the API server accepts, and reports both layers", func() {
		Eventually(cc.isolation(ctx, wi), timeout, interval).Should(And(
			haveCondition(isolationv1alpha1.ConditionGuarded, metav1.ConditionTrue, isolationv1alpha1.ReasonGuardActive),
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionTrue, isolationv1alpha1.ReasonReconciled),
			WithTransform(guardLayer(isolationv1alpha1.GuardLayerAdmission), HaveField("State", isolationv1alpha1.GuardLayerActive)),
			WithTransform(guardLayer(isolationv1alpha1.GuardLayerDataplane), And(
				HaveField("State", isolationv1alpha1.GuardLayerActive),
				HaveField("Object", "AdminNetworkPolicy isolator-"+string(cc.isolation(ctx, wi)().UID)+", priority 900"),
				HaveField("Message", ContainSubstring("Calico v3.30.2 implements AdminNetworkPolicy")))),
		))
		wi = cc.isolation(ctx, wi)()
		got, err := anp(wi)()
		Expect(err).NotTo(HaveOccurred())
		Expect(got.Spec.Priority).To(Equal(int32(900)))
		Expect(got.Spec.Subject.Pods.PodSelector.MatchLabels).To(Equal(map[string]string{"app.kubernetes.io/name": "local-ai"}))
		Expect(got.Spec.Subject.Pods.NamespaceSelector.MatchLabels).To(Equal(map[string]string{"kubernetes.io/metadata.name": wi.Namespace}))
		Expect(got.Spec.Ingress).To(HaveLen(2))
		Expect(got.Spec.Ingress[1].Action).To(Equal(anpv1alpha1.AdminNetworkPolicyRuleActionDeny))
		// The store by selector and by address on the numbered port, name
		// resolution (kube-dns and NodeLocal DNSCache's address), the store
		// by selector passed on to the NetworkPolicies for its named port,
		// then the Deny.
		var egress []string
		for _, r := range got.Spec.Egress {
			egress = append(egress, string(r.Action)+" "+r.Name)
		}
		Expect(egress).To(Equal([]string{"Allow allow-store", "Allow allow-store-addresses", "Allow allow-cluster-dns",
			"Allow allow-cluster-dns-addresses", "Pass pass-store", "Deny deny-other-destinations"}))
		// What the API server stores is what was rendered: no repair loop.
		rv := got.ResourceVersion
		Consistently(anp(wi), "2s", interval).Should(HaveField("ResourceVersion", rv))
	})

	It("comes after administrators' policies that may select its namespace, and reports their Allow rules", func() {
		// Guard policies of other namespaces never select the same pods:
		// they may share a priority.
		second := seedIsolation(cc.namespace(ctx, "admin-tier-2"))
		second.Spec.Guard = isolationv1alpha1.GuardEnforce
		Expect(cc.c.Create(ctx, second)).To(Succeed())
		Eventually(func() (int32, error) {
			p, err := anp(cc.isolation(ctx, second)())()
			return p.Spec.Priority, err
		}, timeout, interval).Should(Equal(int32(900)))

		foreign := &anpv1alpha1.AdminNetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: "allow-scrapers"},
			Spec: anpv1alpha1.AdminNetworkPolicySpec{
				Priority: 10,
				Subject:  anpv1alpha1.AdminNetworkPolicySubject{Namespaces: &metav1.LabelSelector{}},
				Ingress: []anpv1alpha1.AdminNetworkPolicyIngressRule{{
					Action: anpv1alpha1.AdminNetworkPolicyRuleActionAllow,
					From: []anpv1alpha1.AdminNetworkPolicyIngressPeer{{Namespaces: &metav1.LabelSelector{
						MatchLabels: map[string]string{"kubernetes.io/metadata.name": "scrapers"}}}},
				}},
			},
		}
		Expect(cc.c.Create(ctx, foreign)).To(Succeed())
		Eventually(cc.isolation(ctx, wi), timeout, interval).Should(And(
			haveCondition(isolationv1alpha1.ConditionIsolated, metav1.ConditionFalse, isolationv1alpha1.ReasonWidenedByPolicy),
			WithTransform(exposedPolicies, ContainElement("AdminNetworkPolicy/allow-scrapers")),
		))
		// An administrator's policy inside the range: the guard moves after
		// it, so that the administrator's rules keep applying first, and
		// its Allow still counts.
		Expect(cc.c.Get(ctx, client.ObjectKeyFromObject(foreign), foreign)).To(Succeed())
		foreign.Spec.Priority = 950
		Expect(cc.c.Update(ctx, foreign)).To(Succeed())
		Eventually(anp(wi), timeout, interval).Should(HaveField("Spec.Priority", int32(951)))
		Consistently(cc.isolation(ctx, wi), "1s", interval).Should(
			haveCondition(isolationv1alpha1.ConditionIsolated, metav1.ConditionFalse, isolationv1alpha1.ReasonWidenedByPolicy))
		// One at the end of the range leaves no room: the layer is not in
		// place, and says why.
		Expect(cc.c.Get(ctx, client.ObjectKeyFromObject(foreign), foreign)).To(Succeed())
		foreign.Spec.Priority = 999
		Expect(cc.c.Update(ctx, foreign)).To(Succeed())
		Eventually(cc.isolation(ctx, wi), timeout, interval).Should(And(
			haveCondition(isolationv1alpha1.ConditionGuarded, metav1.ConditionFalse, isolationv1alpha1.ReasonGuardNotActive),
			WithTransform(guardLayer(isolationv1alpha1.GuardLayerDataplane), HaveField("Message", ContainSubstring("AdminNetworkPolicy allow-scrapers (priority 999) may select this namespace"))),
		))
		// The policy written before does not stay ahead of the
		// administrator's.
		Eventually(func() bool {
			_, err := anp(wi)()
			return apierrors.IsNotFound(err)
		}, timeout, interval).Should(BeTrue())
		Expect(cc.c.Delete(ctx, foreign)).To(Succeed())
		Eventually(cc.isolation(ctx, wi), timeout, interval).Should(And(
			haveCondition(isolationv1alpha1.ConditionIsolated, metav1.ConditionTrue, isolationv1alpha1.ReasonOnlyDeclaredSources),
			haveCondition(isolationv1alpha1.ConditionGuarded, metav1.ConditionTrue, isolationv1alpha1.ReasonGuardActive),
		))
		Expect(cc.c.Delete(ctx, second)).To(Succeed())
		secondUID := second.UID
		Eventually(func() bool {
			err := cc.c.Get(ctx, client.ObjectKey{Name: "isolator-" + string(secondUID)}, &anpv1alpha1.AdminNetworkPolicy{})
			return apierrors.IsNotFound(err)
		}, timeout, interval).Should(BeTrue(), "a deleted WorkloadIsolation's AdminNetworkPolicy is removed")
	})

	It("notices an administrator's Allow that a namespace label brings in, and moves after it", func() {
		foreign := &anpv1alpha1.AdminNetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: "allow-scrapers-to-team-x"},
			Spec: anpv1alpha1.AdminNetworkPolicySpec{
				Priority: 960,
				Subject:  anpv1alpha1.AdminNetworkPolicySubject{Namespaces: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "x"}}},
				Ingress: []anpv1alpha1.AdminNetworkPolicyIngressRule{{
					Action: anpv1alpha1.AdminNetworkPolicyRuleActionAllow,
					From: []anpv1alpha1.AdminNetworkPolicyIngressPeer{{Namespaces: &metav1.LabelSelector{
						MatchLabels: map[string]string{"kubernetes.io/metadata.name": "scrapers"}}}},
				}},
			},
		}
		Expect(cc.c.Create(ctx, foreign)).To(Succeed())
		DeferCleanup(func() { Expect(client.IgnoreNotFound(cc.c.Delete(ctx, foreign))).To(Succeed()) })
		Consistently(cc.isolation(ctx, wi), "1s", interval).Should(
			haveCondition(isolationv1alpha1.ConditionIsolated, metav1.ConditionTrue, isolationv1alpha1.ReasonOnlyDeclaredSources))
		ns := &corev1.Namespace{}
		Expect(cc.c.Get(ctx, client.ObjectKey{Name: wi.Namespace}, ns)).To(Succeed())
		ns.Labels["team"] = "x"
		Expect(cc.c.Update(ctx, ns)).To(Succeed())
		Eventually(cc.isolation(ctx, wi), timeout, interval).Should(And(
			haveCondition(isolationv1alpha1.ConditionIsolated, metav1.ConditionFalse, isolationv1alpha1.ReasonWidenedByPolicy),
			WithTransform(exposedPolicies, ContainElement("AdminNetworkPolicy/allow-scrapers-to-team-x")),
		))
		Eventually(anp(wi), timeout, interval).Should(HaveField("Spec.Priority", int32(961)))
		Expect(cc.c.Get(ctx, client.ObjectKey{Name: wi.Namespace}, ns)).To(Succeed())
		delete(ns.Labels, "team")
		Expect(cc.c.Update(ctx, ns)).To(Succeed())
		Eventually(cc.isolation(ctx, wi), timeout, interval).Should(
			haveCondition(isolationv1alpha1.ConditionIsolated, metav1.ConditionTrue, isolationv1alpha1.ReasonOnlyDeclaredSources))
	})

	It("allows nothing itself while another guarded isolation may select the same pods", func() {
		actions := func(p *anpv1alpha1.AdminNetworkPolicy) []string {
			var out []string
			for _, r := range p.Spec.Ingress {
				out = append(out, string(r.Action))
			}
			for _, r := range p.Spec.Egress {
				out = append(out, string(r.Action))
			}
			return out
		}
		intruder := seedIsolation(wi.Namespace)
		intruder.Name = "wide-open"
		intruder.Spec.Guard = isolationv1alpha1.GuardEnforce
		intruder.Spec.Ingress = []isolationv1alpha1.IngressRule{{Name: "everyone", From: []isolationv1alpha1.IngressPeer{
			{NamespaceSelector: &isolationv1alpha1.LabelSelector{}}}}}
		Expect(cc.c.Create(ctx, intruder)).To(Succeed())
		Eventually(func() ([]string, error) {
			p, err := anp(cc.isolation(ctx, intruder)())()
			return actions(p), err
		}, timeout, interval).Should(And(Not(ContainElement("Allow")), ContainElement("Pass")))
		Eventually(anp(wi), timeout, interval).Should(WithTransform(actions, And(Not(ContainElement("Allow")), ContainElement("Pass"))))
		Eventually(cc.isolation(ctx, wi), timeout, interval).Should(
			WithTransform(guardLayer(isolationv1alpha1.GuardLayerDataplane), HaveField("Message", ContainSubstring("guarded WorkloadIsolation wide-open may select the same pods"))))
		Expect(cc.c.Delete(ctx, intruder)).To(Succeed())
		Eventually(anp(wi), timeout, interval).Should(WithTransform(actions, ContainElement("Allow")))
	})

	It("says the layer is not in place when the spec cannot be rendered", func() {
		broken := seedIsolation(cc.namespace(ctx, "admin-tier-broken"))
		broken.Spec.Guard = isolationv1alpha1.GuardEnforce
		broken.Spec.Ingress[0].From = []isolationv1alpha1.IngressPeer{{Preset: "no-such-preset"}}
		Expect(cc.c.Create(ctx, broken)).To(Succeed())
		Eventually(cc.isolation(ctx, broken), timeout, interval).Should(And(
			haveCondition(isolationv1alpha1.ConditionStalled, metav1.ConditionTrue, isolationv1alpha1.ReasonUnknownPreset),
			haveCondition(isolationv1alpha1.ConditionGuarded, metav1.ConditionFalse, isolationv1alpha1.ReasonGuardNotActive),
			WithTransform(guardLayer(isolationv1alpha1.GuardLayerDataplane), HaveField("State", isolationv1alpha1.GuardLayerNotActive)),
		))
	})

	It("keeps its policy while the CNI's agents roll out", func() {
		before, err := anp(wi)()
		Expect(err).NotTo(HaveOccurred())
		setAgents(calico.Spec.Template.Spec.Containers[0].Image, 3, 2)
		Eventually(cc.isolation(ctx, wi), timeout, interval).Should(And(
			haveCondition(isolationv1alpha1.ConditionEnforced, metav1.ConditionUnknown, isolationv1alpha1.ReasonAgentsNotReady),
			WithTransform(guardLayer(isolationv1alpha1.GuardLayerDataplane), And(
				HaveField("State", isolationv1alpha1.GuardLayerActive),
				HaveField("Message", ContainSubstring("not confirmed now")))),
		))
		Consistently(anp(wi), "1s", interval).Should(HaveField("UID", before.UID))
		setCalico(calico.Spec.Template.Spec.Containers[0].Image)
		Eventually(cc.isolation(ctx, wi), timeout, interval).Should(
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionTrue, isolationv1alpha1.ReasonReconciled))
	})

	It("repairs its policy when changed, and restores it when deleted", func() {
		got, err := anp(wi)()
		Expect(err).NotTo(HaveOccurred())
		got.Spec.Ingress = got.Spec.Ingress[:1] // drop the Deny
		Expect(cc.c.Update(ctx, got)).To(Succeed())
		Eventually(anp(wi), timeout, interval).Should(WithTransform(func(p *anpv1alpha1.AdminNetworkPolicy) int { return len(p.Spec.Ingress) }, Equal(2)))
		Expect(cc.c.Delete(ctx, got)).To(Succeed())
		Eventually(anp(wi), timeout, interval).Should(WithTransform(func(p *anpv1alpha1.AdminNetworkPolicy) bool { return p.UID != got.UID }, BeTrue()))
	})

	It("moves to a ClusterNetworkPolicy when Calico is upgraded to 3.32", func() {
		setCalico("quay.io/calico/node:v3.32.0")
		cnp := &cnpv1alpha2.ClusterNetworkPolicy{}
		Eventually(func() error {
			return cc.c.Get(ctx, client.ObjectKey{Name: "isolator-" + string(wi.UID)}, cnp)
		}, timeout, interval).Should(Succeed())
		Expect(cnp.Spec.Tier).To(Equal(cnpv1alpha2.AdminTier))
		Eventually(func() bool {
			_, err := anp(wi)()
			return apierrors.IsNotFound(err)
		}, timeout, interval).Should(BeTrue())
		Eventually(cc.isolation(ctx, wi), timeout, interval).Should(
			WithTransform(guardLayer(isolationv1alpha1.GuardLayerDataplane), HaveField("Object", HavePrefix("ClusterNetworkPolicy isolator-"))))
		setCalico(calico.Spec.Template.Spec.Containers[0].Image)
		Eventually(func() error { _, err := anp(wi)(); return err }, timeout, interval).Should(Succeed())
	})

	It("leaves a policy it did not write alone and says so", func() {
		other := seedIsolation(cc.namespace(ctx, "admin-tier-conflict"))
		Expect(cc.c.Create(ctx, other)).To(Succeed())
		other = cc.isolation(ctx, other)()
		squatter := &anpv1alpha1.AdminNetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: "isolator-" + string(other.UID), Labels: map[string]string{"team": "network"}},
			Spec: anpv1alpha1.AdminNetworkPolicySpec{
				Priority: 500,
				Subject:  anpv1alpha1.AdminNetworkPolicySubject{Namespaces: &metav1.LabelSelector{MatchLabels: map[string]string{"x": "y"}}},
			},
		}
		Expect(cc.c.Create(ctx, squatter)).To(Succeed())
		Expect(cc.c.Get(ctx, client.ObjectKeyFromObject(squatter), squatter)).To(Succeed())
		Eventually(func() error {
			current := cc.isolation(ctx, other)()
			current.Spec.Guard = isolationv1alpha1.GuardEnforce
			return cc.c.Update(ctx, current)
		}, timeout, interval).Should(Succeed())
		Eventually(cc.isolation(ctx, other), timeout, interval).Should(And(
			haveCondition(isolationv1alpha1.ConditionGuarded, metav1.ConditionFalse, isolationv1alpha1.ReasonGuardNotActive),
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionFalse, isolationv1alpha1.ReasonGuardNotActive),
			WithTransform(guardLayer(isolationv1alpha1.GuardLayerDataplane), And(
				HaveField("State", isolationv1alpha1.GuardLayerNotActive),
				HaveField("Message", ContainSubstring("was not created by the operator")))),
		))
		Expect(cc.c.Delete(ctx, other)).To(Succeed())
		Consistently(func() (string, error) {
			got := &anpv1alpha1.AdminNetworkPolicy{}
			err := cc.c.Get(ctx, client.ObjectKeyFromObject(squatter), got)
			return got.ResourceVersion, err
		}, "2s", interval).Should(Equal(squatter.ResourceVersion))
	})

	It("removes its policy when the guard is turned off", func() {
		Eventually(func() error {
			current := cc.isolation(ctx, wi)()
			current.Spec.Guard = isolationv1alpha1.GuardOff
			return cc.c.Update(ctx, current)
		}, timeout, interval).Should(Succeed())
		Eventually(func() bool {
			_, err := anp(wi)()
			return apierrors.IsNotFound(err)
		}, timeout, interval).Should(BeTrue())
		Eventually(cc.isolation(ctx, wi), timeout, interval).Should(And(
			WithTransform(func(w *isolationv1alpha1.WorkloadIsolation) int { return len(w.Status.Guard) }, Equal(0)),
			WithTransform(func(w *isolationv1alpha1.WorkloadIsolation) bool {
				return strings.Contains(w.Status.Target, "local-ai")
			}, BeTrue()),
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionTrue, isolationv1alpha1.ReasonReconciled),
		))
	})
})

var _ = Describe("The guard's dataplane layer where ClusterNetworkPolicy is served as v1beta1 only", Ordered, func() {
	ctx := context.Background()
	var cc *ciliumCluster
	var wi *isolationv1alpha1.WorkloadIsolation
	cnp := func(name string) func() (*unstructured.Unstructured, error) {
		return func() (*unstructured.Unstructured, error) {
			u := &unstructured.Unstructured{}
			u.SetAPIVersion("policy.networking.k8s.io/v1beta1")
			u.SetKind("ClusterNetworkPolicy")
			err := cc.c.Get(ctx, client.ObjectKey{Name: name}, u)
			return u, err
		}
	}

	BeforeAll(func() {
		fixture, err := os.ReadFile(filepath.Join(networkPolicyAPICRDs, "policy.networking.k8s.io_clusternetworkpolicies.yaml"))
		if err != nil {
			Fail("network-policy-api CRD fixtures not found at " + networkPolicyAPICRDs + " (they sit beside the repository as ../shared): " + err.Error())
		}
		// The same CRD with v1alpha2 no longer served, as later releases
		// of the CRD may do.
		v1alpha2 := "    served: true\n    storage: false\n"
		Expect(strings.Count(string(fixture), v1alpha2)).To(Equal(1))
		dir := GinkgoT().TempDir()
		Expect(os.WriteFile(filepath.Join(dir, "clusternetworkpolicies.yaml"),
			[]byte(strings.Replace(string(fixture), v1alpha2, "    served: false\n    storage: false\n", 1)), 0o600)).To(Succeed())
		cc = startClusterWithCRDs(dir)
		DeferCleanup(cc.stop)
		for _, obj := range guardObjects("v1beta1") {
			Expect(cc.c.Create(ctx, obj)).To(Succeed())
		}
		ds := daemonSet("kube-system", "calico-node", corev1.Container{Name: "calico-node", Image: "quay.io/calico/node:v3.32.0"})
		Expect(cc.c.Create(ctx, ds)).To(Succeed())
		ds.Status = appsv1.DaemonSetStatus{ObservedGeneration: ds.Generation, DesiredNumberScheduled: 1, CurrentNumberScheduled: 1,
			UpdatedNumberScheduled: 1, NumberReady: 1, NumberAvailable: 1}
		Expect(cc.c.Status().Update(ctx, ds)).To(Succeed())
		wi = seedIsolation(cc.namespace(ctx, "cnp-v1beta1"))
		wi.Spec.Guard = isolationv1alpha1.GuardEnforce
		Expect(cc.c.Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "local-ai-0", Namespace: wi.Namespace, Labels: map[string]string{"app.kubernetes.io/name": "local-ai"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}},
		})).To(Succeed())
		Expect(cc.c.Create(ctx, wi)).To(Succeed())
	})

	It("writes, reads and analyses ClusterNetworkPolicies in v1beta1", func() {
		Eventually(cc.isolation(ctx, wi), timeout, interval).Should(And(
			haveCondition(isolationv1alpha1.ConditionGuarded, metav1.ConditionTrue, isolationv1alpha1.ReasonGuardActive),
			haveCondition(isolationv1alpha1.ConditionIsolated, metav1.ConditionTrue, isolationv1alpha1.ReasonOnlyDeclaredSources),
			WithTransform(guardLayer(isolationv1alpha1.GuardLayerDataplane), HaveField("Object", HavePrefix("ClusterNetworkPolicy isolator-"))),
		))
		name := "isolator-" + string(cc.isolation(ctx, wi)().UID)
		own, err := cnp(name)()
		Expect(err).NotTo(HaveOccurred())
		tier, _, _ := unstructured.NestedString(own.Object, "spec", "tier")
		Expect(tier).To(Equal("Admin"))
		rv := own.GetResourceVersion()
		Consistently(cnp(name), "1s", interval).Should(WithTransform(func(u *unstructured.Unstructured) string { return u.GetResourceVersion() }, Equal(rv)))

		foreign := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "policy.networking.k8s.io/v1beta1", "kind": "ClusterNetworkPolicy",
			"metadata": map[string]any{"name": "accept-scrapers"},
			"spec": map[string]any{
				"tier": "Admin", "priority": int64(5),
				"subject": map[string]any{"namespaces": map[string]any{}},
				"ingress": []any{map[string]any{"action": "Accept", "from": []any{map[string]any{
					"namespaces": map[string]any{"matchLabels": map[string]any{"kubernetes.io/metadata.name": "scrapers"}}}}}},
			},
		}}
		Expect(cc.c.Create(ctx, foreign)).To(Succeed())
		Eventually(cc.isolation(ctx, wi), timeout, interval).Should(
			WithTransform(exposedPolicies, ContainElement("ClusterNetworkPolicy/accept-scrapers")))
		Expect(cc.c.Delete(ctx, own)).To(Succeed())
		Eventually(cnp(name), timeout, interval).Should(WithTransform(func(u *unstructured.Unstructured) bool { return u.GetUID() != own.GetUID() }, BeTrue()))
	})
})
