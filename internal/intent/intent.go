// Package intent turns a WorkloadIsolation into what it asks for: the target
// pods, the sources allowed in and the destinations allowed out, with
// presets resolved and every value checked. It is the one model the
// renderers read (NetworkPolicies in package policy, Cilium's own policies in
// package ciliumpolicy), so that each direction and each dataplane says the
// same thing. It is pure: no client, no context, no clock.
package intent

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/preset"
)

// DefaultDNSPreset is the egress preset that keeps name resolution working
// when spec.dns is absent.
const DefaultDNSPreset = "cluster-dns"

// NoDNS is the spec.dns value that allows no name resolution.
const NoDNS = "None"

// SpecError says the spec cannot be turned into an intent. Reason is one of
// the v1alpha1 condition reasons; retrying without a spec change is futile.
type SpecError struct {
	Reason string
	Err    error
}

func (e *SpecError) Error() string { return e.Err.Error() }
func (e *SpecError) Unwrap() error { return e.Err }

// Intent is what one WorkloadIsolation asks for.
type Intent struct {
	// Name, Namespace and UID identify the WorkloadIsolation.
	Name, Namespace string
	UID             types.UID
	// Target selects the isolated pods.
	Target metav1.LabelSelector
	// Ingress lists the allowed sources, one rule per spec rule. Ingress is
	// always isolated: everything not listed is denied.
	Ingress []Rule
	// Egress is nil when egress is not isolated.
	Egress *Egress
}

// Egress is the outbound half of an intent: everything not listed is denied.
type Egress struct {
	// Rules lists the allowed destinations, one rule per spec rule.
	Rules []Rule
	// DNS is the name-resolution allowance, nil with spec.dns None.
	DNS *DNS
}

// DNS is the egress rule that keeps name resolution working.
type DNS struct {
	// Preset names the preset the rule comes from.
	Preset string
	// Rule holds its destinations and ports.
	Rule Rule
}

// linkLocal are the ranges a node-local DNS cache listens on.
var linkLocal = []netip.Prefix{netip.MustParsePrefix("169.254.0.0/16"), netip.MustParsePrefix("fe80::/10")}

// HostAddresses lists the ipBlock CIDRs of the DNS destinations that lie in
// a link-local range. On Cilium such an address (NodeLocal DNSCache's
// 169.254.20.10) belongs to the host identity, which no ipBlock matches;
// any other address is reached as itself.
func (d *DNS) HostAddresses() []string {
	var out []string
	for _, p := range d.Rule.Peers {
		if p.IPBlock == nil {
			continue
		}
		cidr, err := netip.ParsePrefix(p.IPBlock.CIDR)
		if err != nil {
			continue
		}
		for _, ll := range linkLocal {
			if ll.Contains(cidr.Addr()) && cidr.Bits() >= ll.Bits() {
				out = append(out, p.IPBlock.CIDR)
				break
			}
		}
	}
	return out
}

// Rule is one allowance: the peers (sources for ingress, destinations for
// egress) and the destination ports, with NetworkPolicy semantics (no ports:
// all ports).
type Rule struct {
	Name  string
	Peers []networkingv1.NetworkPolicyPeer
	Ports []networkingv1.NetworkPolicyPort
	// Hosts, on an egress rule, lists the destinations named by DNS name
	// (exact, or "*." and a name), without repeats. A rule's Hosts are
	// never rendered as NetworkPolicy; a rule with Hosts and no Peers has
	// no NetworkPolicy at all (see HostRules).
	Hosts []string
	// HTTP, on an ingress rule with spec http, lists the only requests the
	// rule admits, presets resolved, without repeats, in spec order. A rule
	// with HTTP is never rendered as a NetworkPolicy: its traffic is
	// allowed only where the requests can be enforced (see HTTPRules).
	HTTP []isolationv1alpha1.HTTPRequest
}

// HostRules lists the egress rules that name hosts.
func (in *Intent) HostRules() []Rule {
	if in.Egress == nil {
		return nil
	}
	var out []Rule
	for _, r := range in.Egress.Rules {
		if len(r.Hosts) > 0 {
			out = append(out, r)
		}
	}
	return out
}

// HTTPRules lists the ingress rules that admit only some HTTP requests.
func (in *Intent) HTTPRules() []Rule {
	var out []Rule
	for _, r := range in.Ingress {
		if len(r.HTTP) > 0 {
			out = append(out, r)
		}
	}
	return out
}

