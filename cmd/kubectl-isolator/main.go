// Command kubectl-isolator is a kubectl plugin. Installed on the PATH it runs
// as `kubectl isolator explain NAME [-n NAMESPACE]` and shows every way into
// the pods a WorkloadIsolation protects (which sources reach them on which
// ports, through which NetworkPolicy, and whether that was declared) and,
// when it isolates egress, every way out of them (which destinations they
// reach on which ports).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"text/tabwriter"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	anpv1alpha1 "sigs.k8s.io/network-policy-api/apis/v1alpha1"
	cnpv1alpha2 "sigs.k8s.io/network-policy-api/apis/v1alpha2"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/adminpolicy"
	"github.com/isolator-dev/isolator/internal/analysis"
	"github.com/isolator-dev/isolator/internal/config"
	"github.com/isolator-dev/isolator/internal/policy"
	"github.com/isolator-dev/isolator/internal/preset"
	"github.com/isolator-dev/isolator/internal/status"
)

const usage = `Usage: kubectl isolator explain NAME [-n NAMESPACE] [--kubeconfig FILE] [--config FILE]

Shows which sources can reach the pods of WorkloadIsolation NAME and, when
it isolates egress, which destinations they can reach, on which ports and
through which NetworkPolicy, given every policy in the namespace.
The declared intent is computed from the WorkloadIsolation's spec with the
operator's own builder; a generated policy that differs from it is shown as
drift. Presets an administrator added are read from the operator
configuration file given with --config (the built-in presets need none).
`

