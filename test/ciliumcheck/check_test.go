package ciliumcheck

import (
	"encoding/json"
	"log/slog"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"

	"github.com/cilium/cilium/pkg/fqdn/dns"
	"github.com/cilium/cilium/pkg/fqdn/matchpattern"
	ciliumv2 "github.com/cilium/cilium/pkg/k8s/apis/cilium.io/v2"
	k8sutils "github.com/cilium/cilium/pkg/k8s/utils"
	"github.com/cilium/cilium/pkg/labels"
	"github.com/cilium/cilium/pkg/option"
	policytypes "github.com/cilium/cilium/pkg/policy/types"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8slabels "k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/ciliumpolicy"
	"github.com/isolator-dev/isolator/internal/intent"
	"github.com/isolator-dev/isolator/internal/preset"
)

const clusterName = "default"

// parse runs what the agent runs on a CiliumNetworkPolicy it receives:
// sanitation, then the translation into its internal rules.
func parse(t *testing.T, u *unstructured.Unstructured) *ciliumv2.CiliumNetworkPolicy {
	t.Helper()
	data, err := json.Marshal(u.Object)
	if err != nil {
		t.Fatal(err)
	}
	cnp := &ciliumv2.CiliumNetworkPolicy{}
	if err := json.Unmarshal(data, cnp); err != nil {
		t.Fatalf("%s does not decode as Cilium's type: %v", u.GetName(), err)
	}
	return cnp
}

// universe is a small world of namespaces and pods whose labels come from
// few keys and values, so that random selectors often match.
type universe struct {
	namespaces []metav1.ObjectMeta
	pods       []pod
}

type pod struct {
	namespace int
	labels    map[string]string
}

var (
	labelKeys   = []string{"app", "tier", "app.kubernetes.io/name", "team"}
	labelValues = []string{"a", "b", "c"}
	nsNames     = []string{"target", "nginx", "monitoring", "tenant-b"}
)

func randomLabels(r *rand.Rand) map[string]string {
	out := map[string]string{}
	for _, k := range labelKeys {
		if r.IntN(2) == 0 {
			out[k] = labelValues[r.IntN(len(labelValues))]
		}
	}
	return out
}

func newUniverse(r *rand.Rand) universe {
	var u universe
	for _, name := range nsNames {
		l := randomLabels(r)
		l[preset.NamespaceNameLabel] = name
		u.namespaces = append(u.namespaces, metav1.ObjectMeta{Name: name, Labels: l})
	}
	for i := range 40 {
		u.pods = append(u.pods, pod{namespace: i % len(nsNames), labels: randomLabels(r)})
	}
	return u
}

func randomSelector(r *rand.Rand, nsKeys bool) *metav1.LabelSelector {
	s := &metav1.LabelSelector{}
	keys := labelKeys
	if nsKeys {
		keys = append([]string{preset.NamespaceNameLabel}, labelKeys...)
	}
	for range r.IntN(3) {
		k := keys[r.IntN(len(keys))]
		v := labelValues[r.IntN(len(labelValues))]
		if k == preset.NamespaceNameLabel {
			v = nsNames[r.IntN(len(nsNames))]
		}
		switch r.IntN(5) {
		case 0:
			if s.MatchLabels == nil {
				s.MatchLabels = map[string]string{}
			}
			s.MatchLabels[k] = v
		case 1:
			s.MatchExpressions = append(s.MatchExpressions, metav1.LabelSelectorRequirement{Key: k, Operator: metav1.LabelSelectorOpIn, Values: []string{v, labelValues[0]}})
		case 2:
			s.MatchExpressions = append(s.MatchExpressions, metav1.LabelSelectorRequirement{Key: k, Operator: metav1.LabelSelectorOpNotIn, Values: []string{v}})
		case 3:
			s.MatchExpressions = append(s.MatchExpressions, metav1.LabelSelectorRequirement{Key: k, Operator: metav1.LabelSelectorOpExists})
		default:
			s.MatchExpressions = append(s.MatchExpressions, metav1.LabelSelectorRequirement{Key: k, Operator: metav1.LabelSelectorOpDoesNotExist})
		}
	}
	return s
}

func randomPeer(r *rand.Rand) networkingv1.NetworkPolicyPeer {
	switch r.IntN(4) {
	case 0:
		return networkingv1.NetworkPolicyPeer{PodSelector: randomSelector(r, false)}
	case 1:
		return networkingv1.NetworkPolicyPeer{NamespaceSelector: randomSelector(r, true)}
	case 2:
		return networkingv1.NetworkPolicyPeer{NamespaceSelector: randomSelector(r, true), PodSelector: randomSelector(r, false)}
	default:
		return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8", Except: []string{"10.1.0.0/16"}}}
	}
}

