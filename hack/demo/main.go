// Command demo shows Isolator at work with no cluster at all: it starts the
// local control plane (kube-apiserver, etcd, garbage collector), installs the
// CRD, runs the operator binary, builds the walkthrough's scene (LocalAI and
// ingress-nginx as API objects, and the CNI of a KKP user cluster: Cilium,
// KKP's default, or Canal with --cni canal), applies the sample
// WorkloadIsolation, waits until it is Ready with the CNI reported as
// enforcing, and prints what the operator generated. It exits 0 on success.
// Run it with `make demo` (CNI=canal for Canal, KEEP=1 to keep the control
// plane up).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/localcp"
)

type options struct {
	manager string
	plugin  string
	crds    string
	sample  string
	cni     string
	keep    bool
	timeout time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.manager, "manager", "bin/manager", "Path of the operator binary.")
	flag.StringVar(&o.plugin, "plugin", "bin/kubectl-isolator", "Path of the kubectl plugin binary.")
	flag.StringVar(&o.crds, "crds", "config/crd/bases", "Directory of the CRD manifests.")
	flag.StringVar(&o.sample, "sample", "config/samples/isolation_v1alpha1_workloadisolation.yaml", "WorkloadIsolation to apply.")
	flag.StringVar(&o.cni, "cni", "cilium", "CNI of the scene: cilium (KKP's default for user clusters) or canal.")
	flag.BoolVar(&o.keep, "keep", false, "Keep the control plane and operator running until interrupted, and print a kubeconfig for kubectl.")
	flag.DurationVar(&o.timeout, "timeout", 60*time.Second, "How long to wait for the WorkloadIsolation to become Ready.")
	flag.Parse()
	if _, ok := cniScenes[o.cni]; !ok {
		fmt.Fprintf(os.Stderr, "unknown --cni %q: use cilium or canal\n", o.cni)
		os.Exit(2)
	}

	if err := run(o); err != nil {
		fmt.Fprintf(os.Stderr, "\ndemo FAILED: %v\n", err)
		os.Exit(1)
	}
}

func step(format string, args ...any) { fmt.Printf("==> "+format+"\n", args...) }

