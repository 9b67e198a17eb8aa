package realnode

import (
	"context"
	"crypto/sha1" //nolint:gosec // KKP derives release names with SHA-1; this mirrors it
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/action"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
)

// The fields of KKP's ApplicationDefinition and ApplicationInstallation
// (apps.kubermatic.k8c.io/v1) that decide how KKP installs a Helm chart.
type kkpDeployOptions struct {
	Helm *struct {
		Wait    bool            `json:"wait"`
		Timeout metav1.Duration `json:"timeout"`
		Atomic  bool            `json:"atomic"`
	} `json:"helm"`
}

type kkpDefinition struct {
	Spec struct {
		DefaultValuesBlock   string            `json:"defaultValuesBlock"`
		DefaultDeployOptions *kkpDeployOptions `json:"defaultDeployOptions"`
	} `json:"spec"`
}

type kkpInstallation struct {
	Metadata metav1.ObjectMeta `json:"metadata"`
	Spec     struct {
		Namespace struct {
			Name   string            `json:"name"`
			Create bool              `json:"create"`
			Labels map[string]string `json:"labels"`
		} `json:"namespace"`
		Values        map[string]any    `json:"values"`
		ValuesBlock   string            `json:"valuesBlock"`
		DeployOptions *kkpDeployOptions `json:"deployOptions"`
	} `json:"spec"`
}

// kkpRelease is what KKP's application installer derives from an
// ApplicationInstallation: the release name (namespace-name, or a hashed
// form beyond 53 characters), the target namespace and its labels, the
// values (the installation's; KKP copies the definition's defaultValuesBlock
// into an installation that has none), and the deploy options (the
// installation's, else the definition's, else no wait).
type kkpRelease struct {
	name, namespace string
	nsLabels        map[string]string
	values          map[string]any
	wait, atomic    bool
	timeout         time.Duration
}

func renderKKP(def kkpDefinition, inst kkpInstallation) (kkpRelease, error) {
	r := kkpRelease{namespace: inst.Spec.Namespace.Name, nsLabels: inst.Spec.Namespace.Labels}
	r.name = inst.Metadata.Namespace + "-" + inst.Metadata.Name
	if len(r.name) > 53 {
		sum := sha1.Sum([]byte(inst.Metadata.Namespace)) //nolint:gosec // as KKP does
		app := inst.Metadata.Name
		if len(app) > 43 {
			app = app[:43]
		}
		r.name = app + "-" + hex.EncodeToString(sum[:])[:9]
	}
	block := inst.Spec.ValuesBlock
	switch {
	case len(inst.Spec.Values) > 0:
		r.values = inst.Spec.Values
	case block == "":
		block = def.Spec.DefaultValuesBlock
		fallthrough
	default:
		r.values = map[string]any{}
		if err := yaml.Unmarshal([]byte(block), &r.values); err != nil {
			return r, err
		}
	}
	opts := inst.Spec.DeployOptions
	if opts == nil || opts.Helm == nil {
		opts = def.Spec.DefaultDeployOptions
	}
	if opts != nil && opts.Helm != nil {
		r.wait, r.atomic, r.timeout = opts.Helm.Wait, opts.Helm.Atomic, opts.Helm.Timeout.Duration
	}
	return r, nil
}

func TestRenderKKP(t *testing.T) {
	var def kkpDefinition
	def.Spec.DefaultValuesBlock = "logLevel: debug\nreplicas: 1\n"
	var inst kkpInstallation
	inst.Metadata = metav1.ObjectMeta{Name: "isolator", Namespace: "isolator-system"}
	inst.Spec.Namespace.Name = "isolator-system"
	r, err := renderKKP(def, inst)
	if err != nil {
		t.Fatal(err)
	}
	if r.name != "isolator-system-isolator" || r.values["logLevel"] != "debug" || r.wait {
		t.Errorf("without values and deploy options: %+v", r)
	}
	inst.Spec.ValuesBlock = "logLevel: info\n"
	inst.Metadata.Namespace = "a-namespace-whose-name-is-long-enough-to-push-the-release-name-over"
	r, _ = renderKKP(def, inst)
	if r.values["logLevel"] != "info" || r.values["replicas"] != nil {
		t.Errorf("the installation's values replace the defaults: %v", r.values)
	}
	if len(r.name) != len("isolator")+1+9 {
		t.Errorf("release name %q: want the hashed form beyond 53 characters", r.name)
	}
}

