// Package ciliumcheck runs Cilium's own code (v1.19.4) on every Cilium
// policy the operator renders: the agent's rule sanitation, which rejects
// what the agent would refuse to load, and its endpoint selector parsing and
// matching, as an oracle for what the rendered selectors select. It is a
// module of its own so that the operator never links Cilium.
package ciliumcheck
