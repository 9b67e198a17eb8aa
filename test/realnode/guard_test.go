package realnode

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/policy"
)

const (
	// guardedNS holds the guarded workload, its WorkloadIsolation and the
	// tenant's rights.
	guardedNS = "model"
	// guardedName names the workload, its Service and its WorkloadIsolation.
	guardedName = "model"
	// frontendNS is the one namespace the WorkloadIsolation admits.
	frontendNS = "frontend"
	// intruderNS is a namespace it does not admit.
	intruderNS = "intruder"
	// tenantUser is the impersonated tenant, an editor of guardedNS.
	tenantUser = "tenant"
)

var guardedLabels = map[string]string{"app.kubernetes.io/name": guardedName}

// testGuard runs a guarded WorkloadIsolation (spec.guard: Enforce) over the
// OpenAI-compatible test server with real probes from the one admitted
// namespace and from an intruder's. A tenant with the built-in edit role in
// the workload's namespace tries to open it with an allow-all policy, to
// delete a generated policy and to turn the guard off: the API server
// refuses each, and a second round of probes, finished after the refusals,
// shows the intruder still blocked.
func testGuard(ctx context.Context, t *testing.T, e *clusterEnv) {
	for _, ns := range []string{guardedNS, frontendNS, intruderNS} {
		e.namespace(ctx, t, ns, nil)
	}
	t.Cleanup(func() {
		// Only when the step failed half-way; it removes its namespaces
		// itself otherwise.
		for _, ns := range []string{guardedNS, frontendNS, intruderNS} {
			_ = e.c.Delete(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
		}
	})
	server, targets, urls := e.openAIServer(ctx, t, guardedNS, guardedName, guardedLabels)
	frontend, intruder := source{"frontend", frontendNS}, source{"intruder", intruderNS}
	sources := []source{frontend, intruder}
	sourcePods := map[source]*corev1.Pod{}
	for _, s := range sources {
		sourcePods[s] = e.probePod(ctx, t, s.namespace, s.name, map[string]string{"app": s.name}, "", "--targets="+strings.Join(urls, ","))
	}
	t.Logf("guarded workload: pod %s; probes from %s and %s", server.Status.PodIP, frontend.namespace, intruder.namespace)
	expect := func(step string, want matrix) time.Duration {
		t.Helper()
		return expectMatrix(ctx, t, step, sourcePods, want)
	}
	isolated := newMatrix(sources, targets, "frontend:8080")

	// 1. Without isolation both namespaces reach the workload: the probes
	// themselves work.
	expect("guard 1 not isolated", allAllowed(sources, targets))

	// 2. A guarded WorkloadIsolation admits frontend on 8080 only.
	wi := guardedIsolation()
	created := time.Now()
	if err := e.c.Create(ctx, wi); err != nil {
		t.Fatal(err)
	}
	waitCondition(ctx, t, e.c, wi, isolationv1alpha1.ConditionGuarded, metav1.ConditionTrue, isolationv1alpha1.ReasonGuardActive)
	guarded := time.Since(created)
	got := waitCondition(ctx, t, e.c, wi, isolationv1alpha1.ConditionReady, metav1.ConditionTrue, "")
	t.Logf("WorkloadIsolation %s/%s created; Guarded True (%s) after %s: %s", wi.Namespace, wi.Name, isolationv1alpha1.ReasonGuardActive,
		guarded.Round(time.Millisecond), meta.FindStatusCondition(got.Status.Conditions, isolationv1alpha1.ConditionGuarded).Message)
	took := expect("guard 2 isolated and guarded", isolated)
	t.Logf("guarded isolation: enforced on real pods %s after Guarded True", took.Round(time.Millisecond))
	deny := &networkingv1.NetworkPolicy{}
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: guardedNS, Name: guardedName + "-default-deny"}, deny); err != nil {
		t.Fatalf("the generated default-deny policy: %v", err)
	}
	if deny.Labels[policy.LabelManagedBy] != "isolator" || deny.Labels[policy.LabelOwner] != guardedName {
		t.Fatalf("%s is not labelled as generated for %s: %v", deny.Name, guardedName, deny.Labels)
	}

	// 3. The tenant edits the namespace: writing NetworkPolicies is within
	// its rights, so what is refused below is refused by the guard.
	asTenant := e.tenantClient(ctx, t)
	narrowing := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "tenant-deny-ingress", Namespace: guardedNS},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: guardedLabels},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		},
	}
	if err := asTenant.Create(ctx, narrowing); err != nil {
		t.Fatalf("the tenant creating a deny-only policy over the guarded pods: %v, want it accepted", err)
	}
	if err := asTenant.Delete(ctx, narrowing); err != nil {
		t.Fatalf("the tenant deleting its own deny-only policy: %v, want it accepted", err)
	}

	// The tenant opens the guarded pods to everyone.
	wiRef := "WorkloadIsolation " + guardedNS + "/" + guardedName
	open := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "allow-all-ingress", Namespace: guardedNS},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: guardedLabels},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress:     []networkingv1.NetworkPolicyIngressRule{{}},
		},
	}
	begin := time.Now()
	err := asTenant.Create(ctx, open)
	createTook := time.Since(begin)
	refused(t, "the tenant creating allow-all-ingress", err, wiRef, "guarded (spec.guard: Enforce)", "break-glass")
	if err := e.c.Get(ctx, client.ObjectKeyFromObject(open), &networkingv1.NetworkPolicy{}); !apierrors.IsNotFound(err) {
		t.Errorf("allow-all-ingress after the refusal: %v, want NotFound", err)
	}

	// The tenant deletes the generated default deny.
	begin = time.Now()
	err = asTenant.Delete(ctx, deny.DeepCopy())
	deleteTook := time.Since(begin)
	refused(t, "the tenant deleting "+deny.Name, err, "generated for "+wiRef, "only the operator may delete it")
	kept := &networkingv1.NetworkPolicy{}
	if err := e.c.Get(ctx, client.ObjectKeyFromObject(deny), kept); err != nil || kept.UID != deny.UID || kept.DeletionTimestamp != nil {
		t.Errorf("%s after the refused delete: %v (uid %s, was %s; deleting %v), want the same policy kept", deny.Name, err, kept.UID, deny.UID, kept.DeletionTimestamp)
	}

	// The tenant turns the guard off.
	err = asTenant.Patch(ctx, wi.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(`{"spec":{"guard":"Off"}}`)))
	refused(t, "the tenant setting spec.guard Off", err, wiRef+" is guarded (spec.guard: Enforce)", "break-glass")

	t.Logf("tenant %q (edit role in %s): the API server answered the create of allow-all-ingress in %s and the delete of %s in %s",
		tenantUser, guardedNS, createTook.Round(time.Millisecond), deny.Name, deleteTook.Round(time.Millisecond))

	// 4. Probes that finished after the refusals: the intruder is still
	// blocked, frontend still reaches 8080.
	expect("guard 3 after the refused widening", isolated)
	got = waitCondition(ctx, t, e.c, wi, isolationv1alpha1.ConditionIsolated, metav1.ConditionTrue, "")
	if c := meta.FindStatusCondition(got.Status.Conditions, isolationv1alpha1.ConditionGuarded); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("Guarded after the refusals: %+v, want True", c)
	}

	// 5. Remove everything the step created; the namespace controller may
	// delete the guarded WorkloadIsolation and its policies.
	begin = time.Now()
	for _, ns := range []string{guardedNS, frontendNS, intruderNS} {
		e.deleteNamespace(ctx, t, ns)
	}
	t.Logf("namespaces %s, %s and %s removed with the guarded WorkloadIsolation after %s", guardedNS, frontendNS, intruderNS,
		time.Since(begin).Round(100*time.Millisecond))
}

