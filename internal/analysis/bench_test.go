package analysis_test

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/analysis"
	"github.com/isolator-dev/isolator/internal/policy"
	"github.com/isolator-dev/isolator/internal/preset"
)

// The CRD's maximum sizes: rules per WorkloadIsolation, from entries per
// rule, ports per rule.
const maxRules, maxPeers, maxPorts = 32, 32, 32

// maxIsolation is a WorkloadIsolation at the CRD's maximum sizes whose every
// source is "pods labelled app=<app>-<rule>-<peer> in all namespaces", and
// whose egress rules are as many and as large: half of each rule's
// destinations are pods labelled app=<app>-e<rule>-<peer> in all
// namespaces, half are ipBlocks with an exception.
func maxIsolation(name, app string, firstPort int32) *isolationv1alpha1.WorkloadIsolation {
	wi := &isolationv1alpha1.WorkloadIsolation{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "local-ai", UID: types.UID(name)},
		Spec: isolationv1alpha1.WorkloadIsolationSpec{Target: isolationv1alpha1.Target{
			PodSelector: &isolationv1alpha1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": "local-ai"}},
		}},
	}
	for r := range maxRules {
		rule := isolationv1alpha1.IngressRule{Name: fmt.Sprintf("rule-%d", r)}
		for p := range maxPeers {
			rule.From = append(rule.From, isolationv1alpha1.IngressPeer{
				NamespaceSelector: &isolationv1alpha1.LabelSelector{},
				PodSelector:       &isolationv1alpha1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("%s-%d-%d", app, r, p)}},
			})
		}
		for p := range maxPorts {
			rule.Ports = append(rule.Ports, isolationv1alpha1.Port{Protocol: corev1.ProtocolTCP, Port: ptr.To(intstr.FromInt32(firstPort + int32(p)))})
		}
		wi.Spec.Ingress = append(wi.Spec.Ingress, rule)

		egress := isolationv1alpha1.EgressRule{Name: fmt.Sprintf("rule-%d", r), Ports: rule.Ports}
		for p := range maxPeers {
			if p%2 == 0 {
				egress.To = append(egress.To, isolationv1alpha1.EgressPeer{
					NamespaceSelector: &isolationv1alpha1.LabelSelector{},
					PodSelector:       &isolationv1alpha1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("%s-e%d-%d", app, r, p)}},
				})
				continue
			}
			egress.To = append(egress.To, isolationv1alpha1.EgressPeer{IPBlock: &isolationv1alpha1.IPBlock{
				CIDR: fmt.Sprintf("10.%d.%d.0/24", r, p), Except: []string{fmt.Sprintf("10.%d.%d.128/25", r, p)},
			}})
		}
		wi.Spec.Egress = append(wi.Spec.Egress, egress)
	}
	return wi
}

// maxSizeInput is the analysis of one WorkloadIsolation at the CRD's maximum
// sizes, in a cluster of 100 namespaces, whose namespace also holds the
// generated policies of three other maximum-size WorkloadIsolations on the
// same pods (one a narrower copy, two that admit other sources and
// destinations) and 100 small policies written by others. Every
// WorkloadIsolation isolates egress too, so both directions are analysed.
func maxSizeInput(b *testing.B) analysis.Input {
	b.Helper()
	presets, err := preset.Parse(preset.BuiltinYAML())
	if err != nil {
		b.Fatal(err)
	}
	catalog, err := preset.NewCatalog(presets)
	if err != nil {
		b.Fatal(err)
	}
	build := func(wi *isolationv1alpha1.WorkloadIsolation) []networkingv1.NetworkPolicy {
		nps, err := policy.Build(wi, *wi.Spec.Target.PodSelector.LabelSelector(), catalog)
		if err != nil {
			b.Fatal(err)
		}
		return nps
	}
	self := maxIsolation("big", "client", 8000)
	declared := build(self)
	all := append([]networkingv1.NetworkPolicy(nil), declared...)

	narrower := maxIsolation("narrower", "client", 8000)
	for r := range narrower.Spec.Ingress {
		for p := range narrower.Spec.Ingress[r].From {
			narrower.Spec.Ingress[r].From[p].PodSelector.MatchLabels["tier"] = "web"
		}
		for p, to := range narrower.Spec.Egress[r].To {
			if to.PodSelector != nil {
				to.PodSelector.MatchLabels["tier"] = "web"
				continue
			}
			narrower.Spec.Egress[r].To[p].IPBlock = &isolationv1alpha1.IPBlock{CIDR: fmt.Sprintf("10.%d.%d.0/26", r, p)}
		}
	}
	all = append(all, build(narrower)...)
	all = append(all, build(maxIsolation("other-a", "tool", 8000))...)
	all = append(all, build(maxIsolation("other-b", "client", 9000))...)
	for i := range 100 {
		all = append(all, networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("team-%d", i), Namespace: "local-ai"},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("web-%d", i%10)}},
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
				Ingress: []networkingv1.NetworkPolicyIngressRule{{
					From:  []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": fmt.Sprintf("t%d", i)}}}},
					Ports: []networkingv1.NetworkPolicyPort{{Port: ptr.To(intstr.FromInt32(80))}},
				}},
			},
		})
	}
	in := analysis.Input{
		Namespace: "local-ai", Declared: declared, Policies: all, Self: self.Name,
		OwnerOf: analysis.ControllingIsolation,
	}
	for i := range 20 {
		in.TargetPods = append(in.TargetPods, analysis.Object{Name: fmt.Sprintf("local-ai-%d", i), Labels: map[string]string{"app.kubernetes.io/name": "local-ai"}})
	}
	for i := range 100 {
		name := fmt.Sprintf("ns-%d", i)
		in.Namespaces = append(in.Namespaces, analysis.Object{Name: name, Labels: map[string]string{
			"kubernetes.io/metadata.name": name, "team": fmt.Sprintf("t%d", i%10),
		}})
	}
	return in
}

// BenchmarkAnalyzeMaxSize measures one analysis at the CRD's maximum sizes;
// it prints the time per analysis, the policies and source entries
// examined, and the evaluation steps taken (to compare with DefaultBudget).
func BenchmarkAnalyzeMaxSize(b *testing.B) {
	in := maxSizeInput(b)
	peers := 0
	for _, np := range in.Policies {
		for _, r := range np.Spec.Ingress {
			peers += len(r.From)
		}
		for _, r := range np.Spec.Egress {
			peers += len(r.To)
		}
	}
	var report analysis.Report
	b.ResetTimer()
	for b.Loop() {
		report = analysis.Analyze(in)
	}
	b.StopTimer()
	b.ReportMetric(float64(len(in.Policies)), "policies")
	b.ReportMetric(float64(peers), "peers")
	b.ReportMetric(float64(len(report.Exposures)), "exposures")
	b.ReportMetric(float64(report.Steps), "steps")
	if report.Incomplete != "" {
		b.Fatalf("the default budget must cover the CRD's maximum sizes: %s", report.Incomplete)
	}
	if len(report.Exposures) == 0 {
		b.Fatal("the other WorkloadIsolations must be reported")
	}
}
