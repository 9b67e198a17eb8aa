package controller

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/isolator-dev/isolator/internal/cni"
)

// cniInfo exposes the current CNI classification for dashboards and alerts:
// one series with value 1, e.g.
// isolator_cni_info{cni="cilium",version="v1.16.3",enforces_network_policy="True",source="Detected"} 1
var cniInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Name: "isolator_cni_info",
	Help: "The cluster's CNI as Isolator sees it, and whether it enforces NetworkPolicy (True, False, Unknown).",
}, []string{"cni", "version", "enforces_network_policy", "source"})

func init() {
	metrics.Registry.MustRegister(cniInfo)
}

func recordCNIMetric(r *cni.Result) {
	cniInfo.Reset()
	cniInfo.WithLabelValues(r.Name, r.Version, string(r.Enforces), r.Source).Set(1)
}
