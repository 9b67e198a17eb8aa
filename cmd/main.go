// Command manager runs the Isolator operator.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/config"
	"github.com/isolator-dev/isolator/internal/controller"
)

type options struct {
	metricsAddr          string
	probeAddr            string
	configPath           string
	leaderElect          bool
	leaderElectNamespace string
	cniName              string
	cniEnforces          string
	cniNamespaces        string
	qps                  float64
	burst                int
	workers              int
	pprofAddr            string
	watchNamespaces      string
}

func main() {
	var o options
	flag.StringVar(&o.metricsAddr, "metrics-bind-address", ":8080", "Address of the Prometheus metrics endpoint; 0 disables it.")
	flag.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz endpoints; 0 disables them.")
	flag.StringVar(&o.configPath, "config", "", "Operator configuration file (presets, cni); empty uses the built-in presets and CNI detection.")
	flag.BoolVar(&o.leaderElect, "leader-elect", false, "Elect a leader, so that only one of several replicas reconciles at a time.")
	flag.StringVar(&o.leaderElectNamespace, "leader-election-namespace", "", "Namespace of the leader election Lease; defaults to the pod's namespace.")
	flag.StringVar(&o.cniName, "cni-name", "", "Declare the cluster's CNI instead of detecting it (wins over detection and the configuration file).")
	flag.StringVar(&o.cniEnforces, "cni-enforces", "", "With --cni-name: whether that CNI enforces NetworkPolicy (true, false; empty means unknown).")
	flag.StringVar(&o.cniNamespaces, "cni-namespaces", strings.Join(controller.DefaultCNINamespaces, ","), "Namespaces whose DaemonSets and ConfigMaps CNI detection reads.")
	flag.Float64Var(&o.qps, "kube-api-qps", 50, "Requests per second the operator may send to the API server.")
	flag.IntVar(&o.burst, "kube-api-burst", 100, "Burst of requests above --kube-api-qps.")
	flag.IntVar(&o.workers, "max-concurrent-reconciles", 8, "WorkloadIsolations reconciled in parallel.")
	flag.StringVar(&o.pprofAddr, "pprof-bind-address", "", "Address of the pprof endpoint; empty disables it.")
	flag.StringVar(&o.watchNamespaces, "watch-namespaces", "", "Comma-separated namespaces whose WorkloadIsolations are reconciled; empty means all.")
	opts := zap.Options{}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))

	if err := run(o); err != nil {
		ctrl.Log.Error(err, "manager failed")
		os.Exit(1)
	}
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
	detector := &controller.CNIDetector{Namespaces: strings.Split(o.cniNamespaces, ",")}
	if declaredCNI != nil {
		detector.Override = declaredCNI.Result()
	}

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(isolationv1alpha1.AddToScheme(scheme))

	restConfig, err := ctrl.GetConfig()
	if err != nil {
		return err
	}
	restConfig.QPS, restConfig.Burst = float32(o.qps), o.burst
	cacheOptions := controller.CacheOptions()
	if o.watchNamespaces != "" {
		cacheOptions.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range strings.Split(o.watchNamespaces, ",") {
			cacheOptions.DefaultNamespaces[strings.TrimSpace(ns)] = cache.Config{}
		}
	}
	mgr, err := ctrl.NewManager(restConfig, ctrl.Options{
		Scheme:                  scheme,
		Cache:                   cacheOptions,
		Metrics:                 metricsserver.Options{BindAddress: o.metricsAddr},
		HealthProbeBindAddress:  o.probeAddr,
		PprofBindAddress:        o.pprofAddr,
		LeaderElection:          o.leaderElect,
		LeaderElectionID:        "isolator.isolation.isolator.dev",
		LeaderElectionNamespace: o.leaderElectNamespace,
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
		Client:   mgr.GetClient(),
		Presets:  presets,
		Recorder: mgr.GetEventRecorder("isolator"),
		CNI:      detector,
		Workers:  o.workers,
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up controller: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	// Ready once the informers have synced, so that a rollout does not
	// report ready before the operator can act.
	if err := mgr.AddReadyzCheck("informers", func(req *http.Request) error {
		if !mgr.GetCache().WaitForCacheSync(req.Context()) {
			return errors.New("informer caches have not synced")
		}
		return nil
	}); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("cni", detector.Classified); err != nil {
		return err
	}
	ctrl.Log.Info("starting manager", "presets", presets.Names())
	return mgr.Start(ctrl.SetupSignalHandler())
}
