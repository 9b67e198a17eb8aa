package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Mode says whether the operator writes the policies it computes.
// +kubebuilder:validation:Enum=Enforce;Audit
type Mode string

const (
	// ModeEnforce writes, owns and repairs the generated NetworkPolicies.
	ModeEnforce Mode = "Enforce"
	// ModeAudit computes the policies and reports them in status, writing none.
	// Switching from Enforce to Audit removes the policies written before.
	ModeAudit Mode = "Audit"
)

// Guard says whether the cluster refuses NetworkPolicy changes that would
// re-open a WorkloadIsolation's pods.
// +kubebuilder:validation:Enum=Off;Enforce
type Guard string

const (
	// GuardOff leaves other NetworkPolicies in the namespace unrestricted: a
	// widening policy is only reported (Isolated=False) and a changed or
	// deleted generated policy is repaired afterwards.
	GuardOff Guard = "Off"
	// GuardEnforce asks the admission guard (a ValidatingAdmissionPolicy
	// installed with the operator) to reject, from anyone but the operator
	// and holders of the break-glass verb on this WorkloadIsolation, a
	// NetworkPolicy that allows traffic and could select the target pods,
	// and any change or deletion of the generated policies.
	GuardEnforce Guard = "Enforce"
)

// WorkloadKind is the kind of workload a WorkloadRef points at.
// +kubebuilder:validation:Enum=Deployment;StatefulSet;DaemonSet
type WorkloadKind string

// Supported workload kinds, all in the apps/v1 group.
const (
	WorkloadKindDeployment  WorkloadKind = "Deployment"
	WorkloadKindStatefulSet WorkloadKind = "StatefulSet"
	WorkloadKindDaemonSet   WorkloadKind = "DaemonSet"
)

// WorkloadIsolationSpec is the desired isolation of one workload.
type WorkloadIsolationSpec struct {
	// target selects the pods to isolate, in the namespace of the
	// WorkloadIsolation.
	// +required
	Target Target `json:"target"`

	// ingress lists the sources allowed to reach the target. Everything else
	// is denied. An absent or empty list denies all ingress.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=32
	Ingress []IngressRule `json:"ingress,omitempty"`

	// egress lists the destinations the target pods may reach. Absent: egress
	// is not isolated. Present, even empty ([]): every other connection from
	// the target pods is denied, except name resolution through the dns
	// preset.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=32
	Egress []EgressRule `json:"egress"`

	// dns names the egress preset that keeps name resolution working while
	// egress is isolated. Absent means cluster-dns (the cluster DNS pods and
	// NodeLocal DNSCache, on TCP and UDP 53); None allows no DNS. Without
	// egress it has no effect.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^([a-z0-9]([-a-z0-9]*[a-z0-9])?|None)$`
	DNS string `json:"dns,omitempty"`

	// mode is Enforce (default: write and keep the policies) or Audit
	// (compute and report them in status, write nothing).
	// +optional
	// +kubebuilder:default=Enforce
	Mode Mode `json:"mode,omitempty"`

	// guard is Enforce to have the API server reject NetworkPolicy changes
	// that could re-open the target pods: creating or updating a
	// NetworkPolicy in this namespace that allows any ingress (or any egress,
	// when egress is declared here) and whose podSelector is not provably
	// disjoint from status.targetSelector, and updating or deleting the
	// policies generated for this resource. The operator, the garbage
	// collector, the namespace controller and users allowed the verb
	// break-glass on this WorkloadIsolation are exempt. Absent or Off: no
	// admission guard, changes are reported and repaired afterwards.
	// +optional
	Guard Guard `json:"guard,omitempty"`
}

