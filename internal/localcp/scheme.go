package localcp

import (
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
)

// Scheme returns a scheme with the built-in Kubernetes types and the
// isolation API, for clients of the local control plane.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(isolationv1alpha1.AddToScheme(s))
	return s
}
