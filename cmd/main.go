// Command manager runs the Isolator operator.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/leaderelection"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	anpv1alpha1 "sigs.k8s.io/network-policy-api/apis/v1alpha1"
	cnpv1alpha2 "sigs.k8s.io/network-policy-api/apis/v1alpha2"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/adminpolicy"
	"github.com/isolator-dev/isolator/internal/config"
	"github.com/isolator-dev/isolator/internal/controller"
)

type options struct {
	metricsAddr          string
	metricsSecure        bool
	enableHTTP2          bool
	probeAddr            string
	configPath           string
	leaderElect          bool
	leaderElectNamespace string
	leaseDuration        time.Duration
	renewDeadline        time.Duration
	retryPeriod          time.Duration
	cniName              string
	cniEnforces          string
	cniNamespaces        string
	qps                  float64
	burst                int
	workers              int
	pprofAddr            string
	resync               time.Duration
	watchNamespaces      string
	adminPriorities      string
}

func main() {
	var o options
	flag.StringVar(&o.metricsAddr, "metrics-bind-address", ":8443", "Address of the Prometheus metrics endpoint; 0 disables it.")
	flag.BoolVar(&o.metricsSecure, "metrics-secure", true,
		"Serve metrics over HTTPS to clients that the API server authenticates (TokenReview) and authorizes for GET /metrics (SubjectAccessReview); false serves plain HTTP to anyone, for local runs only.")
	flag.BoolVar(&o.enableHTTP2, "enable-http2", false, "Offer HTTP/2 on the metrics endpoint (off: HTTP/1.1 only, against HTTP/2 stream attacks).")
	flag.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz endpoints; 0 disables them.")
	flag.StringVar(&o.configPath, "config", "", "Operator configuration file (presets, cni); empty uses the built-in presets and CNI detection.")
	flag.BoolVar(&o.leaderElect, "leader-elect", false, "Elect a leader, so that only one of several replicas reconciles at a time.")
	flag.StringVar(&o.leaderElectNamespace, "leader-election-namespace", "", "Namespace of the leader election Lease; defaults to the pod's namespace.")
	flag.DurationVar(&o.leaseDuration, "leader-elect-lease-duration", 15*time.Second,
		"How long standbys wait after the leader's last renewal before they take over a lease that was not released (leader killed).")
	flag.DurationVar(&o.renewDeadline, "leader-elect-renew-deadline", 10*time.Second,
		"How long the leader keeps retrying to renew its lease before it gives up leadership; below --leader-elect-lease-duration.")
	flag.DurationVar(&o.retryPeriod, "leader-elect-retry-period", 2*time.Second,
		"How often candidates try to acquire, and the leader to renew, the lease; --leader-elect-renew-deadline must exceed 1.2 times it.")
	flag.StringVar(&o.cniName, "cni-name", "", "Declare the cluster's CNI instead of detecting it (wins over detection and the configuration file).")
	flag.StringVar(&o.cniEnforces, "cni-enforces", "", "With --cni-name: whether that CNI enforces NetworkPolicy (true, false; empty means unknown).")
	flag.StringVar(&o.cniNamespaces, "cni-namespaces", strings.Join(controller.DefaultCNINamespaces, ","), "Comma-separated namespaces whose DaemonSets and ConfigMaps CNI detection reads (it needs list and watch of ConfigMaps in each); must not be empty.")
	flag.Float64Var(&o.qps, "kube-api-qps", 50, "Requests per second the operator may send to the API server.")
	flag.IntVar(&o.burst, "kube-api-burst", 100, "Burst of requests above --kube-api-qps.")
	flag.IntVar(&o.workers, "max-concurrent-reconciles", 8, "WorkloadIsolations reconciled in parallel.")
	flag.StringVar(&o.pprofAddr, "pprof-bind-address", "", "Address of the pprof endpoint; empty disables it.")
	flag.DurationVar(&o.resync, "resync-interval", controller.DefaultResync,
		"How often a WorkloadIsolation is reconciled again when nothing happened, as a backstop for missed events (plus up to 10% jitter); it writes nothing when nothing changed; 0 disables it.")
	flag.StringVar(&o.watchNamespaces, "watch-namespaces", "", "Comma-separated namespaces whose WorkloadIsolations are reconciled; empty means all.")
	opts := zap.Options{}
	flag.StringVar(&o.adminPriorities, "admin-priorities", adminpolicy.DefaultPriorities.String(),
		"Range of admin-tier priorities (first-last, within 0-1000; lower comes first) the guard's AdminNetworkPolicies and ClusterNetworkPolicies take, one each.")
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))
	setMemoryLimit()

	if err := run(o); err != nil {
		ctrl.Log.Error(err, "manager failed")
		os.Exit(1)
	}
}

