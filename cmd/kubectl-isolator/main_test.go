package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/yaml"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
)

const scene = `
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata: {name: local-ai-default-deny, namespace: local-ai}
  spec: {podSelector: {matchLabels: {app.kubernetes.io/name: local-ai}}, policyTypes: [Ingress]}
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata: {name: local-ai-allow-nginx, namespace: local-ai}
  spec:
    podSelector: {matchLabels: {app.kubernetes.io/name: local-ai}}
    policyTypes: [Ingress]
    ingress:
    - from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: nginx}}, podSelector: {matchLabels: {app.kubernetes.io/name: ingress-nginx}}}]
      ports: [{protocol: TCP, port: 8080}]
`

func TestExplain(t *testing.T) {
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(isolationv1alpha1.AddToScheme(scheme))
	var policies []networkingv1.NetworkPolicy
	if err := yaml.Unmarshal([]byte(scene), &policies); err != nil {
		t.Fatal(err)
	}
	wi := &isolationv1alpha1.WorkloadIsolation{
		ObjectMeta: metav1.ObjectMeta{Name: "local-ai", Namespace: "local-ai"},
		Status: isolationv1alpha1.WorkloadIsolationStatus{
			Target:   "app.kubernetes.io/name=local-ai",
			Policies: []isolationv1alpha1.PolicyReference{{Kind: "NetworkPolicy", Name: "local-ai-default-deny"}, {Kind: "NetworkPolicy", Name: "local-ai-allow-nginx"}},
		},
	}
	builder := fake.NewClientBuilder().WithScheme(scheme).WithObjects(
		wi,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "local-ai", Labels: map[string]string{"kubernetes.io/metadata.name": "local-ai"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "nginx", Labels: map[string]string{"kubernetes.io/metadata.name": "nginx"}}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "local-ai-0", Namespace: "local-ai", Labels: map[string]string{"app.kubernetes.io/name": "local-ai"}}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "client", Namespace: "local-ai", Labels: map[string]string{"app": "client"}}},
	)
	for i := range policies {
		builder = builder.WithObjects(&policies[i])
	}
	c := builder.Build()

	var out bytes.Buffer
	if err := explain(context.Background(), c, "local-ai", "local-ai", &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"target app.kubernetes.io/name=local-ai, 1 pods",
		"local-ai-allow-nginx   1     pods app.kubernetes.io/name=ingress-nginx in namespaces kubernetes.io/metadata.name=nginx  TCP 8080   yes",
		"Isolated: only the declared sources can reach the target.",
	} {
		if !strings.Contains(squash(out.String()), squash(want)) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
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
	out.Reset()
	if err := explain(context.Background(), c, "local-ai", "local-ai", &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"allow-all-ingress      1     all pods in all namespaces",
		"Not isolated:\n  - allow-all-ingress: all pods in all namespaces, all ports",
	} {
		if !strings.Contains(squash(out.String()), squash(want)) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

// squash folds runs of white space, so that column widths do not matter.
func squash(s string) string { return strings.Join(strings.Fields(s), " ") }
