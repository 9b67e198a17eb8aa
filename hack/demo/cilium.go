package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
)

// ciliumAPI serves the two Cilium kinds the operator uses, before it
// starts (it looks for them once): CiliumNetworkPolicy, which it writes,
// and CiliumEndpoint, the agent's record of each pod it manages. They are
// schema-less stand-ins for Cilium's CRDs (the test suites use Cilium's
// own).
func ciliumAPI(cfg *rest.Config) error {
	crd := func(plural, kind, short string) *apiextensionsv1.CustomResourceDefinition {
		preserve := true
		return &apiextensionsv1.CustomResourceDefinition{
			ObjectMeta: metav1.ObjectMeta{Name: plural + ".cilium.io"},
			Spec: apiextensionsv1.CustomResourceDefinitionSpec{
				Group: "cilium.io", Scope: apiextensionsv1.NamespaceScoped,
				Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: plural, Kind: kind, ListKind: kind + "List",
					Singular: strings.ToLower(kind), ShortNames: []string{short}},
				Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{Name: "v2", Served: true, Storage: true,
					Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
						Type: "object", XPreserveUnknownFields: &preserve}}}},
			},
		}
	}
	_, err := envtest.InstallCRDs(cfg, envtest.CRDInstallOptions{CRDs: []*apiextensionsv1.CustomResourceDefinition{
		crd("ciliumnetworkpolicies", "CiliumNetworkPolicy", "cnp"),
		crd("ciliumendpoints", "CiliumEndpoint", "cep"),
	}})
	return err
}

// ciliumEndpoint is what the agent writes for a pod it manages: ready, with
// a security identity allocated from the pod's labels.
func ciliumEndpoint(namespace, pod string, identity int64) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"status": map[string]any{
			"state":    "ready",
			"identity": map[string]any{"id": identity},
		},
	}}
	u.SetAPIVersion("cilium.io/v2")
	u.SetKind("CiliumEndpoint")
	u.SetNamespace(namespace)
	u.SetName(pod)
	return u
}

// restrictToInference narrows the nginx rule to the OpenAI inference API.
// On Cilium it waits until the resource is Ready and shows the
// CiliumNetworkPolicy and the endpoint evidence; elsewhere it shows that
// the rule fails closed and why, and takes the restriction back.
func restrictToInference(ctx context.Context, c client.Client, cfg *rest.Config, wi *isolationv1alpha1.WorkloadIsolation, onCilium bool, timeout time.Duration) error {
	current := &isolationv1alpha1.WorkloadIsolation{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(wi), current); err != nil {
		return err
	}
	current.Spec.Ingress[0].HTTP = &isolationv1alpha1.HTTPAllow{Presets: []string{"openai-inference"}}
	fmt.Println("    spec.ingress[nginx].http: {presets: [openai-inference]}")
	if err := c.Update(ctx, current); err != nil {
		return err
	}
	if !onCilium {
		got, err := waitReason(ctx, c, wi, isolationv1alpha1.ConditionReady, isolationv1alpha1.ReasonL7RulesNotEnforced, timeout)
		if err != nil {
			return err
		}
		ready := meta.FindStatusCondition(got.Status.Conditions, isolationv1alpha1.ConditionReady)
		fmt.Printf("    Ready=%s (%s): %s\n", ready.Status, ready.Reason, ready.Message)
		step("Taking the HTTP restriction back: the rule is an L4 allow again")
		if err := c.Get(ctx, client.ObjectKeyFromObject(wi), current); err != nil {
			return err
		}
		current.Spec.Ingress[0].HTTP = nil
		if err := c.Update(ctx, current); err != nil {
			return err
		}
		return waitCurrent(ctx, c, wi, timeout)
	}
	if err := waitCurrent(ctx, c, wi, timeout); err != nil {
		return err
	}
	got := &isolationv1alpha1.WorkloadIsolation{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(wi), got); err != nil {
		return err
	}
	enforced := meta.FindStatusCondition(got.Status.Conditions, isolationv1alpha1.ConditionEnforced)
	fmt.Printf("    Enforced=%s (%s): %s\n", enforced.Status, enforced.Reason, enforced.Message)
	fmt.Println("\n$ kubectl get networkpolicies -n local-ai")
	if err := printTable(ctx, cfg, "/apis/networking.k8s.io/v1/namespaces/local-ai/networkpolicies", false); err != nil {
		return err
	}
	fmt.Println("\n$ kubectl get ciliumnetworkpolicies -n local-ai")
	if err := printTable(ctx, cfg, "/apis/cilium.io/v2/namespaces/local-ai/ciliumnetworkpolicies", false); err != nil {
		return err
	}
	cnp := &unstructured.Unstructured{}
	cnp.SetAPIVersion("cilium.io/v2")
	cnp.SetKind("CiliumNetworkPolicy")
	if err := c.Get(ctx, client.ObjectKey{Namespace: wi.Namespace, Name: "local-ai-http-nginx"}, cnp); err != nil {
		return err
	}
	out, err := yaml.Marshal(map[string]any{"spec": cnp.Object["spec"]})
	if err != nil {
		return err
	}
	fmt.Printf("\n$ kubectl get ciliumnetworkpolicy local-ai-http-nginx -n local-ai -o yaml   # spec\n%s", out)
	fmt.Println("    Cilium's L7 proxy answers 403 to any other request from ingress-nginx, /models/apply included.")
	return nil
}

// waitReason waits until condition t of wi has the reason for the current
// generation, and returns the resource.
func waitReason(ctx context.Context, c client.Client, wi *isolationv1alpha1.WorkloadIsolation, t, reason string, timeout time.Duration) (*isolationv1alpha1.WorkloadIsolation, error) {
	got := &isolationv1alpha1.WorkloadIsolation{}
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(wi), got); err != nil {
			return false, err
		}
		cond := meta.FindStatusCondition(got.Status.Conditions, t)
		return cond != nil && cond.Reason == reason && cond.ObservedGeneration == got.Generation, nil
	})
	if err != nil {
		return nil, fmt.Errorf("WorkloadIsolation %s/%s: %s never had reason %s: %w", wi.Namespace, wi.Name, t, reason, err)
	}
	return got, nil
}