// FromSpec returns the intent of wi, whose target pods are selected by target
// (spec.target.podSelector, or the selector of spec.target.workloadRef
// resolved by the caller). The error is a *SpecError.
func FromSpec(wi *isolationv1alpha1.WorkloadIsolation, target metav1.LabelSelector, presets preset.Catalog) (*Intent, error) {
	if errs := metav1validation.ValidateLabelSelector(&target, metav1validation.LabelSelectorValidationOptions{}, field.NewPath("spec", "target")); len(errs) > 0 {
		return nil, &SpecError{Reason: isolationv1alpha1.ReasonInvalidSpec, Err: fmt.Errorf("invalid target selector: %w", errs.ToAggregate())}
	}
	in := &Intent{Name: wi.Name, Namespace: wi.Namespace, UID: wi.UID, Target: *target.DeepCopy()}
	for i, rule := range wi.Spec.Ingress {
		path := field.NewPath("spec", "ingress").Index(i)
		r := Rule{Name: rule.Name, Ports: ports(rule.Ports)}
		for j, from := range rule.From {
			peers, err := ingressPeers(from, presets)
			if err != nil {
				return nil, err
			}
			if err := validatePeers(peers, path.Child("from").Index(j)); err != nil {
				return nil, err
			}
			r.Peers = append(r.Peers, peers...)
		}
		if rule.HTTP != nil {
			var err error
			if r.HTTP, err = httpRequests(rule, presets, path); err != nil {
				return nil, err
			}
		}
		in.Ingress = append(in.Ingress, r)
	}
	if err := httpOverlaps(in); err != nil {
		return nil, err
	}
	if wi.Spec.Egress == nil {
		return in, nil
	}
	in.Egress = &Egress{}
	for i, rule := range wi.Spec.Egress {
		r, err := egressRule(rule, presets, field.NewPath("spec", "egress").Index(i))
		if err != nil {
			return nil, err
		}
		in.Egress.Rules = append(in.Egress.Rules, r)
	}
	if name := dnsPreset(wi.Spec.DNS); name != "" {
		dest, err := presets.ResolveTo(name, "")
		if err != nil {
			return nil, presetError(err)
		}
		if len(dest.Hosts) > 0 {
			return nil, &SpecError{Reason: isolationv1alpha1.ReasonInvalidSpec, Err: fmt.Errorf(
				"spec.dns: preset %s names hosts, which cannot carry name resolution itself: pick a preset of DNS servers", name)}
		}
		if err := validatePeers(dest.Peers, field.NewPath("spec", "dns")); err != nil {
			return nil, err
		}
		in.Egress.DNS = &DNS{Preset: name, Rule: Rule{Name: name, Peers: dest.Peers, Ports: dest.Ports}}
	}
	if len(in.HostRules()) > 0 && in.Egress.DNS == nil {
		return nil, &SpecError{Reason: isolationv1alpha1.ReasonInvalidSpec, Err: fmt.Errorf(
			"spec.dns: egress rules name hosts, which the target pods must look up: dns None leaves them unreachable; drop hosts or keep a DNS preset")}
	}
	return in, nil
}

// dnsPreset is the preset spec.dns names: the default when absent, none
// with None.
func dnsPreset(dns string) string {
	switch dns {
	case "":
		return DefaultDNSPreset
	case NoDNS:
		return ""
	default:
		return dns
	}
}

func egressRule(rule isolationv1alpha1.EgressRule, presets preset.Catalog, path *field.Path) (Rule, error) {
	r := Rule{Name: rule.Name, Ports: ports(rule.Ports)}
	for j, to := range rule.To {
		var peers []networkingv1.NetworkPolicyPeer
		var hosts []string
		switch {
		case to.Preset != "":
			dest, err := presets.ResolveTo(to.Preset, to.PresetNamespace)
			if err != nil {
				return r, presetError(err)
			}
			resolved, presetPorts := dest.Peers, dest.Ports
			hosts = dest.Hosts
			// A preset's ports apply when it is the rule's only
			// destination and the rule lists none. Among other
			// destinations they could only be dropped (all ports to all
			// of them), so the rule must say its ports.
			switch {
			case len(rule.Ports) > 0 || len(presetPorts) == 0:
			case len(rule.To) == 1:
				r.Ports = presetPorts
			default:
				return r, &SpecError{Reason: isolationv1alpha1.ReasonInvalidSpec, Err: fmt.Errorf(
					"%s: preset %s declares ports, which cannot apply to the rule's other destinations: list the rule's ports, or give the preset a rule of its own",
					path.Child("to").Index(j), to.Preset)}
			}
			peers = resolved
		case len(to.Hosts) > 0:
			hosts = to.Hosts
		default:
			peers = []networkingv1.NetworkPolicyPeer{peer(to.NamespaceSelector, to.PodSelector, to.IPBlock)}
		}
		if err := validatePeers(peers, path.Child("to").Index(j)); err != nil {
			return r, err
		}
		for k, h := range hosts {
			if errs := preset.ValidateHost(h, path.Child("to").Index(j).Child("hosts").Index(k)); len(errs) > 0 {
				return r, &SpecError{Reason: isolationv1alpha1.ReasonInvalidSpec, Err: errs.ToAggregate()}
			}
			if !slices.Contains(r.Hosts, h) {
				r.Hosts = append(r.Hosts, h)
			}
		}
		r.Peers = append(r.Peers, peers...)
	}
	return r, nil
}

