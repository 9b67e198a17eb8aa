package policy

import (
	"fmt"

	"k8s.io/apimachinery/pkg/util/intstr"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
)

// MissingNamespaces returns, for each from or to entry of wi whose
// presetNamespace names a namespace that does not exist (exists says which
// do), a line for the user: such a peer admits nothing until the namespace
// is created.
func MissingNamespaces(wi *isolationv1alpha1.WorkloadIsolation, exists func(string) bool) []string {
	var out []string
	for _, rule := range wi.Spec.Ingress {
		for _, from := range rule.From {
			if from.PresetNamespace != "" && !exists(from.PresetNamespace) {
				out = append(out, fmt.Sprintf("rule %s: preset %s points at namespace %s, which does not exist", rule.Name, from.Preset, from.PresetNamespace))
			}
		}
	}
	for _, rule := range wi.Spec.Egress {
		for _, to := range rule.To {
			if to.PresetNamespace != "" && !exists(to.PresetNamespace) {
				out = append(out, fmt.Sprintf("egress rule %s: preset %s points at namespace %s, which does not exist", rule.Name, to.Preset, to.PresetNamespace))
			}
		}
	}
	return out
}

// NamedPorts returns, per rule of wi, the named ports it allows, as
// "rule/port" pairs in spec order.
func NamedPorts(wi *isolationv1alpha1.WorkloadIsolation) [][2]string {
	var out [][2]string
	for _, rule := range wi.Spec.Ingress {
		for _, p := range rule.Ports {
			if p.Port != nil && p.Port.Type == intstr.String {
				out = append(out, [2]string{rule.Name, p.Port.StrVal})
			}
		}
	}
	return out
}

// UndeclaredPorts returns a line for each named port of wi that none of the
// given container port names declares: such a rule admits nothing on that
// port to those pods.
func UndeclaredPorts(wi *isolationv1alpha1.WorkloadIsolation, declared map[string]bool) []string {
	var out []string
	for _, rp := range NamedPorts(wi) {
		if !declared[rp[1]] {
			out = append(out, fmt.Sprintf("rule %s: named port %s is declared by no container of the target pods", rp[0], rp[1]))
		}
	}
	return out
}