func run(o options) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()

	step("Starting the local control plane (kube-apiserver, etcd, garbage collector)")
	cp, err := localcp.Start(localcp.Options{CRDDirectoryPaths: []string{o.crds}, GarbageCollector: true})
	if err != nil {
		return err
	}
	defer func() { _ = cp.Stop() }()
	fmt.Printf("    ready in %s; CRD workloadisolations.isolation.isolator.dev installed\n", time.Since(start).Round(time.Millisecond))
	if o.cni == "cilium" {
		if err := ciliumAPI(cp.Config); err != nil {
			return fmt.Errorf("serving Cilium's API: %w", err)
		}
		fmt.Println("    Cilium's API served too: CiliumNetworkPolicy and CiliumEndpoint (schema-less stand-ins of Cilium's CRDs)")
	}

	step("Starting the operator (%s)", o.manager)
	logPath := filepath.Join(os.TempDir(), "isolator-demo-manager.log")
	manager, err := localcp.StartOperator(ctx, o.manager, cp.Kubeconfig, logPath)
	if err != nil {
		return err
	}
	defer manager.Stop()
	fmt.Printf("    healthy; logs in %s\n", logPath)

	c, err := newClient(cp.Config)
	if err != nil {
		return err
	}
	scene := cniScenes[o.cni]
	step("Creating the walkthrough's scene: LocalAI in namespace local-ai, ingress-nginx in namespace nginx, %s", scene.description)
	if err := createScene(ctx, c, scene.objects()); err != nil {
		return err
	}

	step("Applying %s", o.sample)
	applied := time.Now()
	wi, err := applySample(ctx, c, o.sample)
	if err != nil {
		return err
	}
	if err := waitCurrent(ctx, c, wi, o.timeout); err != nil {
		return fmt.Errorf("%w\n    operator logs: %s", err, logPath)
	}
	fmt.Printf("    Ready in %s\n\n", time.Since(applied).Round(time.Millisecond))

	fmt.Println("$ kubectl get workloadisolations -n local-ai -o wide")
	if err := printTable(ctx, cp.Config, "/apis/isolation.isolator.dev/v1alpha1/namespaces/local-ai/workloadisolations", true); err != nil {
		return err
	}
	if err := printCNI(ctx, c, wi); err != nil {
		return err
	}
	fmt.Println("\n$ kubectl get networkpolicies -n local-ai")
	if err := printTable(ctx, cp.Config, "/apis/networking.k8s.io/v1/namespaces/local-ai/networkpolicies", false); err != nil {
		return err
	}
	if err := printPolicies(ctx, c, wi); err != nil {
		return err
	}

	step("Deleting NetworkPolicy local-ai-allow-nginx by hand: the operator restores it")
	restored, err := deleteAndWaitRestored(ctx, c, "local-ai", "local-ai-allow-nginx")
	if err != nil {
		return err
	}
	fmt.Printf("    restored in %s\n", restored.Round(time.Millisecond))

	step("Someone adds an allow-all NetworkPolicy in local-ai: Isolator reports that it widens the isolation")
	if err := widen(ctx, c, wi, o.plugin, cp.Kubeconfig); err != nil {
		return err
	}

	step("Isolating egress too: LocalAI may reach only DNS and its model store (preset minio)")
	if err := isolateEgress(ctx, c, wi, o.timeout); err != nil {
		return err
	}
	fmt.Println("$ kubectl get workloadisolations -n local-ai")
	if err := printTable(ctx, cp.Config, "/apis/isolation.isolator.dev/v1alpha1/namespaces/local-ai/workloadisolations", false); err != nil {
		return err
	}
	fmt.Println("\n$ kubectl get networkpolicies -n local-ai")
	if err := printTable(ctx, cp.Config, "/apis/networking.k8s.io/v1/namespaces/local-ai/networkpolicies", false); err != nil {
		return err
	}
	if err := printPolicies(ctx, c, wi, "local-ai-dns", "local-ai-egress-models"); err != nil {
		return err
	}

	step("Narrowing ingress-nginx to the inference API (preset openai-inference): no /models/apply, the SSRF path")
	if err := restrictToInference(ctx, c, cp.Config, wi, o.cni == "cilium", o.timeout); err != nil {
		return err
	}

	fmt.Printf("\nDemo succeeded in %s.\n", time.Since(start).Round(time.Second))
	if o.keep {
		fmt.Printf("\nThe control plane and the operator keep running. In another shell:\n\n"+
			"    export KUBECONFIG=%s\n    kubectl get wi -A\n\nPress Ctrl-C to stop.\n", cp.Kubeconfig)
		<-ctx.Done()
	}
	return nil
}

func newClient(cfg *rest.Config) (client.Client, error) {
	return client.New(cfg, client.Options{Scheme: localcp.Scheme()})
}

// createScene creates what the walkthrough deploys, as API objects: there is
// no kubelet, so pods are created directly and never run.
func createScene(ctx context.Context, c client.Client, cniObjects []client.Object) error {
	localAI := map[string]string{"app.kubernetes.io/name": "local-ai", "app.kubernetes.io/instance": "local-ai"}
	nginx := map[string]string{"app.kubernetes.io/name": "ingress-nginx", "app.kubernetes.io/component": "controller"}
	objects := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "local-ai"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "nginx"}},
		deployment("local-ai", "local-ai-local-ai", localAI, "localai/localai:latest-cpu", 8080),
		&corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "local-ai-local-ai", Namespace: "local-ai", Labels: localAI},
			Spec:       corev1.ServiceSpec{Selector: localAI, Ports: []corev1.ServicePort{{Name: "http", Port: 8080}}},
		},
		pod("local-ai", "local-ai-local-ai-0", localAI, "localai/localai:latest-cpu", 8080),
		deployment("nginx", "nginx-ingress-nginx-controller", nginx, "registry.k8s.io/ingress-nginx/controller:v1.12.0", 80),
		pod("nginx", "nginx-ingress-nginx-controller-0", nginx, "registry.k8s.io/ingress-nginx/controller:v1.12.0", 80),
	}
	objects = append(objects, cniObjects...)
	for _, obj := range objects {
		if err := c.Create(ctx, obj); err != nil {
			return fmt.Errorf("creating %T %s: %w", obj, obj.GetName(), err)
		}
		if ds, ok := obj.(*appsv1.DaemonSet); ok {
			if err := agentRunning(ctx, c, ds); err != nil {
				return err
			}
		}
	}
	return nil
}

