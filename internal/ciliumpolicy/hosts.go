package ciliumpolicy

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/isolator-dev/isolator/internal/intent"
	"github.com/isolator-dev/isolator/internal/policy"
)

const hostsSuffix = "egress-hosts"

// HostsName is the name of the CiliumNetworkPolicy of the egress rules that
// name hosts.
func HostsName(owner string) string { return policy.Name(owner, hostsSuffix) }

// Hosts returns the CiliumNetworkPolicy that lets the target pods reach the
// hosts their egress rules name, or nil when no rule names any. Cilium
// learns a name's addresses from the lookups its DNS proxy sees, so the
// policy also sends the target's lookups to every DNS server of the DNS
// preset through that proxy: the cluster DNS pods, NodeLocal DNSCache's
// pods, and its link-local address, which is the node's (the host entity).
// A lookup the proxy does not see leaves the name unreachable, never open.
func Hosts(in *intent.Intent) (*unstructured.Unstructured, error) {
	rules := in.HostRules()
	if len(rules) == 0 {
		return nil, nil
	}
	if in.Egress.DNS == nil {
		return nil, fmt.Errorf("egress rules name hosts, but no DNS preset lets the target pods look them up")
	}
	egress, err := dnsVisibility(in)
	if err != nil {
		return nil, err
	}
	for _, r := range rules {
		names := make([]any, 0, len(r.Hosts))
		for _, h := range r.Hosts {
			if strings.HasPrefix(h, "*.") {
				names = append(names, map[string]any{"matchPattern": h})
			} else {
				names = append(names, map[string]any{"matchName": h})
			}
		}
		rule := map[string]any{"toFQDNs": names}
		if len(r.Ports) > 0 {
			var ports []any
			for _, p := range r.Ports {
				if p.Port == nil {
					// Every port of the protocol: Cilium's port 0.
					protocol := "TCP" // NetworkPolicy's default
					if p.Protocol != nil {
						protocol = string(*p.Protocol)
					}
					ports = append(ports, map[string]any{"port": "0", "protocol": protocol})
					continue
				}
				port, err := ciliumPort(p)
				if err != nil {
					return nil, fmt.Errorf("egress rule %s: %w", r.Name, err)
				}
				ports = append(ports, port)
			}
			rule["toPorts"] = []any{map[string]any{"ports": ports}}
		}
		egress = append(egress, rule)
	}
	return newPolicy(in, HostsName(in.Name), hostsSuffix, map[string]any{
		"description":      fmt.Sprintf("Egress to host names for WorkloadIsolation %s, with its DNS lookups seen by Cilium's DNS proxy", in.Name),
		"endpointSelector": endpointSelector(in.Target),
		"egress":           egress,
	}), nil
}

// dnsVisibility is one egress rule per kind of DNS destination (pods,
// addresses, the node) on the DNS ports, with a DNS rule that admits every
// lookup: the lookups are allowed as before, and now seen.
func dnsVisibility(in *intent.Intent) ([]any, error) {
	dns := in.Egress.DNS
	if len(dns.Rule.Ports) == 0 {
		return nil, fmt.Errorf("DNS preset %s lists no ports, which Cilium's DNS proxy needs", dns.Preset)
	}
	var ports []any
	for _, p := range dns.Rule.Ports {
		port, err := ciliumPort(p)
		if err != nil {
			return nil, fmt.Errorf("DNS preset %s: %w", dns.Preset, err)
		}
		ports = append(ports, port)
	}
	toPorts := func() []any {
		return []any{map[string]any{"ports": runtime.DeepCopyJSONValue(ports), "rules": map[string]any{"dns": []any{map[string]any{"matchPattern": "*"}}}}}
	}
	hostAddresses := map[string]bool{}
	for _, a := range dns.HostAddresses() {
		hostAddresses[a] = true
	}
	var endpoints, cidrs []any
	host := false
	for _, p := range dns.Rule.Peers {
		switch {
		case p.IPBlock != nil && hostAddresses[p.IPBlock.CIDR]:
			host = true
		case p.IPBlock != nil:
			cidrs = append(cidrs, cidrRule(*p.IPBlock))
		default:
			endpoints = append(endpoints, peerSelector(p, in.Namespace))
		}
	}
	var out []any
	if len(endpoints) > 0 {
		out = append(out, map[string]any{"toEndpoints": endpoints, "toPorts": toPorts()})
	}
	if len(cidrs) > 0 {
		out = append(out, map[string]any{"toCIDRSet": cidrs, "toPorts": toPorts()})
	}
	if host {
		out = append(out, map[string]any{"toEntities": []any{"host"}, "toPorts": toPorts()})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("DNS preset %s lists no destinations", dns.Preset)
	}
	return out, nil
}
