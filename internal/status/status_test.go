package status_test

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/status"
)

type cond struct {
	status metav1.ConditionStatus
	reason string
}

func TestSetConditions(t *testing.T) {
	tests := []struct {
		name    string
		outcome status.Outcome
		want    map[string]*cond // nil: the condition must be absent
	}{{
		name:    "enforced",
		outcome: status.Outcome{Generation: 3, Mode: isolationv1alpha1.ModeEnforce, Policies: 2},
		want: map[string]*cond{
			"Ready":           {metav1.ConditionTrue, "Reconciled"},
			"PoliciesApplied": {metav1.ConditionTrue, "Applied"},
			"Stalled":         nil,
		},
	}, {
		name:    "audit",
		outcome: status.Outcome{Generation: 3, Mode: isolationv1alpha1.ModeAudit, Policies: 2},
		want: map[string]*cond{
			"Ready":           {metav1.ConditionTrue, "AuditOnly"},
			"PoliciesApplied": {metav1.ConditionFalse, "AuditOnly"},
			"Stalled":         nil,
		},
	}, {
		name: "waiting for the target",
		outcome: status.Outcome{Generation: 3, Mode: isolationv1alpha1.ModeEnforce,
			Failure: &status.Failure{Reason: "TargetNotFound", Message: "Deployment a/b not found"}},
		want: map[string]*cond{
			"Ready":           {metav1.ConditionFalse, "TargetNotFound"},
			"PoliciesApplied": {metav1.ConditionFalse, "TargetNotFound"},
			"Stalled":         nil,
		},
	}, {
		name: "invalid spec stalls",
		outcome: status.Outcome{Generation: 3, Mode: isolationv1alpha1.ModeAudit,
			Failure: &status.Failure{Reason: "UnknownPreset", Message: "unknown preset", Stalled: true}},
		want: map[string]*cond{
			"Ready":           {metav1.ConditionFalse, "UnknownPreset"},
			"PoliciesApplied": {metav1.ConditionFalse, "UnknownPreset"},
			"Stalled":         {metav1.ConditionTrue, "UnknownPreset"},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &isolationv1alpha1.WorkloadIsolationStatus{}
			// Start from a stalled status, so that clearing is tested too.
			status.SetConditions(st, status.Outcome{Generation: 1, Failure: &status.Failure{Reason: "X", Message: "x", Stalled: true}})
			status.SetConditions(st, tt.outcome)
			if st.ObservedGeneration != 3 {
				t.Errorf("observedGeneration = %d, want 3", st.ObservedGeneration)
			}
			for typ, want := range tt.want {
				got := meta.FindStatusCondition(st.Conditions, typ)
				switch {
				case want == nil && got != nil:
					t.Errorf("%s must be absent, got %s/%s", typ, got.Status, got.Reason)
				case want != nil && got == nil:
					t.Errorf("%s is missing", typ)
				case want != nil && (got.Status != want.status || got.Reason != want.reason || got.ObservedGeneration != 3 || got.Message == ""):
					t.Errorf("%s = %s/%s (generation %d, message %q), want %s/%s", typ, got.Status, got.Reason, got.ObservedGeneration, got.Message, want.status, want.reason)
				}
			}
		})
	}
}

func TestSetConditionsKeepsTransitionTimeWhenUnchanged(t *testing.T) {
	st := &isolationv1alpha1.WorkloadIsolationStatus{}
	o := status.Outcome{Generation: 1, Mode: isolationv1alpha1.ModeEnforce, Policies: 2}
	status.SetConditions(st, o)
	past := metav1.NewTime(time.Now().Add(-time.Hour).Truncate(time.Second))
	for i := range st.Conditions {
		st.Conditions[i].LastTransitionTime = past
	}
	before := st.DeepCopy()
	status.SetConditions(st, o)
	if !equalStatus(before, st) {
		t.Fatalf("an unchanged outcome must leave the status unchanged:\nbefore %+v\nafter  %+v", before, st)
	}
}

func equalStatus(a, b *isolationv1alpha1.WorkloadIsolationStatus) bool {
	if len(a.Conditions) != len(b.Conditions) {
		return false
	}
	for i := range a.Conditions {
		if a.Conditions[i] != b.Conditions[i] {
			return false
		}
	}
	return a.ObservedGeneration == b.ObservedGeneration
}
