package ciliumpolicy

import (
	"fmt"
	"regexp"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/intent"
	"github.com/isolator-dev/isolator/internal/policy"
)

// Label keys as Cilium's agent spells them on an endpoint: the pod's labels
// come from source k8s, with its namespace's name and labels beside them.
const (
	podLabelPrefix       = "k8s:"
	namespaceKey         = "k8s:io.kubernetes.pod.namespace"
	namespaceLabelPrefix = "k8s:io.cilium.k8s.namespace.labels."
	httpRulePrefix       = "http-"
)

// HTTPName is the name of the CiliumNetworkPolicy of an ingress rule with
// http.
func HTTPName(owner, rule string) string { return policy.Name(owner, httpRulePrefix+rule) }

// HTTP returns one CiliumNetworkPolicy per ingress rule with http: the
// rule's sources may reach the target pods on the rule's ports with the
// listed requests only. The NetworkPolicies do not admit these sources
// (package policy leaves such rules out), so no L4 allow widens them.
func HTTP(in *intent.Intent) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	for _, r := range in.HTTPRules() {
		toPorts, err := httpPorts(r)
		if err != nil {
			return nil, fmt.Errorf("ingress rule %s: %w", r.Name, err)
		}
		var ingress []any
		var endpoints, cidrs []any
		for _, p := range r.Peers {
			if p.IPBlock != nil {
				cidrs = append(cidrs, cidrRule(*p.IPBlock))
				continue
			}
			endpoints = append(endpoints, peerSelector(p, in.Namespace))
		}
		// Cilium takes endpoints and CIDRs in separate rules.
		if len(endpoints) > 0 {
			ingress = append(ingress, map[string]any{"fromEndpoints": endpoints, "toPorts": toPorts})
		}
		if len(cidrs) > 0 {
			again, _ := httpPorts(r)
			ingress = append(ingress, map[string]any{"fromCIDRSet": cidrs, "toPorts": again})
		}
		u := newPolicy(in, HTTPName(in.Name, r.Name), policy.RuleLabel(httpRulePrefix+r.Name), map[string]any{
			"description":      fmt.Sprintf("Ingress rule %s of WorkloadIsolation %s: these sources may send only the listed HTTP requests", r.Name, in.Name),
			"endpointSelector": endpointSelector(in.Target),
			"ingress":          ingress,
		})
		out = append(out, u)
	}
	return out, nil
}

// httpPorts is the rule's toPorts: its TCP ports, with the requests as
// HTTP rules. Each path matches exactly, with an optional query string.
func httpPorts(r intent.Rule) ([]any, error) {
	var ports []any
	for _, p := range r.Ports {
		port, err := ciliumPort(p)
		if err != nil {
			return nil, err
		}
		if port["protocol"] != "TCP" || p.EndPort != nil {
			return nil, fmt.Errorf("HTTP rules need TCP ports without endPort")
		}
		ports = append(ports, port)
	}
	var requests []any
	for _, req := range r.HTTP {
		h := map[string]any{"path": PathPattern(req.Path)}
		if req.Method != "" {
			h["method"] = req.Method
		}
		requests = append(requests, h)
	}
	return []any{map[string]any{"ports": ports, "rules": map[string]any{"http": requests}}}, nil
}

// PathPattern is the regular expression Cilium matches a request's path
// (with its query string) against for an exact path.
func PathPattern(path string) string { return "^" + regexp.QuoteMeta(path) + `(\?.*)?$` }

// peerSelector says a NetworkPolicy peer's pods as a Cilium endpoint
// selector. The namespace is always explicit: the policy's own for a peer
// without namespaceSelector, any namespace whose labels match otherwise.
func peerSelector(p networkingv1.NetworkPolicyPeer, namespace string) map[string]any {
	labels := map[string]any{}
	var exprs []any
	add := func(s *metav1.LabelSelector, prefix string) {
		if s == nil {
			return
		}
		for k, v := range s.MatchLabels {
			labels[prefix+k] = v
		}
		for _, e := range s.MatchExpressions {
			exprs = append(exprs, expression(prefix+e.Key, string(e.Operator), e.Values))
		}
	}
	add(p.PodSelector, podLabelPrefix)
	if p.NamespaceSelector == nil {
		labels[namespaceKey] = namespace
	} else {
		add(p.NamespaceSelector, namespaceLabelPrefix)
		exprs = append(exprs, expression(namespaceKey, string(metav1.LabelSelectorOpExists), nil))
	}
	out := map[string]any{"matchLabels": labels}
	if len(exprs) > 0 {
		out["matchExpressions"] = exprs
	}
	return out
}

func expression(key, operator string, values []string) map[string]any {
	e := map[string]any{"key": key, "operator": operator}
	if len(values) > 0 {
		list := make([]any, 0, len(values))
		for _, v := range values {
			list = append(list, v)
		}
		e["values"] = list
	}
	return e
}

func cidrRule(b networkingv1.IPBlock) map[string]any {
	out := map[string]any{"cidr": b.CIDR}
	if len(b.Except) > 0 {
		except := make([]any, 0, len(b.Except))
		for _, e := range b.Except {
			except = append(except, e)
		}
		out["except"] = except
	}
	return out
}

// newPolicy is a CiliumNetworkPolicy of in's namespace, labelled and owned
// like the NetworkPolicies.
func newPolicy(in *intent.Intent, name, rule string, spec map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"spec": spec}}
	u.SetGroupVersionKind(GVK)
	u.SetName(name)
	u.SetNamespace(in.Namespace)
	u.SetLabels(map[string]string{
		policy.LabelManagedBy: policy.ManagedByValue,
		policy.LabelOwner:     policy.OwnerLabelValue(in.Name),
		policy.LabelRule:      rule,
	})
	controller, block := true, true
	u.SetOwnerReferences([]metav1.OwnerReference{{
		APIVersion: isolationv1alpha1.GroupVersion.String(), Kind: "WorkloadIsolation",
		Name: in.Name, UID: in.UID, Controller: &controller, BlockOwnerDeletion: &block,
	}})
	return u
}
