package controller

import (
	"reflect"
	"testing"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
)

// A namespace event concerns the isolations that report an exposure and
// those that name the namespace as a presetNamespace, in ingress or egress;
// the index must find exactly those.
func TestNamespaceEventKeys(t *testing.T) {
	wi := func(exposed bool, ingress, egress []string) *isolationv1alpha1.WorkloadIsolation {
		out := &isolationv1alpha1.WorkloadIsolation{}
		for _, ns := range ingress {
			out.Spec.Ingress = append(out.Spec.Ingress, isolationv1alpha1.IngressRule{
				From: []isolationv1alpha1.IngressPeer{{Preset: "ingress-nginx", PresetNamespace: ns}}})
		}
		for _, ns := range egress {
			out.Spec.Egress = append(out.Spec.Egress, isolationv1alpha1.EgressRule{
				To: []isolationv1alpha1.EgressPeer{{Preset: "minio", PresetNamespace: ns}}})
		}
		if exposed {
			out.Status.Exposure = []isolationv1alpha1.Exposure{{Policy: "open"}}
		}
		return out
	}
	for _, tc := range []struct {
		name string
		wi   *isolationv1alpha1.WorkloadIsolation
		want []string
	}{
		{"nothing concerns it", wi(false, []string{""}, nil), nil},
		{"an exposure", wi(true, nil, nil), []string{exposedKey}},
		{"ingress presetNamespace", wi(false, []string{"nginx"}, nil), []string{presetNamespaceKey("nginx")}},
		{"egress presetNamespace", wi(false, nil, []string{"storage"}), []string{presetNamespaceKey("storage")}},
		{"both, once each", wi(true, []string{"shared", "shared"}, []string{"shared"}),
			[]string{exposedKey, presetNamespaceKey("shared")}},
	} {
		if got := namespaceEventKeys(tc.wi); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}
