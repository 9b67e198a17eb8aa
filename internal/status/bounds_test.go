package status_test

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/analysis"
	"github.com/isolator-dev/isolator/internal/status"
)

// The largest inputs must still give a status within the CRD's limits, or
// the API server rejects the patch and an older status stays in place.
func TestStatusStaysWithinLimits(t *testing.T) {
	var report analysis.Report
	for i := range 200 {
		report.Exposures = append(report.Exposures, analysis.Exposure{
			Policy:  fmt.Sprintf("%s-%03d", strings.Repeat("p", 240), i),
			Summary: strings.Repeat("ü", 3000), Widens: true,
		})
	}
	st := &isolationv1alpha1.WorkloadIsolationStatus{}
	status.SetConditions(st, status.Outcome{Generation: 1, Mode: isolationv1alpha1.ModeEnforce, Policies: 33, Isolation: &report,
		Failure: &status.Failure{Reason: "InvalidSpec", Message: strings.Repeat("x", 100000)}})
	for _, c := range st.Conditions {
		if len(c.Message) > status.MaxMessage || !utf8.ValidString(c.Message) {
			t.Errorf("condition %s message: %d bytes (limit %d), valid UTF-8: %v", c.Type, len(c.Message), status.MaxMessage, utf8.ValidString(c.Message))
		}
	}
	if len(st.Exposure) > status.MaxExposures {
		t.Errorf("%d exposures, limit %d", len(st.Exposure), status.MaxExposures)
	}
	for _, e := range st.Exposure {
		if len(e.Summary) > status.MaxSummary || !utf8.ValidString(e.Summary) {
			t.Errorf("summary of %s: %d bytes", e.Policy, len(e.Summary))
		}
	}
	isolated := meta.FindStatusCondition(st.Conditions, isolationv1alpha1.ConditionIsolated)
	if !strings.Contains(isolated.Message, "and 190 more") {
		t.Errorf("Isolated message should name the first policies and count the rest, got %q", isolated.Message[:200])
	}

	selector := &metav1.LabelSelector{MatchLabels: map[string]string{}}
	for i := range 32 {
		selector.MatchLabels[fmt.Sprintf("%s/k%02d%s", strings.Repeat("d", 250), i, strings.Repeat("k", 58))] = strings.Repeat("v", 63)
	}
	status.SetTarget(st, selector)
	if len(st.Target) > status.MaxTarget {
		t.Errorf("status.target: %d bytes, limit %d", len(st.Target), status.MaxTarget)
	}
	if len(st.TargetSelector.MatchLabels) != 32 {
		t.Errorf("the structured selector must stay whole, got %d labels", len(st.TargetSelector.MatchLabels))
	}
}

func TestJoinBounded(t *testing.T) {
	for _, tt := range []struct {
		items []string
		want  string
	}{
		{nil, ""},
		{[]string{"a", "b"}, "a, b"},
		{[]string{"a", "b", "c", "d"}, "a, b and 2 more"},
	} {
		if got := status.JoinBounded(tt.items, 2); got != tt.want {
			t.Errorf("JoinBounded(%v) = %q, want %q", tt.items, got, tt.want)
		}
	}
}

// An analysis that ran out of its budget proves nothing: never Isolated.
func TestIncompleteAnalysisIsNotIsolated(t *testing.T) {
	st := &isolationv1alpha1.WorkloadIsolationStatus{}
	status.SetConditions(st, status.Outcome{Generation: 1, Mode: isolationv1alpha1.ModeEnforce, Policies: 2,
		Isolation: &analysis.Report{
			Incomplete: "the analysis budget of 2000000 steps ran out",
			Exposures:  []analysis.Exposure{{Policy: analysis.Incomplete, Summary: "not examined", Widens: true}},
		}})
	for _, typ := range []string{isolationv1alpha1.ConditionIsolated, isolationv1alpha1.ConditionReady} {
		c := meta.FindStatusCondition(st.Conditions, typ)
		if c.Status != metav1.ConditionFalse || c.Reason != isolationv1alpha1.ReasonAnalysisIncomplete {
			t.Errorf("%s = %s/%s, want False/%s", typ, c.Status, c.Reason, isolationv1alpha1.ReasonAnalysisIncomplete)
		}
	}
}

// When the analysis cannot run, an earlier Isolated=True must not stand.
func TestIsolatedIsNotKeptWhenTheAnalysisCannotRun(t *testing.T) {
	st := &isolationv1alpha1.WorkloadIsolationStatus{}
	status.SetConditions(st, status.Outcome{Generation: 1, Mode: isolationv1alpha1.ModeEnforce, Policies: 2, Isolation: &analysis.Report{}})
	if c := meta.FindStatusCondition(st.Conditions, isolationv1alpha1.ConditionIsolated); c.Status != metav1.ConditionTrue {
		t.Fatalf("setup: Isolated = %s", c.Status)
	}
	st.Exposure = []isolationv1alpha1.Exposure{{Policy: "old", Summary: "old"}}
	status.SetConditions(st, status.Outcome{Generation: 2, Mode: isolationv1alpha1.ModeEnforce,
		Failure: &status.Failure{Reason: isolationv1alpha1.ReasonUnknownPreset, Message: `unknown preset "x"`, Stalled: true}})
	c := meta.FindStatusCondition(st.Conditions, isolationv1alpha1.ConditionIsolated)
	if c.Status != metav1.ConditionUnknown || c.Reason != isolationv1alpha1.ReasonNotVerified || c.ObservedGeneration != 2 {
		t.Errorf("Isolated = %s/%s (generation %d), want Unknown/NotVerified for generation 2", c.Status, c.Reason, c.ObservedGeneration)
	}
	if st.Exposure != nil {
		t.Errorf("exposure of an earlier analysis kept: %v", st.Exposure)
	}
}
