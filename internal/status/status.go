// Package status computes the conditions of a WorkloadIsolation from the
// outcome of one reconciliation. It is pure: the caller passes the outcome,
// and every condition is set by its own small function.
package status

import (
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/analysis"
	"github.com/isolator-dev/isolator/internal/cni"
)

// Failure says why the desired policies are not in place.
type Failure struct {
	// Reason is one of the v1alpha1 condition reasons.
	Reason string
	// Message is a sentence for the user.
	Message string
	// Stalled is true when only a change of the spec (or of the operator's
	// configuration) can resolve the failure.
	Stalled bool
}

// Outcome is what one reconciliation achieved.
type Outcome struct {
	// Generation is the metadata.generation that was reconciled.
	Generation int64
	// Mode is the effective mode.
	Mode isolationv1alpha1.Mode
	// Policies is how many policies were computed.
	Policies int
	// Failure is nil on success.
	Failure *Failure
	// CNI is the cluster's CNI as detected or configured; nil when not
	// known yet (no Enforced condition is set then).
	CNI *cni.Result
	// Coverage, when the CNI reports per pod which pods it polices
	// (Cilium's endpoints), says which target pods it does; nil otherwise.
	Coverage *cni.Coverage
	// Isolation is the analysis of all policies of the namespace; nil when
	// it could not run (Isolated and exposure are left as they were).
	Isolation *analysis.Report
	// MissingSources lists declared sources in namespaces that do not exist
	// (see ConditionSourcesFound).
	MissingSources []string
	// UndeclaredPorts lists named ports no target container declares.
	UndeclaredPorts []string
	// SourcesChecked is true when MissingSources and UndeclaredPorts were
	// computed.
	SourcesChecked bool
	// EgressDeclared is true when the spec isolates egress.
	EgressDeclared bool
	// UnanalysedPolicies names policies that may select the target pods
	// but that the analysis does not read (Cilium's own, not written by the
	// operator), as "Kind namespace/name".
	UnanalysedPolicies []string
	// L7NotEnforced, when rules with http or hosts cannot be enforced by
	// the CNI, names them and says why; those rules admit nothing.
	L7NotEnforced *L7NotEnforced
	// Guard is nil unless spec.guard is Enforce; then it says whether the
	// admission guard is installed.
	Guard *GuardState
}

// L7NotEnforced says which rules need layer-7 enforcement (HTTP requests,
// host names) that the cluster cannot give, and why.
type L7NotEnforced struct {
	// Rules describe the rules, such as "ingress rule nginx (HTTP
	// requests)".
	Rules []string
	Why   string
}

