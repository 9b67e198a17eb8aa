// Package cni tells from cluster objects which CNI a cluster runs and
// whether it enforces NetworkPolicy. It is pure: the caller collects the
// facts (DaemonSets of the system namespaces, a few ConfigMaps, the API groups
// of installed CRDs, KKP ApplicationInstallations) and Classify reasons about
// all of them together, so that a cluster with a network provider plus a
// separate policy agent (Flannel and kube-network-policies, AWS VPC CNI and
// Calico) is judged as a whole rather than by the first match.
package cni

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
)

// Enforcement says whether NetworkPolicies are enforced.
type Enforcement string

// Enforcement values, spelled like metav1.ConditionStatus.
const (
	EnforcementTrue    Enforcement = "True"
	EnforcementFalse   Enforcement = "False"
	EnforcementUnknown Enforcement = "Unknown"
)

// Reasons of a Result: the reasons of the Enforced condition.
const (
	// ReasonEnforcing: a component that enforces NetworkPolicy runs.
	ReasonEnforcing = isolationv1alpha1.ReasonCNIEnforces
	// ReasonDoesNotEnforce: the CNI found is known not to enforce NetworkPolicy.
	ReasonDoesNotEnforce = isolationv1alpha1.ReasonCNIDoesNotEnforce
	// ReasonEnforcementDisabled: the CNI can enforce, but its configuration turns it off.
	ReasonEnforcementDisabled = isolationv1alpha1.ReasonPolicyEnforcementDisabled
	// ReasonAuditMode: the CNI's policy engine runs in audit mode: it logs
	// what the policies would drop and drops nothing.
	ReasonAuditMode = isolationv1alpha1.ReasonPolicyAuditMode
	// ReasonUnknown: no known CNI was found, or its version or state cannot tell.
	ReasonUnknown = isolationv1alpha1.ReasonCNIUnknown
	// ReasonAgentsNotReady: the component that would enforce NetworkPolicy
	// runs on no node, or not on every node it is scheduled to: its
	// DaemonSet has no scheduled agent pod, not all of them are ready, or
	// its status is older than its spec.
	ReasonAgentsNotReady = isolationv1alpha1.ReasonAgentsNotReady
)

// Source says where a Result comes from.
const (
	SourceDetected   = "Detected"
	SourceConfigured = "Configured"
)

// Container is the part of a container the classifier reads.
type Container struct {
	Name    string
	Image   string
	Command []string
	Args    []string
	Env     map[string]string
}

// DaemonSet is the part of a DaemonSet the classifier reads. Containers
// include init containers.
type DaemonSet struct {
	Namespace  string
	Name       string
	Labels     map[string]string
	Containers []Container
	// Generation is metadata.generation. ObservedGeneration,
	// DesiredNumberScheduled and NumberReady are the DaemonSet controller's
	// status: a component counts as enforcing only while at least one agent
	// pod is scheduled, every scheduled one is ready, and the status is of
	// the current generation.
	Generation             int64
	ObservedGeneration     int64
	DesiredNumberScheduled int32
	NumberReady            int32
}

// ConfigMap is a ConfigMap's identity and data.
type ConfigMap struct {
	Namespace string
	Name      string
	Data      map[string]string
}

// Application is a KKP ApplicationInstallation (apps.kubermatic.k8c.io).
type Application struct {
	Namespace string
	Name      string
	// Application is spec.applicationRef.name, Version spec.applicationRef.version.
	Application string
	Version     string
	// Values are the Helm values (spec.values or the parsed spec.valuesBlock).
	Values map[string]any
}

// Facts are the cluster objects Classify reasons about.
type Facts struct {
	DaemonSets   []DaemonSet
	ConfigMaps   []ConfigMap
	APIGroups    []string
	Applications []Application
	// CiliumPolicyCRDs names the Cilium policy CRDs installed
	// (ciliumnetworkpolicies.cilium.io and its clusterwide sibling).
	CiliumPolicyCRDs []string
}

// Cilium's policy CRDs, as Facts.CiliumPolicyCRDs names them.
const (
	CiliumNetworkPolicyCRD            = "ciliumnetworkpolicies.cilium.io"
	CiliumClusterwideNetworkPolicyCRD = "ciliumclusterwidenetworkpolicies.cilium.io"
)

// Result is what Classify concludes.
type Result struct {
	// Name of the CNI; components joined with "+" when several work together
	// (for example "flannel+kube-network-policies"); "unknown" if none found.
	Name string
	// Version of the component that enforces policy (or of the CNI), from
	// its image tag; empty when unknown.
	Version string
	// Enforces says whether NetworkPolicies are enforced.
	Enforces Enforcement
	// Reason is a CamelCase reason, Message a sentence for users.
	Reason  string
	Message string
	// L7 is true when the CNI can also enforce HTTP-aware (layer 7) policies
	// through its own policy API. L7Note says why an enforcing CNI that
	// could does not now.
	L7     bool
	L7Note string
	// Evidence lists the objects the conclusion rests on, one line each.
	Evidence []string
	// Source is Detected or Configured.
	Source string
	// CiliumEndpoints is true when the enforcing component is Cilium and it
	// maintains CiliumEndpoint objects: which pods it polices can be read
	// per pod (see CoverageOf). EndpointsNote says why not, when Cilium
	// enforces without them.
	CiliumEndpoints bool
	EndpointsNote   string
	// CiliumPolicyCRDs names the Cilium policy CRDs installed now, sorted:
	// a change re-evaluates every WorkloadIsolation like any other change
	// of the classification.
	CiliumPolicyCRDs []string
}

// EvidenceString joins the evidence for display.
func (r Result) EvidenceString() string { return strings.Join(r.Evidence, "; ") }

