// Package oracle checks Isolator's generated NetworkPolicies and its
// isolation analysis against an independent implementation of NetworkPolicy
// semantics: the matcher of github.com/mattfenwick/cyclonus, a NetworkPolicy
// conformance tool. It lives in its own module so that the operator's module
// does not depend on it.
package oracle