// Target selects the pods to isolate. Exactly one of podSelector and
// workloadRef is set.
// +kubebuilder:validation:XValidation:rule="has(self.podSelector) != has(self.workloadRef)",message="exactly one of podSelector or workloadRef must be set"
// +kubebuilder:validation:XValidation:rule="!has(self.podSelector) || (has(self.selectAllPods) && self.selectAllPods) || (has(self.podSelector.matchLabels) && size(self.podSelector.matchLabels) > 0) || (has(self.podSelector.matchExpressions) && size(self.podSelector.matchExpressions) > 0)",message="podSelector is empty and would select every pod in the namespace; set selectAllPods: true to confirm"
// +kubebuilder:validation:XValidation:rule="!has(self.selectAllPods) || !self.selectAllPods || (has(self.podSelector) && (!has(self.podSelector.matchLabels) || size(self.podSelector.matchLabels) == 0) && (!has(self.podSelector.matchExpressions) || size(self.podSelector.matchExpressions) == 0))",message="selectAllPods: true requires an empty podSelector ({})"
type Target struct {
	// podSelector selects the target pods by label. An empty selector ({})
	// selects every pod in the namespace and is accepted only together with
	// selectAllPods: true.
	// +optional
	PodSelector *LabelSelector `json:"podSelector,omitempty"`

	// workloadRef names a Deployment, StatefulSet or DaemonSet in the same
	// namespace; its spec.selector becomes the target and is followed when it
	// changes.
	// +optional
	WorkloadRef *WorkloadRef `json:"workloadRef,omitempty"`

	// selectAllPods confirms that an empty podSelector, which selects every
	// pod in the namespace, is intended.
	// +optional
	SelectAllPods bool `json:"selectAllPods,omitempty"`
}

// WorkloadRef names a workload in the namespace of the WorkloadIsolation.
type WorkloadRef struct {
	// kind is Deployment, StatefulSet or DaemonSet (group apps).
	// +required
	Kind WorkloadKind `json:"kind"`

	// name of the workload.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
}

// IngressRule allows traffic from a set of sources to a set of ports. Each
// rule becomes one NetworkPolicy named <workloadisolation>-allow-<name>; a
// rule with http becomes a CiliumNetworkPolicy named
// <workloadisolation>-http-<name> instead.
// +kubebuilder:validation:XValidation:rule="!has(self.http) || (has(self.ports) && size(self.ports) > 0 && self.ports.all(p, has(p.port) && !has(p.endPort) && (!has(p.protocol) || p.protocol == 'TCP')))",message="http needs ports, each TCP with a port and without endPort"
type IngressRule struct {
	// name identifies the rule and names its NetworkPolicy: a DNS label,
	// unique within ingress.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// from lists the allowed sources; a connection is allowed if it matches
	// any entry. At least one entry is required: to allow every pod in every
	// namespace say so with namespaceSelector: {}.
	// +required
	// +listType=atomic
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	From []IngressPeer `json:"from"`

	// ports lists the allowed destination ports on the target pods. An absent
	// or empty list allows all ports.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	Ports []Port `json:"ports,omitempty"`

	// http, when set, narrows the rule to these HTTP requests: the sources
	// may send them and nothing else on the rule's ports (layer 7). It needs
	// a CNI that enforces HTTP rules (Cilium with its L7 proxy); elsewhere
	// the rule admits nothing and the Enforced condition says why. It needs
	// ports, each TCP without endPort.
	// +optional
	HTTP *HTTPAllow `json:"http,omitempty"`
}

// HTTPAllow lists the HTTP requests an ingress rule admits: those of the
// named presets and those listed.
// +kubebuilder:validation:XValidation:rule="(has(self.presets) && size(self.presets) > 0) || (has(self.requests) && size(self.requests) > 0)",message="http needs at least one preset or request"
type HTTPAllow struct {
	// presets name request sets of the operator's preset catalog, such as
	// openai-inference (the inference endpoints of OpenAI-compatible APIs).
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=8
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Presets []string `json:"presets,omitempty"`

	// requests lists further admitted requests.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	Requests []HTTPRequest `json:"requests,omitempty"`
}

