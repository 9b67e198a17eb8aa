// Package helm tests the Helm chart, the kustomize install and the KKP
// catalog entry: helm lint and template, values-schema rejections, pod
// hardening, a real install, upgrade and uninstall into the local control
// plane, the operator running with exactly the chart's RBAC, and KKP's own
// CRDs validating the catalog entry. It is its own module so that the
// operator's module does not depend on the Helm SDK.
package helm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	psaapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
	"sigs.k8s.io/yaml"
)

const (
	chartDir  = "../../charts/isolator"
	release   = "isolator"
	namespace = "isolator-system"
)

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	c, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// render is `helm template`: a client-only dry-run install.
func render(t *testing.T, values map[string]any) (string, error) {
	t.Helper()
	install := action.NewInstall(&action.Configuration{})
	install.DryRun, install.ClientOnly, install.Replace = true, true, true
	install.ReleaseName, install.Namespace = release, namespace
	install.IncludeCRDs = true
	install.KubeVersion = &chartutil.KubeVersion{Version: "v1.37.2", Major: "1", Minor: "37"}
	rel, err := install.Run(loadChart(t), values)
	if err != nil {
		return "", err
	}
	return rel.Manifest, nil
}

func objects(t *testing.T, manifest string) []*unstructured.Unstructured {
	t.Helper()
	var out []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(manifest), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return out
			}
			t.Fatal(err)
		}
		if len(u.Object) > 0 {
			out = append(out, u)
		}
	}
}

func kinds(objs []*unstructured.Unstructured) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.GetKind()+"/"+o.GetName())
	}
	return out
}

