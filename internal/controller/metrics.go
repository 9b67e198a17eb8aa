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

// cniClassified is 0 until this process has classified the cluster's CNI,
// then 1. Only the leader classifies (standbys stay at 0), and until then it
// writes no status: alert when no replica reaches 1.
var cniClassified = prometheus.NewGauge(prometheus.GaugeOpts{
	Name: "isolator_cni_classified",
	Help: "1 once this replica has classified the cluster's CNI (only the leader does), 0 before.",
})

func init() {
	metrics.Registry.MustRegister(cniInfo, cniClassified)
}

func recordCNIMetric(r *cni.Result) {
	cniClassified.Set(1)
	cniInfo.Reset()
	cniInfo.WithLabelValues(r.Name, r.Version, string(r.Enforces), r.Source).Set(1)
}
