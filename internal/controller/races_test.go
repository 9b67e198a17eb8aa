package controller_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/controller"
)

// walkthrough is a fake API server holding the seed resource, its namespace
// and one target pod.
func walkthrough(t *testing.T) (client.WithWatch, *isolationv1alpha1.WorkloadIsolation) {
	t.Helper()
	ns := "local-ai"
	wi := seedIsolation(ns)
	wi.UID = "uid-1"
	return fake.NewClientBuilder().WithScheme(scheme).
		WithObjects(wi,
			&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"kubernetes.io/metadata.name": ns}}},
			&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "local-ai-0", Namespace: ns, Labels: map[string]string{"app.kubernetes.io/name": "local-ai"}}}).
		WithStatusSubresource(wi).Build(), wi
}

func condition(t *testing.T, c client.Client, key client.ObjectKey, typ string) string {
	t.Helper()
	wi := &isolationv1alpha1.WorkloadIsolation{}
	if err := c.Get(context.Background(), key, wi); err != nil {
		t.Fatal(err)
	}
	if cond := meta.FindStatusCondition(wi.Status.Conditions, typ); cond != nil {
		return string(cond.Status) + "/" + cond.Reason
	}
	return "<absent>"
}

func reconcileOK(t *testing.T, r *controller.WorkloadIsolationReconciler, key client.ObjectKey) {
	t.Helper()
	if _, err := r.Reconcile(context.Background(), reconcile.Request{NamespacedName: key}); err != nil {
		t.Fatal(err)
	}
}

// Editing one's own spec a few times is not a fight with another writer.
func TestSpecEditsAreNotContested(t *testing.T) {
	server, wi := walkthrough(t)
	r := &controller.WorkloadIsolationReconciler{Client: server, Presets: builtinPresets(t)}
	key := client.ObjectKeyFromObject(wi)
	reconcileOK(t, r, key)
	for _, port := range []int32{8081, 8082, 8083, 8084} {
		cur := &isolationv1alpha1.WorkloadIsolation{}
		if err := server.Get(context.Background(), key, cur); err != nil {
			t.Fatal(err)
		}
		cur.Spec.Ingress[0].Ports[0].Port = ptr.To(intstr.FromInt32(port))
		if err := server.Update(context.Background(), cur); err != nil {
			t.Fatal(err)
		}
		reconcileOK(t, r, key)
		if got := condition(t, server, key, isolationv1alpha1.ConditionReady); got != "True/Reconciled" {
			t.Fatalf("after a spec edit to port %d, Ready = %s", port, got)
		}
	}
}

// A generated policy deleted again and again is a fight too.
func TestRepeatedDeletionIsContested(t *testing.T) {
	server, wi := walkthrough(t)
	r := &controller.WorkloadIsolationReconciler{Client: server, Presets: builtinPresets(t)}
	key := client.ObjectKeyFromObject(wi)
	reconcileOK(t, r, key)
	for range 3 {
		if err := server.Delete(context.Background(), &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: wi.Namespace, Name: "local-ai-default-deny"}}); err != nil {
			t.Fatal(err)
		}
		reconcileOK(t, r, key)
	}
	if got := condition(t, server, key, isolationv1alpha1.ConditionReady); got != "False/Contested" {
		t.Errorf("after 3 deletions, Ready = %s, want False/Contested", got)
	}
}

// Once the cache has moved past the operator's last status write, a status
// someone else wrote is what the server holds, and it is corrected.
func TestForeignStatusWriteIsCorrected(t *testing.T) {
	server, wi := walkthrough(t)
	ctx := context.Background()
	if err := server.Create(ctx, &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "allow-all", Namespace: wi.Namespace},
		Spec:       networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}, Ingress: []networkingv1.NetworkPolicyIngressRule{{}}},
	}); err != nil {
		t.Fatal(err)
	}
	r := &controller.WorkloadIsolationReconciler{Client: server, Presets: builtinPresets(t)}
	key := client.ObjectKeyFromObject(wi)
	reconcileOK(t, r, key)
	cur := &isolationv1alpha1.WorkloadIsolation{}
	if err := server.Get(ctx, key, cur); err != nil {
		t.Fatal(err)
	}
	cur.Annotations = map[string]string{"note": "x"}
	if err := server.Update(ctx, cur); err != nil {
		t.Fatal(err)
	}
	for i := range cur.Status.Conditions {
		cur.Status.Conditions[i].Status, cur.Status.Conditions[i].Reason = metav1.ConditionTrue, "Reconciled"
	}
	if err := server.Status().Update(ctx, cur); err != nil {
		t.Fatal(err)
	}
	reconcileOK(t, r, key)
	if got := condition(t, server, key, isolationv1alpha1.ConditionIsolated); got != "False/WidenedByPolicy" {
		t.Errorf("a foreign status write stood: Isolated = %s", got)
	}
}