// HTTPRequest admits requests with one method (any method when absent) to
// one exact path. A query string is allowed after the path; the path itself
// must match exactly, letter for letter (no prefix, no pattern, no
// decoding of percent escapes).
type HTTPRequest struct {
	// method is an HTTP method; absent admits every method.
	// +optional
	// +kubebuilder:validation:Enum=GET;HEAD;POST;PUT;PATCH;DELETE;OPTIONS
	Method string `json:"method,omitempty"`

	// path is the exact request path, starting with '/', without query
	// string or fragment.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:Pattern=`^/[-A-Za-z0-9._~!$&'()*+,;=:@%/]*$`
	Path string `json:"path"`
}

// EgressRule allows traffic from the target pods to a set of destinations
// on a set of ports. Each rule becomes one NetworkPolicy named
// <workloadisolation>-egress-<name>.
type EgressRule struct {
	// name identifies the rule and names its NetworkPolicy: a DNS label,
	// unique within egress.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// to lists the allowed destinations; a connection is allowed if it
	// matches any entry. At least one entry is required.
	// +required
	// +listType=atomic
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	To []EgressPeer `json:"to"`

	// ports lists the allowed destination ports. Absent or empty: the ports
	// of the preset when to is a single preset that declares ports, else all
	// ports; a preset with ports among other destinations needs ports here.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	Ports []Port `json:"ports,omitempty"`
}

// EgressPeer is one allowed destination: either a named preset, host
// names, or the fields of a NetworkPolicyPeer with their usual meaning.
// +kubebuilder:validation:XValidation:rule="has(self.preset) || has(self.hosts) || has(self.namespaceSelector) || has(self.podSelector) || has(self.ipBlock)",message="each to entry needs one of preset, hosts, namespaceSelector, podSelector or ipBlock"
// +kubebuilder:validation:XValidation:rule="!has(self.preset) || !(has(self.hosts) || has(self.namespaceSelector) || has(self.podSelector) || has(self.ipBlock))",message="preset cannot be combined with hosts, namespaceSelector, podSelector or ipBlock in the same to entry"
// +kubebuilder:validation:XValidation:rule="!has(self.hosts) || !(has(self.namespaceSelector) || has(self.podSelector) || has(self.ipBlock))",message="hosts cannot be combined with namespaceSelector, podSelector or ipBlock in the same to entry"
// +kubebuilder:validation:XValidation:rule="!has(self.ipBlock) || !(has(self.namespaceSelector) || has(self.podSelector))",message="ipBlock cannot be combined with namespaceSelector or podSelector in the same to entry"
// +kubebuilder:validation:XValidation:rule="!has(self.presetNamespace) || has(self.preset)",message="presetNamespace is only valid together with preset"
type EgressPeer struct {
	// preset names a destination defined by the operator: a built-in such
	// as cluster-dns or minio, or one an administrator configured. An
	// unknown name is reported in status and never treated as "allow".
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Preset string `json:"preset,omitempty"`

	// presetNamespace points the preset at another namespace than its
	// default, for example the namespace MinIO was installed in.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	PresetNamespace string `json:"presetNamespace,omitempty"`

	// hosts lists destinations by DNS name: exact names (huggingface.co) or
	// patterns whose first label is '*' (*.hf.co: one more label, any). The
	// addresses the target pods look up for them are allowed, on the rule's
	// ports. It needs a CNI that enforces names (Cilium with its L7 proxy,
	// whose DNS proxy sees the lookups); elsewhere the hosts stay
	// unreachable and the Enforced condition says why.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:Pattern=`^(\*\.)?([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)*[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Hosts []string `json:"hosts,omitempty"`

	// namespaceSelector selects namespaces by label; {} selects all namespaces.
	// +optional
	NamespaceSelector *LabelSelector `json:"namespaceSelector,omitempty"`

	// podSelector selects pods by label; {} selects all pods (in the
	// namespaces chosen by namespaceSelector, or in this namespace).
	// +optional
	PodSelector *LabelSelector `json:"podSelector,omitempty"`

	// ipBlock selects a range of IP addresses.
	// +optional
	IPBlock *IPBlock `json:"ipBlock,omitempty"`
}

