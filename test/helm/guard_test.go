package helm

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/action"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/localcp"
)

// Users of the admission guard tests, impersonated by the admin client.
const (
	tenant           = "tenant"
	breakGlassHolder = "break-glass-holder"
	garbageCollector = "system:serviceaccount:kube-system:generic-garbage-collector"
	namespaceCtrl    = "system:serviceaccount:kube-system:namespace-controller"
	guardedNamespace = "team-a"
	guardedName      = "model"
)

// TestAdmissionGuard installs the chart into a real API server, which
// evaluates the chart's ValidatingAdmissionPolicy, and checks it as a tenant
// with namespace rights over NetworkPolicies, a holder of the break-glass
// verb, the operator, the garbage collector and the namespace controller.
func TestAdmissionGuard(t *testing.T) {
	if _, err := localcp.Assets(false); err != nil {
		t.Fatal(err)
	}
	cp, err := localcp.Start(localcp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Stop() })
	ctx := context.Background()
	admin, err := client.New(cp.Config, client.Options{Scheme: newScheme()})
	if err != nil {
		t.Fatal(err)
	}
	install := action.NewInstall(helmConfig(t, cp.Kubeconfig))
	install.ReleaseName, install.Namespace, install.CreateNamespace = release, namespace, true
	install.Timeout = time.Minute
	if _, err := install.Run(loadChart(t), nil); err != nil {
		t.Fatal(err)
	}
	if err := waitEstablished(ctx, admin); err != nil {
		t.Fatal(err)
	}
	setUpTenants(ctx, t, admin, guardedNamespace, "team-b")

	as := func(user string) client.Client {
		cfg := rest.CopyConfig(cp.Config)
		cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
		c, err := client.New(cfg, client.Options{Scheme: newScheme()})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	asTenant, asBreakGlass := as(tenant), as(breakGlassHolder)
	operator := fmt.Sprintf("system:serviceaccount:%s:%s", namespace, release)

	wi := &isolationv1alpha1.WorkloadIsolation{
		ObjectMeta: metav1.ObjectMeta{Name: guardedName, Namespace: guardedNamespace},
		Spec: isolationv1alpha1.WorkloadIsolationSpec{
			Target: isolationv1alpha1.Target{PodSelector: &isolationv1alpha1.LabelSelector{
				MatchLabels: map[string]string{"app.kubernetes.io/name": "model"},
			}},
			Guard: isolationv1alpha1.GuardEnforce,
		},
	}
	if err := admin.Create(ctx, wi); err != nil {
		t.Fatal(err)
	}
	// No operator runs here: set the resolved selector it would report.
	wi.Status.TargetSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": "model"}}
	if err := admin.Status().Update(ctx, wi); err != nil {
		t.Fatal(err)
	}
	// The guard fails closed until the API server has synced its parameter
	// kind, so even the first write may be refused for a moment.
	generated := generatedPolicy(guardedNamespace, guardedName+"-default-deny", guardedName)
	var createErr error
	waitFor(ctx, t, "the guard's parameter kind to sync", func() bool {
		createErr = admin.Create(ctx, generated.DeepCopy())
		return createErr == nil || !strings.Contains(createErr.Error(), "not yet synced")
	})
	if createErr != nil {
		t.Fatal(createErr)
	}

	// The API server starts enforcing a new policy, and sees parameter
	// changes, after its informers catch up.
	waitFor(ctx, t, "the guard to reject an allow-all policy", func() bool {
		return apierrors.IsForbidden(asTenant.Create(ctx, allowAll(guardedNamespace, "probe", nil), client.DryRunAll))
	})

	t.Run("a tenant cannot create or update a policy that could select the guarded pods and allows traffic", func(t *testing.T) {
		for _, tc := range []struct {
			name     string
			selector metav1.LabelSelector
		}{
			{"every pod", metav1.LabelSelector{}},
			{"the target's label", metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": "model"}}},
			{"another label only", metav1.LabelSelector{MatchLabels: map[string]string{"tier": "web"}}},
			{"In with the target's value", metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "app.kubernetes.io/name", Operator: metav1.LabelSelectorOpIn, Values: []string{"model", "other"}}}}},
			{"NotIn without the target's value", metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "app.kubernetes.io/name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"other"}}}}},
			{"Exists", metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "app.kubernetes.io/name", Operator: metav1.LabelSelectorOpExists}}}},
		} {
			err := asTenant.Create(ctx, allowAll(guardedNamespace, "open", &tc.selector))
			if !apierrors.IsForbidden(err) {
				t.Errorf("%s: want Forbidden, got %v", tc.name, err)
				continue
			}
			for _, want := range []string{"WorkloadIsolation " + guardedNamespace + "/" + guardedName,
				"grant verb break-glass on workloadisolations/" + guardedName + " in " + guardedNamespace} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("%s: message lacks %q: %v", tc.name, want, err)
				}
			}
		}
		// Updating a harmless policy into a widening one.
		denyOnly := &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: "tenant-deny", Namespace: guardedNamespace},
			Spec:       networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}},
		}
		if err := asTenant.Create(ctx, denyOnly); err != nil {
			t.Fatalf("a deny-only policy must be accepted: %v", err)
		}
		denyOnly.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{}}
		if err := asTenant.Update(ctx, denyOnly); !apierrors.IsForbidden(err) {
			t.Errorf("updating a policy to allow all ingress: want Forbidden, got %v", err)
		}
	})

	t.Run("a tenant may create policies that provably select none of the guarded pods, or allow nothing", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			np   *networkingv1.NetworkPolicy
		}{
			{"other value", allowAll(guardedNamespace, "other-value", &metav1.LabelSelector{
				MatchLabels: map[string]string{"app.kubernetes.io/name": "web"}})},
			{"DoesNotExist", allowAll(guardedNamespace, "does-not-exist", &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "app.kubernetes.io/name", Operator: metav1.LabelSelectorOpDoesNotExist}}})},
			{"NotIn with the target's value", allowAll(guardedNamespace, "not-in", &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "app.kubernetes.io/name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"model"}}}})},
			{"In without the target's value", allowAll(guardedNamespace, "in", &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "app.kubernetes.io/name", Operator: metav1.LabelSelectorOpIn, Values: []string{"web", "db"}}}})},
			{"deny-only for every pod", &networkingv1.NetworkPolicy{
				ObjectMeta: metav1.ObjectMeta{Name: "deny-all", Namespace: guardedNamespace},
				Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{
					networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}},
			}},
			{"egress for every pod while the WorkloadIsolation does not isolate egress", &networkingv1.NetworkPolicy{
				ObjectMeta: metav1.ObjectMeta{Name: "egress", Namespace: guardedNamespace},
				Spec: networkingv1.NetworkPolicySpec{
					PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
					Egress:      []networkingv1.NetworkPolicyEgressRule{{}},
				},
			}},
		} {
			if err := asTenant.Create(ctx, tc.np); err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
		}
	})

	t.Run("a tenant cannot change or delete a generated policy", func(t *testing.T) {
		np := &networkingv1.NetworkPolicy{}
		if err := asTenant.Get(ctx, client.ObjectKeyFromObject(generated), np); err != nil {
			t.Fatal(err)
		}
		np.Annotations = map[string]string{"edited": "true"}
		err := asTenant.Update(ctx, np)
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "generated for WorkloadIsolation "+guardedNamespace+"/"+guardedName) ||
			!strings.Contains(err.Error(), "break-glass") {
			t.Errorf("update: want Forbidden naming the WorkloadIsolation and break-glass, got %v", err)
		}
		err = asTenant.Delete(ctx, np)
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "only the operator may delete it") {
			t.Errorf("delete: want Forbidden, got %v", err)
		}
		err = asTenant.DeleteAllOf(ctx, &networkingv1.NetworkPolicy{}, client.InNamespace(guardedNamespace),
			client.MatchingLabels{"app.kubernetes.io/managed-by": "isolator"})
		if !apierrors.IsForbidden(err) {
			t.Errorf("deletecollection: want Forbidden, got %v", err)
		}
		if err := admin.Get(ctx, client.ObjectKeyFromObject(generated), np); err != nil {
			t.Errorf("the generated policy must still exist: %v", err)
		}
	})

	t.Run("the operator may change a generated policy and open the pods only through this WorkloadIsolation's own policies", func(t *testing.T) {
		asOperator := as(operator)
		// The operator writes with server-side apply, a patch.
		patch := client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"annotations":{"repaired":"true"}}}`))
		if err := asOperator.Patch(ctx, generated.DeepCopy(), patch); err != nil {
			t.Errorf("patch: %v", err)
		}
		own := allowAll(guardedNamespace, guardedName+"-allow-api", nil)
		own.Labels = generatedPolicy(guardedNamespace, own.Name, guardedName).Labels
		own.OwnerReferences = []metav1.OwnerReference{{APIVersion: "isolation.isolator.dev/v1alpha1", Kind: "WorkloadIsolation",
			Name: guardedName, UID: wi.UID, Controller: ptr.To(true)}}
		if err := asOperator.Create(ctx, own, client.DryRunAll); err != nil {
			t.Errorf("create this WorkloadIsolation's allow policy: %v", err)
		}
		// The owner label alone (names can be made to collide) does not
		// make a policy this WorkloadIsolation's own.
		labelled := allowAll(guardedNamespace, guardedName+"-allow-labelled", nil)
		labelled.Labels = generatedPolicy(guardedNamespace, labelled.Name, guardedName).Labels
		if err := asOperator.Create(ctx, labelled, client.DryRunAll); !apierrors.IsForbidden(err) {
			t.Errorf("the operator writing a widening policy that only carries the owner label: want Forbidden, got %v", err)
		}
		// Another WorkloadIsolation that selects the same pods must not
		// open them through the operator.
		other := allowAll(guardedNamespace, "second-allow-world", nil)
		other.Labels = generatedPolicy(guardedNamespace, other.Name, "second").Labels
		if err := asOperator.Create(ctx, other, client.DryRunAll); !apierrors.IsForbidden(err) {
			t.Errorf("the operator writing another WorkloadIsolation's widening policy over the guarded pods: want Forbidden, got %v", err)
		}
		if err := asOperator.Create(ctx, allowAll(guardedNamespace, "operator-open", nil), client.DryRunAll); !apierrors.IsForbidden(err) {
			t.Errorf("the operator writing an unlabelled widening policy: want Forbidden, got %v", err)
		}
	})

	t.Run("a break-glass holder may widen and change generated policies", func(t *testing.T) {
		if err := asBreakGlass.Create(ctx, allowAll(guardedNamespace, "break-glass-open", nil)); err != nil {
			t.Errorf("create: %v", err)
		}
		np := &networkingv1.NetworkPolicy{}
		if err := asBreakGlass.Get(ctx, client.ObjectKeyFromObject(generated), np); err != nil {
			t.Fatal(err)
		}
		np.Annotations = map[string]string{"break-glass": "true"}
		if err := asBreakGlass.Update(ctx, np); err != nil {
			t.Errorf("update: %v", err)
		}
		if err := asBreakGlass.Delete(ctx, np, client.DryRunAll); err != nil {
			t.Errorf("delete: %v", err)
		}
	})

	t.Run("the garbage collector and the namespace controller may delete generated policies", func(t *testing.T) {
		for _, user := range []string{garbageCollector, namespaceCtrl} {
			np := generatedPolicy(guardedNamespace, "removed-by-controller", guardedName)
			if err := admin.Create(ctx, np); err != nil {
				t.Fatal(err)
			}
			if err := as(user).Delete(ctx, np); err != nil {
				t.Errorf("%s: %v", user, err)
			}
		}
	})

	t.Run("without a resolved target selector nothing is provably disjoint", func(t *testing.T) {
		unresolved := &isolationv1alpha1.WorkloadIsolation{
			ObjectMeta: metav1.ObjectMeta{Name: "unresolved", Namespace: "team-b"},
			Spec: isolationv1alpha1.WorkloadIsolationSpec{
				Target: isolationv1alpha1.Target{PodSelector: &isolationv1alpha1.LabelSelector{
					MatchLabels: map[string]string{"app.kubernetes.io/name": "model"},
				}},
				Guard: isolationv1alpha1.GuardEnforce,
			},
		}
		if err := admin.Create(ctx, unresolved); err != nil {
			t.Fatal(err)
		}
		disjoint := &metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": "web"}}
		waitFor(ctx, t, "a disjoint-looking policy to be rejected in team-b", func() bool {
			return apierrors.IsForbidden(asTenant.Create(ctx, allowAll("team-b", "web", disjoint), client.DryRunAll))
		})
		err := asTenant.Create(ctx, allowAll("team-b", "web", disjoint), client.DryRunAll)
		if !strings.Contains(err.Error(), "WorkloadIsolation team-b/unresolved") {
			t.Errorf("message does not name the WorkloadIsolation: %v", err)
		}
	})

	t.Run("a tenant cannot turn the guard off, change the spec or delete a guarded WorkloadIsolation", func(t *testing.T) {
		waitFor(ctx, t, "the guard to protect the WorkloadIsolation", func() bool {
			return apierrors.IsForbidden(asTenant.Patch(ctx, wi.DeepCopy(),
				client.RawPatch(types.MergePatchType, []byte(`{"spec":{"guard":"Off"}}`)), client.DryRunAll))
		})
		for _, patch := range []string{`{"spec":{"guard":"Off"}}`, `{"spec":{"guard":null}}`, `{"spec":{"target":{"podSelector":{"matchLabels":{"app.kubernetes.io/name":"other"}}}}}`} {
			err := asTenant.Patch(ctx, wi.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(patch)))
			if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "grant verb break-glass on workloadisolations/"+guardedName) {
				t.Errorf("patch %s: want Forbidden naming break-glass, got %v", patch, err)
			}
		}
		err := asTenant.Delete(ctx, wi.DeepCopy())
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "WorkloadIsolation "+guardedNamespace+"/"+guardedName) {
			t.Errorf("delete: want Forbidden, got %v", err)
		}
		if err := asTenant.Patch(ctx, wi.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"team":"a"}}}`))); err != nil {
			t.Errorf("labels stay writable: %v", err)
		}
		if err := asBreakGlass.Patch(ctx, wi.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(`{"spec":{"guard":"Off"}}`)), client.DryRunAll); err != nil {
			t.Errorf("break-glass holder: %v", err)
		}
		if err := as(namespaceCtrl).Delete(ctx, wi.DeepCopy(), client.DryRunAll); err != nil {
			t.Errorf("namespace controller: %v", err)
		}
		// An owner the tenant may delete would take the guarded
		// WorkloadIsolation with it through the garbage collector.
		owner := `{"metadata":{"ownerReferences":[{"apiVersion":"v1","kind":"ConfigMap","name":"anchor","uid":"1b2c3d4e-0000-0000-0000-000000000001"}]}}`
		err = asTenant.Patch(ctx, wi.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(owner)), client.DryRunAll)
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "owner references") {
			t.Errorf("tenant setting an owner reference: want Forbidden about owner references, got %v", err)
		}
		created := &isolationv1alpha1.WorkloadIsolation{
			ObjectMeta: metav1.ObjectMeta{Name: "owned", Namespace: guardedNamespace, OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "v1", Kind: "ConfigMap", Name: "anchor", UID: "1b2c3d4e-0000-0000-0000-000000000001"}}},
			Spec: wi.Spec,
		}
		if err := asTenant.Create(ctx, created, client.DryRunAll); !apierrors.IsForbidden(err) {
			t.Errorf("tenant creating a guarded WorkloadIsolation with an owner: want Forbidden, got %v", err)
		}
		created.OwnerReferences = nil
		if err := asTenant.Create(ctx, created.DeepCopy(), client.DryRunAll); err != nil {
			t.Errorf("tenant creating a guarded WorkloadIsolation without an owner: %v", err)
		}
		// An unguarded one may have owners; it becomes guarded only
		// without them.
		unguarded := created.DeepCopy()
		unguarded.Name, unguarded.Spec.Guard = "owned-unguarded", ""
		unguarded.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: "anchor", UID: "1b2c3d4e-0000-0000-0000-000000000001"}}
		if err := asTenant.Create(ctx, unguarded); err != nil {
			t.Fatalf("tenant creating an unguarded WorkloadIsolation with an owner: %v", err)
		}
		err = asTenant.Patch(ctx, unguarded.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(`{"spec":{"guard":"Enforce"}}`)), client.DryRunAll)
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "owner references") {
			t.Errorf("guarding a WorkloadIsolation that has an owner: want Forbidden about owner references, got %v", err)
		}
	})

	t.Run("egress rules are guarded once the WorkloadIsolation isolates egress", func(t *testing.T) {
		if err := admin.Patch(ctx, wi.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(`{"spec":{"egress":[]}}`))); err != nil {
			t.Fatal(err)
		}
		egressAll := func() *networkingv1.NetworkPolicy {
			return &networkingv1.NetworkPolicy{
				ObjectMeta: metav1.ObjectMeta{Name: "egress-all", Namespace: guardedNamespace},
				Spec: networkingv1.NetworkPolicySpec{
					PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
					Egress:      []networkingv1.NetworkPolicyEgressRule{{}},
				},
			}
		}
		waitFor(ctx, t, "an allow-all egress policy to be rejected", func() bool {
			return apierrors.IsForbidden(asTenant.Create(ctx, egressAll(), client.DryRunAll))
		})
		if err := admin.Patch(ctx, wi.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(`{"spec":{"egress":null}}`))); err != nil {
			t.Fatal(err)
		}
		waitFor(ctx, t, "an allow-all egress policy to be accepted again", func() bool {
			return asTenant.Create(ctx, egressAll(), client.DryRunAll) == nil
		})
	})

	t.Run("spec.guard Off or absent lifts the guard", func(t *testing.T) {
		for _, guard := range []string{`"Off"`, "null"} {
			patch := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"guard":`+guard+`}}`))
			if err := admin.Patch(ctx, wi.DeepCopy(), patch); err != nil {
				t.Fatal(err)
			}
			if guard == `"Off"` {
				// The guard is off now: the tenant may edit the spec again.
				waitFor(ctx, t, "the tenant to be allowed to edit the spec", func() bool {
					return asTenant.Patch(ctx, wi.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(`{"spec":{"dns":"None"}}`)), client.DryRunAll) == nil
				})
			}
			waitFor(ctx, t, "guard "+guard+" to allow an allow-all policy", func() bool {
				return asTenant.Create(ctx, allowAll(guardedNamespace, "probe", nil), client.DryRunAll) == nil
			})
			np := &networkingv1.NetworkPolicy{}
			if err := asTenant.Get(ctx, client.ObjectKeyFromObject(generated), np); err != nil {
				t.Fatal(err)
			}
			np.Annotations = map[string]string{"edited": guard}
			if err := asTenant.Update(ctx, np); err != nil {
				t.Errorf("guard %s: update a generated policy: %v", guard, err)
			}
			if err := asTenant.Delete(ctx, np, client.DryRunAll); err != nil {
				t.Errorf("guard %s: delete a generated policy: %v", guard, err)
			}
		}
		// A namespace without WorkloadIsolations is never guarded.
		if err := admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-c"}}); err != nil {
			t.Fatal(err)
		}
		if err := admin.Create(ctx, allowAll("team-c", "open", nil)); err != nil {
			t.Errorf("namespace without WorkloadIsolations: %v", err)
		}
	})
}

// setUpTenants creates the namespaces and the users' rights in them: the
// tenant manages NetworkPolicies and WorkloadIsolations (what the built-in
// edit role grants with the chart's aggregated roles; the role aggregation
// controller does not run here), the break-glass holder also has the
// break-glass verb on the guarded WorkloadIsolation.
func setUpTenants(ctx context.Context, t *testing.T, admin client.Client, namespaces ...string) {
	t.Helper()
	for _, ns := range namespaces {
		objs := []client.Object{
			&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
			&rbacv1.Role{
				ObjectMeta: metav1.ObjectMeta{Name: "tenant", Namespace: ns},
				Rules: []rbacv1.PolicyRule{
					{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"networkpolicies"},
						Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}},
					{APIGroups: []string{"isolation.isolator.dev"}, Resources: []string{"workloadisolations"},
						Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}},
				},
			},
			&rbacv1.RoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: "tenant", Namespace: ns},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "tenant"},
				Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: tenant},
					{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: breakGlassHolder}},
			},
		}
		if ns == guardedNamespace {
			objs = append(objs,
				&rbacv1.Role{
					ObjectMeta: metav1.ObjectMeta{Name: "break-glass", Namespace: ns},
					Rules: []rbacv1.PolicyRule{{APIGroups: []string{"isolation.isolator.dev"}, Resources: []string{"workloadisolations"},
						ResourceNames: []string{guardedName}, Verbs: []string{"break-glass"}}},
				},
				&rbacv1.RoleBinding{
					ObjectMeta: metav1.ObjectMeta{Name: "break-glass", Namespace: ns},
					RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "break-glass"},
					Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: breakGlassHolder}},
				})
		}
		for _, o := range objs {
			if err := admin.Create(ctx, o); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// allowAll is a NetworkPolicy that allows all ingress to the pods selector
// selects (every pod when nil).
func allowAll(ns, name string, selector *metav1.LabelSelector) *networkingv1.NetworkPolicy {
	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: networkingv1.NetworkPolicySpec{
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress:     []networkingv1.NetworkPolicyIngressRule{{}},
		},
	}
	if selector != nil {
		np.Spec.PodSelector = *selector
	}
	return np
}

// generatedPolicy looks like a policy the operator generated for the
// WorkloadIsolation owner.
func generatedPolicy(ns, name, owner string) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{
			"app.kubernetes.io/managed-by": "isolator", "isolation.isolator.dev/workloadisolation": owner,
		}},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": "model"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		},
	}
}

// waitFor polls until cond holds, for at most 30 seconds.
func waitFor(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		return cond(), nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}
