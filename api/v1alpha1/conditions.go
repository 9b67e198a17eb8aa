package v1alpha1

// Condition types of a WorkloadIsolation. Every condition follows the
// Kubernetes API conventions (metav1.Condition) and the kstatus conventions:
// Ready is always present, Stalled appears only while the spec cannot be acted
// upon.
const (
	// ConditionReady summarises the resource: True when the desired policies
	// are in place (Enforce mode) or computed (Audit mode) for the current
	// generation; False with the reason of the first problem otherwise.
	ConditionReady = "Ready"

	// ConditionPoliciesApplied is True when every generated NetworkPolicy
	// exists in the cluster exactly as computed from the current spec, and
	// False while they are not (Audit mode, an invalid spec, an API error).
	ConditionPoliciesApplied = "PoliciesApplied"

	// ConditionIsolated says whether only the declared sources can reach
	// the target: True; False with reason WidenedByPolicy when another
	// NetworkPolicy admits more (listed in status.exposure), or SharedTarget
	// when another WorkloadIsolation selects the same pods. In Enforce mode
	// False makes Ready False too.
	ConditionIsolated = "Isolated"

	// ConditionEnforced says whether the cluster's CNI enforces
	// NetworkPolicy: True; False with reason CNIDoesNotEnforce or
	// PolicyEnforcementDisabled (then Ready is False too in Enforce mode: the
	// policies exist but isolate nothing); Unknown with reason CNIUnknown
	// (Ready is not affected; declare the CNI in the operator configuration)
	// or AgentsNotReady (the enforcing agent's pods are not all ready; Ready
	// is False too in Enforce mode).
	ConditionEnforced = "Enforced"

	// ConditionSourcesFound says whether every declared source and port can
	// match something: False with reason NamespaceNotFound when a from
	// entry's presetNamespace names a namespace that does not exist, or
	// NamedPortNotDeclared when a named port is declared by no container of
	// the target pods (the rule admits nothing there until that changes). It
	// does not affect Ready: a source that matches nothing only restricts.
	ConditionSourcesFound = "SourcesFound"

	// ConditionStalled is True while the spec cannot be turned into policies
	// without a change by the user (unknown preset, invalid selector). The
	// operator does not retry on its own; the last applied policies stay in
	// place. kstatus reports such a resource as Failed.
	ConditionStalled = "Stalled"
	// ConditionGuarded, set only with spec.guard: Enforce, says whether the
	// guard is in place (status.guard lists its layers): True with reason
	// GuardActive when the admission guard is installed and the dataplane
	// layer is active or not offered by the cluster, False with
	// GuardNotActive otherwise (Ready is then False too).
	ConditionGuarded = "Guarded"
)