func main() {
	if len(os.Args) < 3 || os.Args[1] != "explain" {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	fs := flag.NewFlagSet("explain", flag.ExitOnError)
	namespace := fs.String("n", "", "Namespace of the WorkloadIsolation (default: the kubeconfig context's).")
	kubeconfig := fs.String("kubeconfig", "", "Path of the kubeconfig file (default: $KUBECONFIG or ~/.kube/config).")
	configPath := fs.String("config", "", "The operator configuration file, for presets an administrator added.")
	name := os.Args[2]
	if err := fs.Parse(os.Args[3:]); err != nil {
		os.Exit(2)
	}
	if err := run(name, *namespace, *kubeconfig, *configPath, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		os.Exit(1)
	}
}

func run(name, namespace, kubeconfig, configPath string, w io.Writer) error {
	cfg, err := config.Load(configPath)
	if err != nil {
		return err
	}
	presets, err := cfg.Catalog()
	if err != nil {
		return err
	}
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
	restConfig, err := loader.ClientConfig()
	if err != nil {
		return err
	}
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(isolationv1alpha1.AddToScheme(scheme))
	utilruntime.Must(anpv1alpha1.Install(scheme))
	utilruntime.Must(cnpv1alpha2.Install(scheme))
	utilruntime.Must(cnpv1beta1.Install(scheme))
	c, err := client.New(restConfig, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	return explain(context.Background(), c, presets, namespace, name, w)
}

// target returns the resolved target selector: the one the operator
// recorded in status, else spec.target.podSelector.
func target(wi *isolationv1alpha1.WorkloadIsolation) (*metav1.LabelSelector, error) {
	switch {
	case wi.Status.TargetSelector != nil:
		return wi.Status.TargetSelector, nil
	case wi.Spec.Target.PodSelector != nil:
		return wi.Spec.Target.PodSelector.LabelSelector(), nil
	}
	return nil, errors.New("the WorkloadIsolation's workloadRef has not been resolved yet; is the operator running?")
}

// explain prints the paths into the target of a WorkloadIsolation. The
// declared intent is computed from the spec with the operator's builder, not
// taken from the cluster: a generated policy someone widened is shown as an
// undeclared path and as drift.
func explain(ctx context.Context, c client.Reader, presets preset.Catalog, namespace, name string, w io.Writer) error {
	wi := &isolationv1alpha1.WorkloadIsolation{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, wi); err != nil {
		return err
	}
	targetSelector, err := target(wi)
	if err != nil {
		return err
	}
	declared, err := policy.Build(wi, *targetSelector, presets)
	if err != nil {
		return fmt.Errorf("computing the declared policies from the spec: %w", err)
	}
	in := analysis.Input{Namespace: namespace, Self: name, Declared: declared}
	pods := &corev1.PodList{}
	if err := c.List(ctx, pods, client.InNamespace(namespace)); err != nil {
		return err
	}
	selector, err := metav1.LabelSelectorAsSelector(targetSelector)
	if err != nil {
		return err
	}
	for _, p := range pods.Items {
		if selector.Matches(labels.Set(p.Labels)) {
			in.TargetPods = append(in.TargetPods, analysis.Object{Name: p.Name, Labels: p.Labels})
		}
	}
	// Namespaces only tell open widenings from latent ones; a user whose
	// rights end at the namespace still gets the rest.
	namespaces := &corev1.NamespaceList{}
	namespacesKnown := true
	if err := c.List(ctx, namespaces); apierrors.IsForbidden(err) {
		namespacesKnown = false
	} else if err != nil {
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
	in.OwnerOf = analysis.ControllingIsolation
	adminReadable, err := readAdminTier(ctx, c, wi, &in)
	if err != nil {
		return err
	}

	egressDeclared := wi.Spec.Egress != nil
	var out strings.Builder
	fmt.Fprintf(&out, "WorkloadIsolation %s/%s: target %s, %d pods\n\n", namespace, name, status.FormatTarget(targetSelector), len(in.TargetPods))
	paths := analysis.Explain(in)
	out.WriteString("Ways into the target pods:\n")
	if err := pathTable(&out, "SOURCES", paths, analysis.Ingress); err != nil {
		return err
	}
	if egressDeclared {
		out.WriteString("\nWays out of the target pods:\n")
		if err := pathTable(&out, "DESTINATIONS", paths, analysis.Egress); err != nil {
			return err
		}
	} else {
		out.WriteString("\nWays out of the target pods: all destinations, all ports (egress is not isolated: the spec declares no egress)\n")
	}
	if drift := drift(wi, declared, policies.Items); len(drift) > 0 {
		out.WriteString("\nDrift from the spec:\n")
		for _, d := range drift {
			out.WriteString("  - " + d + "\n")
		}
	}
	in.Budget = math.MaxInt
	report := analysis.Analyze(in)
	if !namespacesKnown {
		out.WriteString("\n(You may not list namespaces: whether a widening admits sources now or only once a namespace appears is not shown.)\n")
	}
	if !adminReadable {
		out.WriteString("\n(You may not list admin-tier policies: ways through AdminNetworkPolicies or ClusterNetworkPolicies are not shown.)\n")
	}
	switch {
	case report.Isolated() && egressDeclared:
		out.WriteString("\nIsolated: only the declared sources can reach the target, and it can reach only the declared destinations.\n")
	case report.Isolated():
		out.WriteString("\nIsolated: only the declared sources can reach the target.\n")
	default:
		out.WriteString("\nNot isolated:\n")
		for _, e := range report.Exposures {
			summary := e.Summary
			if !namespacesKnown {
				summary, _, _ = strings.Cut(summary, " (latent")
			}
			out.WriteString("  - " + summary + "\n")
		}
	}
	_, err = io.WriteString(w, out.String())
	return err
}

// readAdminTier adds to in the admin-tier policies that may admit traffic to
// or from the target (see adminpolicy.Widenings), where the cluster serves
// their APIs. It reports false when the user may not list them.
func readAdminTier(ctx context.Context, c client.Reader, wi *isolationv1alpha1.WorkloadIsolation, in *analysis.Input) (bool, error) {
	readable := true
	list := func(l client.ObjectList, kind string) error {
		err := c.List(ctx, l)
		switch {
		case err == nil:
			return nil
		case meta.IsNoMatchError(err) || runtime.IsNotRegisteredError(err):
			return nil // not served: nothing to read
		case apierrors.IsForbidden(err):
			readable = false
			return nil
		}
		return fmt.Errorf("listing %s: %w", kind, err)
	}
	anps, cnps := &anpv1alpha1.AdminNetworkPolicyList{}, &cnpv1alpha2.ClusterNetworkPolicyList{}
	if err := list(anps, "AdminNetworkPolicies"); err != nil {
		return false, err
	}
	if err := c.List(ctx, cnps); meta.IsNoMatchError(err) {
		// Served only as v1beta1 (the same schema).
		beta := &cnpv1beta1.ClusterNetworkPolicyList{}
		if err := list(beta, "ClusterNetworkPolicies"); err != nil {
			return false, err
		}
		for i := range beta.Items {
			u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&beta.Items[i])
			if err != nil {
				return false, err
			}
			var p cnpv1alpha2.ClusterNetworkPolicy
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u, &p); err != nil {
				return false, err
			}
			cnps.Items = append(cnps.Items, p)
		}
	} else if err := list(cnps, "ClusterNetworkPolicies"); err != nil {
		return false, err
	}
	var own *adminpolicy.Guard
	name := adminpolicy.Name(wi.UID)
	for _, p := range anps.Items {
		if p.Name == name && adminpolicy.Owns(p.Name, p.Labels) {
			own = &adminpolicy.Guard{Kind: adminpolicy.AdminNetworkPolicy, Name: p.Name, Priority: p.Spec.Priority}
		}
	}
	for _, p := range cnps.Items {
		if p.Name == name && adminpolicy.Owns(p.Name, p.Labels) {
			own = &adminpolicy.Guard{Kind: adminpolicy.ClusterNetworkPolicy, Name: p.Name, Priority: p.Spec.Priority}
		}
	}
	target := adminpolicy.Target{Namespace: analysis.Object{Name: wi.Namespace}, Pods: in.TargetPods}
	for _, ns := range in.Namespaces {
		if ns.Name == wi.Namespace {
			target.Namespace = ns
		}
	}
	in.Admin = adminpolicy.Widenings(anps.Items, cnps.Items, own, target)
	return readable, nil
}

// pathTable writes the paths of one direction as a table whose peer column
// is titled peers.
func pathTable(w io.Writer, peers string, paths []analysis.Path, dir analysis.Direction) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	rows := []string{"POLICY\tPODS\t" + peers + "\tPORTS\tDECLARED"}
	for _, p := range paths {
		if p.Direction != dir {
			continue
		}
		policy := p.Policy
		if policy == "" {
			policy = "(none)"
		}
		declared := "yes"
		if !p.Declared {
			declared = "NO"
		}
		rows = append(rows, fmt.Sprintf("%s\t%d\t%s\t%s\t%s", policy, p.Pods, p.Peers, p.Ports, declared))
	}
	if _, err := tw.Write([]byte(strings.Join(rows, "\n") + "\n")); err != nil {
		return err
	}
	return tw.Flush()
}

// drift lists the declared policies that are missing from the cluster, held
// by an object the WorkloadIsolation does not own, or different from the spec.
func drift(wi *isolationv1alpha1.WorkloadIsolation, declared, inCluster []networkingv1.NetworkPolicy) []string {
	byName := map[string]*networkingv1.NetworkPolicy{}
	for i := range inCluster {
		byName[inCluster[i].Name] = &inCluster[i]
	}
	var out []string
	for i := range declared {
		want := &declared[i]
		have, ok := byName[want.Name]
		switch {
		case wi.Spec.Mode == isolationv1alpha1.ModeAudit:
		case !ok:
			out = append(out, want.Name+": missing")
		case !policy.Owned(have, wi):
			out = append(out, want.Name+": held by an object this WorkloadIsolation did not create")
		case !policy.UpToDate(have, want):
			out = append(out, want.Name+": differs from the spec (the operator repairs it)")
		}
	}
	return out
}
