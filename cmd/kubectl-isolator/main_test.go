package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	anpv1alpha1 "sigs.k8s.io/network-policy-api/apis/v1alpha1"
	cnpv1alpha2 "sigs.k8s.io/network-policy-api/apis/v1alpha2"

	networkingv1 "k8s.io/api/networking/v1"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/config"
	"github.com/isolator-dev/isolator/internal/policy"
	"github.com/isolator-dev/isolator/internal/preset"
)

func builtin(t *testing.T) preset.Catalog {
	t.Helper()
	c, err := config.Config{}.Catalog()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// scene is the walkthrough with the operator's two policies in place.
func scene(t *testing.T) client.WithWatch {
	t.Helper()
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(isolationv1alpha1.AddToScheme(scheme))
	utilruntime.Must(anpv1alpha1.Install(scheme))
	utilruntime.Must(cnpv1alpha2.Install(scheme))
	wi := &isolationv1alpha1.WorkloadIsolation{
		ObjectMeta: metav1.ObjectMeta{Name: "local-ai", Namespace: "local-ai", UID: "uid-1"},
		Spec: isolationv1alpha1.WorkloadIsolationSpec{
			Target: isolationv1alpha1.Target{PodSelector: &isolationv1alpha1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": "local-ai"}}},
			Ingress: []isolationv1alpha1.IngressRule{{
				Name: "nginx", From: []isolationv1alpha1.IngressPeer{{Preset: "ingress-nginx"}},
				Ports: []isolationv1alpha1.Port{{Protocol: corev1.ProtocolTCP, Port: ptr.To(intstr.FromInt32(8080))}},
			}},
		},
	}
	generated, err := policy.Build(wi, *wi.Spec.Target.PodSelector.LabelSelector(), builtin(t))
	if err != nil {
		t.Fatal(err)
	}
	// The status the operator writes.
	wi.Status = isolationv1alpha1.WorkloadIsolationStatus{
		Target:         "app.kubernetes.io/name=local-ai",
		TargetSelector: wi.Spec.Target.PodSelector.LabelSelector(),
		Policies:       []isolationv1alpha1.PolicyReference{{Kind: "NetworkPolicy", Name: "local-ai-default-deny"}, {Kind: "NetworkPolicy", Name: "local-ai-allow-nginx"}},
	}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(
		wi, &generated[0], &generated[1],
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "local-ai", Labels: map[string]string{"kubernetes.io/metadata.name": "local-ai"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "nginx", Labels: map[string]string{"kubernetes.io/metadata.name": "nginx"}}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "local-ai-0", Namespace: "local-ai", Labels: map[string]string{"app.kubernetes.io/name": "local-ai"}}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "client", Namespace: "local-ai", Labels: map[string]string{"app": "client"}}},
	).Build()
	return c
}

func explainOutput(t *testing.T, c client.Client) string {
	t.Helper()
	var out bytes.Buffer
	if err := explain(context.Background(), c, builtin(t), "local-ai", "local-ai", &out); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

func expectLines(t *testing.T, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(squash(out), squash(w)) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
}

func TestExplain(t *testing.T) {
	c := scene(t)
	out := explainOutput(t, c)
	expectLines(t, out,
		"target app.kubernetes.io/name=local-ai, 1 pods",
		"local-ai-allow-nginx   1     pods app.kubernetes.io/name=ingress-nginx in namespaces kubernetes.io/metadata.name=nginx  TCP 8080   yes",
		"Isolated: only the declared sources can reach the target.",
	)
	if strings.Contains(out, "Drift") {
		t.Errorf("no drift expected:\n%s", out)
	}

	open := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "allow-all-ingress", Namespace: "local-ai"},
		Spec: networkingv1.NetworkPolicySpec{
			Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{}}}}},
		},
	}
	if err := c.Create(context.Background(), open); err != nil {
		t.Fatal(err)
	}
	expectLines(t, explainOutput(t, c),
		"allow-all-ingress      1     all pods in all namespaces",
		"Not isolated:\n  - allow-all-ingress: all pods in all namespaces, all ports",
	)
}

