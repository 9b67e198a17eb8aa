package realnode

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/isolator-dev/isolator/internal/localcp"
	"github.com/isolator-dev/isolator/test/realnode/cluster"
	"github.com/isolator-dev/isolator/test/realnode/images"
)

// clusterEnv is the running cluster and its clients.
type clusterEnv struct {
	cfg        cluster.Config
	kubeconfig string
	rest       *rest.Config
	c          client.Client
	cs         *kubernetes.Clientset
}

func newClusterEnv(cfg cluster.Config) (*clusterEnv, error) {
	rc, err := cfg.RESTConfig()
	if err != nil {
		return nil, err
	}
	scheme := localcp.Scheme()
	if err := apiextensionsv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	c, err := client.New(rc, client.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	return &clusterEnv{cfg: cfg, kubeconfig: cfg.Kubeconfig(), rest: rc, c: c, cs: cs}, nil
}

// helm returns a Helm action configuration for namespace ns.
func (e *clusterEnv) helm(t *testing.T, ns string) *action.Configuration {
	t.Helper()
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig = ptr.To(e.kubeconfig)
	flags.Namespace = ptr.To(ns)
	// Helm's discovery cache would otherwise stay in ~/.kube/cache.
	flags.CacheDir = ptr.To(t.TempDir())
	cfg := &action.Configuration{}
	if err := cfg.Init(flags, ns, "secret", t.Logf); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	ch, err := loader.Load(filepath.Join("..", "..", "charts", "isolator"))
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// localImage points the chart at the operator image built from this tree
// and imported into the node: there is no registry to pull from.
func localImage(values map[string]any) map[string]any {
	if values == nil {
		values = map[string]any{}
	}
	values["image"] = map[string]any{"repository": images.OperatorRepository, "tag": images.OperatorTag, "pullPolicy": "Never"}
	return values
}

func (e *clusterEnv) namespace(ctx context.Context, t *testing.T, name string, labels map[string]string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if err := e.c.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// deployment creates a one-replica Deployment of a test image that runs as
// non-root with a read-only root file system, and waits until it is
// Available. It returns its Pod. Only a pod given a ServiceAccount gets a
// token.
func (e *clusterEnv) deployment(ctx context.Context, t *testing.T, ns, name string, labels map[string]string, image string, args []string, ready, serviceAccount string) *corev1.Pod {
	t.Helper()
	d := deploymentOf(ns, name, labels, testContainer("main", image, args, ready), serviceAccount)
	if err := e.c.Create(ctx, d); err != nil {
		t.Fatal(err)
	}
	return e.waitPod(ctx, t, ns, labels)
}

// testContainer runs a test image as non-root with a read-only root file
// system and no capabilities; ready ("path:port") adds an HTTP readiness
// probe.
func testContainer(name, image string, args []string, ready string) corev1.Container {
	container := corev1.Container{
		Name: name, Image: image, ImagePullPolicy: corev1.PullNever, Args: args,
		SecurityContext: &corev1.SecurityContext{
			RunAsNonRoot: ptr.To(true), AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true),
			Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
	}
	if ready != "" {
		path, port, _ := strings.Cut(ready, ":")
		container.ReadinessProbe = &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.Parse(port)}},
			PeriodSeconds: 1,
		}
	}
	return container
}

// deploymentOf is a one-replica Deployment of container.
func deploymentOf(ns, name string, labels map[string]string, container corev1.Container, serviceAccount string) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					Containers:                    []corev1.Container{container},
					TerminationGracePeriodSeconds: ptr.To[int64](2),
					ServiceAccountName:            serviceAccount,
					AutomountServiceAccountToken:  ptr.To(serviceAccount != ""),
				},
			},
		},
	}
}

// waitPod waits for the one Ready Pod matching labels.
func (e *clusterEnv) waitPod(ctx context.Context, t *testing.T, ns string, labels map[string]string) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		pods := &corev1.PodList{}
		if err := e.c.List(ctx, pods, client.InNamespace(ns), client.MatchingLabels(labels)); err != nil {
			return false, err
		}
		for i := range pods.Items {
			if pods.Items[i].DeletionTimestamp == nil && podReady(&pods.Items[i]) {
				pod = &pods.Items[i]
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no Ready pod %v in %s: %v\n%s", labels, ns, err, e.describePods(ctx, ns))
	}
	return pod
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// describePods summarises a namespace's pods and their recent events, for
// failure messages.
func (e *clusterEnv) describePods(ctx context.Context, ns string) string {
	var b strings.Builder
	pods, err := e.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	for _, p := range pods.Items {
		fmt.Fprintf(&b, "pod %s: phase %s ready %t ip %s\n", p.Name, p.Status.Phase, podReady(&p), p.Status.PodIP)
		for _, s := range p.Status.ContainerStatuses {
			fmt.Fprintf(&b, "  container %s: restarts %d state %+v\n", s.Name, s.RestartCount, s.State)
		}
	}
	events, err := e.cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
	if err == nil {
		for _, ev := range events.Items {
			if ev.Type != corev1.EventTypeNormal {
				fmt.Fprintf(&b, "event %s %s: %s\n", ev.InvolvedObject.Name, ev.Reason, ev.Message)
			}
		}
	}
	return b.String()
}

// result is one probe's outcome as the probe image serves it.
type result struct {
	OK      bool      `json:"ok"`
	Reached bool      `json:"reached"`
	Status  int       `json:"status"`
	Error   string    `json:"error"`
	Answer  string    `json:"answer"`
	At      time.Time `json:"at"`
}

// resultsPort is where the probe image serves its results (its default).
const resultsPort = 8081

// probeResults reads a probe pod's latest results over its pod IP.
func probeResults(ctx context.Context, podIP string) (map[string]result, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s:%d/results", podIP, resultsPort), nil)
	if err != nil {
		return nil, err
	}
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	out := map[string]result{}
	return out, json.NewDecoder(resp.Body).Decode(&out)
}

// reached reports whether the probe got an answer, whatever it says (any
// HTTP status, any DNS response): the network let the exchange through.
// Blocked means no answer (refused, timed out), never an HTTP or DNS error.
func (r result) reached() bool { return r.Reached }

// fresh reports whether a probe finished after since: older results may
// describe the dataplane before the change under test.
func (r result) fresh(since time.Time) bool { return r.At.After(since) }