// IngressPeer is one allowed source: either a named preset, or the fields of
// a NetworkPolicyPeer with their usual meaning (namespaceSelector and
// podSelector together select pods in the selected namespaces; podSelector
// alone selects pods in the namespace of the WorkloadIsolation; ipBlock
// selects addresses and stands alone).
// +kubebuilder:validation:XValidation:rule="has(self.preset) || has(self.namespaceSelector) || has(self.podSelector) || has(self.ipBlock)",message="each from entry needs one of preset, namespaceSelector, podSelector or ipBlock"
// +kubebuilder:validation:XValidation:rule="!has(self.preset) || !(has(self.namespaceSelector) || has(self.podSelector) || has(self.ipBlock))",message="preset cannot be combined with namespaceSelector, podSelector or ipBlock in the same from entry"
// +kubebuilder:validation:XValidation:rule="!has(self.ipBlock) || !(has(self.namespaceSelector) || has(self.podSelector))",message="ipBlock cannot be combined with namespaceSelector or podSelector in the same from entry"
// +kubebuilder:validation:XValidation:rule="!has(self.presetNamespace) || has(self.preset)",message="presetNamespace is only valid together with preset"
type IngressPeer struct {
	// preset names a source defined by the operator: a built-in such as
	// ingress-nginx or one an administrator configured. An unknown name is
	// reported in status and never treated as "allow".
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Preset string `json:"preset,omitempty"`

	// presetNamespace points the preset at another namespace than its
	// default, for example the namespace ingress-nginx was installed in.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	PresetNamespace string `json:"presetNamespace,omitempty"`

	// namespaceSelector selects namespaces by label; {} selects all namespaces.
	// +optional
	NamespaceSelector *LabelSelector `json:"namespaceSelector,omitempty"`

	// podSelector selects pods by label; {} selects all pods (in the
	// namespaces chosen by namespaceSelector, or in this namespace).
	// +optional
	PodSelector *LabelSelector `json:"podSelector,omitempty"`

	// ipBlock selects a range of IP addresses.
	// +optional
	IPBlock *IPBlock `json:"ipBlock,omitempty"`
}

// IPBlock is a CIDR with optional exceptions.
// +kubebuilder:validation:XValidation:rule="!has(self.except) || self.except.all(e, isCIDR(e) && cidr(e).ip().family() == cidr(self.cidr).ip().family() && cidr(self.cidr).containsCIDR(e) && cidr(e).prefixLength() > cidr(self.cidr).prefixLength())",message="every except entry must be a CIDR strictly inside cidr, of the same IP family"
type IPBlock struct {
	// cidr is an IPv4 or IPv6 range such as 10.0.0.0/8 or 2001:db8::/32.
	// +required
	// +kubebuilder:validation:MaxLength=43
	// +kubebuilder:validation:XValidation:rule="isCIDR(self)",message="cidr must be a valid CIDR such as 10.0.0.0/8 or 2001:db8::/32"
	// +kubebuilder:validation:XValidation:rule="!isCIDR(self) || cidr(self) == cidr(self).masked()",messageExpression="'cidr ' + self + ' has host bits set: write the network address, whose bits after the prefix length are zero (10.0.0.0/8, not 10.0.0.1/8)'"
	CIDR string `json:"cidr"`

	// except lists ranges inside cidr that are not allowed.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=43
	// +kubebuilder:validation:XValidation:rule="self.all(e, !isCIDR(e) || cidr(e) == cidr(e).masked())",message="every except entry must be a network address without host bits, such as 10.1.0.0/16"
	Except []string `json:"except,omitempty"`
}

