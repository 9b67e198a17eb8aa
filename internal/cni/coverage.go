package cni

import (
	"fmt"
	"slices"
)

// Endpoint is the part of a CiliumEndpoint (named like its pod) that
// coverage reads: status.state and status.identity.id.
type Endpoint struct {
	State    string
	Identity int64
}

// Coverage says which target pods Cilium polices.
type Coverage struct {
	// Pods is how many target pods there are, Unmanaged the names of those
	// without a CiliumEndpoint in state ready with a security identity,
	// sorted.
	Pods      int
	Unmanaged []string
}

// CoverageOf checks each target pod against the CiliumEndpoints of its
// namespace. A pod counts as policed only with an endpoint in state ready
// that carries a security identity: one without (started before the agent,
// on the host network, not managed by the agent, still being set up) is
// not policed by Cilium, whatever the policies say. status.policy of a
// CiliumEndpoint is not read: Cilium 1.19 no longer fills it.
func CoverageOf(pods []string, endpoints map[string]Endpoint) Coverage {
	c := Coverage{Pods: len(pods)}
	for _, name := range pods {
		ep, ok := endpoints[name]
		if !ok || ep.State != "ready" || ep.Identity <= 0 {
			c.Unmanaged = append(c.Unmanaged, name)
		}
	}
	slices.Sort(c.Unmanaged)
	return c
}

// Managed is how many target pods Cilium polices.
func (c Coverage) Managed() int { return c.Pods - len(c.Unmanaged) }

// Summary says it in a line, such as "3/3 target pods managed by Cilium".
func (c Coverage) Summary() string {
	return fmt.Sprintf("%d/%d target pods managed by Cilium", c.Managed(), c.Pods)
}