// agentRunning writes the status the DaemonSet controller, which this
// control plane does not run, reports for a CNI agent ready on the scene's
// one node: the operator counts a CNI as enforcing only while its agents are.
func agentRunning(ctx context.Context, c client.Client, ds *appsv1.DaemonSet) error {
	ds.Status = appsv1.DaemonSetStatus{
		ObservedGeneration: ds.Generation, DesiredNumberScheduled: 1, CurrentNumberScheduled: 1,
		UpdatedNumberScheduled: 1, NumberReady: 1, NumberAvailable: 1,
	}
	if err := c.Status().Update(ctx, ds); err != nil {
		return fmt.Errorf("writing the status of DaemonSet %s/%s: %w", ds.Namespace, ds.Name, err)
	}
	return nil
}

// cniScene is the CNI part of the scene, as it appears in a KKP user cluster.
type cniScene struct {
	description string
	objects     func() []client.Object
}

var cniScenes = map[string]cniScene{
	"cilium": {"Cilium (KKP's default CNI for user clusters) and the agent's CiliumEndpoint of each pod", func() []client.Object {
		return []client.Object{ciliumConfig(), cilium(),
			ciliumEndpoint("local-ai", "local-ai-local-ai-0", 48213), ciliumEndpoint("nginx", "nginx-ingress-nginx-controller-0", 20514)}
	}},
	"canal": {"Canal (supported by KKP, its default for edge clusters)", func() []client.Object {
		return []client.Object{canal()}
	}},
}

// ciliumConfig is the agent's configuration with the settings of a KKP user
// cluster: policy enforcement in its default mode (a pod selected by a
// policy allows only what the policies allow), no audit mode, tunnelling
// with VXLAN, Kubernetes IPAM, kube-proxy replacement and Hubble.
func ciliumConfig() *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "cilium-config", Namespace: "kube-system",
			Labels: map[string]string{"app.kubernetes.io/managed-by": "Helm"}},
		Data: map[string]string{
			"enable-policy":            "default",
			"policy-audit-mode":        "false",
			"identity-allocation-mode": "crd",
			"cluster-name":             "default",
			"cluster-id":               "0",
			"ipam":                     "kubernetes",
			"routing-mode":             "tunnel",
			"tunnel-protocol":          "vxlan",
			"kube-proxy-replacement":   "true",
			"enable-ipv4":              "true",
			"enable-ipv6":              "false",
			"enable-l7-proxy":          "true",
			"enable-hubble":            "true",
			"hubble-listen-address":    ":4244",
		},
	}
}

// cilium is the Cilium agent DaemonSet: the cilium-agent container enforces
// NetworkPolicy as cilium-config says.
func cilium() *appsv1.DaemonSet {
	const image = "quay.io/cilium/cilium:v1.19.4"
	labels := map[string]string{"k8s-app": "cilium", "app.kubernetes.io/name": "cilium-agent", "app.kubernetes.io/part-of": "cilium"}
	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "cilium", Namespace: "kube-system", Labels: labels},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"k8s-app": "cilium"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
				InitContainers: []corev1.Container{
					{Name: "config", Image: image, Command: []string{"cilium-dbg", "build-config"}},
					{Name: "mount-bpf-fs", Image: image},
					{Name: "clean-cilium-state", Image: image, Command: []string{"/init-container.sh"}},
					{Name: "install-cni-binaries", Image: image, Command: []string{"/install-plugin.sh"}},
				},
				Containers: []corev1.Container{
					{Name: "cilium-agent", Image: image, Command: []string{"cilium-agent"}, Args: []string{"--config-dir=/tmp/cilium/config-map"}},
				},
			}},
		},
	}
}

// canal is Canal's CNI DaemonSet: calico-node enforces NetworkPolicy,
// kube-flannel provides the network.
func canal() *appsv1.DaemonSet {
	labels := map[string]string{"k8s-app": "canal"}
	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "canal", Namespace: "kube-system", Labels: labels},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
				InitContainers: []corev1.Container{{Name: "install-cni", Image: "quay.io/calico/cni:v3.28.1"}},
				Containers: []corev1.Container{
					{Name: "calico-node", Image: "quay.io/calico/node:v3.28.1"},
					{Name: "kube-flannel", Image: "quay.io/coreos/flannel:v0.24.4", Args: []string{"--ip-masq", "--kube-subnet-mgr"}},
				},
			}},
		},
	}
}

func podSpec(image string, port int32) corev1.PodSpec {
	return corev1.PodSpec{Containers: []corev1.Container{{
		Name: "main", Image: image, Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: port}},
	}}}
}

