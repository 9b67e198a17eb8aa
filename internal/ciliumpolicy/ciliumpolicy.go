// Package ciliumpolicy renders the parts of an intent that only Cilium's own
// policy API can say, as CiliumNetworkPolicy objects (cilium.io/v2) next to
// the NetworkPolicies of package policy. It writes the few fields it needs as
// unstructured objects instead of importing Cilium. It is pure.
//
// That is two things. Ingress rules with http become policies with HTTP
// rules (HTTP), which Cilium's L7 proxy enforces. And the link-local address
// of NodeLocal DNSCache (169.254.20.10) belongs to the node and so has
// Cilium's "host" identity, which no NetworkPolicy ipBlock matches unless
// Cilium was told to exclude the address from its local addresses. A target
// whose egress is isolated would lose DNS there. DNSHost allows the target
// to reach the host entity on the DNS ports only.
package ciliumpolicy

import (
	"fmt"
	"strconv"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/isolator-dev/isolator/internal/intent"
	"github.com/isolator-dev/isolator/internal/policy"
)

// Kind is the kind of the objects rendered here.
const Kind = "CiliumNetworkPolicy"

// GVK is CiliumNetworkPolicy's group, version and kind.
var GVK = schema.GroupVersionKind{Group: "cilium.io", Version: "v2", Kind: Kind}

// ClusterwideGVK is CiliumClusterwideNetworkPolicy's, which the operator
// never writes but must notice.
var ClusterwideGVK = schema.GroupVersionKind{Group: "cilium.io", Version: "v2", Kind: "CiliumClusterwideNetworkPolicy"}

// EndpointGVK is CiliumEndpoint's: the agent's record of a pod it manages,
// named like the pod.
var EndpointGVK = schema.GroupVersionKind{Group: "cilium.io", Version: "v2", Kind: "CiliumEndpoint"}

// DNSHostName is the name of the CiliumNetworkPolicy that lets the target
// resolve names through a cache on the node.
func DNSHostName(owner string) string { return policy.Name(owner, "dns-host") }

// DNSHost returns the CiliumNetworkPolicy allowing the target pods egress to
// the host entity on the DNS preset's ports, or nil when the intent needs
// none: egress not isolated, no DNS, a DNS preset without addresses (only
// those can be the node's) or without ports (allowing every port of the node
// would be wider than DNS).
func DNSHost(in *intent.Intent) (*unstructured.Unstructured, error) {
	if in.Egress == nil || in.Egress.DNS == nil || len(in.Egress.DNS.HostAddresses()) == 0 || len(in.Egress.DNS.Rule.Ports) == 0 {
		return nil, nil
	}
	var ports []any
	for _, p := range in.Egress.DNS.Rule.Ports {
		port, err := ciliumPort(p)
		if err != nil {
			return nil, err
		}
		ports = append(ports, port)
	}
	return newPolicy(in, DNSHostName(in.Name), "dns-host", map[string]any{
		"description":      fmt.Sprintf("Name resolution through the node (NodeLocal DNSCache) for WorkloadIsolation %s, preset %s", in.Name, in.Egress.DNS.Preset),
		"endpointSelector": endpointSelector(in.Target),
		"egress": []any{map[string]any{
			"toEntities": []any{"host"},
			"toPorts":    []any{map[string]any{"ports": ports}},
		}},
	}), nil
}

// ciliumPort converts a NetworkPolicyPort: Cilium takes the port as a
// string, a range through endPort, and TCP, UDP or SCTP.
func ciliumPort(p networkingv1.NetworkPolicyPort) (map[string]any, error) {
	out := map[string]any{"protocol": "ANY"}
	if p.Protocol != nil {
		out["protocol"] = string(*p.Protocol)
	}
	if p.Port == nil {
		return nil, fmt.Errorf("a DNS port without a number cannot be written for Cilium")
	}
	if p.Port.StrVal != "" {
		out["port"] = p.Port.StrVal
	} else {
		out["port"] = strconv.Itoa(int(p.Port.IntVal))
	}
	if p.EndPort != nil {
		out["endPort"] = int64(*p.EndPort)
	}
	return out, nil
}

// endpointSelector writes a label selector in Cilium's form, which is
// metav1.LabelSelector's: plain keys match the pods' Kubernetes labels.
func endpointSelector(s metav1.LabelSelector) map[string]any {
	out := map[string]any{}
	if len(s.MatchLabels) > 0 {
		labels := map[string]any{}
		for k, v := range s.MatchLabels {
			labels[k] = v
		}
		out["matchLabels"] = labels
	}
	var exprs []any
	for _, e := range s.MatchExpressions {
		expr := map[string]any{"key": e.Key, "operator": string(e.Operator)}
		if len(e.Values) > 0 {
			values := make([]any, 0, len(e.Values))
			for _, v := range e.Values {
				values = append(values, v)
			}
			expr["values"] = values
		}
		exprs = append(exprs, expr)
	}
	if len(exprs) > 0 {
		out["matchExpressions"] = exprs
	}
	return out
}
