package cni

import (
	"slices"
	"strings"
	"testing"
)

func TestCoverageOf(t *testing.T) {
	endpoints := map[string]Endpoint{
		"ready":       {State: "ready", Identity: 51234},
		"no-identity": {State: "ready"},
		"init":        {State: "ready", Identity: 5},
		"waiting":     {State: "waiting-for-identity", Identity: 51234},
		"regen":       {State: "regenerating", Identity: 51234},
		"disconnect":  {State: "disconnecting", Identity: 51234},
	}
	c := CoverageOf([]string{"ready", "no-identity", "init", "waiting", "regen", "disconnect", "missing"}, endpoints)
	if c.Pods != 7 || c.Managed() != 2 || !slices.Equal(c.Unmanaged, []string{"disconnect", "init", "missing", "no-identity", "waiting"}) {
		t.Errorf("coverage %+v", c)
	}
	if c.Summary() != "2/7 target pods managed by Cilium" {
		t.Errorf("summary %q", c.Summary())
	}
	if w := c.Without([]string{"missing", "init"}); w.Pods != 5 || !slices.Equal(w.Unmanaged, []string{"disconnect", "no-identity", "waiting"}) {
		t.Errorf("without ended pods: %+v", w)
	}
	if none := CoverageOf(nil, endpoints); none.Pods != 0 || len(none.Unmanaged) != 0 {
		t.Errorf("no pods: %+v", none)
	}
}

// Cilium maintains CiliumEndpoints unless cilium-config disables the CRD;
// only an enforcing Cilium offers them for coverage.
func TestCiliumEndpoints(t *testing.T) {
	agent := Container{Name: "cilium-agent", Image: "quay.io/cilium/cilium:v1.19.4"}
	ds := DaemonSet{Namespace: "kube-system", Name: "cilium", Containers: []Container{agent}, DesiredNumberScheduled: 1, NumberReady: 1}
	for _, c := range []struct {
		name      string
		data      map[string]string
		endpoints bool
		note      string
	}{
		{"default", nil, true, ""},
		{"disabled", map[string]string{"disable-endpoint-crd": "true"}, false, "maintains no CiliumEndpoints (disable-endpoint-crd=true"},
		{"explicitly enabled", map[string]string{"disable-endpoint-crd": "false"}, true, ""},
		{"not enforcing", map[string]string{"enable-policy": "never"}, false, ""},
	} {
		r := Classify(Facts{DaemonSets: []DaemonSet{ds}, ConfigMaps: []ConfigMap{{Namespace: "kube-system", Name: CiliumConfigMap, Data: c.data}}})
		if r.CiliumEndpoints != c.endpoints || !strings.Contains(r.EndpointsNote, c.note) {
			t.Errorf("%s: CiliumEndpoints=%v note=%q", c.name, r.CiliumEndpoints, r.EndpointsNote)
		}
	}
}