// Port is a destination port (or port range): on the target pods for
// ingress, on the destinations for egress.
// +kubebuilder:validation:XValidation:rule="!has(self.port) || type(self.port) != int || (self.port >= 1 && self.port <= 65535)",message="port must be between 1 and 65535"
// +kubebuilder:validation:XValidation:rule="!has(self.port) || type(self.port) != string || (self.port.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$') && self.port.matches('[a-z]') && !self.port.contains('--') && size(self.port) <= 15)",message="a named port must be an IANA service name: at most 15 lower-case letters, digits and '-', with at least one letter"
// +kubebuilder:validation:XValidation:rule="!has(self.endPort) || (has(self.port) && type(self.port) == int && self.endPort >= self.port)",message="endPort needs a numeric port and must not be below it"
type Port struct {
	// protocol is TCP (default), UDP or SCTP.
	// +optional
	// +kubebuilder:default=TCP
	// +kubebuilder:validation:Enum=TCP;UDP;SCTP
	Protocol corev1.Protocol `json:"protocol,omitempty"`

	// port is a port number (1-65535) or a named container port. Absent means
	// every port of the protocol.
	// +optional
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:MaxLength=15
	Port *intstr.IntOrString `json:"port,omitempty"`

	// endPort, with a numeric port, allows the range port..endPort.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	EndPort *int32 `json:"endPort,omitempty"`
}

// LabelSelector selects objects by label, with the semantics of
// metav1.LabelSelector: all matchLabels and all matchExpressions must match;
// an empty selector ({}) selects everything.
type LabelSelector struct {
	// matchLabels requires each key to have the given value. Keys must be
	// label keys and values label values; the operator checks them before it
	// writes anything (the API server cannot afford to check map entries).
	// +optional
	// +kubebuilder:validation:MaxProperties=32
	MatchLabels map[string]string `json:"matchLabels,omitempty"`

	// matchExpressions lists requirements on labels.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	MatchExpressions []LabelSelectorRequirement `json:"matchExpressions,omitempty"`
}

// LabelSelectorRequirement is a requirement on one label key.
// +kubebuilder:validation:XValidation:rule="self.operator in ['In', 'NotIn'] ? (has(self.values) && size(self.values) > 0) : (!has(self.values) || size(self.values) == 0)",message="In and NotIn need values; Exists and DoesNotExist take none"
type LabelSelectorRequirement struct {
	// key is the label key.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=317
	// +kubebuilder:validation:Pattern=`^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$`
	Key string `json:"key"`

	// operator is In, NotIn, Exists or DoesNotExist.
	// +required
	// +kubebuilder:validation:Enum=In;NotIn;Exists;DoesNotExist
	Operator metav1.LabelSelectorOperator `json:"operator"`

	// values for In and NotIn.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:Pattern=`^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$`
	Values []string `json:"values,omitempty"`
}

// IsEmpty reports whether the selector selects everything.
func (s *LabelSelector) IsEmpty() bool {
	return s == nil || (len(s.MatchLabels) == 0 && len(s.MatchExpressions) == 0)
}

// LabelSelector returns the selector as a metav1.LabelSelector (nil for nil).
func (s *LabelSelector) LabelSelector() *metav1.LabelSelector {
	if s == nil {
		return nil
	}
	out := &metav1.LabelSelector{}
	if len(s.MatchLabels) > 0 {
		out.MatchLabels = make(map[string]string, len(s.MatchLabels))
		for k, v := range s.MatchLabels {
			out.MatchLabels[k] = v
		}
	}
	for _, e := range s.MatchExpressions {
		out.MatchExpressions = append(out.MatchExpressions, metav1.LabelSelectorRequirement{
			Key: e.Key, Operator: e.Operator, Values: append([]string(nil), e.Values...),
		})
	}
	return out
}