func values(t *testing.T, doc string) map[string]any {
	t.Helper()
	v := map[string]any{}
	if err := yaml.Unmarshal([]byte(doc), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestLint(t *testing.T) {
	for name, vals := range map[string]map[string]any{
		"defaults":     nil,
		"every option": values(t, allOptions),
	} {
		lint := action.NewLint()
		lint.Strict = true
		lint.Namespace = namespace
		result := lint.Run([]string{chartDir}, vals)
		for _, msg := range result.Messages {
			if msg.Severity > 1 { // above INFO
				t.Errorf("%s: %s", name, msg)
			}
		}
		if len(result.Errors) > 0 {
			t.Errorf("%s: lint errors: %v", name, result.Errors)
		}
	}
}

const allOptions = `
replicas: 2
leaderElection: {enabled: true, leaseDuration: 30s, renewDeadline: 20s, retryPeriod: 4s}
image: {repository: registry.example/isolator, tag: v0.1.0, pullPolicy: Always}
imagePullSecrets: [{name: regcred}]
logLevel: debug
kubeAPI: {qps: 100, burst: 200}
maxConcurrentReconciles: 16
resyncInterval: 5m
watchNamespaces: [local-ai, team-a]
cni: {name: cilium, enforcesNetworkPolicy: true, l7Policy: true}
presets:
- name: monitoring
  from:
  - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}
    podSelector: {matchLabels: {app.kubernetes.io/name: prometheus}}
metrics: {enabled: true, port: 9090, serviceMonitor: {enabled: true, interval: 15s, labels: {release: prom}}}
podDisruptionBudget: {enabled: true, minAvailable: 1}
nodeSelector: {kubernetes.io/os: linux}
tolerations: [{key: dedicated, operator: Equal, value: system, effect: NoSchedule}]
priorityClassName: system-cluster-critical
`

func TestTemplateDefaults(t *testing.T) {
	manifest, err := render(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(kinds(objects(t, manifest)), " ")
	for _, want := range []string{
		"CustomResourceDefinition/workloadisolations.isolation.isolator.dev",
		"ServiceAccount/isolator", "ConfigMap/isolator-config",
		"ClusterRole/isolator-manager", "ClusterRoleBinding/isolator-manager",
		"Role/isolator-leader-election", "RoleBinding/isolator-leader-election",
		"ClusterRole/isolator-editor", "ClusterRole/isolator-viewer",
		"Service/isolator-metrics", "Deployment/isolator", "NetworkPolicy/isolator",
		"Role/isolator-cni-detection", "RoleBinding/isolator-cni-detection",
		"ClusterRole/isolator-metrics-auth", "ClusterRoleBinding/isolator-metrics-auth", "ClusterRole/isolator-metrics-reader",
		"Lease/" + leaseName,
		"ValidatingAdmissionPolicy/isolator-guard", "ValidatingAdmissionPolicyBinding/isolator-guard",
		"ValidatingAdmissionPolicy/isolator-guard-spec", "ValidatingAdmissionPolicyBinding/isolator-guard-spec",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("default render lacks %s; has %s", want, got)
		}
	}
	for _, absent := range []string{"ServiceMonitor/", "PodDisruptionBudget/"} {
		if strings.Contains(got, absent) {
			t.Errorf("%s must be off by default", absent)
		}
	}
}

// leaseName is the operator's leader election Lease, which the chart
// creates so that helm uninstall removes it.
const leaseName = "isolator.isolation.isolator.dev"

func TestLeaseIsTheOperatorsAndOnlyWithLeaderElection(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("..", "..", "cmd", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(src), `LeaderElectionID:        "`+leaseName+`"`) {
		t.Errorf("cmd/main.go does not elect its leader with Lease %s, which the chart creates", leaseName)
	}
	manifest, err := render(t, values(t, "leaderElection: {enabled: false}"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(kinds(objects(t, manifest)), " "); strings.Contains(got, "Lease/") {
		t.Errorf("a Lease without leader election: %s", got)
	}
}

func TestTemplateEveryOption(t *testing.T) {
	manifest, err := render(t, values(t, allOptions))
	if err != nil {
		t.Fatal(err)
	}
	objs := objects(t, manifest)
	got := strings.Join(kinds(objs), " ")
	for _, want := range []string{"ServiceMonitor/isolator", "PodDisruptionBudget/isolator"} {
		if !strings.Contains(got, want) {
			t.Errorf("render lacks %s", want)
		}
	}
	deploy := deployment(t, objs)
	args := strings.Join(deploy.Spec.Template.Spec.Containers[0].Args, " ")
	for _, want := range []string{"--leader-elect=true", "--leader-elect-lease-duration=30s", "--leader-elect-renew-deadline=20s",
		"--leader-elect-retry-period=4s", "--metrics-bind-address=:9090", "--zap-log-level=debug",
		"--kube-api-qps=100", "--kube-api-burst=200", "--max-concurrent-reconciles=16", "--resync-interval=5m", "--watch-namespaces=local-ai,team-a"} {
		if !strings.Contains(args, want) {
			t.Errorf("args %q lack %s", args, want)
		}
	}
	if *deploy.Spec.Replicas != 2 || deploy.Spec.Template.Spec.Containers[0].Image != "registry.example/isolator:v0.1.0" {
		t.Errorf("replicas/image not rendered: %d %s", *deploy.Spec.Replicas, deploy.Spec.Template.Spec.Containers[0].Image)
	}
	for _, o := range objs {
		if o.GetKind() == "ConfigMap" {
			cfg, _, _ := unstructured.NestedString(o.Object, "data", "config.yaml")
			for _, want := range []string{"name: monitoring", "cni:", "enforcesNetworkPolicy: true"} {
				if !strings.Contains(cfg, want) {
					t.Errorf("operator configuration lacks %q:\n%s", want, cfg)
				}
			}
		}
	}
}

func deployment(t *testing.T, objs []*unstructured.Unstructured) *appsv1.Deployment {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == "Deployment" {
			d := &appsv1.Deployment{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, d); err != nil {
				t.Fatal(err)
			}
			return d
		}
	}
	t.Fatal("no Deployment rendered")
	return nil
}

// TestPodIsHardened checks the rendered pod against the Pod Security
// "restricted" level with the Kubernetes pod-security-admission library, and
// the hardening the README promises.
func TestPodIsHardened(t *testing.T) {
	manifest, err := render(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkHardened(t, deployment(t, objects(t, manifest)))
}

func checkHardened(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	evaluator, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	pod := d.Spec.Template
	for _, r := range evaluator.EvaluatePod(psaapi.LevelVersion{Level: psaapi.LevelRestricted, Version: psaapi.LatestVersion()}, &pod.ObjectMeta, &pod.Spec) {
		if !r.Allowed {
			t.Errorf("Pod Security restricted: %s: %s", r.ForbiddenReason, r.ForbiddenDetail)
		}
	}
	c := pod.Spec.Containers[0]
	sc := c.SecurityContext
	switch {
	case pod.Spec.SecurityContext == nil || pod.Spec.SecurityContext.RunAsNonRoot == nil || !*pod.Spec.SecurityContext.RunAsNonRoot:
		t.Error("the pod must run as non-root")
	case sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Error("the root filesystem must be read-only")
	case sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || len(sc.Capabilities.Add) > 0:
		t.Error("all capabilities must be dropped")
	case pod.Spec.SecurityContext.SeccompProfile == nil || pod.Spec.SecurityContext.SeccompProfile.Type != "RuntimeDefault":
		t.Error("seccomp must be RuntimeDefault")
	}
}

func TestValuesSchemaRejectsBadValues(t *testing.T) {
	tests := []struct{ name, values, want string }{
		{"unknown top-level key", "replica: 2\n", "additional properties 'replica' not allowed"},
		{"replicas below 1", "replicas: 0\n", "replicas"},
		{"log level", "logLevel: verbose\n", "logLevel"},
		{"pull policy", "image: {repository: x, pullPolicy: Sometimes}\n", "pullPolicy"},
		{"metrics port", "metrics: {port: 70000}\n", "port"},
		{"watch namespace name", "watchNamespaces: [Local_AI]\n", "watchNamespaces"},
		{"preset without sources", "presets: [{name: monitoring}]\n", "from"},
		{"cni enforcement without a name", "cni: {enforcesNetworkPolicy: true}\n", "name"},
		{"typo in cni", "cni: {name: cilium, enforces: true}\n", "enforces"},
		{"workers", "maxConcurrentReconciles: 0\n", "maxConcurrentReconciles"},
		{"no CNI namespace", "cniNamespaces: []\n", "cniNamespaces"},
		{"CNI namespace twice", "cniNamespaces: [kube-system, kube-system]\n", "cniNamespaces"},
		{"lease duration", "leaderElection: {leaseDuration: 15}\n", "leaseDuration"},
		{"typo in guard", "guard: {enable: true}\n", "enable"},
		{"guard priorities out of range", "guard: {adminPriorities: 900-1001}\n", "adminPriorities"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := render(t, values(t, tt.values))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want it to mention %q", err, tt.want)
			}
		})
	}
	_, err := render(t, values(t, "replicas: 2\nleaderElection: {enabled: false}\n"))
	if err == nil || !strings.Contains(err.Error(), "replicas > 1 needs leaderElection.enabled=true") {
		t.Fatalf("two replicas without leader election must fail clearly, got %v", err)
	}
	_, err = render(t, values(t, "guard: {adminPriorities: 999-900}\n"))
	if err == nil || !strings.Contains(err.Error(), "guard.adminPriorities (999-900): the first priority must not be above the last") {
		t.Fatalf("a reversed priority range must fail clearly, got %v", err)
	}
	_, err = render(t, values(t, "podDisruptionBudget: {enabled: true, minAvailable: 1}\n"))
	if err == nil || !strings.Contains(err.Error(), "podDisruptionBudget.minAvailable (1) must be below replicas (1)") {
		t.Fatalf("a PodDisruptionBudget that blocks every drain must fail clearly, got %v", err)
	}
	_, err = render(t, values(t, "replicas: 2\nleaderElection: {enabled: true}\npodDisruptionBudget: {enabled: true, minAvailable: \"100%\"}\n"))
	if err == nil || !strings.Contains(err.Error(), "podDisruptionBudget.minAvailable (100%) must be below replicas (2)") {
		t.Fatalf("a PodDisruptionBudget of 100%% must fail clearly, got %v", err)
	}
}

// TestChartIsInSyncWithControllerGen fails when the chart's CRDs or manager
// rules differ from controller-gen's output in config/ (run `make manifests`).
func TestChartIsInSyncWithControllerGen(t *testing.T) {
	crds, err := filepath.Glob("../../config/crd/bases/*.yaml")
	if err != nil || len(crds) == 0 {
		t.Fatalf("no generated CRDs: %v", err)
	}
	for _, generated := range crds {
		want, _ := os.ReadFile(generated)
		got, err := os.ReadFile(filepath.Join(chartDir, "crds", filepath.Base(generated)))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("charts/isolator/crds/%s differs from %s: run `make manifests`", filepath.Base(generated), generated)
		}
	}
	role, err := os.ReadFile("../../config/rbac/role.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var generated struct {
		Rules []map[string]any `json:"rules"`
	}
	if err := yaml.Unmarshal(role, &generated); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(chartDir, "files", "manager-rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var chartRules []map[string]any
	if err := yaml.Unmarshal(data, &chartRules); err != nil {
		t.Fatal(err)
	}
	a, _ := yaml.Marshal(generated.Rules)
	b, _ := yaml.Marshal(chartRules)
	if !bytes.Equal(a, b) {
		t.Errorf("charts/isolator/files/manager-rules.yaml differs from config/rbac/role.yaml: run `make manifests`")
	}
	for _, rule := range chartRules {
		for _, r := range rule["resources"].([]any) {
			if r == "secrets" || r == "*" {
				t.Errorf("the manager must not be granted %q", r)
			}
		}
		for _, v := range rule["verbs"].([]any) {
			if v == "*" {
				t.Error("the manager must not be granted wildcard verbs")
			}
		}
	}
}

// TestKKPDefaultValuesAreValid renders the chart with the catalog entry's
// defaultValuesBlock, so the values KKP passes pass the chart's schema.
func TestKKPDefaultValuesAreValid(t *testing.T) {
	data, err := os.ReadFile("../../deploy/kkp/applicationdefinition.yaml")
	if err != nil {
		t.Fatal(err)
	}
	def := map[string]any{}
	if err := yaml.Unmarshal(data, &def); err != nil {
		t.Fatal(err)
	}
	block, _, _ := unstructured.NestedString(def, "spec", "defaultValuesBlock")
	if block == "" {
		t.Fatal("the ApplicationDefinition has no defaultValuesBlock")
	}
	if _, err := render(t, values(t, block)); err != nil {
		t.Fatalf("the catalog's default values do not render: %v", err)
	}
	version, _, _ := unstructured.NestedString(def, "spec", "defaultVersion")
	if c := loadChart(t); c.Metadata.Version != version {
		t.Errorf("catalog defaultVersion %s differs from the chart version %s", version, c.Metadata.Version)
	}
}

// rolesByNamespace returns the rules of the rendered Roles named name, by
// namespace, as "group/resource:verbs" strings.
func rolesByNamespace(t *testing.T, objs []*unstructured.Unstructured, name string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, o := range objs {
		if o.GetKind() != "Role" || o.GetName() != name {
			continue
		}
		role := &rbacv1.Role{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, role); err != nil {
			t.Fatal(err)
		}
		for _, r := range role.Rules {
			out[role.Namespace] = append(out[role.Namespace], strings.Join(r.APIGroups, ",")+"/"+strings.Join(r.Resources, ",")+":"+strings.Join(r.Verbs, ","))
		}
	}
	return out
}

// TestCNIDetectionRoles checks that CNI detection is granted ConfigMaps in
// the configured CNI namespaces only, and KKP ApplicationInstallations in
// kube-system only, and nothing when the CNI is declared.
func TestCNIDetectionRoles(t *testing.T) {
	configMaps, apps := "/configmaps:list,watch", "apps.kubermatic.k8c.io/applicationinstallations:list"
	tests := []struct {
		name, values string
		want         map[string][]string
	}{
		{"defaults", "", map[string][]string{"kube-system": {configMaps, apps}}},
		{"two namespaces", "cniNamespaces: [kube-system, calico-system]\n",
			map[string][]string{"kube-system": {configMaps, apps}, "calico-system": {configMaps}}},
		{"without kube-system", "cniNamespaces: [kube-flannel]\n",
			map[string][]string{"kube-system": {apps}, "kube-flannel": {configMaps}}},
		{"declared CNI", "cni: {name: cilium, enforcesNetworkPolicy: true}\n", map[string][]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			manifest, err := render(t, values(t, tt.values))
			if err != nil {
				t.Fatal(err)
			}
			objs := objects(t, manifest)
			got := rolesByNamespace(t, objs, release+"-cni-detection")
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("CNI detection Roles = %v, want %v", got, tt.want)
			}
			bindings := 0
			for _, o := range objs {
				if o.GetKind() == "RoleBinding" && o.GetName() == release+"-cni-detection" {
					bindings++
				}
			}
			if bindings != len(tt.want) {
				t.Errorf("%d RoleBindings for %d Roles", bindings, len(tt.want))
			}
			for _, o := range objs {
				if o.GetKind() != "ClusterRole" || o.GetName() != release+"-manager" {
					continue
				}
				rules, _, _ := unstructured.NestedSlice(o.Object, "rules")
				for _, r := range rules {
					resources, _, _ := unstructured.NestedStringSlice(r.(map[string]any), "resources")
					for _, res := range resources {
						if res == "configmaps" || res == "applicationinstallations" {
							t.Errorf("the manager ClusterRole grants %s cluster-wide", res)
						}
					}
				}
			}
		})
	}
}

