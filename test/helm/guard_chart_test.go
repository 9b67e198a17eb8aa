package helm

import (
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// guardPolicies returns the ValidatingAdmissionPolicies among objs by name.
func guardPolicies(objs []*unstructured.Unstructured) map[string]*unstructured.Unstructured {
	out := map[string]*unstructured.Unstructured{}
	for _, o := range objs {
		if o.GetKind() == "ValidatingAdmissionPolicy" {
			out[o.GetName()] = o
		}
	}
	return out
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
	chartVAPs := guardPolicies(objects(t, manifest))
	resources, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), "../../config/default")
	if err != nil {
		t.Fatal(err)
	}
	data, err := resources.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	kustomizeObjs := objects(t, string(data))
	kustomizeVAPs := guardPolicies(kustomizeObjs)
	for _, o := range kustomizeObjs {
		if strings.HasPrefix(o.GetKind(), "ValidatingAdmissionPolicy") && o.GetNamespace() != "" {
			t.Errorf("config/default puts the cluster-scoped %s in namespace %s", o.GetKind(), o.GetNamespace())
		}
		if o.GetKind() == "ValidatingAdmissionPolicyBinding" {
			if name, _, _ := unstructured.NestedString(o.Object, "spec", "policyName"); kustomizeVAPs[name] == nil || name != o.GetName() {
				t.Errorf("config/default's binding %s names policy %q", o.GetName(), name)
			}
		}
	}
	operators := map[string]string{
		"chart":     "'system:serviceaccount:" + namespace + ":" + release + "'",
		"kustomize": "'system:serviceaccount:isolator-system:isolator-controller-manager'",
	}
	// Both name their objects isolator-...: the chart after its release, and
	// config/default with its namePrefix.
	for _, name := range []string{"isolator-guard", "isolator-guard-spec"} {
		specs := map[string]map[string]any{}
		for from, vap := range map[string]*unstructured.Unstructured{"chart": chartVAPs[name], "kustomize": kustomizeVAPs[name]} {
			if vap == nil {
				t.Fatalf("%s renders no ValidatingAdmissionPolicy %s", from, name)
			}
			spec, _, _ := unstructured.NestedMap(vap.Object, "spec")
			variables, _ := spec["variables"].([]any)
			if len(variables) == 0 {
				t.Fatalf("%s %s: no variables", from, name)
			}
			first, _ := variables[0].(map[string]any)
			if first["name"] != "operator" || first["expression"] != operators[from] {
				t.Errorf("%s %s: first variable %v, want operator = %s", from, name, first, operators[from])
			}
			spec["variables"] = variables[1:]
			specs[from] = spec
		}
		if !reflect.DeepEqual(specs["chart"], specs["kustomize"]) {
			t.Errorf("%s: config/guard/guard.yaml differs from the chart's (charts/isolator/files/guard-*.yaml)", name)
		}
	}
	if len(chartVAPs) != 2 || len(kustomizeVAPs) != 2 {
		t.Errorf("want 2 policies each, chart has %d, kustomize %d", len(chartVAPs), len(kustomizeVAPs))
	}
}
