package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/api/meta"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/status"
)

// The operator reads the admission guard's objects to say in status whether
// a guarded WorkloadIsolation is protected.
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=validatingadmissionpolicies;validatingadmissionpolicybindings,verbs=get;list;watch

// guardServed reports whether the cluster serves ValidatingAdmissionPolicy.
func guardServed(mapper meta.RESTMapper) bool {
	_, err := mapper.RESTMapping(admissionregistrationv1.SchemeGroupVersion.WithKind("ValidatingAdmissionPolicy").GroupKind(), "v1")
	return err == nil
}

// guardState says whether the admission guard is installed: a
// ValidatingAdmissionPolicy over NetworkPolicies whose parameters are
// WorkloadIsolations, and one over WorkloadIsolations themselves, each with
// a binding that denies.
func (r *WorkloadIsolationReconciler) guardState(ctx context.Context) (*status.GuardState, error) {
	if !r.guardAPI {
		return &status.GuardState{Message: "the cluster does not serve ValidatingAdmissionPolicy (admissionregistration.k8s.io/v1), which the guard needs"}, nil
	}
	policies := &admissionregistrationv1.ValidatingAdmissionPolicyList{}
	if err := r.List(ctx, policies); err != nil {
		return nil, fmt.Errorf("listing ValidatingAdmissionPolicies: %w", err)
	}
	bindings := &admissionregistrationv1.ValidatingAdmissionPolicyBindingList{}
	if err := r.List(ctx, bindings); err != nil {
		return nil, fmt.Errorf("listing ValidatingAdmissionPolicyBindings: %w", err)
	}
	// A binding counts when it denies, everywhere: no namespace or object
	// selection of its own, and, for the parameterised policy, every
	// WorkloadIsolation of the request's namespace as parameter.
	denies := func(policy string, params bool) bool {
		return slices.ContainsFunc(bindings.Items, func(b admissionregistrationv1.ValidatingAdmissionPolicyBinding) bool {
			if b.Spec.PolicyName != policy || !slices.Contains(b.Spec.ValidationActions, admissionregistrationv1.Deny) || b.Spec.MatchResources != nil {
				return false
			}
			if !params {
				return true
			}
			ref := b.Spec.ParamRef
			return ref != nil && ref.Name == "" && ref.Namespace == "" && ref.Selector != nil &&
				len(ref.Selector.MatchLabels) == 0 && len(ref.Selector.MatchExpressions) == 0
		})
	}
	// A policy counts when it fails closed, applies to every request it
	// matches and covers creation, change and deletion.
	strict := func(p admissionregistrationv1.ValidatingAdmissionPolicy, group, resource string) bool {
		if p.Spec.FailurePolicy == nil || *p.Spec.FailurePolicy != admissionregistrationv1.Fail || len(p.Spec.MatchConditions) > 0 {
			return false
		}
		return guardsResource(p, group, resource)
	}
	var policyGuard, specGuard string
	for _, p := range policies.Items {
		switch {
		case strict(p, "networking.k8s.io", "networkpolicies") && denies(p.Name, true) && p.Spec.ParamKind != nil &&
			p.Spec.ParamKind.APIVersion == isolationv1alpha1.GroupVersion.String() && p.Spec.ParamKind.Kind == "WorkloadIsolation":
			policyGuard = p.Name
		case strict(p, isolationv1alpha1.GroupVersion.Group, "workloadisolations") && denies(p.Name, false):
			specGuard = p.Name
		}
	}
	var missing []string
	if policyGuard == "" {
		missing = append(missing, "no ValidatingAdmissionPolicy with WorkloadIsolation parameters and a Deny binding guards NetworkPolicies")
	}
	if specGuard == "" {
		missing = append(missing, "none with a Deny binding guards WorkloadIsolations themselves")
	}
	if len(missing) > 0 {
		return &status.GuardState{Message: strings.Join(missing, "; ") + "; install the chart with guard.enabled: true (or config/guard)"}, nil
	}
	return &status.GuardState{Active: true, Message: fmt.Sprintf(
		"The API server refuses NetworkPolicies that could re-open the target pods (ValidatingAdmissionPolicy %s) and changes to this WorkloadIsolation (%s), except by the operator and holders of break-glass",
		policyGuard, specGuard)}, nil
}

// guardsResource: the policy matches CREATE, UPDATE and DELETE of the
// resource, with no namespace or object selection.
func guardsResource(p admissionregistrationv1.ValidatingAdmissionPolicy, group, resource string) bool {
	c := p.Spec.MatchConstraints
	if c == nil || c.NamespaceSelector != nil && (len(c.NamespaceSelector.MatchLabels) > 0 || len(c.NamespaceSelector.MatchExpressions) > 0) ||
		c.ObjectSelector != nil && (len(c.ObjectSelector.MatchLabels) > 0 || len(c.ObjectSelector.MatchExpressions) > 0) {
		return false
	}
	ops := map[admissionregistrationv1.OperationType]bool{}
	for _, rule := range c.ResourceRules {
		if (slices.Contains(rule.APIGroups, group) || slices.Contains(rule.APIGroups, "*")) &&
			(slices.Contains(rule.Resources, resource) || slices.Contains(rule.Resources, "*")) {
			for _, op := range rule.Operations {
				ops[op] = true
			}
		}
	}
	all := ops[admissionregistrationv1.OperationAll]
	return all || ops[admissionregistrationv1.Create] && ops[admissionregistrationv1.Update] && ops[admissionregistrationv1.Delete]
}