// npSelects is NetworkPolicy's meaning of a peer, by the Kubernetes label
// selector library: the independent side of the comparison.
func npSelects(t *testing.T, p networkingv1.NetworkPolicyPeer, policyNS string, ns metav1.ObjectMeta, podLabels map[string]string) bool {
	t.Helper()
	if p.IPBlock != nil {
		return false
	}
	matches := func(s *metav1.LabelSelector, l map[string]string) bool {
		sel, err := metav1.LabelSelectorAsSelector(s)
		if err != nil {
			t.Fatal(err)
		}
		return sel.Matches(k8slabels.Set(l))
	}
	if p.NamespaceSelector == nil {
		if ns.Name != policyNS {
			return false
		}
	} else if !matches(p.NamespaceSelector, ns.Labels) {
		return false
	}
	return p.PodSelector == nil || matches(p.PodSelector, podLabels)
}

// TestHTTPPoliciesAreAcceptedAndSelectLikeNetworkPolicy renders random
// ingress rules with http, has Cilium parse each policy as its agent does,
// and compares, for every pod of a random world, whether Cilium's parsed
// selectors admit it with what the rule's peers mean as NetworkPolicy.
func TestHTTPPoliciesAreAcceptedAndSelectLikeNetworkPolicy(t *testing.T) {
	const scenarios = 500
	r := rand.New(rand.NewPCG(1, 2))
	comparisons, disagreements := 0, 0
	for s := range scenarios {
		world := newUniverse(r)
		var peers []networkingv1.NetworkPolicyPeer
		for range 1 + r.IntN(3) {
			peers = append(peers, randomPeer(r))
		}
		port := intstr.FromInt32(8080)
		if r.IntN(3) == 0 {
			port = intstr.FromString("http")
		}
		in := &intent.Intent{Name: "local-ai", Namespace: "target", UID: "u",
			Target: *randomSelector(r, false),
			Ingress: []intent.Rule{{Name: "gateway", Peers: peers,
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: ptr.To(corev1.ProtocolTCP), Port: &port}},
				HTTP:  []isolationv1alpha1.HTTPRequest{{Method: "POST", Path: "/v1/chat/completions"}, {Path: "/v1/models"}}}}}
		objs, err := ciliumpolicy.HTTP(in)
		if err != nil || len(objs) != 1 {
			t.Fatalf("scenario %d: HTTP = %d objects, %v", s, len(objs), err)
		}
		rules, err := parse(t, objs[0]).Parse(slog.New(slog.DiscardHandler), clusterName)
		if err != nil {
			t.Fatalf("scenario %d: Cilium rejects the policy: %v\n%v", s, err, objs[0].Object)
		}
		for _, w := range world.pods {
			ns := world.namespaces[w.namespace]
			identity := labels.Map2Labels(k8sutils.SanitizePodLabels(w.labels, &ns, "default", clusterName), labels.LabelSourceK8s).LabelArray()
			cilium := false
			for _, ing := range rules[0].Ingress {
				for _, es := range ing.FromEndpoints {
					if policytypes.NewLabelSelector(es).Matches(identity) {
						cilium = true
					}
				}
			}
			want := false
			for _, p := range peers {
				want = want || npSelects(t, p, in.Namespace, ns, w.labels)
			}
			comparisons++
			if cilium != want {
				disagreements++
				if disagreements <= 5 {
					t.Errorf("scenario %d: pod %v in %s (%v): Cilium admits %v, NetworkPolicy %v; peers %+v", s, w.labels, ns.Name, ns.Labels, cilium, want, peers)
				}
			}
		}
	}
	t.Logf("%d scenarios, %d pod comparisons, %d disagreements", scenarios, comparisons, disagreements)
}

// TestPathPatterns checks the rendered path patterns with Go's RE2, the
// syntax Cilium validates and Envoy matches: the exact path, optionally
// with a query string, and nothing else.
func TestPathPatterns(t *testing.T) {
	re := regexp.MustCompile(ciliumpolicy.PathPattern("/v1/chat/completions"))
	for path, want := range map[string]bool{
		"/v1/chat/completions":                    true,
		"/v1/chat/completions?stream=true":        true,
		"/v1/chat/completions/":                   false,
		"/v1/chat/completionsX":                   false,
		"/v1/chat/completions/../../models/apply": false,
		"/models/apply?/v1/chat/completions":      false,
		"/V1/chat/completions":                    false,
		"x/v1/chat/completions":                   false,
		"/v1/chat%2Fcompletions":                  false,
	} {
		if got := re.MatchString(path); got != want {
			t.Errorf("pattern %s on %q = %v, want %v", re, path, got, want)
		}
	}
	odd := regexp.MustCompile(ciliumpolicy.PathPattern("/a.b+(c)$"))
	if !odd.MatchString("/a.b+(c)$") || odd.MatchString("/aXb+(c)$") {
		t.Errorf("pattern %s does not quote the path", odd)
	}
}

