package helm

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/action"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/controller"
	"github.com/isolator-dev/isolator/internal/localcp"
	"github.com/isolator-dev/isolator/internal/preset"
)

func newScheme() *runtime.Scheme {
	s := localcp.Scheme()
	utilruntime.Must(apiextensionsv1.AddToScheme(s))
	return s
}

func helmConfig(t *testing.T, kubeconfig string) *action.Configuration {
	t.Helper()
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig = &kubeconfig
	ns := namespace
	flags.Namespace = &ns
	cfg := &action.Configuration{}
	if err := cfg.Init(flags, namespace, "secret", t.Logf); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestInstallPaths runs the three install paths against a real API server
// that enforces owner-reference permissions (OwnerReferencesPermissionEnforcement,
// as hardened clusters do): helm install, upgrade and uninstall; the operator
// reconciling the walkthrough with exactly the chart's RBAC; config/default
// applied server-side; and the KKP catalog entry validated by KKP's own CRDs.
func TestInstallPaths(t *testing.T) {
	if _, err := localcp.Assets(false); err != nil {
		t.Fatal(err)
	}
	cp, err := localcp.Start(localcp.Options{AdmissionPlugins: []string{"OwnerReferencesPermissionEnforcement"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Stop() })
	ctx := context.Background()
	c, err := client.New(cp.Config, client.Options{Scheme: newScheme()})
	if err != nil {
		t.Fatal(err)
	}
	cfg := helmConfig(t, cp.Kubeconfig)

	t.Run("helm install", func(t *testing.T) {
		install := action.NewInstall(cfg)
		install.ReleaseName, install.Namespace, install.CreateNamespace = release, namespace, true
		install.Timeout = time.Minute
		rel, err := install.Run(loadChart(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		if rel.Info.Status != "deployed" {
			t.Fatalf("release status %s", rel.Info.Status)
		}
		d := &appsv1.Deployment{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: release}, d); err != nil {
			t.Fatal(err)
		}
		checkHardened(t, d) // as stored, after the API server's defaulting
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := c.Get(ctx, client.ObjectKey{Name: "workloadisolations.isolation.isolator.dev"}, crd); err != nil {
			t.Fatalf("the chart must install the CRD: %v", err)
		}
		if err := waitEstablished(ctx, c); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("the operator works with exactly the chart's RBAC", func(t *testing.T) {
		leastPrivilege(ctx, t, cp.Config, c)
	})

	t.Run("helm upgrade", func(t *testing.T) {
		upgrade := action.NewUpgrade(cfg)
		upgrade.Namespace = namespace
		rel, err := upgrade.Run(release, loadChart(t), values(t, "replicas: 2\nlogLevel: debug\npodDisruptionBudget: {enabled: true}\n"))
		if err != nil {
			t.Fatal(err)
		}
		if rel.Version != 2 {
			t.Fatalf("release version %d after upgrade", rel.Version)
		}
		d := &appsv1.Deployment{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: release}, d); err != nil {
			t.Fatal(err)
		}
		if *d.Spec.Replicas != 2 {
			t.Fatalf("replicas %d after upgrade", *d.Spec.Replicas)
		}
	})

	t.Run("helm uninstall leaves only the CRD behind", func(t *testing.T) {
		if _, err := action.NewUninstall(cfg).Run(release); err != nil {
			t.Fatal(err)
		}
		selector := client.MatchingLabels{"app.kubernetes.io/instance": release}
		roles := &rbacv1.ClusterRoleList{}
		bindings := &rbacv1.ClusterRoleBindingList{}
		if err := c.List(ctx, roles, selector); err != nil {
			t.Fatal(err)
		}
		if err := c.List(ctx, bindings, selector); err != nil {
			t.Fatal(err)
		}
		if len(roles.Items)+len(bindings.Items) > 0 {
			t.Errorf("cluster-scoped leftovers: %d ClusterRoles, %d ClusterRoleBindings", len(roles.Items), len(bindings.Items))
		}
		cniRoles := &rbacv1.RoleList{}
		if err := c.List(ctx, cniRoles, selector, client.InNamespace("kube-system")); err != nil {
			t.Fatal(err)
		}
		if len(cniRoles.Items) > 0 {
			t.Errorf("leftover Roles in kube-system: %d", len(cniRoles.Items))
		}
		if err := c.Get(ctx, client.ObjectKey{Name: "workloadisolations.isolation.isolator.dev"}, &apiextensionsv1.CustomResourceDefinition{}); err != nil {
			t.Errorf("the CRD must stay (Helm never deletes crds/), got %v", err)
		}
	})

	t.Run("kubectl apply -k config/default (server-side dry run)", func(t *testing.T) {
		resources, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), "../../config/default")
		if err != nil {
			t.Fatal(err)
		}
		data, err := resources.AsYaml()
		if err != nil {
			t.Fatal(err)
		}
		objs := objects(t, string(data))
		if len(objs) < 8 {
			t.Fatalf("config/default renders %d objects", len(objs))
		}
		for _, o := range objs {
			opts := []client.ApplyOption{client.FieldOwner("test"), client.ForceOwnership}
			if o.GetKind() != "Namespace" {
				opts = append(opts, client.DryRunAll)
			}
			if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(o), opts...); err != nil {
				t.Errorf("%s %s: %v", o.GetKind(), o.GetName(), err)
			}
		}
	})

	t.Run("KKP ApplicationDefinition and ApplicationInstallation against KKP's CRDs", func(t *testing.T) {
		fixtures := filepath.Join("..", "..", "..", "shared", "fixtures", "crds")
		if _, err := os.Stat(fixtures); err != nil {
			t.Fatalf("KKP CRD fixtures not found at %s (they sit beside the repository as ../shared): %v", fixtures, err)
		}
		if _, err := envtest.InstallCRDs(cp.Config, envtest.CRDInstallOptions{Paths: []string{fixtures}, ErrorIfPathMissing: true}); err != nil {
			t.Fatal(err)
		}
		for _, file := range []string{"applicationdefinition.yaml", "applicationinstallation.yaml"} {
			data, err := os.ReadFile(filepath.Join("..", "..", "deploy", "kkp", file))
			if err != nil {
				t.Fatal(err)
			}
			u := &unstructured.Unstructured{}
			if err := yaml.Unmarshal(data, &u.Object); err != nil {
				t.Fatal(err)
			}
			if err := c.Create(ctx, u, client.FieldValidation("Strict")); err != nil {
				t.Errorf("%s rejected by KKP's schema: %v", file, err)
			}
		}
	})
}

func waitEstablished(ctx context.Context, c client.Client) error {
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := c.Get(ctx, client.ObjectKey{Name: "workloadisolations.isolation.isolator.dev"}, crd); err != nil {
			return false, err
		}
		for _, cond := range crd.Status.Conditions {
			if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
}

// leastPrivilege runs the operator in-process as the chart's ServiceAccount
// (impersonation, with the API server's RBAC authorizer), wired as
// cmd/main.go wires it with the chart's default values, reconciles the
// walkthrough and serves its metrics to authorized scrapers only.
func leastPrivilege(ctx context.Context, t *testing.T, admin *rest.Config, c client.Client) {
	sa := fmt.Sprintf("system:serviceaccount:%s:%s", namespace, release)
	asOperator := rest.CopyConfig(admin)
	asOperator.Impersonate = rest.ImpersonationConfig{UserName: sa}

	operatorClient, err := client.New(asOperator, client.Options{Scheme: newScheme()})
	if err != nil {
		t.Fatal(err)
	}
	if err := operatorClient.List(ctx, &corev1.SecretList{}); !apierrors.IsForbidden(err) {
		t.Errorf("the operator must not read Secrets, got %v", err)
	}
	cniNamespaces := chartCNINamespaces(t)
	for _, check := range []struct {
		what string
		attr authorizationv1.ResourceAttributes
		want bool
	}{
		{"list ConfigMaps in every namespace", authorizationv1.ResourceAttributes{Verb: "list", Resource: "configmaps"}, false},
		{"list ConfigMaps in local-ai", authorizationv1.ResourceAttributes{Namespace: "local-ai", Verb: "list", Resource: "configmaps"}, false},
		{"get a ConfigMap in kube-system", authorizationv1.ResourceAttributes{Namespace: "kube-system", Verb: "get", Resource: "configmaps"}, false},
		{"watch ConfigMaps in kube-system", authorizationv1.ResourceAttributes{Namespace: "kube-system", Verb: "watch", Resource: "configmaps"}, true},
		{"get a Pod", authorizationv1.ResourceAttributes{Namespace: "local-ai", Verb: "get", Resource: "pods"}, false},
		{"watch Pods", authorizationv1.ResourceAttributes{Verb: "watch", Resource: "pods"}, true},
		{"list ApplicationInstallations in every namespace",
			authorizationv1.ResourceAttributes{Verb: "list", Group: "apps.kubermatic.k8c.io", Resource: "applicationinstallations"}, false},
		{"list ApplicationInstallations in kube-system",
			authorizationv1.ResourceAttributes{Namespace: "kube-system", Verb: "list", Group: "apps.kubermatic.k8c.io", Resource: "applicationinstallations"}, true},
		{"update WorkloadIsolation finalizers (owner references with blockOwnerDeletion)",
			authorizationv1.ResourceAttributes{Namespace: "local-ai", Verb: "update", Group: "isolation.isolator.dev", Resource: "workloadisolations", Subresource: "finalizers"}, true},
	} {
		if got := allowed(ctx, t, c, sa, check.attr); got != check.want {
			t.Errorf("%s may %s: %v, want %v", sa, check.what, got, check.want)
		}
	}

	metricsAddr, err := localcp.FreeAddress()
	if err != nil {
		t.Fatal(err)
	}

	mgr, err := ctrl.NewManager(asOperator, ctrl.Options{
		Scheme: newScheme(), Cache: controller.CacheOptions(),
		Metrics: metricsserver.Options{
			BindAddress: metricsAddr, SecureServing: true, FilterProvider: filters.WithAuthenticationAndAuthorization,
		},
		HealthProbeBindAddress: "0",
		LeaderElection:         true, LeaderElectionID: "isolator.isolation.isolator.dev", LeaderElectionNamespace: namespace,
	})
	if err != nil {
		t.Fatal(err)
	}
	builtin, _ := preset.Parse(preset.BuiltinYAML())
	catalog, err := preset.NewCatalog(builtin)
	if err != nil {
		t.Fatal(err)
	}
	detector := &controller.CNIDetector{Namespaces: cniNamespaces}
	if err := detector.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	if err := (&controller.WorkloadIsolationReconciler{
		Client: mgr.GetClient(), Presets: catalog, Recorder: mgr.GetEventRecorder("isolator"), CNI: detector, Workers: 2,
	}).SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	mgrCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mgrCtx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	}()

	for _, obj := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "local-ai"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "nginx"}},
		&corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "local-ai-0", Namespace: "local-ai", Labels: map[string]string{"app.kubernetes.io/name": "local-ai"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "api", Image: "localai/localai:latest-cpu"}}},
		},
	} {
		if err := c.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	sample, err := os.ReadFile("../../config/samples/isolation_v1alpha1_workloadisolation.yaml")
	if err != nil {
		t.Fatal(err)
	}
	wi := &isolationv1alpha1.WorkloadIsolation{}
	if err := yaml.Unmarshal(sample, wi); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, wi); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		got := &isolationv1alpha1.WorkloadIsolation{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(wi), got); err != nil {
			return false, err
		}
		ready := meta.FindStatusCondition(got.Status.Conditions, isolationv1alpha1.ConditionReady)
		return ready != nil && ready.Status == metav1.ConditionTrue && got.Status.ObservedGeneration == got.Generation, nil
	})
	if err != nil {
		t.Fatalf("the walkthrough did not become Ready as %s: %v", sa, err)
	}
	policies := &networkingv1.NetworkPolicyList{}
	if err := c.List(ctx, policies, client.InNamespace("local-ai")); err != nil {
		t.Fatal(err)
	}
	if len(policies.Items) != 2 {
		t.Fatalf("want the walkthrough's 2 policies, got %d", len(policies.Items))
	}

	// client-go's leader elector records a core Event on the Lease, in the
	// Lease's namespace; the operator may write core Events there only.
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		events := &corev1.EventList{}
		if err := c.List(ctx, events, client.InNamespace(namespace)); err != nil {
			return false, err
		}
		for _, e := range events.Items {
			if e.Reason == "LeaderElection" && e.InvolvedObject.Name == "isolator.isolation.isolator.dev" {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Errorf("no LeaderElection Event on the Lease in %s: the leader elector's Events are refused (%v)", namespace, err)
	}
	for ns, want := range map[string]bool{namespace: true, "local-ai": false} {
		if got := allowed(ctx, t, c, sa, authorizationv1.ResourceAttributes{Namespace: ns, Verb: "create", Resource: "events"}); got != want {
			t.Errorf("%s may create core Events in %s: %v, want %v", sa, ns, got, want)
		}
	}

	scrapeAsReader(ctx, t, admin, c, metricsAddr)
}

