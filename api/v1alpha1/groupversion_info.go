// Package v1alpha1 contains the v1alpha1 API of the isolation.isolator.dev
// group: the WorkloadIsolation resource.
//
// +kubebuilder:object:generate=true
// +groupName=isolation.isolator.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of this API.
	GroupVersion = schema.GroupVersion{Group: "isolation.isolator.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the types of this API with a scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the types of this API to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &WorkloadIsolation{}, &WorkloadIsolationList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