func deployment(ns, name string, labels map[string]string, image string, port int32) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: podSpec(image, port)},
		},
	}
}

func pod(ns, name string, labels map[string]string, image string, port int32) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels}, Spec: podSpec(image, port)}
}

func applySample(ctx context.Context, c client.Client, path string) (*isolationv1alpha1.WorkloadIsolation, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(data, &u.Object); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("isolator-demo")); err != nil {
		return nil, fmt.Errorf("applying %s: %w", path, err)
	}
	return &isolationv1alpha1.WorkloadIsolation{ObjectMeta: metav1.ObjectMeta{Name: u.GetName(), Namespace: u.GetNamespace()}}, nil
}

// waitCurrent waits until the operator has reported on the current
// generation, kstatus (as Flux and Argo CD use it) says Current, and the
// scene's CNI is reported as enforcing. kstatus alone calls a resource
// without status Current.
func waitCurrent(ctx context.Context, c client.Client, wi *isolationv1alpha1.WorkloadIsolation, timeout time.Duration) error {
	var last *status.Result
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(isolationv1alpha1.GroupVersion.WithKind("WorkloadIsolation"))
		if err := c.Get(ctx, client.ObjectKeyFromObject(wi), u); err != nil {
			return false, err
		}
		res, err := status.Compute(u)
		if err != nil {
			return false, err
		}
		last = res
		observed, _, _ := unstructured.NestedInt64(u.Object, "status", "observedGeneration")
		enforces, _, _ := unstructured.NestedString(u.Object, "status", "cni", "enforcesNetworkPolicy")
		return observed == u.GetGeneration() && res.Status == status.CurrentStatus && enforces == "True", nil
	})
	if err != nil && last != nil {
		return fmt.Errorf("WorkloadIsolation %s/%s is %s: %s", wi.Namespace, wi.Name, last.Status, last.Message)
	}
	return err
}

// printTable prints a list the way kubectl does, from the API server's own
// Table rendering (so the CRD's printer columns are what is shown).
func printTable(ctx context.Context, cfg *rest.Config, path string, wide bool) error {
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(cfg.Host, "/")+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, body)
	}
	table := &metav1.Table{}
	if err := json.Unmarshal(body, table); err != nil {
		return err
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 8, 3, ' ', 0)
	var header []string
	var keep []int
	for i, col := range table.ColumnDefinitions {
		if col.Priority == 0 || wide {
			header = append(header, strings.ToUpper(col.Name))
			keep = append(keep, i)
		}
	}
	_, _ = fmt.Fprintln(w, strings.Join(header, "\t"))
	for _, row := range table.Rows {
		var cells []string
		for _, i := range keep {
			cells = append(cells, fmt.Sprint(row.Cells[i]))
		}
		_, _ = fmt.Fprintln(w, strings.Join(cells, "\t"))
	}
	return w.Flush()
}

func printCNI(ctx context.Context, c client.Client, wi *isolationv1alpha1.WorkloadIsolation) error {
	current := &isolationv1alpha1.WorkloadIsolation{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(wi), current); err != nil {
		return err
	}
	out, err := yaml.Marshal(map[string]any{"cni": current.Status.CNI, "conditions": current.Status.Conditions})
	if err != nil {
		return err
	}
	fmt.Printf("\n$ kubectl get wi %s -n %s -o yaml   # status, abridged\n%s", wi.Name, wi.Namespace, out)
	return nil
}

// printPolicies shows the NetworkPolicies in wi's status, or only those
// named in only.
func printPolicies(ctx context.Context, c client.Client, wi *isolationv1alpha1.WorkloadIsolation, only ...string) error {
	current := &isolationv1alpha1.WorkloadIsolation{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(wi), current); err != nil {
		return err
	}
	for _, ref := range current.Status.Policies {
		if ref.Kind != "NetworkPolicy" || (len(only) > 0 && !slices.Contains(only, ref.Name)) {
			continue
		}
		np := &networkingv1.NetworkPolicy{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: wi.Namespace, Name: ref.Name}, np); err != nil {
			return err
		}
		shown := networkingv1.NetworkPolicy{
			TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
			ObjectMeta: metav1.ObjectMeta{Name: np.Name, Namespace: np.Namespace, Labels: np.Labels, OwnerReferences: np.OwnerReferences},
			Spec:       np.Spec,
		}
		out, err := yaml.Marshal(shown)
		if err != nil {
			return err
		}
		out = bytes.ReplaceAll(out, []byte("  creationTimestamp: null\n"), nil)
		fmt.Printf("\n$ kubectl get networkpolicy %s -n %s -o yaml\n%s", np.Name, np.Namespace, out)
	}
	return nil
}