func (h *L7NotEnforced) message() string {
	return fmt.Sprintf("%s %s, which %s; %s nothing (failing closed), the other rules are in place",
		JoinBounded(h.Rules, 10), plural(len(h.Rules), "needs layer-7 enforcement", "need layer-7 enforcement"), h.Why,
		plural(len(h.Rules), "it admits", "they admit"))
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// GuardState is what the operator found of the guard's layers.
type GuardState struct {
	// Active is true when both admission guard policies and their Deny
	// bindings are installed.
	Active bool
	// Message says which objects were found, or what is missing.
	Message string
	// Dataplane is the admin-tier layer; its zero value is Unavailable.
	Dataplane DataplaneGuard
}

// DataplaneGuard is the state of the guard's admin-tier policy.
type DataplaneGuard struct {
	// State is Active, NotActive or Unavailable (empty means Unavailable).
	State isolationv1alpha1.GuardLayerState
	// Object names the policy in place; Message says why.
	Object, Message string
}

// Guarded reports whether every layer the cluster offers is in place.
func (g *GuardState) Guarded() bool {
	return g.Active && g.Dataplane.State != isolationv1alpha1.GuardLayerNotActive
}

// message joins what the layers say.
func (g *GuardState) message() string {
	state := g.Dataplane.State
	if state == "" {
		state = isolationv1alpha1.GuardLayerUnavailable
	}
	return fmt.Sprintf("Admission: %s. Dataplane (%s): %s", strings.TrimSuffix(g.Message, "."), state, g.Dataplane.Message)
}

// layers spells the state for status.guard.
func (g *GuardState) layers() []isolationv1alpha1.GuardLayer {
	admission := isolationv1alpha1.GuardLayer{Layer: isolationv1alpha1.GuardLayerAdmission, State: isolationv1alpha1.GuardLayerActive,
		Message: truncate(g.Message, MaxGuardMessage)}
	if !g.Active {
		admission.State = isolationv1alpha1.GuardLayerNotActive
	}
	dataplane := isolationv1alpha1.GuardLayer{Layer: isolationv1alpha1.GuardLayerDataplane, State: g.Dataplane.State,
		Object: truncate(g.Dataplane.Object, MaxGuardObject), Message: truncate(g.Dataplane.Message, MaxGuardMessage)}
	if dataplane.State == "" {
		dataplane.State = isolationv1alpha1.GuardLayerUnavailable
	}
	return []isolationv1alpha1.GuardLayer{admission, dataplane}
}

// SetConditions records the outcome in st: observedGeneration, status.cni,
// Ready, PoliciesApplied, Enforced and Stalled. Conditions whose status, reason and message
// are unchanged keep their lastTransitionTime, so an unchanged outcome
// leaves st unchanged.
func SetConditions(st *isolationv1alpha1.WorkloadIsolationStatus, o Outcome) {
	st.ObservedGeneration = o.Generation
	setCNI(st, o)
	setPoliciesApplied(st, o)
	setIsolated(st, o)
	setEnforced(st, o)
	setStalled(st, o)
	setSourcesFound(st, o)
	setGuarded(st, o)
	setReady(st, o)
	setEgress(st, o)
}

// setEgress says whether the target's outbound traffic is isolated: only
// when the spec declares egress and Ready is True in Enforce mode, that is
// when every declared restriction is in place, enforced and not widened.
func setEgress(st *isolationv1alpha1.WorkloadIsolationStatus, o Outcome) {
	switch {
	case !o.EgressDeclared:
		st.Egress = isolationv1alpha1.EgressNone
	case o.Mode == isolationv1alpha1.ModeEnforce && meta.IsStatusConditionTrue(st.Conditions, isolationv1alpha1.ConditionReady):
		st.Egress = isolationv1alpha1.EgressIsolated
	default:
		st.Egress = isolationv1alpha1.EgressNotIsolated
	}
}

func setSourcesFound(st *isolationv1alpha1.WorkloadIsolationStatus, o Outcome) {
	if !o.SourcesChecked {
		return
	}
	c := metav1.Condition{Type: isolationv1alpha1.ConditionSourcesFound, ObservedGeneration: o.Generation,
		Status: metav1.ConditionTrue, Reason: isolationv1alpha1.ReasonSourcesFound,
		Message: "Every preset namespace exists and every named port is declared by the target pods"}
	switch {
	case len(o.MissingSources) > 0:
		c.Status, c.Reason = metav1.ConditionFalse, isolationv1alpha1.ReasonNamespaceNotFound
	case len(o.UndeclaredPorts) > 0:
		c.Status, c.Reason = metav1.ConditionFalse, isolationv1alpha1.ReasonNamedPortNotDeclared
	}
	if c.Status == metav1.ConditionFalse {
		c.Message = JoinBounded(append(append([]string(nil), o.MissingSources...), o.UndeclaredPorts...), 8)
	}
	setCondition(st, c)
}

func setCNI(st *isolationv1alpha1.WorkloadIsolationStatus, o Outcome) {
	if o.CNI == nil {
		return
	}
	st.CNI = &isolationv1alpha1.CNIStatus{
		Name:                  o.CNI.Name,
		Version:               o.CNI.Version,
		EnforcesNetworkPolicy: metav1.ConditionStatus(o.CNI.Enforces),
		L7Policy:              o.CNI.L7,
		Source:                o.CNI.Source,
		Evidence:              truncate(o.CNI.EvidenceString(), MaxEvidence),
	}
}

// setCondition sets c with its message bounded to MaxMessage.
func setCondition(st *isolationv1alpha1.WorkloadIsolationStatus, c metav1.Condition) {
	c.Message = truncate(c.Message, MaxMessage)
	meta.SetStatusCondition(&st.Conditions, c)
}

func setIsolated(st *isolationv1alpha1.WorkloadIsolationStatus, o Outcome) {
	if o.Isolation == nil {
		if o.Failure != nil {
			// The analysis did not run: an earlier verdict may no longer
			// hold, so do not keep it.
			st.Exposure = nil
			setCondition(st, metav1.Condition{
				Type: isolationv1alpha1.ConditionIsolated, Status: metav1.ConditionUnknown, ObservedGeneration: o.Generation,
				Reason: isolationv1alpha1.ReasonNotVerified, Message: "Isolation cannot be verified: " + o.Failure.Message,
			})
		}
		return
	}
	st.Exposure = nil
	var widening, shared []string
	for _, e := range o.Isolation.Exposures {
		if len(st.Exposure) < MaxExposures {
			st.Exposure = append(st.Exposure, isolationv1alpha1.Exposure{
				Policy: truncate(e.Policy, 253), WorkloadIsolation: truncate(e.WorkloadIsolation, 253),
				Direction: string(e.Direction), Summary: truncate(e.Summary, MaxSummary),
			})
		}
		switch {
		case e.Policy == analysis.Incomplete:
		case e.Widens && e.Policy == analysis.Unselected && e.Direction == analysis.Egress:
			widening = append(widening, "no egress policy at all for some target pods")
		case e.Widens && e.Policy == analysis.Unselected:
			widening = append(widening, "no policy at all for some target pods")
		case e.Widens:
			widening = append(widening, e.Policy+wideningNote(e))
		case !slices.Contains(shared, e.WorkloadIsolation):
			shared = append(shared, e.WorkloadIsolation)
		}
	}
	c := metav1.Condition{Type: isolationv1alpha1.ConditionIsolated, ObservedGeneration: o.Generation}
	switch {
	case o.Isolation.Incomplete != "":
		c.Status, c.Reason = metav1.ConditionFalse, isolationv1alpha1.ReasonAnalysisIncomplete
		c.Message = "Isolation is not proven: " + o.Isolation.Incomplete
		if len(widening) > 0 {
			c.Message += "; already found: " + JoinBounded(widening, 10)
		}
	case len(widening) > 0:
		c.Status, c.Reason = metav1.ConditionFalse, isolationv1alpha1.ReasonWidenedByPolicy
		c.Message = fmt.Sprintf("Policies admit more than declared: %s (see status.exposure)", JoinBounded(widening, 10))
	case len(o.UnanalysedPolicies) > 0:
		c.Status, c.Reason = metav1.ConditionFalse, isolationv1alpha1.ReasonUnanalysedPolicies
		c.Message = fmt.Sprintf("Isolation is not proven: %s may let more reach or leave the target pods, and the analysis does not read them; remove them or check them by hand",
			JoinBounded(o.UnanalysedPolicies, 10))
	case len(shared) > 0:
		c.Status, c.Reason = metav1.ConditionFalse, isolationv1alpha1.ReasonSharedTarget
		c.Message = fmt.Sprintf("WorkloadIsolation %s also selects these pods", JoinBounded(shared, 10))
	default:
		c.Status, c.Reason = metav1.ConditionTrue, isolationv1alpha1.ReasonOnlyDeclaredSources
		c.Message = "The policies of the namespace and the cluster admit only the declared sources to the target pods"
		if o.EgressDeclared {
			c.Message += " and let them reach only the declared destinations"
		}
	}
	setCondition(st, c)
}

// wideningNote qualifies a widening policy in the Isolated message:
// "(egress)" when it lets the target reach more, "(latent)" when it admits
// nothing that exists yet, both when both hold.
func wideningNote(e analysis.Exposure) string {
	switch {
	case e.Direction == analysis.Egress && e.Latent:
		return " (egress, latent)"
	case e.Direction == analysis.Egress:
		return " (egress)"
	case e.Latent:
		return " (latent)"
	}
	return ""
}

// notIsolated reports whether policies were written but others widen them.
func notIsolated(st *isolationv1alpha1.WorkloadIsolationStatus, o Outcome) *metav1.Condition {
	if o.Mode == isolationv1alpha1.ModeAudit {
		return nil
	}
	c := meta.FindStatusCondition(st.Conditions, isolationv1alpha1.ConditionIsolated)
	if c == nil || c.Status != metav1.ConditionFalse {
		return nil
	}
	return c
}

func setEnforced(st *isolationv1alpha1.WorkloadIsolationStatus, o Outcome) {
	if o.CNI == nil {
		return
	}
	status, reason, message := enforcement(o)
	setCondition(st, metav1.Condition{
		Type:               isolationv1alpha1.ConditionEnforced,
		Status:             status,
		Reason:             reason,
		Message:            message,
		ObservedGeneration: o.Generation,
	})
}

// enforcement is the Enforced condition: the CNI's verdict, narrowed by
// the coverage of the target pods where the CNI reports it per pod.
func enforcement(o Outcome) (metav1.ConditionStatus, string, string) {
	status, reason, message := metav1.ConditionStatus(o.CNI.Enforces), o.CNI.Reason, o.CNI.Message
	cov := o.Coverage
	if status != metav1.ConditionFalse && o.L7NotEnforced != nil {
		return metav1.ConditionFalse, isolationv1alpha1.ReasonL7RulesNotEnforced, o.L7NotEnforced.message()
	}
	if cov == nil && o.CNI.CiliumEndpoints && o.CNI.Enforces == cni.EnforcementTrue {
		// The reconcile stopped before the endpoints were read.
		return metav1.ConditionUnknown, isolationv1alpha1.ReasonNotVerified,
			"Cilium enforces NetworkPolicy, but which target pods it manages was not checked (see Ready)"
	}
	if cov == nil || o.CNI.Enforces != cni.EnforcementTrue {
		if o.CNI.Enforces == cni.EnforcementTrue && o.CNI.EndpointsNote != "" {
			message += "; " + o.CNI.EndpointsNote
		}
		return status, reason, message
	}
	if len(cov.Unmanaged) > 0 {
		return metav1.ConditionFalse, isolationv1alpha1.ReasonPodsNotManaged, fmt.Sprintf(
			"%s: not managed: %s (no CiliumEndpoint in state ready with an allocated security identity: the pod started before the agent, runs on the host network, is still being set up, or the agent does not manage it); Cilium does not police them, whatever the policies say",
			cov.Summary(), JoinBounded(cov.Unmanaged, 10))
	}
	return status, reason, fmt.Sprintf("%s (each with a CiliumEndpoint in state ready and a security identity); %s", cov.Summary(), message)
}

// notEnforced reports whether policies were written on a CNI known not to
// enforce them, whose enforcing agent is installed but not ready on every
// node, or that does not police some target pods: the resource must not
// look healthy then.
func notEnforced(o Outcome) bool {
	if o.CNI == nil || o.Mode == isolationv1alpha1.ModeAudit {
		return false
	}
	status, reason, _ := enforcement(o)
	return status == metav1.ConditionFalse || reason == cni.ReasonAgentsNotReady
}

func setPoliciesApplied(st *isolationv1alpha1.WorkloadIsolationStatus, o Outcome) {
	c := metav1.Condition{Type: isolationv1alpha1.ConditionPoliciesApplied, ObservedGeneration: o.Generation}
	switch {
	case o.Failure != nil:
		c.Status, c.Reason = metav1.ConditionFalse, o.Failure.Reason
		c.Message = o.Failure.Message + "; policies applied before, if any, stay in place"
	case o.Mode == isolationv1alpha1.ModeAudit:
		c.Status, c.Reason = metav1.ConditionFalse, isolationv1alpha1.ReasonAuditOnly
		c.Message = fmt.Sprintf("Audit mode: %d NetworkPolicies computed, none written", o.Policies)
	default:
		c.Status, c.Reason = metav1.ConditionTrue, isolationv1alpha1.ReasonApplied
		c.Message = fmt.Sprintf("%d NetworkPolicies applied", o.Policies)
	}
	setCondition(st, c)
}

func setStalled(st *isolationv1alpha1.WorkloadIsolationStatus, o Outcome) {
	if o.Failure == nil || !o.Failure.Stalled {
		meta.RemoveStatusCondition(&st.Conditions, isolationv1alpha1.ConditionStalled)
		return
	}
	setCondition(st, metav1.Condition{
		Type:               isolationv1alpha1.ConditionStalled,
		Status:             metav1.ConditionTrue,
		Reason:             o.Failure.Reason,
		Message:            o.Failure.Message,
		ObservedGeneration: o.Generation,
	})
}

// setGuarded sets Guarded when spec.guard is Enforce and removes it
// otherwise.
func setGuarded(st *isolationv1alpha1.WorkloadIsolationStatus, o Outcome) {
	if o.Guard == nil {
		meta.RemoveStatusCondition(&st.Conditions, isolationv1alpha1.ConditionGuarded)
		st.Guard = nil
		return
	}
	if layers := o.Guard.layers(); !equality.Semantic.DeepEqual(st.Guard, layers) {
		st.Guard = layers
	}
	c := metav1.Condition{Type: isolationv1alpha1.ConditionGuarded, ObservedGeneration: o.Generation,
		Status: metav1.ConditionTrue, Reason: isolationv1alpha1.ReasonGuardActive, Message: o.Guard.message()}
	if !o.Guard.Guarded() {
		c.Status, c.Reason = metav1.ConditionFalse, isolationv1alpha1.ReasonGuardNotActive
	}
	setCondition(st, c)
}

func setReady(st *isolationv1alpha1.WorkloadIsolationStatus, o Outcome) {
	c := metav1.Condition{Type: isolationv1alpha1.ConditionReady, ObservedGeneration: o.Generation}
	switch {
	case o.Failure != nil:
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, o.Failure.Reason, o.Failure.Message
	case o.Guard != nil && !o.Guard.Guarded() && o.Mode == isolationv1alpha1.ModeEnforce:
		c.Status, c.Reason = metav1.ConditionFalse, isolationv1alpha1.ReasonGuardNotActive
		c.Message = "spec.guard is Enforce but the guard is not in place: " + o.Guard.message()
	case notEnforced(o):
		status, reason, message := enforcement(o)
		c.Status, c.Reason = metav1.ConditionFalse, reason
		c.Message = "Policies are applied but not enforced: " + message
		if status != metav1.ConditionFalse {
			c.Message = "Policies are applied but not known to be enforced: " + message
		}
	case o.L7NotEnforced != nil && o.Mode == isolationv1alpha1.ModeEnforce:
		c.Status, c.Reason = metav1.ConditionFalse, isolationv1alpha1.ReasonL7RulesNotEnforced
		c.Message = "Policies are applied, but " + o.L7NotEnforced.message()
	case notIsolated(st, o) != nil:
		isolated := notIsolated(st, o)
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, isolated.Reason, isolated.Message
	case o.Mode == isolationv1alpha1.ModeAudit:
		c.Status, c.Reason = metav1.ConditionTrue, isolationv1alpha1.ReasonAuditOnly
		c.Message = "Audit mode: policies computed and listed in status.policies, none written"
	default:
		c.Status, c.Reason = metav1.ConditionTrue, isolationv1alpha1.ReasonReconciled
		c.Message = "Isolation policies are in place"
	}
	setCondition(st, c)
}