func readKKP(t *testing.T, file string, into any) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "deploy", "kkp", file))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, into); err != nil {
		t.Fatal(err)
	}
}

// testKKPInstall installs the chart as KKP's application installer would for
// deploy/kkp's ApplicationInstallation: its namespace created with its
// labels (Pod Security "restricted", which the API server enforces), its
// release name, values and deploy options. The one difference: the image
// comes from the node, not from a registry. The operator must become Ready
// and isolate the walkthrough's LocalAI.
func testKKPInstall(ctx context.Context, t *testing.T, e *clusterEnv) {
	var def kkpDefinition
	var inst kkpInstallation
	readKKP(t, "applicationdefinition.yaml", &def)
	readKKP(t, "applicationinstallation.yaml", &inst)
	r, err := renderKKP(def, inst)
	if err != nil {
		t.Fatal(err)
	}
	if inst.Spec.Namespace.Create {
		e.namespace(ctx, t, r.namespace, r.nsLabels)
	}
	ns := &corev1.Namespace{}
	if err := e.c.Get(ctx, client.ObjectKey{Name: r.namespace}, ns); err != nil {
		t.Fatal(err)
	}
	for k, v := range r.nsLabels {
		if ns.Labels[k] != v {
			t.Fatalf("namespace %s has %s=%q, want %q as the ApplicationInstallation says", r.namespace, k, ns.Labels[k], v)
		}
	}
	install := action.NewInstall(e.helm(t, r.namespace))
	install.ReleaseName, install.Namespace = r.name, r.namespace
	install.Wait, install.Atomic, install.Timeout = r.wait, r.atomic, r.timeout
	begin := time.Now()
	if _, err := install.RunWithContext(ctx, loadChart(t), localImage(r.values)); err != nil {
		t.Fatalf("installing release %s as KKP would: %v\n%s", r.name, err, e.describePods(ctx, r.namespace))
	}
	t.Logf("KKP-like install of release %s into %s (labels %v, wait %t, atomic %t, timeout %s): %s",
		r.name, r.namespace, r.nsLabels, r.wait, r.atomic, r.timeout, time.Since(begin).Round(100*time.Millisecond))
	pod := e.waitPod(ctx, t, r.namespace, map[string]string{"app.kubernetes.io/instance": r.name})
	t.Logf("operator Pod %s Ready under Pod Security %q", pod.Name, r.nsLabels["pod-security.kubernetes.io/enforce"])

	wi := sampleIsolation(t)
	if err := e.c.Create(ctx, wi); err != nil {
		t.Fatal(err)
	}
	waitIsolation(ctx, t, e.c, wi, isolationv1alpha1.ConditionReady, metav1.ConditionTrue, "")
	if err := e.c.Delete(ctx, wi); err != nil {
		t.Fatal(err)
	}
	un := action.NewUninstall(e.helm(t, r.namespace))
	un.Wait, un.Timeout = true, 2*time.Minute
	if _, err := un.Run(r.name); err != nil {
		t.Fatal(err)
	}
	if left := e.chartObjects(ctx, t, r.name); len(left) > 0 {
		t.Errorf("uninstall left %v", left)
	}
}

// deleteNamespace deletes a namespace and waits until the namespace
// controller has removed it.
func (e *clusterEnv) deleteNamespace(ctx context.Context, t *testing.T, name string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := e.c.Delete(ctx, ns); client.IgnoreNotFound(err) != nil {
		t.Fatal(err)
	}
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		err := e.c.Get(ctx, client.ObjectKeyFromObject(ns), ns)
		return client.IgnoreNotFound(err) == nil && err != nil, nil
	}); err != nil {
		t.Fatalf("namespace %s not removed: %v", name, err)
	}
}
