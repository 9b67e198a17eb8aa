package controller_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	dto "github.com/prometheus/client_model/go"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/yaml"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/config"
	"github.com/isolator-dev/isolator/internal/controller"
)

func daemonSet(ns, name string, containers ...corev1.Container) *appsv1.DaemonSet {
	labels := map[string]string{"k8s-app": name}
	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: containers},
			},
		},
	}
}

// createDaemonSet creates ds and writes, through the status subresource,
// the status the DaemonSet controller (which envtest does not run) reports
// once ready of desired agent pods are ready for the current generation.
func createDaemonSet(ctx context.Context, ds *appsv1.DaemonSet, desired, ready int32) {
	created := ds.DeepCopy()
	Expect(k8sClient.Create(ctx, created)).To(Succeed())
	setAgents(ctx, created, desired, ready)
}

// setAgents writes ds's status as the DaemonSet controller would after
// observing its current generation.
func setAgents(ctx context.Context, ds *appsv1.DaemonSet, desired, ready int32) {
	current := &appsv1.DaemonSet{}
	Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(ds), current)).To(Succeed())
	current.Status = appsv1.DaemonSetStatus{
		ObservedGeneration:     current.Generation,
		DesiredNumberScheduled: desired,
		CurrentNumberScheduled: desired,
		UpdatedNumberScheduled: desired,
		NumberReady:            ready,
		NumberAvailable:        ready,
		NumberUnavailable:      desired - ready,
	}
	Expect(k8sClient.Status().Update(ctx, current)).To(Succeed())
}

func ensureNamespace(ctx context.Context, name string) {
	err := k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
	if !apierrors.IsAlreadyExists(err) {
		Expect(err).NotTo(HaveOccurred())
	}
}

// cniOf returns name/enforcement/reason of status.cni and the Enforced condition.
func cniOf(wi *isolationv1alpha1.WorkloadIsolation) string {
	if wi.Status.CNI == nil {
		return "<none>"
	}
	return wi.Status.CNI.Name + "/" + string(wi.Status.CNI.EnforcesNetworkPolicy) + "/" + wi.Status.CNI.Source
}

func cniMetric() map[string]string {
	families, err := metrics.Registry.Gather()
	Expect(err).NotTo(HaveOccurred())
	for _, f := range families {
		if f.GetName() != "isolator_cni_info" {
			continue
		}
		for _, m := range f.GetMetric() {
			if m.GetGauge().GetValue() == 1 {
				return labelMap(m.GetLabel())
			}
		}
	}
	return nil
}

func labelMap(pairs []*dto.LabelPair) map[string]string {
	out := map[string]string{}
	for _, p := range pairs {
		out[p.GetName()] = p.GetValue()
	}
	return out
}

