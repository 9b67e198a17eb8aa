package status_test

import (
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/analysis"
	"github.com/isolator-dev/isolator/internal/cni"
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

func TestEnforcedFeedsReady(t *testing.T) {
	result := func(e cni.Enforcement, reason string) *cni.Result {
		return &cni.Result{Name: "x", Enforces: e, Reason: reason, Message: "m", Source: cni.SourceDetected}
	}
	tests := []struct {
		name          string
		mode          isolationv1alpha1.Mode
		cni           *cni.Result
		failure       *status.Failure
		ready         cond
		enforced      *cond
		cniStatusName string
	}{
		{"enforcing CNI", isolationv1alpha1.ModeEnforce, result(cni.EnforcementTrue, cni.ReasonEnforcing),
			nil, cond{metav1.ConditionTrue, "Reconciled"}, &cond{metav1.ConditionTrue, cni.ReasonEnforcing}, "x"},
		{"CNI that does not enforce makes Ready False", isolationv1alpha1.ModeEnforce, result(cni.EnforcementFalse, cni.ReasonDoesNotEnforce),
			nil, cond{metav1.ConditionFalse, cni.ReasonDoesNotEnforce}, &cond{metav1.ConditionFalse, cni.ReasonDoesNotEnforce}, "x"},
		{"disabled enforcement makes Ready False", isolationv1alpha1.ModeEnforce, result(cni.EnforcementFalse, cni.ReasonEnforcementDisabled),
			nil, cond{metav1.ConditionFalse, cni.ReasonEnforcementDisabled}, &cond{metav1.ConditionFalse, cni.ReasonEnforcementDisabled}, "x"},
		{"unknown CNI leaves Ready alone", isolationv1alpha1.ModeEnforce, result(cni.EnforcementUnknown, cni.ReasonUnknown),
			nil, cond{metav1.ConditionTrue, "Reconciled"}, &cond{metav1.ConditionUnknown, cni.ReasonUnknown}, "x"},
		{"an enforcing agent that is not ready makes Ready False", isolationv1alpha1.ModeEnforce, result(cni.EnforcementUnknown, cni.ReasonAgentsNotReady),
			nil, cond{metav1.ConditionFalse, cni.ReasonAgentsNotReady}, &cond{metav1.ConditionUnknown, cni.ReasonAgentsNotReady}, "x"},
		{"Audit mode writes nothing, so enforcement does not fail it", isolationv1alpha1.ModeAudit, result(cni.EnforcementFalse, cni.ReasonDoesNotEnforce),
			nil, cond{metav1.ConditionTrue, "AuditOnly"}, &cond{metav1.ConditionFalse, cni.ReasonDoesNotEnforce}, "x"},
		{"a spec failure comes first", isolationv1alpha1.ModeEnforce, result(cni.EnforcementFalse, cni.ReasonDoesNotEnforce),
			&status.Failure{Reason: "UnknownPreset", Message: "m", Stalled: true}, cond{metav1.ConditionFalse, "UnknownPreset"}, &cond{metav1.ConditionFalse, cni.ReasonDoesNotEnforce}, "x"},
		{"no classification yet", isolationv1alpha1.ModeEnforce, nil,
			nil, cond{metav1.ConditionTrue, "Reconciled"}, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &isolationv1alpha1.WorkloadIsolationStatus{}
			status.SetConditions(st, status.Outcome{Generation: 1, Mode: tt.mode, Policies: 2, CNI: tt.cni, Failure: tt.failure})
			ready := meta.FindStatusCondition(st.Conditions, "Ready")
			if ready.Status != tt.ready.status || ready.Reason != tt.ready.reason {
				t.Errorf("Ready = %s/%s, want %s/%s", ready.Status, ready.Reason, tt.ready.status, tt.ready.reason)
			}
			enforced := meta.FindStatusCondition(st.Conditions, "Enforced")
			switch {
			case tt.enforced == nil && enforced != nil:
				t.Errorf("Enforced must be absent, got %s", enforced.Status)
			case tt.enforced != nil && (enforced == nil || enforced.Status != tt.enforced.status || enforced.Reason != tt.enforced.reason):
				t.Errorf("Enforced = %+v, want %+v", enforced, tt.enforced)
			}
			if tt.cniStatusName == "" && st.CNI != nil || tt.cniStatusName != "" && (st.CNI == nil || st.CNI.Name != tt.cniStatusName) {
				t.Errorf("status.cni = %+v, want name %q", st.CNI, tt.cniStatusName)
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

func TestEgressSaysIsolatedOnlyWhenReady(t *testing.T) {
	enforcing := &cni.Result{Name: "cilium", Enforces: cni.EnforcementTrue, Reason: "Enforcing", Message: "m", Source: cni.SourceDetected}
	isolated := &analysis.Report{}
	tests := []struct {
		name string
		o    status.Outcome
		want isolationv1alpha1.EgressState
	}{
		{"no egress declared", status.Outcome{Mode: isolationv1alpha1.ModeEnforce, Policies: 2, CNI: enforcing, Isolation: isolated}, isolationv1alpha1.EgressNone},
		{"declared, in place, enforced, isolated", status.Outcome{Mode: isolationv1alpha1.ModeEnforce, Policies: 3, CNI: enforcing, Isolation: isolated, EgressDeclared: true}, isolationv1alpha1.EgressIsolated},
		{"declared but not enforced", status.Outcome{Mode: isolationv1alpha1.ModeEnforce, Policies: 3, CNI: &cni.Result{Name: "flannel", Enforces: cni.EnforcementFalse, Reason: "NotEnforced", Message: "m"}, Isolation: isolated, EgressDeclared: true}, isolationv1alpha1.EgressNotIsolated},
		{"declared but policies not in place", status.Outcome{Mode: isolationv1alpha1.ModeEnforce, Failure: &status.Failure{Reason: "ApplyFailed", Message: "m"}, CNI: enforcing, EgressDeclared: true}, isolationv1alpha1.EgressNotIsolated},
		{"declared but widened", status.Outcome{Mode: isolationv1alpha1.ModeEnforce, Policies: 3, CNI: enforcing, Isolation: &analysis.Report{Exposures: []analysis.Exposure{{Policy: "allow-all-egress", Summary: "s"}}}, EgressDeclared: true}, isolationv1alpha1.EgressNotIsolated},
		{"declared in Audit mode", status.Outcome{Mode: isolationv1alpha1.ModeAudit, Policies: 3, CNI: enforcing, Isolation: isolated, EgressDeclared: true}, isolationv1alpha1.EgressNotIsolated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &isolationv1alpha1.WorkloadIsolationStatus{}
			status.SetConditions(st, tt.o)
			if st.Egress != tt.want {
				t.Errorf("status.egress = %q, want %q (conditions %+v)", st.Egress, tt.want, st.Conditions)
			}
		})
	}
}

func TestUnanalysedCiliumPoliciesFailClosed(t *testing.T) {
	enforcing := &cni.Result{Name: "cilium", Enforces: cni.EnforcementTrue, Reason: "Enforcing", Message: "m", Source: cni.SourceDetected}
	st := &isolationv1alpha1.WorkloadIsolationStatus{}
	status.SetConditions(st, status.Outcome{Mode: isolationv1alpha1.ModeEnforce, Policies: 3, CNI: enforcing, Isolation: &analysis.Report{},
		EgressDeclared: true, UnanalysedPolicies: []string{"CiliumNetworkPolicy local-ai/allow-world"}})
	isolated := meta.FindStatusCondition(st.Conditions, isolationv1alpha1.ConditionIsolated)
	ready := meta.FindStatusCondition(st.Conditions, isolationv1alpha1.ConditionReady)
	if isolated.Status != metav1.ConditionFalse || isolated.Reason != isolationv1alpha1.ReasonUnanalysedPolicies ||
		!strings.Contains(isolated.Message, "CiliumNetworkPolicy local-ai/allow-world") {
		t.Errorf("Isolated = %+v", isolated)
	}
	if ready.Status != metav1.ConditionFalse || st.Egress != isolationv1alpha1.EgressNotIsolated {
		t.Errorf("Ready = %+v, egress %s: a policy that is not analysed must not be taken as isolated", ready, st.Egress)
	}
}

// TestGuardedNeedsEveryLayerTheClusterOffers: a dataplane layer the cluster
// offers but that is not in place makes Guarded and Ready False; one the
// cluster does not offer does not. status.guard lists both layers.
func TestGuardedNeedsEveryLayerTheClusterOffers(t *testing.T) {
	enforcing := &cni.Result{Name: "canal", Enforces: cni.EnforcementTrue, Reason: "Enforcing", Message: "m", Source: cni.SourceDetected}
	for _, c := range []struct {
		name      string
		admission bool
		dataplane isolationv1alpha1.GuardLayerState
		guarded   metav1.ConditionStatus
	}{
		{"both active", true, isolationv1alpha1.GuardLayerActive, metav1.ConditionTrue},
		{"no admin tier on this cluster", true, isolationv1alpha1.GuardLayerUnavailable, metav1.ConditionTrue},
		{"admin tier offered, policy not in place", true, isolationv1alpha1.GuardLayerNotActive, metav1.ConditionFalse},
		{"no admission guard", false, isolationv1alpha1.GuardLayerActive, metav1.ConditionFalse},
	} {
		t.Run(c.name, func(t *testing.T) {
			st := &isolationv1alpha1.WorkloadIsolationStatus{}
			status.SetConditions(st, status.Outcome{Mode: isolationv1alpha1.ModeEnforce, Policies: 2, CNI: enforcing, Isolation: &analysis.Report{},
				Guard: &status.GuardState{Active: c.admission, Message: "admission says",
					Dataplane: status.DataplaneGuard{State: c.dataplane, Object: "AdminNetworkPolicy isolator-u, priority 900", Message: "dataplane says"}}})
			guarded := meta.FindStatusCondition(st.Conditions, isolationv1alpha1.ConditionGuarded)
			ready := meta.FindStatusCondition(st.Conditions, isolationv1alpha1.ConditionReady)
			if guarded.Status != c.guarded || !strings.Contains(guarded.Message, "admission says") || !strings.Contains(guarded.Message, "dataplane says") {
				t.Errorf("Guarded = %+v", guarded)
			}
			if (ready.Status == metav1.ConditionTrue) != (c.guarded == metav1.ConditionTrue) {
				t.Errorf("Ready = %+v with Guarded %s", ready, c.guarded)
			}
			if len(st.Guard) != 2 || st.Guard[0].Layer != isolationv1alpha1.GuardLayerAdmission || st.Guard[1].State != c.dataplane ||
				st.Guard[1].Object != "AdminNetworkPolicy isolator-u, priority 900" {
				t.Errorf("status.guard = %+v", st.Guard)
			}
		})
	}
	st := &isolationv1alpha1.WorkloadIsolationStatus{Guard: []isolationv1alpha1.GuardLayer{{Layer: isolationv1alpha1.GuardLayerAdmission}}}
	status.SetConditions(st, status.Outcome{Mode: isolationv1alpha1.ModeEnforce})
	if st.Guard != nil {
		t.Errorf("without spec.guard, status.guard must go: %+v", st.Guard)
	}
}

// TestGuardLayersStayWithinTheCRDBounds: a long message (many policies
// named, a long API error) must not make the status write fail.
func TestGuardLayersStayWithinTheCRDBounds(t *testing.T) {
	long := strings.Repeat("AdminNetworkPolicy a-long-name, ", 200)
	st := &isolationv1alpha1.WorkloadIsolationStatus{}
	status.SetConditions(st, status.Outcome{Mode: isolationv1alpha1.ModeEnforce, Guard: &status.GuardState{Active: true, Message: long,
		Dataplane: status.DataplaneGuard{State: isolationv1alpha1.GuardLayerActive, Object: long, Message: long}}})
	for _, l := range st.Guard {
		if len(l.Message) > status.MaxGuardMessage || len(l.Object) > status.MaxGuardObject {
			t.Errorf("%s: message %d bytes, object %d bytes", l.Layer, len(l.Message), len(l.Object))
		}
	}
}

// TestEnforcedCountsThePodsCiliumManages: on Cilium with endpoints, a
// target pod without a ready endpoint makes Enforced and Ready False,
// naming it; all of them managed keep Enforced True, counted.
func TestEnforcedCountsThePodsCiliumManages(t *testing.T) {
	cilium := &cni.Result{Name: "cilium", Enforces: cni.EnforcementTrue, Reason: cni.ReasonEnforcing, Message: "cilium enforces",
		Source: cni.SourceDetected, CiliumEndpoints: true}
	outcome := func(c *cni.Coverage) status.Outcome {
		return status.Outcome{Mode: isolationv1alpha1.ModeEnforce, Policies: 2, CNI: cilium, Isolation: &analysis.Report{}, Coverage: c}
	}
	st := &isolationv1alpha1.WorkloadIsolationStatus{}
	status.SetConditions(st, outcome(&cni.Coverage{Pods: 3, Unmanaged: []string{"local-ai-2"}}))
	enforced := meta.FindStatusCondition(st.Conditions, isolationv1alpha1.ConditionEnforced)
	ready := meta.FindStatusCondition(st.Conditions, isolationv1alpha1.ConditionReady)
	if enforced.Status != metav1.ConditionFalse || enforced.Reason != isolationv1alpha1.ReasonPodsNotManaged ||
		!strings.Contains(enforced.Message, "2/3 target pods managed by Cilium: not managed: local-ai-2") {
		t.Errorf("Enforced = %+v", enforced)
	}
	if ready.Status != metav1.ConditionFalse || ready.Reason != isolationv1alpha1.ReasonPodsNotManaged {
		t.Errorf("Ready = %+v", ready)
	}
	st = &isolationv1alpha1.WorkloadIsolationStatus{}
	status.SetConditions(st, outcome(&cni.Coverage{Pods: 3}))
	enforced = meta.FindStatusCondition(st.Conditions, isolationv1alpha1.ConditionEnforced)
	if enforced.Status != metav1.ConditionTrue || !strings.HasPrefix(enforced.Message, "3/3 target pods managed by Cilium") {
		t.Errorf("Enforced = %+v", enforced)
	}
	if ready := meta.FindStatusCondition(st.Conditions, isolationv1alpha1.ConditionReady); ready.Status != metav1.ConditionTrue {
		t.Errorf("Ready = %+v", ready)
	}
}

// TestEnforcedUnknownWhenPodsWereNotChecked: a reconcile that stopped
// before Cilium's endpoints were read does not report Enforced True.
func TestEnforcedUnknownWhenPodsWereNotChecked(t *testing.T) {
	cilium := &cni.Result{Name: "cilium", Enforces: cni.EnforcementTrue, Reason: cni.ReasonEnforcing, Message: "cilium enforces",
		Source: cni.SourceDetected, CiliumEndpoints: true}
	st := &isolationv1alpha1.WorkloadIsolationStatus{}
	status.SetConditions(st, status.Outcome{Mode: isolationv1alpha1.ModeEnforce, CNI: cilium,
		Failure: &status.Failure{Reason: isolationv1alpha1.ReasonApplyFailed, Message: "listing pods: forbidden"}})
	enforced := meta.FindStatusCondition(st.Conditions, isolationv1alpha1.ConditionEnforced)
	if enforced.Status != metav1.ConditionUnknown || enforced.Reason != isolationv1alpha1.ReasonNotVerified {
		t.Errorf("Enforced = %+v", enforced)
	}
}

// HTTP rules the CNI cannot enforce admit nothing: the resource is not
// Ready, and Enforced says why, unless the CNI already does not enforce.
func TestL7RulesNotEnforcedFailReady(t *testing.T) {
	enforcing := &cni.Result{Name: "canal", Enforces: cni.EnforcementTrue, Reason: cni.ReasonEnforcing, Message: "m", Source: cni.SourceDetected}
	notEnforcing := &cni.Result{Name: "flannel", Enforces: cni.EnforcementFalse, Reason: cni.ReasonDoesNotEnforce, Message: "m", Source: cni.SourceDetected}
	http := &status.L7NotEnforced{Rules: []string{"ingress rule gateway (HTTP requests)"}, Why: "CNI canal does not give"}
	tests := []struct {
		name            string
		mode            isolationv1alpha1.Mode
		cni             *cni.Result
		ready, enforced cond
	}{
		{"enforcing CNI without L7", isolationv1alpha1.ModeEnforce, enforcing,
			cond{metav1.ConditionFalse, isolationv1alpha1.ReasonL7RulesNotEnforced}, cond{metav1.ConditionFalse, isolationv1alpha1.ReasonL7RulesNotEnforced}},
		{"a CNI that enforces nothing says so first", isolationv1alpha1.ModeEnforce, notEnforcing,
			cond{metav1.ConditionFalse, cni.ReasonDoesNotEnforce}, cond{metav1.ConditionFalse, cni.ReasonDoesNotEnforce}},
		{"Audit mode is Ready, Enforced still says it", isolationv1alpha1.ModeAudit, enforcing,
			cond{metav1.ConditionTrue, isolationv1alpha1.ReasonAuditOnly}, cond{metav1.ConditionFalse, isolationv1alpha1.ReasonL7RulesNotEnforced}},
		{"no CNI verdict yet", isolationv1alpha1.ModeEnforce, nil,
			cond{metav1.ConditionFalse, isolationv1alpha1.ReasonL7RulesNotEnforced}, cond{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &isolationv1alpha1.WorkloadIsolationStatus{}
			status.SetConditions(st, status.Outcome{Generation: 1, Mode: tt.mode, Policies: 1, CNI: tt.cni, L7NotEnforced: http})
			ready := meta.FindStatusCondition(st.Conditions, "Ready")
			if ready.Status != tt.ready.status || ready.Reason != tt.ready.reason {
				t.Errorf("Ready = %s/%s, want %s/%s", ready.Status, ready.Reason, tt.ready.status, tt.ready.reason)
			}
			if tt.ready.status == metav1.ConditionFalse && tt.ready.reason == isolationv1alpha1.ReasonL7RulesNotEnforced &&
				!strings.Contains(ready.Message, "gateway") {
				t.Errorf("Ready message %q does not name the rule", ready.Message)
			}
			enforced := meta.FindStatusCondition(st.Conditions, "Enforced")
			if tt.enforced.status == "" {
				if enforced != nil {
					t.Errorf("Enforced = %+v, want absent", enforced)
				}
				return
			}
			if enforced == nil || enforced.Status != tt.enforced.status || enforced.Reason != tt.enforced.reason {
				t.Errorf("Enforced = %+v, want %+v", enforced, tt.enforced)
			}
		})
	}
}
