// Package adminoracle checks Isolator's admin-tier guard against an
// independent implementation of AdminNetworkPolicy semantics: the policy
// engine of github.com/np-guard/netpol-analyzer, which evaluates
// AdminNetworkPolicy, NetworkPolicy and BaselineAdminNetworkPolicy together.
//
// np-guard is built against an older sigs.k8s.io/network-policy-api than the
// operator, and one Go module cannot hold both versions, so it runs as a
// child process built from the module in ./npguard (see npguard/main.go);
// the tests hand it the objects as JSON. This module and that one are
// test-only: the operator's module depends on neither.
package adminoracle