// TestSecureMetrics checks that metrics are served over HTTPS with the
// RBAC their authentication and authorization need, that a ServiceMonitor
// scrapes them with its token, and that secure: false drops both.
func TestSecureMetrics(t *testing.T) {
	manifest, err := render(t, values(t, "metrics: {serviceMonitor: {enabled: true}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	objs := objects(t, manifest)
	args := strings.Join(deployment(t, objs).Spec.Template.Spec.Containers[0].Args, " ")
	for _, want := range []string{"--metrics-bind-address=:8443", "--metrics-secure=true"} {
		if !strings.Contains(args, want) {
			t.Errorf("args %q lack %s", args, want)
		}
	}
	for _, o := range objs {
		switch {
		case o.GetKind() == "ClusterRole" && o.GetName() == release+"-metrics-auth":
			rules, _, _ := unstructured.NestedSlice(o.Object, "rules")
			if got := fmt.Sprint(rules); !strings.Contains(got, "tokenreviews") || !strings.Contains(got, "subjectaccessreviews") {
				t.Errorf("metrics-auth rules: %s", got)
			}
		case o.GetKind() == "ClusterRole" && o.GetName() == release+"-metrics-reader":
			rules, _, _ := unstructured.NestedSlice(o.Object, "rules")
			if got := fmt.Sprint(rules); got != "[map[nonResourceURLs:[/metrics] verbs:[get]]]" {
				t.Errorf("metrics-reader rules: %s", got)
			}
		case o.GetKind() == "ServiceMonitor":
			endpoints, _, _ := unstructured.NestedSlice(o.Object, "spec", "endpoints")
			if got := fmt.Sprint(endpoints); !strings.Contains(got, "scheme:https") || !strings.Contains(got, "bearerTokenFile") {
				t.Errorf("the ServiceMonitor must scrape over HTTPS with its token: %s", got)
			}
		case o.GetKind() == "NetworkPolicy":
			ingress, _, _ := unstructured.NestedSlice(o.Object, "spec", "ingress")
			if got := fmt.Sprint(ingress); !strings.Contains(got, "port:8443") {
				t.Errorf("the NetworkPolicy must admit only the metrics port: %s", got)
			}
		}
	}

	manifest, err = render(t, values(t, "metrics: {secure: false}\n"))
	if err != nil {
		t.Fatal(err)
	}
	objs = objects(t, manifest)
	if args := strings.Join(deployment(t, objs).Spec.Template.Spec.Containers[0].Args, " "); !strings.Contains(args, "--metrics-secure=false") {
		t.Errorf("args %q lack --metrics-secure=false", args)
	}
	if got := strings.Join(kinds(objs), " "); strings.Contains(got, "metrics-auth") || strings.Contains(got, "metrics-reader") {
		t.Errorf("plain metrics need no authentication RBAC: %s", got)
	}
}