// The intent comes from the spec, not from the generated policies as they
// are in the cluster: a generated policy someone widened is not "declared".
func TestExplainShowsAWidenedGeneratedPolicyAsDrift(t *testing.T) {
	c := scene(t)
	np := &networkingv1.NetworkPolicy{}
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: "local-ai", Name: "local-ai-allow-nginx"}, np); err != nil {
		t.Fatal(err)
	}
	np.Spec.Ingress[0].Ports = nil // every port
	if err := c.Update(context.Background(), np); err != nil {
		t.Fatal(err)
	}
	out := explainOutput(t, c)
	expectLines(t, out,
		"Drift from the spec:\n  - local-ai-allow-nginx: differs from the spec (the operator repairs it)",
		"Not isolated:",
	)
	if strings.Contains(out, "Isolated: only the declared sources") {
		t.Errorf("a hand-widened generated policy must not be reported as isolated:\n%s", out)
	}
}

// squash folds runs of white space, so that column widths do not matter.
func squash(s string) string { return strings.Join(strings.Fields(s), " ") }

// A tenant whose rights end at the namespace cannot list namespaces; the
// command still explains the paths.
func TestExplainWithoutNamespaceRights(t *testing.T) {
	c := scene(t)
	forbidden := interceptor.NewClient(c, interceptor.Funcs{
		List: func(ctx context.Context, cl client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
			if _, ok := list.(*corev1.NamespaceList); ok {
				return apierrors.NewForbidden(schema.GroupResource{Resource: "namespaces"}, "", errors.New("cluster scope"))
			}
			return cl.List(ctx, list, opts...)
		},
	})
	var out bytes.Buffer
	if err := explain(context.Background(), forbidden, builtin(t), "local-ai", "local-ai", &out); err != nil {
		t.Fatalf("explain failed without namespace rights: %v", err)
	}
	expectLines(t, out.String(), "local-ai-allow-nginx", "You may not list namespaces")
}

// egressScene is the walkthrough with egress isolated: DNS (the default
// cluster-dns preset) and one HTTPS mirror, with all generated policies in
// place.
func egressScene(t *testing.T) client.WithWatch {
	t.Helper()
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(isolationv1alpha1.AddToScheme(scheme))
	utilruntime.Must(anpv1alpha1.Install(scheme))
	utilruntime.Must(cnpv1alpha2.Install(scheme))
	wi := &isolationv1alpha1.WorkloadIsolation{
		ObjectMeta: metav1.ObjectMeta{Name: "local-ai", Namespace: "local-ai", UID: "uid-1"},
		Spec: isolationv1alpha1.WorkloadIsolationSpec{
			Target: isolationv1alpha1.Target{PodSelector: &isolationv1alpha1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": "local-ai"}}},
			Ingress: []isolationv1alpha1.IngressRule{{
				Name: "nginx", From: []isolationv1alpha1.IngressPeer{{Preset: "ingress-nginx"}},
				Ports: []isolationv1alpha1.Port{{Protocol: corev1.ProtocolTCP, Port: ptr.To(intstr.FromInt32(8080))}},
			}},
			Egress: []isolationv1alpha1.EgressRule{{
				Name:  "mirror",
				To:    []isolationv1alpha1.EgressPeer{{IPBlock: &isolationv1alpha1.IPBlock{CIDR: "10.0.0.0/8"}}},
				Ports: []isolationv1alpha1.Port{{Protocol: corev1.ProtocolTCP, Port: ptr.To(intstr.FromInt32(443))}},
			}},
		},
	}
	generated, err := policy.Build(wi, *wi.Spec.Target.PodSelector.LabelSelector(), builtin(t))
	if err != nil {
		t.Fatal(err)
	}
	wi.Status = isolationv1alpha1.WorkloadIsolationStatus{TargetSelector: wi.Spec.Target.PodSelector.LabelSelector()}
	objs := []client.Object{wi,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "local-ai", Labels: map[string]string{"kubernetes.io/metadata.name": "local-ai"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kube-system", Labels: map[string]string{"kubernetes.io/metadata.name": "kube-system"}}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "local-ai-0", Namespace: "local-ai", Labels: map[string]string{"app.kubernetes.io/name": "local-ai"}}},
	}
	for i := range generated {
		objs = append(objs, &generated[i])
	}
	return fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).Build()
}

func TestExplainEgress(t *testing.T) {
	c := egressScene(t)
	out := explainOutput(t, c)
	expectLines(t, out,
		"Ways into the target pods:\nPOLICY PODS SOURCES PORTS DECLARED",
		"Ways out of the target pods:\nPOLICY PODS DESTINATIONS PORTS DECLARED",
		"local-ai-default-deny 1 none (deny) - yes\nlocal-ai-dns 1 pods k8s-app=kube-dns in namespaces kubernetes.io/metadata.name=kube-system or pods k8s-app=node-local-dns in namespaces kubernetes.io/metadata.name=kube-system or IP block 169.254.20.10/32 TCP 53, UDP 53 yes",
		"local-ai-egress-mirror 1 IP block 10.0.0.0/8 TCP 443 yes",
		"Isolated: only the declared sources can reach the target, and it can reach only the declared destinations.",
	)

	open := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "allow-all-egress", Namespace: "local-ai"},
		Spec: networkingv1.NetworkPolicySpec{
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			Egress:      []networkingv1.NetworkPolicyEgressRule{{}},
		},
	}
	if err := c.Create(context.Background(), open); err != nil {
		t.Fatal(err)
	}
	out = explainOutput(t, c)
	expectLines(t, out,
		"allow-all-egress 1 all destinations all ports NO",
		"Not isolated:\n  - allow-all-egress: egress to all destinations, all ports",
	)
	if strings.Contains(out, "Isolated: only") {
		t.Errorf("an allow-all egress policy must not be reported as isolated:\n%s", out)
	}
}