// memoryLimitRatio is the share of the container's memory limit the Go
// runtime keeps to: the rest is for what the runtime does not count (the
// binary's pages, for one), so that RSS stays below the limit.
const memoryLimitRatio = 0.85

// setMemoryLimit sets the Go runtime's soft memory limit to
// memoryLimitRatio of the container's memory limit (its cgroup's), and follows it when the pod is
// resized, so that the garbage collector keeps the heap below it instead of
// letting the process be killed for memory it no longer uses. GOMEMLIMIT,
// when set, wins; AUTOMEMLIMIT sets another ratio or "off". Without a limit
// nothing changes. The library logs what it did, and why not.
func setMemoryLimit() {
	logger := slog.New(logr.ToSlogHandler(ctrl.Log.WithName("memlimit")))
	if _, err := memlimit.Set(memlimit.WithLogger(logger), memlimit.WithRatio(memoryLimitRatio)); err != nil {
		return // no readable limit (logged): nothing to follow either
	}
	if _, set := os.LookupEnv("GOMEMLIMIT"); set || os.Getenv("AUTOMEMLIMIT") == "off" {
		return
	}
	_, _ = memlimit.Set(memlimit.WithLogger(logger), memlimit.WithRatio(memoryLimitRatio),
		memlimit.WithRefreshInterval(context.Background(), time.Minute))
}

// cniOverride returns the CNI declared by flags or, failing that, by the
// configuration file; nil means detect.
func cniOverride(o options, cfg config.Config) (*config.CNI, error) {
	if o.cniName == "" {
		if o.cniEnforces != "" {
			return nil, errors.New("--cni-enforces needs --cni-name")
		}
		return cfg.CNI, nil
	}
	declared := &config.CNI{Name: o.cniName}
	if o.cniEnforces != "" {
		enforces, err := strconv.ParseBool(o.cniEnforces)
		if err != nil {
			return nil, fmt.Errorf("--cni-enforces=%q: want true or false", o.cniEnforces)
		}
		declared.EnforcesNetworkPolicy = &enforces
	}
	return declared, nil
}

// namespaceList parses a comma-separated list of namespace names; an empty
// value is an empty list, an empty or invalid entry an error.
func namespaceList(flagName, value string) ([]string, error) {
	if strings.TrimSpace(value) == "" {
		return nil, nil
	}
	var out []string
	for _, ns := range strings.Split(value, ",") {
		ns = strings.TrimSpace(ns)
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			return nil, fmt.Errorf("%s=%q: namespace %q: %s", flagName, value, ns, strings.Join(errs, "; "))
		}
		if !slices.Contains(out, ns) {
			out = append(out, ns)
		}
	}
	return out, nil
}

// detectionNamespaces returns the namespaces CNI detection reads. Empty is an
// error, never "every namespace": the operator is granted ConfigMaps only in
// the namespaces it names.
func detectionNamespaces(o options) ([]string, error) {
	namespaces, err := namespaceList("--cni-namespaces", o.cniNamespaces)
	if err != nil {
		return nil, err
	}
	if len(namespaces) == 0 {
		return nil, fmt.Errorf("--cni-namespaces is empty: name the namespaces CNI detection reads (default %s)",
			strings.Join(controller.DefaultCNINamespaces, ","))
	}
	return namespaces, nil
}

// metricsOptions serves the metrics as kubebuilder scaffolds do: over HTTPS
// (a self-signed certificate generated at start), authenticated and
// authorized by the API server, so that only subjects granted GET on the
// /metrics URL (the metrics-reader ClusterRole) can read them.
func metricsOptions(o options) metricsserver.Options {
	opts := metricsserver.Options{BindAddress: o.metricsAddr, SecureServing: o.metricsSecure}
	if !o.metricsSecure {
		return opts
	}
	opts.FilterProvider = filters.WithAuthenticationAndAuthorization
	if !o.enableHTTP2 {
		opts.TLSOpts = []func(*tls.Config){func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }}
	}
	return opts
}