// component is one recognised part of the cluster network.
type component struct {
	name     string
	version  string
	enforces Enforcement
	reason   string
	message  string
	l7       bool
	l7Note   string
	evidence string
	// endpoints: the component maintains CiliumEndpoints; endpointsNote
	// says why a Cilium agent does not.
	endpoints     bool
	endpointsNote string
	// enforcer is true for components whose job includes policy
	// enforcement (even when it is switched off); false for network
	// providers that never enforce.
	enforcer bool
	// notReady, for a component found by its DaemonSet, says why its agent
	// pods are not all ready; empty when they are.
	notReady string
}

// Classify reasons about facts and returns the cluster's CNI and whether it
// enforces NetworkPolicy:
//   - True when any recognised component enforces, and every agent pod its
//     DaemonSet schedules is ready (a component whose agents are not is
//     Unknown, reason AgentsNotReady: it enforces nothing where it does not
//     run);
//   - otherwise False when a recognised component is known not to enforce (a
//     provider that never enforces, or an enforcer whose enforcement is
//     disabled or in audit mode), even if others cannot say: what runs does
//     not enforce, and an engine that might is not running (for example
//     Flannel plus Calico's CRDs left without a calico-node agent);
//   - Unknown when nothing was recognised, or only components that cannot
//     say (an unrecognised version, an installation not yet rolled out, an
//     engine's CRDs without its agent, an enforcer whose agents are not
//     ready); an enforcer whose agents are not ready gives the reason then.
func Classify(f Facts) Result {
	r := classify(f)
	if len(f.CiliumPolicyCRDs) > 0 {
		r.CiliumPolicyCRDs = slices.Sorted(slices.Values(f.CiliumPolicyCRDs))
	}
	return r
}

func classify(f Facts) Result {
	comps := components(f)
	if len(comps) == 0 {
		return Result{
			Name: "unknown", Enforces: EnforcementUnknown, Reason: ReasonUnknown, Source: SourceDetected,
			Message: "no known CNI found in the system namespaces; declare the CNI in the operator configuration (cni.name, cni.enforcesNetworkPolicy) if it enforces NetworkPolicy",
		}
	}
	sort.SliceStable(comps, func(i, j int) bool { return !comps[i].enforcer && comps[j].enforcer })
	r := Result{Name: joinNames(comps), Source: SourceDetected}
	for _, c := range comps {
		r.Evidence = append(r.Evidence, c.evidence)
		r.L7 = r.L7 || (c.l7 && c.enforces == EnforcementTrue)
		if c.l7Note != "" && r.L7Note == "" {
			r.L7Note = c.l7Note
		}
	}
	if r.L7 {
		r.L7Note = ""
	}
	pick := func(e Enforcement) *component {
		for i := range comps {
			if comps[i].enforces == e {
				return &comps[i]
			}
		}
		return nil
	}
	var chosen *component
	switch {
	case pick(EnforcementTrue) != nil:
		chosen, r.Enforces = pick(EnforcementTrue), EnforcementTrue
	case pick(EnforcementFalse) != nil:
		chosen, r.Enforces = disabledFirst(comps), EnforcementFalse
	default:
		chosen, r.Enforces = notReadyFirst(comps), EnforcementUnknown
	}
	r.Version, r.Reason, r.Message = chosen.version, chosen.reason, chosen.message
	r.CiliumEndpoints, r.EndpointsNote = chosen.endpoints && r.Enforces == EnforcementTrue, chosen.endpointsNote
	if r.Version == "" {
		r.Version = comps[0].version
	}
	return r
}

// disabledFirst returns a component that does not enforce, preferring an
// enforcer that is switched off over a provider that cannot enforce,
// because its message says how to fix it.
func disabledFirst(comps []component) *component {
	var first *component
	for i := range comps {
		if comps[i].enforces != EnforcementFalse {
			continue
		}
		if comps[i].enforcer {
			return &comps[i]
		}
		if first == nil {
			first = &comps[i]
		}
	}
	return first
}

// notReadyFirst returns a component that cannot say whether it enforces,
// preferring an enforcer whose agents are not ready: it is installed to
// enforce and does not run, which is what to fix.
func notReadyFirst(comps []component) *component {
	var first *component
	for i := range comps {
		if comps[i].enforces != EnforcementUnknown {
			continue
		}
		if comps[i].reason == ReasonAgentsNotReady {
			return &comps[i]
		}
		if first == nil {
			first = &comps[i]
		}
	}
	return first
}

func joinNames(comps []component) string {
	var names []string
	for _, c := range comps {
		if !slices.Contains(names, c.name) {
			names = append(names, c.name)
		}
	}
	return strings.Join(names, "+")
}

// Configured returns the Result for a CNI declared by the administrator.
func Configured(name string, enforces Enforcement, l7 bool) Result {
	r := Result{Name: name, Enforces: enforces, L7: l7, Source: SourceConfigured,
		Evidence: []string{"operator configuration (cni)"}}
	switch enforces {
	case EnforcementTrue:
		r.Reason, r.Message = ReasonEnforcing, fmt.Sprintf("%s enforces NetworkPolicy, as declared in the operator configuration", name)
	case EnforcementFalse:
		r.Reason, r.Message = ReasonDoesNotEnforce, fmt.Sprintf("%s does not enforce NetworkPolicy, as declared in the operator configuration: the generated policies have no effect", name)
	default:
		r.Enforces, r.Reason = EnforcementUnknown, ReasonUnknown
		r.Message = fmt.Sprintf("%s is declared in the operator configuration without saying whether it enforces NetworkPolicy", name)
	}
	return r
}