// guardedIsolation admits TCP 8080 from namespace frontend only and asks
// for the admission guard.
func guardedIsolation() *isolationv1alpha1.WorkloadIsolation {
	return &isolationv1alpha1.WorkloadIsolation{
		ObjectMeta: metav1.ObjectMeta{Name: guardedName, Namespace: guardedNS},
		Spec: isolationv1alpha1.WorkloadIsolationSpec{
			Target: isolationv1alpha1.Target{PodSelector: &isolationv1alpha1.LabelSelector{MatchLabels: guardedLabels}},
			Ingress: []isolationv1alpha1.IngressRule{{
				Name: "frontend",
				From: []isolationv1alpha1.IngressPeer{{NamespaceSelector: &isolationv1alpha1.LabelSelector{
					MatchLabels: map[string]string{"kubernetes.io/metadata.name": frontendNS},
				}}},
				Ports: []isolationv1alpha1.Port{{Protocol: corev1.ProtocolTCP, Port: ptr.To(intstr.FromInt32(8080))}},
			}},
			Guard: isolationv1alpha1.GuardEnforce,
		},
	}
}

// tenantClient binds tenantUser to the built-in edit ClusterRole in
// guardedNS and returns a client that impersonates it, once the API server
// authorizes it to write NetworkPolicies there.
func (e *clusterEnv) tenantClient(ctx context.Context, t *testing.T) client.Client {
	t.Helper()
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "tenant-edit", Namespace: guardedNS},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "edit"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: tenantUser}},
	}
	if err := e.c.Create(ctx, rb); err != nil {
		t.Fatal(err)
	}
	cfg := rest.CopyConfig(e.rest)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: tenantUser}
	c, err := client.New(cfg, client.Options{Scheme: e.c.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	// The authorizer sees the binding once its informer has it.
	var last error
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, matrixTimeout, true, func(ctx context.Context) (bool, error) {
		last = c.List(ctx, &networkingv1.NetworkPolicyList{}, client.InNamespace(guardedNS))
		return last == nil, nil
	}); err != nil {
		t.Fatalf("tenant %q bound to edit in %s cannot list NetworkPolicies: %v", tenantUser, guardedNS, last)
	}
	return c
}

// refused reports an error unless err is the API server refusing a request
// with a message containing every one of want, and logs the message.
func refused(t *testing.T, what string, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: accepted, want refused", what)
		return
	}
	if !apierrors.IsForbidden(err) && !apierrors.IsInvalid(err) {
		t.Errorf("%s: %v, want Forbidden or Invalid", what, err)
		return
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%s: message lacks %q: %v", what, w, err)
		}
	}
	t.Logf("%s refused: %v", what, err)
}

// waitCondition waits until condition typ of wi has status and, when set,
// reason; it returns the WorkloadIsolation.
func waitCondition(ctx context.Context, t *testing.T, c client.Client, wi *isolationv1alpha1.WorkloadIsolation, typ string, status metav1.ConditionStatus, reason string) *isolationv1alpha1.WorkloadIsolation {
	t.Helper()
	got := &isolationv1alpha1.WorkloadIsolation{}
	var cond *metav1.Condition
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, matrixTimeout, true, func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(wi), got); err != nil {
			return false, err
		}
		cond = meta.FindStatusCondition(got.Status.Conditions, typ)
		return cond != nil && cond.Status == status && (reason == "" || cond.Reason == reason), nil
	})
	if err != nil {
		t.Fatalf("%s=%s (reason %q) not reported: %v; last: %+v", typ, status, reason, err, cond)
	}
	return got
}
