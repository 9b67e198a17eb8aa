package controller_test

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/config"
	"github.com/isolator-dev/isolator/internal/controller"
	"github.com/isolator-dev/isolator/internal/policy"
	"github.com/isolator-dev/isolator/internal/preset"
)

func builtinPresets(t *testing.T) preset.Catalog {
	t.Helper()
	c, err := config.Config{}.Catalog()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func isolatedStatus(t *testing.T, c client.Client, key client.ObjectKey) metav1.ConditionStatus {
	t.Helper()
	wi := &isolationv1alpha1.WorkloadIsolation{}
	if err := c.Get(context.Background(), key, wi); err != nil {
		t.Fatal(err)
	}
	if cond := meta.FindStatusCondition(wi.Status.Conditions, isolationv1alpha1.ConditionIsolated); cond != nil {
		return cond.Status
	}
	return "<absent>"
}

// A reconcile that starts from a cached copy older than the status this
// process last wrote must not conclude "nothing changed": here a foreign
// allow-all policy is deleted and recreated between two reconciles, and the
// second starts from a copy that predates the first one's write.
func TestStaleCacheCannotHideAStatusChange(t *testing.T) {
	ctx := context.Background()
	ns := "local-ai"
	wi := seedIsolation(ns)
	allowAll := func() *networkingv1.NetworkPolicy {
		return &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: "allow-all", Namespace: ns},
			Spec: networkingv1.NetworkPolicySpec{
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
				Ingress:     []networkingv1.NetworkPolicyIngressRule{{}},
			},
		}
	}
	wi.UID = "uid-1"
	generated, err := policy.Build(wi, *wi.Spec.Target.PodSelector.LabelSelector(), builtinPresets(t))
	if err != nil {
		t.Fatal(err)
	}
	server := fake.NewClientBuilder().WithScheme(scheme).
		WithObjects(wi, allowAll(), &generated[0], &generated[1],
			&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"kubernetes.io/metadata.name": ns}}},
			&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "local-ai-0", Namespace: ns, Labels: map[string]string{"app.kubernetes.io/name": "local-ai"}}}).
		WithStatusSubresource(wi).Build()

	var stale *isolationv1alpha1.WorkloadIsolation
	c := interceptor.NewClient(server, interceptor.Funcs{
		Get: func(ctx context.Context, cl client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			if w, ok := obj.(*isolationv1alpha1.WorkloadIsolation); ok && stale != nil {
				stale.DeepCopyInto(w)
				return nil
			}
			return cl.Get(ctx, key, obj, opts...)
		},
	})
	r := &controller.WorkloadIsolationReconciler{Client: c, Presets: builtinPresets(t)}
	key := client.ObjectKeyFromObject(wi)
	req := reconcile.Request{NamespacedName: key}

	if _, err := r.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	if got := isolatedStatus(t, server, key); got != metav1.ConditionFalse {
		t.Fatalf("with an allow-all policy, Isolated = %s, want False", got)
	}
	old := &isolationv1alpha1.WorkloadIsolation{}
	if err := server.Get(ctx, key, old); err != nil {
		t.Fatal(err)
	}

	if err := server.Delete(ctx, allowAll()); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	if got := isolatedStatus(t, server, key); got != metav1.ConditionTrue {
		t.Fatalf("without the allow-all policy, Isolated = %s, want True", got)
	}

	if err := server.Create(ctx, allowAll()); err != nil {
		t.Fatal(err)
	}
	stale = old // the cache has not seen the last status write yet
	_, err = r.Reconcile(ctx, req)
	if err == nil && isolatedStatus(t, server, key) != metav1.ConditionFalse {
		t.Fatal("a reconcile from a stale copy left Isolated=True on the server with the allow-all policy present, and did not retry")
	}
	stale = nil // the cache caught up; the retry must set it right
	if err != nil {
		if _, err := r.Reconcile(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	if got := isolatedStatus(t, server, key); got != metav1.ConditionFalse {
		t.Fatalf("after the retry, Isolated = %s, want False", got)
	}
}

func TestHealthyResourcesAreResyncedWithJitter(t *testing.T) {
	ctx := context.Background()
	wi := seedIsolation("local-ai")
	server := fake.NewClientBuilder().WithScheme(scheme).WithObjects(wi).WithStatusSubresource(wi).Build()
	for _, tt := range []struct {
		resync   time.Duration
		min, max time.Duration
	}{
		{0, controller.DefaultResync, controller.DefaultResync * 11 / 10},
		{time.Minute, time.Minute, 66 * time.Second},
	} {
		r := &controller.WorkloadIsolationReconciler{Client: server, Presets: builtinPresets(t), Resync: tt.resync}
		res, err := r.Reconcile(ctx, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(wi)})
		if err != nil {
			t.Fatal(err)
		}
		if res.RequeueAfter < tt.min || res.RequeueAfter > tt.max {
			t.Errorf("Resync %v: RequeueAfter = %v, want within [%v, %v]", tt.resync, res.RequeueAfter, tt.min, tt.max)
		}
	}
}