// TestRenderedPoliciesPassSanitation runs Cilium's sanitation on the
// policies of the built-in presets: the DNS policy of NodeLocal DNSCache
// and the OpenAI inference allow-list from the built-in ingress-nginx.
func TestRenderedPoliciesPassSanitation(t *testing.T) {
	catalog, err := preset.NewCatalog(mustParse(t))
	if err != nil {
		t.Fatal(err)
	}
	wi := &isolationv1alpha1.WorkloadIsolation{
		ObjectMeta: metav1.ObjectMeta{Name: "local-ai", Namespace: "ai", UID: "u"},
		Spec: isolationv1alpha1.WorkloadIsolationSpec{
			Ingress: []isolationv1alpha1.IngressRule{
				{Name: "gateway", From: []isolationv1alpha1.IngressPeer{{Preset: "ingress-nginx"}},
					Ports: []isolationv1alpha1.Port{{Port: ptr.To(intstr.FromInt32(8080))}},
					HTTP:  &isolationv1alpha1.HTTPAllow{Presets: []string{"openai-inference"}}},
				{Name: "lan", From: []isolationv1alpha1.IngressPeer{{IPBlock: &isolationv1alpha1.IPBlock{CIDR: "192.168.0.0/16", Except: []string{"192.168.1.0/24"}}}},
					Ports: []isolationv1alpha1.Port{{Port: ptr.To(intstr.FromString("http"))}},
					HTTP:  &isolationv1alpha1.HTTPAllow{Requests: []isolationv1alpha1.HTTPRequest{{Method: "GET", Path: "/v1/models"}}}},
			},
			Egress: []isolationv1alpha1.EgressRule{
				{Name: "models", To: []isolationv1alpha1.EgressPeer{{Preset: "huggingface"}}},
				{Name: "api", To: []isolationv1alpha1.EgressPeer{{Hosts: []string{"api.example.com", "*.example.com"}}}},
				{Name: "any-port", To: []isolationv1alpha1.EgressPeer{{Hosts: []string{"cdn.example.com"}}}, Ports: []isolationv1alpha1.Port{{Protocol: "TCP"}}},
			},
		},
	}
	in, err := intent.FromSpec(wi, metav1.LabelSelector{MatchLabels: map[string]string{"app": "local-ai"}}, catalog)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := ciliumpolicy.HTTP(in)
	if err != nil {
		t.Fatal(err)
	}
	dns, err := ciliumpolicy.DNSHost(in)
	if err != nil || dns == nil {
		t.Fatalf("DNSHost = %v, %v", dns, err)
	}
	hosts, err := ciliumpolicy.Hosts(in)
	if err != nil || hosts == nil {
		t.Fatalf("Hosts = %v, %v", hosts, err)
	}
	for _, u := range append(objs, dns, hosts) {
		if _, err := parse(t, u).Parse(slog.New(slog.DiscardHandler), clusterName); err != nil {
			t.Errorf("Cilium rejects %s: %v", u.GetName(), err)
		}
	}
	if len(objs) != 2 {
		t.Fatalf("got %d HTTP policies, want 2", len(objs))
	}

	// Where the L7 proxy is off, the agent refuses the HTTP and host-name
	// policies whole: their traffic stays denied, never allowed at L4.
	option.Config.EnableL7Proxy = false
	defer func() { option.Config.EnableL7Proxy = true }()
	for _, u := range append(objs, hosts) {
		if _, err := parse(t, u).Parse(slog.New(slog.DiscardHandler), clusterName); err == nil || !strings.Contains(err.Error(), "L7 proxy is not enabled") {
			t.Errorf("without the L7 proxy Cilium takes %s: %v", u.GetName(), err)
		}
	}
}

func mustParse(t *testing.T) []preset.Preset {
	t.Helper()
	list, err := preset.Parse(preset.BuiltinYAML())
	if err != nil {
		t.Fatal(err)
	}
	return list
}

// TestHostPatternsMeanOneLabel checks what the docs promise of a host
// pattern with Cilium's own matcher: '*' stands for one label, and
// nothing matches the bare domain or deeper names.
func TestHostPatternsMeanOneLabel(t *testing.T) {
	catalog, err := preset.NewCatalog(mustParse(t))
	if err != nil {
		t.Fatal(err)
	}
	hf, _ := catalog.Get("huggingface")
	match := func(name string) bool {
		for _, h := range hf.Hosts {
			re, err := matchpattern.Validate(matchpattern.Sanitize(h))
			if err != nil {
				t.Fatalf("Cilium rejects pattern %q: %v", h, err)
			}
			if re.MatchString(dns.FQDN(name)) {
				return true
			}
		}
		return false
	}
	for name, want := range map[string]bool{
		"huggingface.co":          true,
		"cdn-lfs.huggingface.co":  true,
		"cdn-lfs-us-1.hf.co":      true,
		"cas-bridge.xethub.hf.co": true,
		"transfer.xethub.hf.co":   true,
		"a.b.cdn-lfs.hf.co":       false,
		"huggingface.co.evil.com": false,
		"evilhuggingface.co":      false,
		"hf.co.example":           false,
		"s3.amazonaws.com":        false,
	} {
		if got := match(name); got != want {
			t.Errorf("preset huggingface on %s = %v, want %v", name, got, want)
		}
	}
}
