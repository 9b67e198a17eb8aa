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

// MinIdentity is the first security identity Cilium allocates for
// workloads; those below are reserved (host, world, unmanaged, health,
// init, ...), under which a pod's own policies do not apply.
const MinIdentity = 256

// policedStates are the endpoint states in which the agent enforces the
// pod's policies: ready, or regenerating a program that already runs (the
// first regeneration completes before the pod gets its network).
var policedStates = []string{"ready", "regenerating", "waiting-to-regenerate"}

// CoverageOf checks each target pod against the CiliumEndpoints of its
// namespace. A pod counts as policed only with an endpoint in a policed
// state that carries an allocated security identity: one without (started
// before the agent, on the host network, not managed by the agent, still
// being set up, under a reserved identity) is not policed by Cilium,
// whatever the policies say. status.policy of a CiliumEndpoint is not read:
// Cilium does not fill it by default.
func CoverageOf(pods []string, endpoints map[string]Endpoint) Coverage {
	c := Coverage{Pods: len(pods)}
	for _, name := range pods {
		ep, ok := endpoints[name]
		if !ok || !slices.Contains(policedStates, ep.State) || ep.Identity < MinIdentity {
			c.Unmanaged = append(c.Unmanaged, name)
		}
	}
	slices.Sort(c.Unmanaged)
	return c
}

// Without leaves pods out of the coverage (pods that have ended or have
// no network, which no policy concerns).
func (c Coverage) Without(pods []string) Coverage {
	out := Coverage{Pods: c.Pods}
	for _, name := range c.Unmanaged {
		if slices.Contains(pods, name) {
			out.Pods--
		} else {
			out.Unmanaged = append(out.Unmanaged, name)
		}
	}
	return out
}

// Managed is how many target pods Cilium polices.
func (c Coverage) Managed() int { return c.Pods - len(c.Unmanaged) }

// Summary says it in a line, such as "3/3 target pods managed by Cilium".
func (c Coverage) Summary() string {
	return fmt.Sprintf("%d/%d target pods managed by Cilium", c.Managed(), c.Pods)
}
