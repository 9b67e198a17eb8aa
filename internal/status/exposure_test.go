package status_test

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/analysis"
	"github.com/isolator-dev/isolator/internal/status"
)

// status.exposure says in which direction each policy widens the isolation,
// and the Isolated message names the egress widenings as such.
func TestExposureDirection(t *testing.T) {
	report := &analysis.Report{Exposures: []analysis.Exposure{
		{Policy: "allow-all-egress", Direction: analysis.Egress, Widens: true,
			Summary: "allow-all-egress: egress to all destinations, all ports"},
		{Policy: "future-store", Direction: analysis.Egress, Widens: true, Latent: true,
			Summary: "future-store: egress to all pods in namespaces team=storage, TCP 9000 (latent: …)"},
		{Policy: "allow-all-ingress", Direction: analysis.Ingress, Widens: true,
			Summary: "allow-all-ingress: all pods in all namespaces, all ports"},
		{Policy: analysis.Unselected, Direction: analysis.Egress, Widens: true,
			Summary: "1 target pods are selected by no egress NetworkPolicy: egress to all destinations, all ports"},
	}}
	st := &isolationv1alpha1.WorkloadIsolationStatus{}
	status.SetConditions(st, status.Outcome{Generation: 1, Mode: isolationv1alpha1.ModeEnforce, Policies: 4, Isolation: report, EgressDeclared: true})

	want := []isolationv1alpha1.Exposure{
		{Policy: "allow-all-egress", Direction: "Egress", Summary: "allow-all-egress: egress to all destinations, all ports"},
		{Policy: "future-store", Direction: "Egress", Summary: "future-store: egress to all pods in namespaces team=storage, TCP 9000 (latent: …)"},
		{Policy: "allow-all-ingress", Direction: "Ingress", Summary: "allow-all-ingress: all pods in all namespaces, all ports"},
		{Policy: "(none)", Direction: "Egress", Summary: "1 target pods are selected by no egress NetworkPolicy: egress to all destinations, all ports"},
	}
	if len(st.Exposure) != len(want) {
		t.Fatalf("status.exposure = %+v", st.Exposure)
	}
	for i := range want {
		if st.Exposure[i] != want[i] {
			t.Errorf("status.exposure[%d] = %+v, want %+v", i, st.Exposure[i], want[i])
		}
	}
	isolated := meta.FindStatusCondition(st.Conditions, isolationv1alpha1.ConditionIsolated)
	if isolated == nil || isolated.Status != metav1.ConditionFalse || isolated.Reason != isolationv1alpha1.ReasonWidenedByPolicy {
		t.Fatalf("Isolated = %+v, want False/WidenedByPolicy", isolated)
	}
	for _, part := range []string{"allow-all-egress (egress)", "future-store (egress, latent)", "allow-all-ingress,", "no egress policy at all for some target pods"} {
		if !strings.Contains(isolated.Message, part) {
			t.Errorf("Isolated message %q lacks %q", isolated.Message, part)
		}
	}
	if ready := meta.FindStatusCondition(st.Conditions, isolationv1alpha1.ConditionReady); ready.Status != metav1.ConditionFalse {
		t.Errorf("an egress widening must turn Ready False in Enforce mode, got %s", ready.Status)
	}
	if st.Egress != isolationv1alpha1.EgressNotIsolated {
		t.Errorf("status.egress = %q, want %q", st.Egress, isolationv1alpha1.EgressNotIsolated)
	}
}

func TestIsolatedMessageCoversEgressWhenDeclared(t *testing.T) {
	for _, tt := range []struct {
		egress bool
		want   string
	}{
		{false, "The policies of the namespace and the cluster admit only the declared sources to the target pods"},
		{true, "The policies of the namespace and the cluster admit only the declared sources to the target pods and let them reach only the declared destinations"},
	} {
		st := &isolationv1alpha1.WorkloadIsolationStatus{}
		status.SetConditions(st, status.Outcome{Generation: 1, Mode: isolationv1alpha1.ModeEnforce, Policies: 2, Isolation: &analysis.Report{}, EgressDeclared: tt.egress})
		c := meta.FindStatusCondition(st.Conditions, isolationv1alpha1.ConditionIsolated)
		if c == nil || c.Status != metav1.ConditionTrue || c.Message != tt.want {
			t.Errorf("egress declared %v: Isolated = %+v, want True with %q", tt.egress, c, tt.want)
		}
	}
}