// isolateEgress creates the model store (MinIO in namespace minio) and adds
// egress to the WorkloadIsolation: DNS (the default cluster-dns preset) and
// the store, nothing else. It waits until the resource is Ready with egress
// isolated.
func isolateEgress(ctx context.Context, c client.Client, wi *isolationv1alpha1.WorkloadIsolation, timeout time.Duration) error {
	minio := map[string]string{"app.kubernetes.io/name": "minio"}
	for _, obj := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "minio"}},
		deployment("minio", "minio", minio, "quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z", 9000),
		pod("minio", "minio-0", minio, "quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z", 9000),
	} {
		if err := c.Create(ctx, obj); err != nil {
			return err
		}
	}
	current := &isolationv1alpha1.WorkloadIsolation{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(wi), current); err != nil {
		return err
	}
	current.Spec.Egress = []isolationv1alpha1.EgressRule{{Name: "models", To: []isolationv1alpha1.EgressPeer{{Preset: "minio"}}}}
	fmt.Println("    spec.egress: [{name: models, to: [{preset: minio}]}]   (dns: cluster-dns by default)")
	if err := c.Update(ctx, current); err != nil {
		return err
	}
	if err := waitCurrent(ctx, c, current, timeout); err != nil {
		return err
	}
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		got := &isolationv1alpha1.WorkloadIsolation{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(wi), got); err != nil {
			return false, err
		}
		return got.Status.Egress == isolationv1alpha1.EgressIsolated, nil
	})
}

// widen adds an allow-all policy, waits until the WorkloadIsolation reports
// it, shows `kubectl isolator explain`, then removes it again.
func widen(ctx context.Context, c client.Client, wi *isolationv1alpha1.WorkloadIsolation, plugin, kubeconfig string) error {
	allowAll := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "allow-all-ingress", Namespace: wi.Namespace},
		Spec: networkingv1.NetworkPolicySpec{
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{}}}}},
		},
	}
	start := time.Now()
	if err := c.Create(ctx, allowAll); err != nil {
		return err
	}
	current := &isolationv1alpha1.WorkloadIsolation{}
	err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(wi), current); err != nil {
			return false, err
		}
		return len(current.Status.Exposure) > 0, nil
	})
	if err != nil {
		return fmt.Errorf("the allow-all policy was not reported: %w", err)
	}
	fmt.Printf("    reported in %s\n", time.Since(start).Round(time.Millisecond))
	for _, cond := range current.Status.Conditions {
		if cond.Type == isolationv1alpha1.ConditionIsolated || cond.Type == isolationv1alpha1.ConditionReady {
			fmt.Printf("    %s=%s (%s): %s\n", cond.Type, cond.Status, cond.Reason, cond.Message)
		}
	}
	for _, e := range current.Status.Exposure {
		fmt.Printf("    status.exposure: %s\n", e.Summary)
	}
	fmt.Printf("\n$ kubectl isolator explain %s -n %s\n", wi.Name, wi.Namespace)
	cmd := exec.CommandContext(ctx, plugin, "explain", wi.Name, "-n", wi.Namespace, "--kubeconfig", kubeconfig)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("kubectl isolator explain: %w", err)
	}
	step("Removing it: the WorkloadIsolation is Ready again")
	if err := c.Delete(ctx, allowAll); err != nil {
		return err
	}
	return waitCurrent(ctx, c, wi, 30*time.Second)
}

func deleteAndWaitRestored(ctx context.Context, c client.Client, ns, name string) (time.Duration, error) {
	np := &networkingv1.NetworkPolicy{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, np); err != nil {
		return 0, err
	}
	start := time.Now()
	if err := c.Delete(ctx, np); err != nil {
		return 0, err
	}
	err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		restored := &networkingv1.NetworkPolicy{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, restored); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		return restored.UID != np.UID, nil
	})
	if err != nil {
		return 0, errors.Join(fmt.Errorf("NetworkPolicy %s/%s was not restored", ns, name), err)
	}
	return time.Since(start), nil
}