// Without egress in the spec the target's egress is not isolated, and
// explain says so instead of listing egress policies of others.
func TestExplainWithoutEgress(t *testing.T) {
	c := scene(t)
	open := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "allow-all-egress", Namespace: "local-ai"},
		Spec: networkingv1.NetworkPolicySpec{
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			Egress:      []networkingv1.NetworkPolicyEgressRule{{}},
		},
	}
	if err := c.Create(context.Background(), open); err != nil {
		t.Fatal(err)
	}
	out := explainOutput(t, c)
	expectLines(t, out,
		"Ways out of the target pods: all destinations, all ports (egress is not isolated: the spec declares no egress)",
		"Isolated: only the declared sources can reach the target.",
	)
	if strings.Contains(out, "allow-all-egress") {
		t.Errorf("egress policies do not matter when egress is not isolated:\n%s", out)
	}
}

// An admin-tier Allow comes before every NetworkPolicy: explain shows it as
// a way in, and as a widening. Without the right to list admin-tier
// policies it says they are not shown.
func TestExplainAdminTier(t *testing.T) {
	c := scene(t)
	allow := &anpv1alpha1.AdminNetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "allow-nginx-all-ports"},
		Spec: anpv1alpha1.AdminNetworkPolicySpec{
			Priority: 5,
			Subject:  anpv1alpha1.AdminNetworkPolicySubject{Namespaces: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "local-ai"}}},
			Ingress: []anpv1alpha1.AdminNetworkPolicyIngressRule{{Action: anpv1alpha1.AdminNetworkPolicyRuleActionAllow,
				From: []anpv1alpha1.AdminNetworkPolicyIngressPeer{{Namespaces: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "nginx"}}}}}},
		},
	}
	if err := c.Create(context.Background(), allow); err != nil {
		t.Fatal(err)
	}
	expectLines(t, explainOutput(t, c),
		"AdminNetworkPolicy/allow-nginx-all-ports  1     all pods in namespaces kubernetes.io/metadata.name=nginx",
		"Not isolated:\n  - AdminNetworkPolicy/allow-nginx-all-ports: all pods in namespaces kubernetes.io/metadata.name=nginx, all ports",
	)
	forbidden := interceptor.NewClient(c, interceptor.Funcs{List: func(ctx context.Context, cl client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
		if _, ok := list.(*anpv1alpha1.AdminNetworkPolicyList); ok {
			return apierrors.NewForbidden(schema.GroupResource{Group: "policy.networking.k8s.io", Resource: "adminnetworkpolicies"}, "", errors.New("no"))
		}
		return cl.List(ctx, list, opts...)
	}})
	expectLines(t, explainOutput(t, forbidden), "(You may not list admin-tier policies")
}
