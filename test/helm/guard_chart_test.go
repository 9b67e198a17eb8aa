package helm

import (
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// guardPolicy returns the admission guard's ValidatingAdmissionPolicy among
// objs, or nil.
func guardPolicy(objs []*unstructured.Unstructured) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == "ValidatingAdmissionPolicy" {
			return o
		}
	}
	return nil
}

func TestGuardCanBeTurnedOff(t *testing.T) {
	manifest, err := render(t, values(t, "guard: {enabled: false}"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(kinds(objects(t, manifest)), " "); strings.Contains(got, "ValidatingAdmissionPolicy") {
		t.Errorf("guard.enabled=false still renders %s", got)
	}
}

// TestGuardChartAndKustomizeAgree compares the chart's admission guard with
// config/default's: the same rules, each exempting its own operator.
func TestGuardChartAndKustomizeAgree(t *testing.T) {
	manifest, err := render(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	chartVAP := guardPolicy(objects(t, manifest))
	resources, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), "../../config/default")
	if err != nil {
		t.Fatal(err)
	}
	data, err := resources.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	kustomizeObjs := objects(t, string(data))
	kustomizeVAP := guardPolicy(kustomizeObjs)
	if chartVAP == nil || kustomizeVAP == nil {
		t.Fatalf("a ValidatingAdmissionPolicy is missing: chart %v, kustomize %v", chartVAP != nil, kustomizeVAP != nil)
	}
	for _, o := range kustomizeObjs {
		if strings.HasPrefix(o.GetKind(), "ValidatingAdmissionPolicy") && o.GetNamespace() != "" {
			t.Errorf("config/default puts the cluster-scoped %s in namespace %s", o.GetKind(), o.GetNamespace())
		}
		if o.GetKind() == "ValidatingAdmissionPolicyBinding" {
			if name, _, _ := unstructured.NestedString(o.Object, "spec", "policyName"); name != kustomizeVAP.GetName() {
				t.Errorf("config/default's binding names policy %q, not %q", name, kustomizeVAP.GetName())
			}
		}
	}
	operators := map[string]string{
		"chart":     "'system:serviceaccount:" + namespace + ":" + release + "'",
		"kustomize": "'system:serviceaccount:isolator-system:isolator-controller-manager'",
	}
	specs := map[string]map[string]any{}
	for from, vap := range map[string]*unstructured.Unstructured{"chart": chartVAP, "kustomize": kustomizeVAP} {
		spec, _, _ := unstructured.NestedMap(vap.Object, "spec")
		variables, _ := spec["variables"].([]any)
		if len(variables) == 0 {
			t.Fatalf("%s: no variables", from)
		}
		first, _ := variables[0].(map[string]any)
		if first["name"] != "operator" || first["expression"] != operators[from] {
			t.Errorf("%s: first variable %v, want operator = %s", from, first, operators[from])
		}
		spec["variables"] = variables[1:]
		specs[from] = spec
	}
	if !reflect.DeepEqual(specs["chart"], specs["kustomize"]) {
		t.Errorf("config/guard/guard.yaml differs from the chart's guard (charts/isolator/files/guard-*.yaml)")
	}
}