// PolicyReference names one generated object.
type PolicyReference struct {
	// kind of the object: NetworkPolicy, or CiliumNetworkPolicy on Cilium.
	// +required
	// +kubebuilder:validation:MaxLength=63
	Kind string `json:"kind"`

	// name of the object, in the namespace of the WorkloadIsolation.
	// +required
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// CNIStatus says which CNI the cluster runs and whether it enforces the
// generated policies.
type CNIStatus struct {
	// name of the CNI, components joined with "+" when a network provider
	// and a separate policy agent work together; "unknown" when none was
	// recognised.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	Name string `json:"name,omitempty"`

	// version of the enforcing component, from its image tag.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	Version string `json:"version,omitempty"`

	// enforcesNetworkPolicy is True, False or Unknown.
	// +optional
	// +kubebuilder:validation:Enum=True;False;Unknown
	EnforcesNetworkPolicy metav1.ConditionStatus `json:"enforcesNetworkPolicy,omitempty"`

	// l7Policy is true when the CNI can also enforce HTTP-aware (layer 7)
	// policies through its own policy API (for example CiliumNetworkPolicy).
	// +optional
	L7Policy bool `json:"l7Policy,omitempty"`

	// source is Detected (from cluster objects) or Configured (declared by
	// the administrator in the operator configuration, which wins).
	// +optional
	// +kubebuilder:validation:Enum=Detected;Configured
	Source string `json:"source,omitempty"`

	// evidence lists the objects the conclusion rests on.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Evidence string `json:"evidence,omitempty"`
}

// Exposure is a NetworkPolicy that lets more reach the target than declared,
// or that another WorkloadIsolation generated for the same pods.
type Exposure struct {
	// policy is the NetworkPolicy's name, in the WorkloadIsolation's namespace.
	// +required
	// +kubebuilder:validation:MaxLength=253
	Policy string `json:"policy"`

	// workloadIsolation names the other WorkloadIsolation that generated
	// the policy, if one did.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	WorkloadIsolation string `json:"workloadIsolation,omitempty"`

	// direction is Ingress (the policy lets more reach the target) or Egress
	// (it lets the target reach more).
	// +optional
	// +kubebuilder:validation:Enum=Ingress;Egress
	Direction string `json:"direction,omitempty"`

	// summary says what the policy opens, e.g. "allow-all-ingress: all pods
	// in all namespaces, all ports".
	// +required
	// +kubebuilder:validation:MaxLength=2048
	Summary string `json:"summary"`
}

// WorkloadIsolationStatus is the observed state of a WorkloadIsolation.
type WorkloadIsolationStatus struct {
	// observedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready (always), PoliciesApplied, Isolated, Enforced, and
	// Stalled while the spec cannot be acted upon.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// policies lists the objects generated for this resource, in Enforce mode
	// those written, in Audit mode those that would be written.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	Policies []PolicyReference `json:"policies,omitempty"`

	// policyCount is the number of entries in policies, for display.
	// +optional
	PolicyCount int32 `json:"policyCount"`

	// target is the resolved pod selector, in kubectl's label selector
	// syntax, for display; cut to 4096 characters ("...") when longer.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Target string `json:"target,omitempty"`

	// targetSelector is the resolved pod selector (spec.target.podSelector,
	// or the spec.selector of spec.target.workloadRef) in structured form,
	// for tools and admission policies that match pods against it.
	// +optional
	TargetSelector *metav1.LabelSelector `json:"targetSelector,omitempty"`

	// exposure lists the NetworkPolicies that widen the isolation (see the
	// Isolated condition).
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	Exposure []Exposure `json:"exposure,omitempty"`

	// cni says which CNI the cluster runs and whether it enforces
	// NetworkPolicy.
	// +optional
	CNI *CNIStatus `json:"cni,omitempty"`

	// selectedPods counts the pods the target selects now.
	// +optional
	SelectedPods int32 `json:"selectedPods"`

	// egress says whether the target's outbound traffic is isolated: None
	// (the spec declares no egress), Isolated (declared, in place, enforced
	// and not widened: Ready is True in Enforce mode) or NotIsolated
	// (declared, but not in place, not enforced, widened or in Audit mode;
	// the conditions say why).
	// +optional
	// +kubebuilder:validation:Enum=None;Isolated;NotIsolated
	Egress EgressState `json:"egress,omitempty"`

	// guard lists the layers of the guard and their state, with
	// spec.guard: Enforce: Admission (the ValidatingAdmissionPolicy pair)
	// and Dataplane (an admin-tier policy the CNI enforces).
	// +optional
	// +listType=map
	// +listMapKey=layer
	// +kubebuilder:validation:MaxItems=2
	Guard []GuardLayer `json:"guard,omitempty"`
}

// GuardLayerName names a layer of the guard.
// +kubebuilder:validation:Enum=Admission;Dataplane
type GuardLayerName string

// The layers of the guard.
const (
	// GuardLayerAdmission: the API server refuses NetworkPolicy writes
	// that could re-open the target (a ValidatingAdmissionPolicy).
	GuardLayerAdmission GuardLayerName = "Admission"
	// GuardLayerDataplane: the CNI enforces an admin-tier policy
	// (AdminNetworkPolicy or ClusterNetworkPolicy) that lets the target
	// exchange traffic with the declared peers only, before any
	// NetworkPolicy is consulted.
	GuardLayerDataplane GuardLayerName = "Dataplane"
)

// GuardLayerState says whether a layer of the guard is in place.
// +kubebuilder:validation:Enum=Active;NotActive;Unavailable
type GuardLayerState string

// Guard layer states.
const (
	// GuardLayerActive: the layer is in place.
	GuardLayerActive GuardLayerState = "Active"
	// GuardLayerNotActive: the cluster offers the layer, but it is not in
	// place (not installed, or its object could not be written); Guarded
	// and Ready are False.
	GuardLayerNotActive GuardLayerState = "NotActive"
	// GuardLayerUnavailable: the cluster offers no such layer (for the
	// dataplane: the CNI implements no admin-tier API, or its CRDs are not
	// installed). It does not make Guarded False.
	GuardLayerUnavailable GuardLayerState = "Unavailable"
)

// GuardLayer is one layer of the guard.
type GuardLayer struct {
	// layer is Admission or Dataplane.
	// +required
	Layer GuardLayerName `json:"layer"`

	// state is Active, NotActive or Unavailable.
	// +required
	State GuardLayerState `json:"state"`

	// object names what makes the layer, such as
	// "AdminNetworkPolicy isolator-<uid>, priority 900".
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Object string `json:"object,omitempty"`

	// message says why the layer is in this state.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	Message string `json:"message,omitempty"`
}

// EgressState says whether the target's outbound traffic is isolated.
type EgressState string

// Egress states.
const (
	EgressNone        EgressState = "None"
	EgressIsolated    EgressState = "Isolated"
	EgressNotIsolated EgressState = "NotIsolated"
)

// WorkloadIsolation isolates one workload: it denies all ingress to the
// target pods except from the listed sources and, when egress is declared,
// all egress except to the listed destinations and DNS, by generating and
// owning NetworkPolicies.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=wi,categories=isolation
// +kubebuilder:printcolumn:name="Target",type=string,JSONPath=`.status.target`
// +kubebuilder:printcolumn:name="Mode",type=string,JSONPath=`.spec.mode`
// +kubebuilder:printcolumn:name="Policies",type=integer,JSONPath=`.status.policyCount`,description="Generated policies in place"
// +kubebuilder:printcolumn:name="Pods",type=integer,JSONPath=`.status.selectedPods`
// +kubebuilder:printcolumn:name="Isolated",type=string,JSONPath=`.status.conditions[?(@.type=="Isolated")].status`
// +kubebuilder:printcolumn:name="Enforced",type=string,JSONPath=`.status.conditions[?(@.type=="Enforced")].status`
// +kubebuilder:printcolumn:name="Egress",type=string,JSONPath=`.status.egress`
// +kubebuilder:printcolumn:name="CNI",type=string,JSONPath=`.status.cni.name`,priority=1
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type WorkloadIsolation struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired isolation.
	// +required
	Spec WorkloadIsolationSpec `json:"spec"`

	// status is the observed state. Until the operator has reconciled the
	// resource, Ready is Unknown with reason Pending, so that kstatus, Flux,
	// Argo CD and kubectl wait do not take a new resource as healthy.
	// +optional
	// +kubebuilder:default={conditions: {{type: "Ready", status: "Unknown", reason: "Pending", message: "Waiting for the operator to reconcile", lastTransitionTime: "1970-01-01T00:00:00Z"}}}
	Status WorkloadIsolationStatus `json:"status,omitempty"`
}

// WorkloadIsolationList is a list of WorkloadIsolations.
//
// +kubebuilder:object:root=true
type WorkloadIsolationList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []WorkloadIsolation `json:"items"`
}
