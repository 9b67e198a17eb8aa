// Command npguard answers connectivity questions with np-guard's policy
// engine (github.com/np-guard/netpol-analyzer), which evaluates
// AdminNetworkPolicy, NetworkPolicy and BaselineAdminNetworkPolicy
// together. The admin-tier oracle tests run it as a child process: np-guard
// is built against an older release of sigs.k8s.io/network-policy-api than
// the operator, and one Go module cannot hold both, so it lives in a module
// of its own and reads the objects as JSON.
//
// Protocol: one request a line on stdin, one response a line on stdout.
// A request holds objects (Namespace, Pod, NetworkPolicy,
// AdminNetworkPolicy, BaselineAdminNetworkPolicy, each with its kind) and
// queries (source and destination: "namespace/pod" or an IPv4 address;
// protocol; port number); the response says, for each query, whether the
// connection is allowed, or why the request could not be answered. Fields
// np-guard's types do not know are an error, never silently dropped.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	anpv1alpha1 "sigs.k8s.io/network-policy-api/apis/v1alpha1"

	"github.com/np-guard/netpol-analyzer/pkg/logger"
	"github.com/np-guard/netpol-analyzer/pkg/manifests/parser"
	"github.com/np-guard/netpol-analyzer/pkg/netpol/eval"
)

type request struct {
	Objects []json.RawMessage `json:"objects"`
	Queries []query           `json:"queries"`
}

type query struct {
	Src      string `json:"src"`
	Dst      string `json:"dst"`
	Protocol string `json:"protocol"`
	Port     int    `json:"port"`
}

type response struct {
	Allowed []bool `json:"allowed,omitempty"`
	Error   string `json:"error,omitempty"`
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 0, 1<<20), 64<<20)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var req request
		var resp response
		if err := strict(in.Bytes(), &req); err != nil {
			resp.Error = err.Error()
		} else if resp.Allowed, err = answer(req); err != nil {
			resp.Allowed, resp.Error = nil, err.Error()
		}
		if err := out.Encode(resp); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	if err := in.Err(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// strict decodes JSON, refusing fields the target type does not have.
func strict(data []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	return d.Decode(v)
}

func answer(req request) ([]bool, error) {
	objects := make([]parser.K8sObject, 0, len(req.Objects))
	for _, raw := range req.Objects {
		var head struct {
			Kind string `json:"kind"`
		}
		if err := json.Unmarshal(raw, &head); err != nil {
			return nil, err
		}
		o := parser.K8sObject{Kind: head.Kind}
		var err error
		switch head.Kind {
		case parser.Namespace:
			o.Namespace = &corev1.Namespace{}
			err = strict(raw, o.Namespace)
		case parser.Pod:
			o.Pod = &corev1.Pod{}
			err = strict(raw, o.Pod)
		case parser.NetworkPolicy:
			o.NetworkPolicy = &networkingv1.NetworkPolicy{}
			err = strict(raw, o.NetworkPolicy)
		case parser.AdminNetworkPolicy:
			o.AdminNetworkPolicy = &anpv1alpha1.AdminNetworkPolicy{}
			err = strict(raw, o.AdminNetworkPolicy)
		case parser.BaselineAdminNetworkPolicy:
			o.BaselineAdminNetworkPolicy = &anpv1alpha1.BaselineAdminNetworkPolicy{}
			err = strict(raw, o.BaselineAdminNetworkPolicy)
		default:
			err = fmt.Errorf("unexpected kind %q", head.Kind)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", head.Kind, err)
		}
		objects = append(objects, o)
	}
	engine, err := eval.NewPolicyEngineWithOptionsList(
		eval.WithLogger(logger.NewDefaultLoggerWithVerbosity(logger.LowVerbosity)),
		eval.WithObjectsList(objects))
	if err != nil {
		return nil, err
	}
	allowed := make([]bool, len(req.Queries))
	for i, q := range req.Queries {
		if allowed[i], err = engine.CheckIfAllowed(q.Src, q.Dst, q.Protocol, strconv.Itoa(q.Port)); err != nil {
			return nil, fmt.Errorf("%s -> %s %s/%d: %w", q.Src, q.Dst, q.Protocol, q.Port, err)
		}
	}
	return allowed, nil
}