// Condition reasons. They are CamelCase, stable, and meant for automation.
const (
	// ReasonReconciled: the policies match the spec.
	ReasonReconciled = "Reconciled"
	// ReasonApplied: PoliciesApplied is True.
	ReasonApplied = "Applied"
	// ReasonAuditOnly: Audit mode, policies were computed and reported, none written.
	ReasonAuditOnly = "AuditOnly"
	// ReasonTargetNotFound: spec.target.workloadRef names a workload that does not exist (yet).
	ReasonTargetNotFound = "TargetNotFound"
	// ReasonUnknownPreset: a from entry names a preset the operator does not know.
	ReasonUnknownPreset = "UnknownPreset"
	// ReasonInvalidSpec: the spec passed API validation but cannot be turned
	// into valid NetworkPolicies (for example an invalid label selector).
	ReasonInvalidSpec = "InvalidSpec"
	// ReasonApplyFailed: the API server refused or failed a write; retried with back-off.
	ReasonApplyFailed = "ApplyFailed"
	// ReasonOnlyDeclaredSources: Isolated is True.
	ReasonOnlyDeclaredSources = "OnlyDeclaredSources"
	// ReasonWidenedByPolicy: a NetworkPolicy admits more than declared.
	ReasonWidenedByPolicy = "WidenedByPolicy"
	// ReasonSharedTarget: another WorkloadIsolation selects the same pods.
	ReasonSharedTarget = "SharedTarget"
	// ReasonCNIEnforces: Enforced is True.
	ReasonCNIEnforces = "CNIEnforcesPolicy"
	// ReasonCNIDoesNotEnforce: the CNI is known not to enforce NetworkPolicy.
	ReasonCNIDoesNotEnforce = "CNIDoesNotEnforce"
	// ReasonPolicyEnforcementDisabled: the CNI can enforce, but its configuration turns enforcement off.
	ReasonPolicyEnforcementDisabled = "PolicyEnforcementDisabled"
	// ReasonPolicyAuditMode: the CNI runs its policy engine in audit mode: it logs what the policies would drop and drops nothing.
	ReasonPolicyAuditMode = "PolicyAuditMode"
	// ReasonSourcesFound: SourcesFound is True.
	ReasonSourcesFound = "SourcesFound"
	// ReasonNamespaceNotFound: a presetNamespace names a namespace that does not exist.
	ReasonNamespaceNotFound = "NamespaceNotFound"
	// ReasonNamedPortNotDeclared: a named port is declared by no container of the target pods.
	ReasonNamedPortNotDeclared = "NamedPortNotDeclared"
	// ReasonPending: the operator has not reconciled the resource yet (the
	// API server's default for a new resource's Ready condition).
	ReasonPending = "Pending"
	// ReasonNameConflict: a generated name is taken by an object this
	// WorkloadIsolation did not create (a NetworkPolicy written by someone
	// else, or one generated for another WorkloadIsolation whose names
	// collide). The operator never modifies or deletes such an object; the
	// message names it.
	ReasonNameConflict = "NameConflict"
	// ReasonNotConverged: a generated policy still differs from the spec
	// after the operator repaired it (another writer keeps changing it); the
	// operator retries with back-off instead of writing in a loop.
	ReasonNotConverged = "NotConverged"
	// ReasonContested: a generated policy was changed away from the spec and
	// repaired several times within a minute: another writer (a GitOps
	// tool, a script) keeps re-opening it. The operator keeps repairing it;
	// the message names the writer where its field manager is known.
	ReasonContested = "Contested"
	// ReasonNotVerified: Isolated is Unknown because the isolation could not
	// be analysed (the spec cannot be resolved, or an API read failed); an
	// earlier verdict is not kept.
	ReasonNotVerified = "NotVerified"
	// ReasonAnalysisIncomplete: the isolation analysis ran out of its work
	// budget, so isolation is not proven and is reported as not isolated.
	ReasonAnalysisIncomplete = "AnalysisIncomplete"
	// ReasonGuardActive: the admission guard's policies and bindings are
	// installed.
	ReasonGuardActive = "GuardActive"
	// ReasonGuardNotActive: spec.guard is Enforce but the cluster has no
	// admission guard (the chart's guard.enabled is false, or the cluster
	// does not serve ValidatingAdmissionPolicy), or the CNI implements an
	// admin-tier API and the guard's policy in it is not in place.
	ReasonGuardNotActive = "GuardNotActive"
	// ReasonUnanalysedPolicies: policies that may select the target pods
	// cannot be read by the analysis (a Cilium policy whose rules do not
	// decode, ClusterNetworkPolicies in a version the operator does not
	// read), so the isolation is not proven (Isolated=False).
	ReasonUnanalysedPolicies = "UnanalysedPolicies"
	// ReasonCNIUnknown: the CNI, or whether it enforces, is not known.
	ReasonCNIUnknown = "CNIUnknown"
	// ReasonAgentsNotReady: the CNI component that enforces NetworkPolicy
	// is installed, but its DaemonSet has no scheduled agent pod, not all of
	// them are ready, or its status does not cover its current spec yet.
	// Enforced is Unknown, and Ready is False in Enforce mode.
	ReasonAgentsNotReady = "AgentsNotReady"
	// ReasonL7RulesNotEnforced: an ingress rule admits only some HTTP
	// requests, or an egress rule names hosts, which the cluster's CNI
	// cannot enforce (not Cilium, Cilium without its L7 proxy, or
	// CiliumNetworkPolicy not served). Those rules then admit nothing;
	// Enforced and Ready are False.
	ReasonL7RulesNotEnforced = "L7RulesNotEnforced"
	// ReasonPodsNotManaged: Cilium enforces, but some target pods have no
	// CiliumEndpoint in state ready with a security identity, so Cilium
	// does not police them (Enforced=False, naming them).
	ReasonPodsNotManaged = "PodsNotManagedByCNI"
)