// chartCNINamespaces returns the chart's default cniNamespaces.
func chartCNINamespaces(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, ns := range loadChart(t).Values["cniNamespaces"].([]any) {
		out = append(out, ns.(string))
	}
	return out
}

// allowed asks the API server's authorizer whether user may do attr.
func allowed(ctx context.Context, t *testing.T, c client.Client, user string, attr authorizationv1.ResourceAttributes) bool {
	t.Helper()
	review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{User: user, ResourceAttributes: &attr}}
	if err := c.Create(ctx, review); err != nil {
		t.Fatal(err)
	}
	return review.Status.Allowed
}

// scrapeAsReader reads the operator's metrics over HTTPS: refused without
// credentials, served to a ServiceAccount bound to the chart's
// metrics-reader ClusterRole. The operator asks the API server with the
// chart's metrics-auth rights.
func scrapeAsReader(ctx context.Context, t *testing.T, admin *rest.Config, c client.Client, addr string) {
	t.Helper()
	for _, obj := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "monitoring"}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "prometheus", Namespace: "monitoring"}},
		&rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "prometheus-isolator-metrics"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: release + "-metrics-reader"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "prometheus", Namespace: "monitoring"}},
		},
	} {
		if err := c.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	clientset, err := kubernetes.NewForConfig(admin)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := clientset.CoreV1().ServiceAccounts("monitoring").CreateToken(ctx, "prometheus",
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](600)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	httpsClient := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // the operator's certificate is self-signed
	}}
	for _, tc := range []struct {
		name, token string
		want        int
	}{
		{"without credentials", "", http.StatusUnauthorized},
		{"as a metrics-reader", tr.Status.Token, http.StatusOK},
	} {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/metrics", nil)
		if err != nil {
			t.Fatal(err)
		}
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		resp, err := httpsClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("GET /metrics %s: %d, want %d: %.200s", tc.name, resp.StatusCode, tc.want, body)
		}
	}
}
