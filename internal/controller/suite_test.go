package controller_test

import (
	"context"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/isolator-dev/isolator/internal/config"
	"github.com/isolator-dev/isolator/internal/controller"
	"github.com/isolator-dev/isolator/internal/localcp"
)

// adminPresets is the operator configuration the suite runs with: one preset
// an administrator added.
const adminPresets = `
presets:
- name: monitoring
  description: Prometheus in namespace monitoring
  from:
  - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}
    podSelector: {matchLabels: {app.kubernetes.io/name: prometheus}}
- name: legacy-lan
  description: an office network written with host bits, which NetworkPolicy rejects
  from:
  - ipBlock: {cidr: 10.0.0.1/8}
`

var (
	controlPlane *localcp.ControlPlane
	k8sClient    client.WithWatch
	// managerWrites counts the write requests (POST, PUT, PATCH, DELETE)
	// the running manager sends to the API server.
	managerWrites atomic.Int64
	// reconciler is a second instance wired to the manager's cache, for
	// calling Reconcile directly.
	reconcilerCache client.Reader
	// testDetector is the running manager's CNI detector.
	testDetector *controller.CNIDetector
	cancel       context.CancelFunc
	scheme       = localcp.Scheme()
)

func TestController(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Controller Suite")
}

var _ = BeforeSuite(func() {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	var err error
	controlPlane, err = localcp.Start(localcp.Options{
		CRDDirectoryPaths: []string{filepath.Join("..", "..", "config", "crd", "bases")},
		GarbageCollector:  true,
	})
	Expect(err).NotTo(HaveOccurred())
	cfg := controlPlane.Config
	k8sClient, err = client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())

	managerCfg := rest.CopyConfig(cfg)
	managerCfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(req *http.Request) (*http.Response, error) {
			switch req.Method {
			case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
				managerWrites.Add(1)
			}
			return rt.RoundTrip(req)
		})
	}
	mgr, err := ctrl.NewManager(managerCfg, ctrl.Options{
		Scheme:                 scheme,
		Cache:                  controller.CacheOptions(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
	})
	Expect(err).NotTo(HaveOccurred())
	operatorConfig, err := config.Parse([]byte(adminPresets))
	Expect(err).NotTo(HaveOccurred())
	presets, err := operatorConfig.Catalog()
	Expect(err).NotTo(HaveOccurred())
	testDetector = &controller.CNIDetector{}
	Expect(testDetector.SetupWithManager(mgr)).To(Succeed())
	Expect((&controller.WorkloadIsolationReconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		// A short window, so that the contested-policy spec need not wait
		// a minute for the resource to turn healthy again.
		ContestWindow: 4 * time.Second,
		Presets:       presets,
		Recorder:      mgr.GetEventRecorder("isolator"),
		CNI:           testDetector,
	}).SetupWithManager(mgr)).To(Succeed())
	reconcilerCache = mgr.GetClient()
	testPresets = presets

	var ctx context.Context
	ctx, cancel = context.WithCancel(context.Background())
	go func() {
		defer GinkgoRecover()
		Expect(mgr.Start(ctx)).To(Succeed())
	}()
	Expect(mgr.GetCache().WaitForCacheSync(ctx)).To(BeTrue())
})

var _ = AfterSuite(func() {
	if cancel != nil {
		cancel()
	}
	if controlPlane != nil {
		Expect(controlPlane.Stop()).To(Succeed())
	}
})

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// settle is how long a test watches for writes that should not happen.
const settle = 2 * time.Second