// httpOverlaps refuses an ingress rule without http that may admit some of
// a rule with http's sources on some of its ports: Cilium joins the two,
// and the rule without http would admit every request from them.
func httpOverlaps(in *Intent) error {
	for _, h := range in.HTTPRules() {
		for _, o := range in.Ingress {
			if len(o.HTTP) > 0 || PortsDisjoint(h.Ports, o.Ports) {
				continue
			}
			for _, hp := range h.Peers {
				for _, op := range o.Peers {
					if !PeersDisjoint(hp, op, in.Namespace) {
						return &SpecError{Reason: isolationv1alpha1.ReasonInvalidSpec, Err: fmt.Errorf(
							"ingress rule %s may admit some of the sources of rule %s (which has http) on the same ports, and would admit every HTTP request from them: give rule %s sources or ports provably apart from rule %s's, or http too",
							o.Name, h.Name, o.Name, h.Name)}
					}
				}
			}
		}
	}
	return nil
}

// httpRequests resolves an ingress rule's http: the requests of its presets,
// then its own, each once. The rule's ports must be TCP port numbers or
// names, as the CRD requires.
func httpRequests(rule isolationv1alpha1.IngressRule, presets preset.Catalog, path *field.Path) ([]isolationv1alpha1.HTTPRequest, error) {
	invalid := func(format string, args ...any) error {
		return &SpecError{Reason: isolationv1alpha1.ReasonInvalidSpec, Err: fmt.Errorf(format, args...)}
	}
	if len(rule.Ports) == 0 {
		return nil, invalid("%s: http needs ports, each TCP with a port and without endPort", path.Child("ports"))
	}
	for i, p := range rule.Ports {
		if p.Port == nil || p.EndPort != nil || (p.Protocol != "" && p.Protocol != corev1.ProtocolTCP) {
			return nil, invalid("%s: http needs ports, each TCP with a port and without endPort", path.Child("ports").Index(i))
		}
	}
	var out []isolationv1alpha1.HTTPRequest
	seen := map[isolationv1alpha1.HTTPRequest]bool{}
	add := func(r isolationv1alpha1.HTTPRequest, at *field.Path) error {
		if errs := preset.ValidateHTTPRequest(r, at); len(errs) > 0 {
			return &SpecError{Reason: isolationv1alpha1.ReasonInvalidSpec, Err: errs.ToAggregate()}
		}
		if !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
		return nil
	}
	for i, name := range rule.HTTP.Presets {
		requests, err := presets.ResolveHTTP(name)
		if err != nil {
			return nil, presetError(err)
		}
		for _, r := range requests {
			if err := add(r, path.Child("http", "presets").Index(i)); err != nil {
				return nil, err
			}
		}
	}
	for i, r := range rule.HTTP.Requests {
		if err := add(r, path.Child("http", "requests").Index(i)); err != nil {
			return nil, err
		}
	}
	if len(out) == 0 {
		return nil, invalid("%s: http needs at least one preset or request", path.Child("http"))
	}
	return out, nil
}

func ingressPeers(from isolationv1alpha1.IngressPeer, presets preset.Catalog) ([]networkingv1.NetworkPolicyPeer, error) {
	if from.Preset != "" {
		resolved, err := presets.Resolve(from.Preset, from.PresetNamespace)
		if err != nil {
			return nil, presetError(err)
		}
		return resolved, nil
	}
	return []networkingv1.NetworkPolicyPeer{peer(from.NamespaceSelector, from.PodSelector, from.IPBlock)}, nil
}

func peer(ns, pods *isolationv1alpha1.LabelSelector, block *isolationv1alpha1.IPBlock) networkingv1.NetworkPolicyPeer {
	p := networkingv1.NetworkPolicyPeer{NamespaceSelector: ns.LabelSelector(), PodSelector: pods.LabelSelector()}
	if block != nil {
		p.IPBlock = &networkingv1.IPBlock{CIDR: block.CIDR, Except: append([]string(nil), block.Except...)}
	}
	return p
}

func presetError(err error) error {
	reason := isolationv1alpha1.ReasonInvalidSpec
	var unknown *preset.UnknownError
	if errors.As(err, &unknown) {
		reason = isolationv1alpha1.ReasonUnknownPreset
	}
	return &SpecError{Reason: reason, Err: err}
}

func validatePeers(peers []networkingv1.NetworkPolicyPeer, path *field.Path) error {
	for _, p := range peers {
		if errs := preset.ValidatePeer(p, path); len(errs) > 0 {
			return &SpecError{Reason: isolationv1alpha1.ReasonInvalidSpec, Err: errs.ToAggregate()}
		}
	}
	return nil
}

// ports converts spec ports, TCP when the protocol is absent.
func ports(in []isolationv1alpha1.Port) []networkingv1.NetworkPolicyPort {
	var out []networkingv1.NetworkPolicyPort
	for _, p := range in {
		protocol := p.Protocol
		if protocol == "" {
			protocol = corev1.ProtocolTCP
		}
		port := networkingv1.NetworkPolicyPort{Protocol: &protocol}
		if p.Port != nil {
			port.Port = ptr.To(*p.Port)
		}
		if p.EndPort != nil {
			port.EndPort = ptr.To(*p.EndPort)
		}
		out = append(out, port)
	}
	return out
}
