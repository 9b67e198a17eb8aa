package controller_test

import (
	"context"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
)

// guardObjects are stand-ins with the guard's shape (what the operator
// looks for) whose validation admits everything, so that the rest of the
// suite is not affected.
func guardObjects(prefix string) []client.Object {
	policy := func(name string, rule admissionregistrationv1.NamedRuleWithOperations, params *admissionregistrationv1.ParamKind) *admissionregistrationv1.ValidatingAdmissionPolicy {
		return &admissionregistrationv1.ValidatingAdmissionPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
				FailurePolicy:    ptr.To(admissionregistrationv1.Fail),
				ParamKind:        params,
				MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{rule}},
				Validations:      []admissionregistrationv1.Validation{{Expression: "true"}},
			},
		}
	}
	rule := func(group, resource string) admissionregistrationv1.NamedRuleWithOperations {
		return admissionregistrationv1.NamedRuleWithOperations{RuleWithOperations: admissionregistrationv1.RuleWithOperations{
			Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update, admissionregistrationv1.Delete},
			Rule:       admissionregistrationv1.Rule{APIGroups: []string{group}, APIVersions: []string{"*"}, Resources: []string{resource}},
		}}
	}
	binding := func(name string, params bool) *admissionregistrationv1.ValidatingAdmissionPolicyBinding {
		b := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
				PolicyName: name, ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
			},
		}
		if params {
			b.Spec.ParamRef = &admissionregistrationv1.ParamRef{Selector: &metav1.LabelSelector{},
				ParameterNotFoundAction: ptr.To(admissionregistrationv1.AllowAction)}
		}
		return b
	}
	return []client.Object{
		policy(prefix+"-guard", rule("networking.k8s.io", "networkpolicies"),
			&admissionregistrationv1.ParamKind{APIVersion: "isolation.isolator.dev/v1alpha1", Kind: "WorkloadIsolation"}),
		binding(prefix+"-guard", true),
		policy(prefix+"-guard-spec", rule("isolation.isolator.dev", "workloadisolations"), nil),
		binding(prefix+"-guard-spec", false),
	}
}

var _ = Describe("Guarded isolation status", Serial, func() {
	ctx := context.Background()

	It("says whether the admission guard is installed, and Ready is False without it", func() {
		wi := seedIsolation(newNamespace(ctx, "guarded"))
		wi.Spec.Guard = isolationv1alpha1.GuardEnforce
		Expect(k8sClient.Create(ctx, wi)).To(Succeed())
		Eventually(getIsolation(ctx, wi), timeout, interval).Should(And(
			haveCondition(isolationv1alpha1.ConditionGuarded, metav1.ConditionFalse, isolationv1alpha1.ReasonGuardNotActive),
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionFalse, isolationv1alpha1.ReasonGuardNotActive),
		))

		objects := guardObjects("test")
		for _, obj := range objects {
			Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		}
		DeferCleanup(func() {
			for _, obj := range objects {
				Expect(client.IgnoreNotFound(k8sClient.Delete(ctx, obj))).To(Succeed())
			}
		})
		Eventually(getIsolation(ctx, wi), timeout, interval).Should(And(
			haveCondition(isolationv1alpha1.ConditionGuarded, metav1.ConditionTrue, isolationv1alpha1.ReasonGuardActive),
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionTrue, isolationv1alpha1.ReasonReconciled),
		))

		// A binding that only warns, or only covers some namespaces, is no
		// guard.
		binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{}
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(objects[1]), binding)).To(Succeed())
		binding.Spec.ValidationActions = []admissionregistrationv1.ValidationAction{admissionregistrationv1.Warn}
		Expect(k8sClient.Update(ctx, binding)).To(Succeed())
		Eventually(getIsolation(ctx, wi), timeout, interval).Should(
			haveCondition(isolationv1alpha1.ConditionGuarded, metav1.ConditionFalse, isolationv1alpha1.ReasonGuardNotActive))
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(objects[1]), binding)).To(Succeed())
		binding.Spec.ValidationActions = []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny}
		binding.Spec.MatchResources = &admissionregistrationv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"guard": "yes"}}}
		Expect(k8sClient.Update(ctx, binding)).To(Succeed())
		Consistently(getIsolation(ctx, wi), "2s", interval).Should(
			haveCondition(isolationv1alpha1.ConditionGuarded, metav1.ConditionFalse, isolationv1alpha1.ReasonGuardNotActive))
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(objects[1]), binding)).To(Succeed())
		binding.Spec.MatchResources = nil
		Expect(k8sClient.Update(ctx, binding)).To(Succeed())
		Eventually(getIsolation(ctx, wi), timeout, interval).Should(
			haveCondition(isolationv1alpha1.ConditionGuarded, metav1.ConditionTrue, isolationv1alpha1.ReasonGuardActive))

		// Removing one binding takes the guard away.
		Expect(k8sClient.Delete(ctx, objects[3])).To(Succeed())
		Eventually(getIsolation(ctx, wi), timeout, interval).Should(
			haveCondition(isolationv1alpha1.ConditionGuarded, metav1.ConditionFalse, isolationv1alpha1.ReasonGuardNotActive))

		// Without spec.guard there is no Guarded condition.
		current := getIsolation(ctx, wi)()
		current.Spec.Guard = ""
		Expect(k8sClient.Update(ctx, current)).To(Succeed())
		Eventually(getIsolation(ctx, wi), timeout, interval).Should(And(
			WithTransform(func(w *isolationv1alpha1.WorkloadIsolation) bool {
				for _, c := range w.Status.Conditions {
					if c.Type == isolationv1alpha1.ConditionGuarded {
						return true
					}
				}
				return false
			}, BeFalse()),
			haveCondition(isolationv1alpha1.ConditionReady, metav1.ConditionTrue, isolationv1alpha1.ReasonReconciled),
		))
	})
})
