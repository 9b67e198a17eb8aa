// Command kubectl-isolator is a kubectl plugin. Installed on the PATH it runs
// as `kubectl isolator explain NAME [-n NAMESPACE]` and shows every way into
// the pods a WorkloadIsolation protects: which sources reach them on which
// ports, through which NetworkPolicy, and whether that was declared.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/analysis"
)

const usage = `Usage: kubectl isolator explain NAME [-n NAMESPACE] [--kubeconfig FILE]

Shows which sources can reach the pods of WorkloadIsolation NAME, on which
ports and through which NetworkPolicy, given every policy in the namespace.
`

func main() {
	if len(os.Args) < 3 || os.Args[1] != "explain" {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	fs := flag.NewFlagSet("explain", flag.ExitOnError)
	namespace := fs.String("n", "", "Namespace of the WorkloadIsolation (default: the kubeconfig context's).")
	kubeconfig := fs.String("kubeconfig", "", "Path of the kubeconfig file (default: $KUBECONFIG or ~/.kube/config).")
	name := os.Args[2]
	if err := fs.Parse(os.Args[3:]); err != nil {
		os.Exit(2)
	}
	if err := run(name, *namespace, *kubeconfig, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		os.Exit(1)
	}
}

func run(name, namespace, kubeconfig string, w io.Writer) error {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	loader := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{})
	if namespace == "" {
		ns, _, err := loader.Namespace()
		if err != nil {
			return err
		}
		namespace = ns
	}
	cfg, err := loader.ClientConfig()
	if err != nil {
		return err
	}
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(isolationv1alpha1.AddToScheme(scheme))
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	return explain(context.Background(), c, namespace, name, w)
}

// explain prints the paths into the target of a WorkloadIsolation. The
// declared intent is the policies the operator generated for it
// (status.policies), as they are in the cluster.
func explain(ctx context.Context, c client.Reader, namespace, name string, w io.Writer) error {
	wi := &isolationv1alpha1.WorkloadIsolation{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, wi); err != nil {
		return err
	}
	if wi.Status.Target == "" {
		return errors.New("the WorkloadIsolation has no resolved target yet; is the operator running?")
	}
	in := analysis.Input{Namespace: namespace, Self: name}
	pods := &corev1.PodList{}
	if err := c.List(ctx, pods, client.InNamespace(namespace)); err != nil {
		return err
	}
	selector, err := labels.Parse(wi.Status.Target)
	if err != nil {
		selector = labels.Everything() // "(all pods)"
	}
	for _, p := range pods.Items {
		if selector.Matches(labels.Set(p.Labels)) {
			in.TargetPods = append(in.TargetPods, analysis.Object{Name: p.Name, Labels: p.Labels})
		}
	}
	namespaces := &corev1.NamespaceList{}
	if err := c.List(ctx, namespaces); err != nil {
		return err
	}
	for _, ns := range namespaces.Items {
		in.Namespaces = append(in.Namespaces, analysis.Object{Name: ns.Name, Labels: ns.Labels})
	}
	policies := &networkingv1.NetworkPolicyList{}
	if err := c.List(ctx, policies, client.InNamespace(namespace)); err != nil {
		return err
	}
	in.Policies = policies.Items
	declared := map[string]bool{}
	for _, ref := range wi.Status.Policies {
		declared[ref.Name] = true
	}
	for _, p := range policies.Items {
		if declared[p.Name] {
			in.Declared = append(in.Declared, p)
		}
	}
	in.OwnerOf = analysis.ControllingIsolation

	var out strings.Builder
	fmt.Fprintf(&out, "WorkloadIsolation %s/%s: target %s, %d pods\n\n", namespace, name, wi.Status.Target, len(in.TargetPods))
	tw := tabwriter.NewWriter(&out, 0, 8, 2, ' ', 0)
	rows := []string{"POLICY\tPODS\tSOURCES\tPORTS\tDECLARED"}
	for _, p := range analysis.Explain(in) {
		policy := p.Policy
		if policy == "" {
			policy = "(none)"
		}
		declared := "yes"
		if !p.Declared {
			declared = "NO"
		}
		rows = append(rows, fmt.Sprintf("%s\t%d\t%s\t%s\t%s", policy, p.Pods, p.Sources, p.Ports, declared))
	}
	if _, err := tw.Write([]byte(strings.Join(rows, "\n") + "\n")); err != nil {
		return err
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	report := analysis.Analyze(in)
	if report.Isolated() {
		out.WriteString("\nIsolated: only the declared sources can reach the target.\n")
	} else {
		out.WriteString("\nNot isolated:\n")
		for _, e := range report.Exposures {
			out.WriteString("  - " + e.Summary + "\n")
		}
	}
	_, err = io.WriteString(w, out.String())
	return err
}