// A cache that has not seen the operator's own creates yet must not turn
// Ready False.
func TestCacheLagDoesNotFlapReady(t *testing.T) {
	server, wi := walkthrough(t)
	lag := false
	c := interceptor.NewClient(server, interceptor.Funcs{
		List: func(ctx context.Context, cl client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
			if _, ok := list.(*networkingv1.NetworkPolicyList); ok && lag {
				return nil
			}
			return cl.List(ctx, list, opts...)
		},
	})
	r := &controller.WorkloadIsolationReconciler{Client: c, Presets: builtinPresets(t)}
	key := client.ObjectKeyFromObject(wi)
	reconcileOK(t, r, key)
	lag = true
	_, err := r.Reconcile(context.Background(), reconcile.Request{NamespacedName: key})
	if err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("a reconcile from a lagging cache should back off, got %v", err)
	}
	if got := condition(t, server, key, isolationv1alpha1.ConditionReady); got != "True/Reconciled" {
		t.Errorf("a lagging cache turned Ready to %s", got)
	}
}

// A writer fast enough that every repair meets a changed policy (409) must
// not leave the resource looking isolated.
func TestRepairsThatKeepMeetingConflictsAreNotHealthy(t *testing.T) {
	server, wi := walkthrough(t)
	ctx := context.Background()
	racing := false
	c := interceptor.NewClient(server, interceptor.Funcs{
		Apply: func(ctx context.Context, cl client.WithWatch, obj runtime.ApplyConfiguration, opts ...client.ApplyOption) error {
			if racing {
				return apierrors.NewConflict(schema.GroupResource{Group: "networking.k8s.io", Resource: "networkpolicies"}, "local-ai-default-deny", errors.New("the object has been modified"))
			}
			return cl.Apply(ctx, obj, opts...)
		},
	})
	r := &controller.WorkloadIsolationReconciler{Client: c, Presets: builtinPresets(t)}
	key := client.ObjectKeyFromObject(wi)
	reconcileOK(t, r, key)
	np := &networkingv1.NetworkPolicy{}
	if err := server.Get(ctx, client.ObjectKey{Namespace: wi.Namespace, Name: "local-ai-default-deny"}, np); err != nil {
		t.Fatal(err)
	}
	np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{}} // allow everything
	if err := server.Update(ctx, np); err != nil {
		t.Fatal(err)
	}
	racing = true
	for range 5 {
		if _, err := r.Reconcile(ctx, reconcile.Request{NamespacedName: key}); err == nil {
			t.Fatal("a repair that met a conflict must be retried")
		}
	}
	if got := condition(t, server, key, isolationv1alpha1.ConditionReady); got == "True/Reconciled" {
		t.Errorf("the default-deny allows everything, yet Ready = %s", got)
	}
	if got := condition(t, server, key, isolationv1alpha1.ConditionIsolated); got == "True/OnlyDeclaredSources" {
		t.Errorf("the default-deny allows everything, yet Isolated = %s", got)
	}
}

// Deleting and re-creating a resource of the same name is no contest.
func TestRecreatedResourceIsNotContested(t *testing.T) {
	server, wi := walkthrough(t)
	ctx := context.Background()
	r := &controller.WorkloadIsolationReconciler{Client: server, Presets: builtinPresets(t)}
	key := client.ObjectKeyFromObject(wi)
	for i := range 4 {
		reconcileOK(t, r, key)
		if got := condition(t, server, key, isolationv1alpha1.ConditionReady); got != "True/Reconciled" {
			t.Fatalf("incarnation %d: Ready = %s", i, got)
		}
		// Delete it, let garbage collection take its policies, and create
		// it again, without the operator seeing it gone.
		if err := server.Delete(ctx, wi.DeepCopy()); err != nil {
			t.Fatal(err)
		}
		if err := server.DeleteAllOf(ctx, &networkingv1.NetworkPolicy{}, client.InNamespace(wi.Namespace)); err != nil {
			t.Fatal(err)
		}
		again := seedIsolation(wi.Namespace)
		again.UID = types.UID(fmt.Sprintf("uid-%d", i+2))
		if err := server.Create(ctx, again); err != nil {
			t.Fatal(err)
		}
	}
}
