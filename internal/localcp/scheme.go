package localcp

import (
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	anpv1alpha1 "sigs.k8s.io/network-policy-api/apis/v1alpha1"
	cnpv1alpha2 "sigs.k8s.io/network-policy-api/apis/v1alpha2"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
)

// Scheme returns a scheme with the built-in Kubernetes types and the
// isolation API and the admin-tier policy APIs, for clients of the local control plane.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(isolationv1alpha1.AddToScheme(s))
	utilruntime.Must(anpv1alpha1.Install(s))
	utilruntime.Must(cnpv1alpha2.Install(s))
	utilruntime.Must(cnpv1beta1.Install(s))
	return s
}