// checkLeaseTimings rejects leader election timings that client-go's
// leader elector would refuse only once the manager starts.
func checkLeaseTimings(o options) error {
	switch {
	case o.retryPeriod <= 0:
		return fmt.Errorf("--leader-elect-retry-period=%s: want a positive duration", o.retryPeriod)
	case o.renewDeadline <= time.Duration(leaderelection.JitterFactor*float64(o.retryPeriod)):
		return fmt.Errorf("--leader-elect-renew-deadline=%s must be longer than %.1f × --leader-elect-retry-period=%s",
			o.renewDeadline, leaderelection.JitterFactor, o.retryPeriod)
	case o.leaseDuration <= o.renewDeadline:
		return fmt.Errorf("--leader-elect-lease-duration=%s must be longer than --leader-elect-renew-deadline=%s", o.leaseDuration, o.renewDeadline)
	}
	return nil
}

// resyncSetting maps --resync-interval to the reconciler's setting, where a
// negative interval disables the resync (0 there means the default).
func resyncSetting(flagValue time.Duration) time.Duration {
	if flagValue <= 0 {
		return -1
	}
	return flagValue
}

func run(o options) error {
	cfg, err := config.Load(o.configPath)
	if err != nil {
		return err
	}
	presets, err := cfg.Catalog()
	if err != nil {
		return fmt.Errorf("%s: %w", o.configPath, err)
	}
	declaredCNI, err := cniOverride(o, cfg)
	if err != nil {
		return err
	}
	if err := checkLeaseTimings(o); err != nil {
		return err
	}
	cniNamespaces, err := detectionNamespaces(o)
	if err != nil {
		return err
	}
	watchNamespaces, err := namespaceList("--watch-namespaces", o.watchNamespaces)
	if err != nil {
		return err
	}
	adminPriorities, err := adminpolicy.ParsePriorities(o.adminPriorities)
	if err != nil {
		return fmt.Errorf("--admin-priorities: %w", err)
	}
	detector := &controller.CNIDetector{Namespaces: cniNamespaces}
	if declaredCNI != nil {
		detector.Override = declaredCNI.Result()
	}

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(isolationv1alpha1.AddToScheme(scheme))
	utilruntime.Must(anpv1alpha1.Install(scheme))
	utilruntime.Must(cnpv1alpha2.Install(scheme))
	utilruntime.Must(cnpv1beta1.Install(scheme))

	restConfig, err := ctrl.GetConfig()
	if err != nil {
		return err
	}
	restConfig.QPS, restConfig.Burst = float32(o.qps), o.burst
	cacheOptions := controller.CacheOptions()
	if len(watchNamespaces) > 0 {
		cacheOptions.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range watchNamespaces {
			cacheOptions.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	mgr, err := ctrl.NewManager(restConfig, ctrl.Options{
		Scheme:                  scheme,
		Cache:                   cacheOptions,
		Metrics:                 metricsOptions(o),
		HealthProbeBindAddress:  o.probeAddr,
		PprofBindAddress:        o.pprofAddr,
		LeaderElection:          o.leaderElect,
		LeaderElectionID:        "isolator.isolation.isolator.dev",
		LeaderElectionNamespace: o.leaderElectNamespace,
		LeaseDuration:           &o.leaseDuration,
		RenewDeadline:           &o.renewDeadline,
		RetryPeriod:             &o.retryPeriod,
		// The new leader starts at once when the old one shuts down cleanly.
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}
	if err := detector.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up CNI detection: %w", err)
	}
	if err := (&controller.WorkloadIsolationReconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Presets:   presets,
		Recorder:  mgr.GetEventRecorder("isolator"),
		CNI:       detector,
		Workers:   o.workers,
		Resync:    resyncSetting(o.resync),

		AdminPriorities: adminPriorities,
		WatchNamespaces: watchNamespaces,
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up controller: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	// Ready once the informers have synced: this process can serve. Leader
	// and standbys alike, so that a rolling upgrade can bring up the new
	// pod while the old one still holds the lease. Whether the leader has
	// classified the CNI yet is the isolator_cni_classified metric.
	if err := mgr.AddReadyzCheck("informers", func(req *http.Request) error {
		if !mgr.GetCache().WaitForCacheSync(req.Context()) {
			return errors.New("informer caches have not synced")
		}
		return nil
	}); err != nil {
		return err
	}
	ctrl.Log.Info("starting manager", "presets", presets.Names())
	return mgr.Start(ctrl.SetupSignalHandler())
}
