package controller

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/isolator-dev/isolator/internal/adminpolicy"
)

// TestAdminServed: which admin-tier APIs count as served, including a
// ClusterNetworkPolicy served only in a version the operator does not read.
func TestAdminServed(t *testing.T) {
	mapper := func(gvks ...schema.GroupVersionKind) meta.RESTMapper {
		var versions []schema.GroupVersion
		for _, gvk := range gvks {
			versions = append(versions, gvk.GroupVersion())
		}
		m := meta.NewDefaultRESTMapper(versions)
		for _, gvk := range gvks {
			m.Add(gvk, meta.RESTScopeRoot)
		}
		return m
	}
	v1beta1 := schema.GroupVersionKind{Group: adminpolicy.CNPGVK.Group, Version: "v1beta1", Kind: adminpolicy.CNPGVK.Kind}
	v1 := schema.GroupVersionKind{Group: adminpolicy.CNPGVK.Group, Version: "v1", Kind: adminpolicy.CNPGVK.Kind}
	for _, c := range []struct {
		name    string
		mapper  meta.RESTMapper
		want    adminpolicy.Served
		version string
	}{
		{"none", mapper(), adminpolicy.Served{}, ""},
		{"both", mapper(adminpolicy.ANPGVK, adminpolicy.CNPGVK, v1beta1), adminpolicy.Served{AdminNetworkPolicy: true, ClusterNetworkPolicy: true}, "v1alpha2"},
		{"ClusterNetworkPolicy v1beta1 only", mapper(v1beta1), adminpolicy.Served{ClusterNetworkPolicy: true}, "v1beta1"},
		{"ClusterNetworkPolicy in an unknown version", mapper(v1), adminpolicy.Served{ClusterNetworkPolicyOtherVersion: true}, ""},
	} {
		got, version, err := adminServed(c.mapper)
		if err != nil || got != c.want || version != c.version {
			t.Errorf("%s: %+v %q, %v; want %+v %q", c.name, got, version, err, c.want, c.version)
		}
	}
}