var _ = Describe("CNI enforcement status", Ordered, func() {
	ctx := context.Background()
	var isolations []*isolationv1alpha1.WorkloadIsolation

	flannel := daemonSet("kube-flannel", "kube-flannel-ds",
		corev1.Container{Name: "kube-flannel", Image: "docker.io/flannel/flannel:v0.25.7", Args: []string{"--ip-masq", "--kube-subnet-mgr"}})
	policyAgent := daemonSet("kube-system", "kube-network-policies",
		corev1.Container{Name: "kube-network-policies", Image: "registry.k8s.io/networking/kube-network-policies:v0.7.0", Args: []string{"/bin/netpol", "--v=2"}})
	kubeRouter := daemonSet("kube-system", "kube-router",
		corev1.Container{Name: "kube-router", Image: "docker.io/cloudnativelabs/kube-router:v2.2.1", Args: []string{"--run-router=true", "--run-firewall=true"}})
	cilium := daemonSet("kube-system", "cilium",
		corev1.Container{Name: "cilium-agent", Image: "quay.io/cilium/cilium:v1.16.3", Args: []string{"--config-dir=/tmp/cilium/config-map"}})
	ciliumConfig := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "cilium-config", Namespace: "kube-system"},
		Data:       map[string]string{"enable-policy": "never", "cluster-name": "default"},
	}

	// eachIsolation waits until every WorkloadIsolation of the spec matches.
	eachIsolation := func(m OmegaMatcher) {
		for _, wi := range isolations {
			Eventually(getIsolation(ctx, wi), timeout, interval).Should(m, "WorkloadIsolation %s/%s", wi.Namespace, wi.Name)
		}
	}
	haveCNI := func(s string) OmegaMatcher { return WithTransform(cniOf, Equal(s)) }

	BeforeAll(func() {
		ensureNamespace(ctx, "kube-flannel")
		for range 2 {
			wi := seedIsolation(newNamespace(ctx, "cni"))
			Expect(k8sClient.Create(ctx, wi)).To(Succeed())
			isolations = append(isolations, wi)
		}
	})

	AfterAll(func() {
		for _, obj := range []client.Object{flannel, policyAgent, kubeRouter, cilium, ciliumConfig} {
			Expect(client.IgnoreNotFound(k8sClient.Delete(ctx, obj))).To(Succeed())
		}
		eachIsolation(haveCNI("unknown/Unknown/Detected"))
	})

	It("reports Unknown, without failing Ready, when no CNI is recognised", func() {
		eachIsolation(And(
			haveCNI("unknown/Unknown/Detected"),
			haveCondition(isolationv1alpha1.ConditionEnforced, metav1.ConditionUnknown, isolationv1alpha1.ReasonCNIUnknown),
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionTrue, isolationv1alpha1.ReasonReconciled),
		))
	})

	It("does not report enforcement by a CNI whose agent pods are not ready, and Ready turns False", func() {
		// kube-router whose node selector matches no node: the DaemonSet
		// controller schedules no agent pod, so nothing enforces.
		createDaemonSet(ctx, kubeRouter, 0, 0)
		eachIsolation(And(
			haveCNI("kube-router/Unknown/Detected"),
			haveCondition(isolationv1alpha1.ConditionEnforced, metav1.ConditionUnknown, isolationv1alpha1.ReasonAgentsNotReady),
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionFalse, isolationv1alpha1.ReasonAgentsNotReady),
		))
		wi := getIsolation(ctx, isolations[0])()
		enforced := meta.FindStatusCondition(wi.Status.Conditions, isolationv1alpha1.ConditionEnforced)
		Expect(enforced.Message).To(Equal("kube-router enforces NetworkPolicy only where its agent runs: 0 of 0 agent pods are ready (DaemonSet kube-system/kube-router)"))
		Expect(wi.Status.CNI.Evidence).To(ContainSubstring("DaemonSet kube-system/kube-router, image docker.io/cloudnativelabs/kube-router:v2.2.1, 0 of 0 agent pods ready"))

		// Its agent is scheduled on two nodes and crash-loops on one.
		setAgents(ctx, kubeRouter, 2, 1)
		eachIsolation(And(
			WithTransform(func(wi *isolationv1alpha1.WorkloadIsolation) string {
				return meta.FindStatusCondition(wi.Status.Conditions, isolationv1alpha1.ConditionEnforced).Message
			}, ContainSubstring("1 of 2 agent pods are ready")),
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionFalse, isolationv1alpha1.ReasonAgentsNotReady),
		))

		// A status change alone classifies again: every agent is ready now.
		setAgents(ctx, kubeRouter, 2, 2)
		eachIsolation(And(
			haveCNI("kube-router/True/Detected"),
			haveCondition(isolationv1alpha1.ConditionEnforced, metav1.ConditionTrue, isolationv1alpha1.ReasonCNIEnforces),
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionTrue, isolationv1alpha1.ReasonReconciled),
		))

		Expect(k8sClient.Delete(ctx, kubeRouter)).To(Succeed())
		eachIsolation(haveCNI("unknown/Unknown/Detected"))
	})

	It("reports that Flannel alone does not enforce, and Ready turns False on every WorkloadIsolation", func() {
		createDaemonSet(ctx, flannel, 1, 1)
		eachIsolation(And(
			haveCNI("flannel/False/Detected"),
			haveCondition(isolationv1alpha1.ConditionEnforced, metav1.ConditionFalse, isolationv1alpha1.ReasonCNIDoesNotEnforce),
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionFalse, isolationv1alpha1.ReasonCNIDoesNotEnforce),
			haveCondition(isolationv1alpha1.ConditionPoliciesApplied, metav1.ConditionTrue, isolationv1alpha1.ReasonApplied),
		))
		wi := getIsolation(ctx, isolations[0])()
		Expect(wi.Status.CNI.Version).To(Equal("v0.25.7"))
		Expect(wi.Status.CNI.Evidence).To(ContainSubstring("DaemonSet kube-flannel/kube-flannel-ds, image docker.io/flannel/flannel:v0.25.7"))
		Expect(cniMetric()).To(Equal(map[string]string{
			"cni": "flannel", "version": "v0.25.7", "enforces_network_policy": "False", "source": "Detected",
		}))
		Eventually(func() []string {
			events := &eventsv1.EventList{}
			Expect(k8sClient.List(ctx, events, client.InNamespace(wi.Namespace))).To(Succeed())
			var warnings []string
			for _, e := range events.Items {
				if e.Type == corev1.EventTypeWarning && e.Regarding.Name == wi.Name {
					warnings = append(warnings, e.Action+"/"+e.Reason)
				}
			}
			return warnings
		}, timeout, interval).Should(ContainElements("Enforced/CNIDoesNotEnforce", "Ready/CNIDoesNotEnforce"))
	})

	It("reasons about a policy agent added next to Flannel", func() {
		createDaemonSet(ctx, policyAgent, 1, 1)
		eachIsolation(And(
			haveCNI("flannel+kube-network-policies/True/Detected"),
			haveCondition(isolationv1alpha1.ConditionEnforced, metav1.ConditionTrue, isolationv1alpha1.ReasonCNIEnforces),
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionTrue, isolationv1alpha1.ReasonReconciled),
		))
	})

	It("follows a switch to Cilium, including its enable-policy setting, without a restart", func() {
		Expect(k8sClient.Delete(ctx, flannel)).To(Succeed())
		Expect(k8sClient.Delete(ctx, policyAgent)).To(Succeed())
		Expect(k8sClient.Create(ctx, ciliumConfig.DeepCopy())).To(Succeed())
		createDaemonSet(ctx, cilium, 1, 1)
		eachIsolation(And(
			haveCNI("cilium/False/Detected"),
			haveCondition(isolationv1alpha1.ConditionEnforced, metav1.ConditionFalse, isolationv1alpha1.ReasonPolicyEnforcementDisabled),
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionFalse, isolationv1alpha1.ReasonPolicyEnforcementDisabled),
		))

		cm := &corev1.ConfigMap{}
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(ciliumConfig), cm)).To(Succeed())
		cm.Data["enable-policy"] = "default"
		Expect(k8sClient.Update(ctx, cm)).To(Succeed())
		eachIsolation(And(
			haveCNI("cilium/True/Detected"),
			haveCondition(isolationv1alpha1.ConditionEnforced, metav1.ConditionTrue, isolationv1alpha1.ReasonCNIEnforces),
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionTrue, isolationv1alpha1.ReasonReconciled),
		))
		wi := getIsolation(ctx, isolations[1])()
		Expect(wi.Status.CNI.L7Policy).To(BeTrue())
		Expect(wi.Status.CNI.Version).To(Equal("v1.16.3"))
	})

	It("names KKP's managed Cilium ApplicationInstallation as evidence (validated against KKP's own CRD)", func() {
		fixtures := filepath.Join("..", "..", "..", "shared", "fixtures", "crds")
		if _, err := os.Stat(fixtures); err != nil {
			Fail("KKP CRD fixtures not found at " + fixtures + " (they sit beside the repository as ../shared): " + err.Error())
		}
		_, err := envtest.InstallCRDs(controlPlane.Config, envtest.CRDInstallOptions{
			Paths: []string{filepath.Join(fixtures, "apps.kubermatic.k8c.io_applicationinstallations.yaml")}, ErrorIfPathMissing: true,
		})
		Expect(err).NotTo(HaveOccurred())
		app := &unstructured.Unstructured{}
		Expect(yaml.Unmarshal([]byte(`
apiVersion: apps.kubermatic.k8c.io/v1
kind: ApplicationInstallation
metadata: {name: cilium, namespace: kube-system}
spec:
  applicationRef: {name: cilium, version: 1.16.3}
  namespace: {name: kube-system, create: false}
  valuesBlock: |
    policyEnforcementMode: default
    hubble: {enabled: true}
`), &app.Object)).To(Succeed())
		Expect(k8sClient.Create(ctx, app)).To(Succeed())
		DeferCleanup(func() { Expect(client.IgnoreNotFound(k8sClient.Delete(ctx, app))).To(Succeed()) })

		// KKP rolls the agent out after the installation: that change is
		// what the detector reacts to.
		agent := &appsv1.DaemonSet{}
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(cilium), agent)).To(Succeed())
		agent.Spec.Template.Spec.Containers[0].Image = "quay.io/cilium/cilium:v1.16.4"
		Expect(k8sClient.Update(ctx, agent)).To(Succeed())
		setAgents(ctx, agent, 1, 1)
		eachIsolation(And(
			haveCNI("cilium/True/Detected"),
			WithTransform(func(wi *isolationv1alpha1.WorkloadIsolation) string { return wi.Status.CNI.Evidence },
				ContainSubstring("ApplicationInstallation kube-system/cilium (cilium 1.16.3)")),
		))
	})

	It("reports a CNI declared by the administrator instead of the detected one", func() {
		createDaemonSet(ctx, flannel, 1, 1)
		Expect(k8sClient.Delete(ctx, cilium)).To(Succeed())
		eachIsolation(haveCNI("flannel/False/Detected"))

		cfg, err := config.Parse([]byte("cni:\n  name: calico\n  enforcesNetworkPolicy: true\n"))
		Expect(err).NotTo(HaveOccurred())
		mgr, err := ctrl.NewManager(controlPlane.Config, ctrl.Options{Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"}})
		Expect(err).NotTo(HaveOccurred())
		declared := &controller.CNIDetector{Override: cfg.CNI.Result()}
		Expect(declared.SetupWithManager(mgr)).To(Succeed())

		var writes atomic.Int64
		r := countingReconciler(&writes)
		r.CNI = declared
		wi := isolations[0]
		_, err = r.Reconcile(ctx, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(wi)})
		Expect(err).NotTo(HaveOccurred())
		got := getIsolation(ctx, wi)()
		Expect(cniOf(got)).To(Equal("calico/True/Configured"))
		Expect(got.Status.CNI.Evidence).To(Equal("operator configuration (cni)"))
		Expect(got).To(And(
			haveCondition(isolationv1alpha1.ConditionEnforced, metav1.ConditionTrue, isolationv1alpha1.ReasonCNIEnforces),
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionTrue, isolationv1alpha1.ReasonReconciled),
		))
		enforced := meta.FindStatusCondition(got.Status.Conditions, isolationv1alpha1.ConditionEnforced)
		Expect(strings.ToLower(enforced.Message)).To(ContainSubstring("declared in the operator configuration"))
	})
})
