package ciliumcheck

import (
	"encoding/json"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/netip"
	"testing"

	ciliumv2 "github.com/cilium/cilium/pkg/k8s/apis/cilium.io/v2"
	k8sutils "github.com/cilium/cilium/pkg/k8s/utils"
	"github.com/cilium/cilium/pkg/labels"
	"github.com/cilium/cilium/pkg/labelsfilter"
	"github.com/cilium/cilium/pkg/policy/api"
	policyutils "github.com/cilium/cilium/pkg/policy/utils"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8slabels "k8s.io/apimachinery/pkg/labels"

	"github.com/isolator-dev/isolator/internal/analysis"
	"github.com/isolator-dev/isolator/internal/ciliumpolicy"
)

// peer is a source or destination the comparison asks about: a pod, or an
// address outside the pods with the reserved identity Cilium gives it.
type peer struct {
	name     string
	identity labels.LabelArray
	// pod, for a pod: its namespace and labels.
	ns     *metav1.ObjectMeta
	labels map[string]string
	// address, for anything else.
	address netip.Addr
}

func randomKey(r *rand.Rand) string {
	prefixes := []string{"", "k8s:", "any:"}
	p := prefixes[r.IntN(len(prefixes))]
	switch r.IntN(9) {
	case 6:
		// Reserved labels in each spelling Cilium reads.
		odd := []string{"reserved:host", "reserved.host", "$host", "reserved:world", "reserved.world", "reserved:init"}
		return odd[r.IntN(len(odd))]
	case 7:
		// Sources Cilium does not give pods, and a key with a value.
		odd := []string{"K8S:app", "unspec:app", "container:app", "k8s:app=zz", "app=zz"}
		return odd[r.IntN(len(odd))]
	case 8:
		// A label Cilium leaves out of identities.
		return p + "pod-template-hash"
	case 0:
		return p + "io.kubernetes.pod.namespace"
	case 1:
		return p + "io.cilium.k8s.namespace.labels." + labelKeys[r.IntN(len(labelKeys))]
	case 2:
		return p + "io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name"
	default:
		return p + labelKeys[r.IntN(len(labelKeys))]
	}
}

func randomValue(r *rand.Rand, key string) string {
	if len(key) >= len("io.kubernetes.pod.namespace") && key[len(key)-len("io.kubernetes.pod.namespace"):] == "io.kubernetes.pod.namespace" ||
		len(key) >= len("metadata.name") && key[len(key)-len("metadata.name"):] == "metadata.name" {
		return nsNames[r.IntN(len(nsNames))]
	}
	return labelValues[r.IntN(len(labelValues))]
}

func randomCiliumSelector(r *rand.Rand) map[string]any {
	out := map[string]any{}
	if r.IntN(8) == 0 {
		out["matchLabels"] = map[string]any{"reserved:host": ""}
		return out
	}
	ml := map[string]any{}
	var exprs []any
	for range r.IntN(3) {
		k := randomKey(r)
		switch r.IntN(5) {
		case 0, 1:
			ml[k] = randomValue(r, k)
		case 2:
			exprs = append(exprs, map[string]any{"key": k, "operator": "In", "values": []any{randomValue(r, k), randomValue(r, k)}})
		case 3:
			exprs = append(exprs, map[string]any{"key": k, "operator": "NotIn", "values": []any{randomValue(r, k)}})
		default:
			ops := []string{"Exists", "DoesNotExist"}
			exprs = append(exprs, map[string]any{"key": k, "operator": ops[r.IntN(2)]})
		}
	}
	if len(ml) > 0 {
		out["matchLabels"] = ml
	}
	if len(exprs) > 0 {
		out["matchExpressions"] = exprs
	}
	return out
}

// randomRule is one Cilium ingress or egress rule with one kind of peer,
// or none.
func randomRule(r *rand.Rand, ingress bool) map[string]any {
	from := func(kind string) string {
		if ingress {
			return "from" + kind
		}
		return "to" + kind
	}
	rule := map[string]any{}
	switch r.IntN(7) {
	case 0, 1, 2:
		var sels []any
		for range 1 + r.IntN(2) {
			sels = append(sels, randomCiliumSelector(r))
		}
		rule[from("Endpoints")] = sels
	case 3:
		all := []string{"world", "cluster", "host", "all", "remote-node", "kube-apiserver", "world-ipv4"}
		rule[from("Entities")] = []any{all[r.IntN(len(all))]}
	case 4:
		rule[from("CIDRSet")] = []any{map[string]any{"cidr": "8.8.0.0/16", "except": []any{"8.8.8.0/24"}}}
	case 5:
		rule[from("Endpoints")] = []any{} // selects nothing
	default: // no peer: ports only, or nothing at all
	}
	if r.IntN(2) == 0 {
		rule["toPorts"] = []any{map[string]any{"ports": []any{map[string]any{"port": "8080", "protocol": "TCP"}}}}
	}
	return rule
}

func universePeers(w universe) []peer {
	var out []peer
	for i, p := range w.pods {
		ns := w.namespaces[p.namespace]
		podLabels := maps.Clone(p.labels)
		if i%3 == 0 {
			podLabels["pod-template-hash"] = labelValues[i%len(labelValues)]
		}
		// The identity is what the agent keeps of the labels.
		identity, _ := labelsfilter.Filter(labels.Map2Labels(k8sutils.SanitizePodLabels(podLabels, &ns, "default", clusterName), labels.LabelSourceK8s))
		out = append(out, peer{
			name:     "pod " + ns.Name + "/" + string(rune('a'+i)),
			identity: identity.LabelArray(),
			ns:       &w.namespaces[p.namespace], labels: podLabels,
		})
	}
	for _, e := range []struct {
		name string
		addr string
	}{{"world", "8.8.8.8"}, {"world", "8.8.1.1"}, {"host", "10.0.0.1"}, {"remote-node", "10.0.0.2"}, {"kube-apiserver", "10.0.0.3"}} {
		out = append(out, peer{name: e.name + " " + e.addr, address: netip.MustParseAddr(e.addr),
			identity: labels.LabelArray{labels.NewLabel(e.name, "", labels.LabelSourceReserved)}})
	}
	return out
}

// admits is NetworkPolicy's meaning of converted peers, by the Kubernetes
// label selector library and net/netip.
func admits(t *testing.T, peers []networkingv1.NetworkPolicyPeer, p peer) bool {
	for _, np := range peers {
		if np.IPBlock != nil {
			if !p.address.IsValid() {
				continue
			}
			in := netip.MustParsePrefix(np.IPBlock.CIDR).Contains(p.address)
			for _, e := range np.IPBlock.Except {
				in = in && !netip.MustParsePrefix(e).Contains(p.address)
			}
			if in {
				return true
			}
			continue
		}
		if p.ns == nil {
			continue
		}
		nsLabels := k8slabels.Merge(p.ns.Labels, k8slabels.Set{"kubernetes.io/metadata.name": p.ns.Name})
		nsSel, err := metav1.LabelSelectorAsSelector(np.NamespaceSelector)
		if err != nil {
			t.Fatalf("converted namespace selector %v: %v", np.NamespaceSelector, err)
		}
		podSel, err := metav1.LabelSelectorAsSelector(np.PodSelector)
		if err != nil {
			t.Fatalf("converted pod selector %v: %v", np.PodSelector, err)
		}
		if nsSel.Matches(nsLabels) && (np.PodSelector == nil || podSel.Matches(k8slabels.Set(p.labels))) {
			return true
		}
	}
	return false
}

// TestWideningsNeverMissWhatCiliumAdmits generates Cilium policies written
// by someone else, has Cilium parse them and compute what each rule
// admits at L3 (its selectors matched against the identities of pods and
// of reserved peers, as the agent's selector cache would), and checks that
// the analysis's reading of them admits at least as much for every target
// pod Cilium's subject selects: no false negatives. It reports how much
// more the reading admits (the price of rounding up).
func TestWideningsNeverMissWhatCiliumAdmits(t *testing.T) {
	if err := labelsfilter.ParseLabelPrefixCfg(slog.New(slog.DiscardHandler), nil, nil, ""); err != nil {
		t.Fatal(err)
	}
	// With a cluster name, Cilium adds its cluster to every peer, which
	// reserved identities lack; without one (policy-default-local-cluster
	// off), unscoped peers match the world and the nodes too.
	for _, cluster := range []string{clusterName, ""} {
		t.Run("cluster "+cluster, func(t *testing.T) { wideningsNeverMiss(t, cluster) })
	}
}

func wideningsNeverMiss(t *testing.T, cluster string) {
	const scenarios = 1500
	r := rand.New(rand.NewPCG(7, 11))
	var checked, ciliumAdmits, extra, misses, rejected, selected int
	for s := range scenarios {
		world := newUniverse(r)
		peers := universePeers(world)
		clusterwide := r.IntN(3) == 0
		spec := map[string]any{"endpointSelector": randomCiliumSelector(r)}
		var ingress, egress []any
		for range 1 + r.IntN(2) {
			ingress = append(ingress, randomRule(r, true))
		}
		for range r.IntN(2) {
			egress = append(egress, randomRule(r, false))
		}
		spec["ingress"] = ingress
		if len(egress) > 0 {
			spec["egress"] = egress
		}
		u := unstructured.Unstructured{Object: map[string]any{"apiVersion": "cilium.io/v2", "spec": spec}}
		u.SetName("foreign")
		if clusterwide {
			u.SetKind("CiliumClusterwideNetworkPolicy")
		} else {
			u.SetKind("CiliumNetworkPolicy")
			u.SetNamespace("target")
		}
		rules, err := parseAny(u, cluster)
		if err != nil {
			rejected++
			continue
		}
		entries := policyutils.RulesToPolicyEntries(rules)
		var targetPods []analysis.Object
		for _, p := range peers {
			if p.ns != nil && p.ns.Name == "target" {
				targetPods = append(targetPods, analysis.Object{Name: p.name, Labels: p.labels})
			}
		}
		var ns, cw []unstructured.Unstructured
		if clusterwide {
			cw = append(cw, u)
		} else {
			ns = append(ns, u)
		}
		got, unanalysed := ciliumpolicy.Widenings(ns, cw, ciliumpolicy.Target{
			Namespace: analysis.Object{Name: "target", Labels: world.namespaces[0].Labels}, Pods: targetPods, Self: "local-ai"})
		if len(unanalysed) > 0 {
			t.Fatalf("scenario %d: unanalysed %v", s, unanalysed)
		}
		for _, subject := range peers {
			if subject.ns == nil || subject.ns.Name != "target" {
				continue
			}
			for _, e := range entries {
				if !e.IsAllow() || !e.Subject.Matches(subject.identity) {
					continue
				}
				selected++
				for _, p := range peers {
					checked++
					cilium := e.L3 != nil && (len(e.L3) == 0 && len(e.L4) > 0 || e.L3.Matches(p.identity))
					mine := false
					for _, w := range got {
						if e.Ingress {
							for _, rule := range w.Ingress {
								mine = mine || admits(t, rule.From, p)
							}
						} else {
							for _, rule := range w.Egress {
								mine = mine || admits(t, rule.To, p)
							}
						}
					}
					switch {
					case cilium && !mine:
						misses++
						if misses <= 5 {
							data, _ := json.Marshal(spec)
							t.Errorf("scenario %d (%s): Cilium admits %s (ingress %v), the analysis does not\nspec: %s\nread as: %+v", s, u.GetKind(), p.name, e.Ingress, data, got)
						}
					case cilium:
						ciliumAdmits++
					case mine:
						extra++
					}
				}
			}
		}
	}
	t.Logf("cluster %q: %d scenarios (%d rejected by Cilium's sanitation), %d rule-subject pairs, %d peer checks: Cilium admits %d, all read; the analysis admits %d more (rounded up); %d missed",
		cluster, scenarios, rejected, selected, checked, ciliumAdmits, extra, misses)
	if selected < scenarios/4 {
		t.Errorf("only %d rule-subject pairs: the generator selects too few target pods to say anything", selected)
	}
}

// parseAny runs the agent's parser on a CiliumNetworkPolicy or a
// CiliumClusterwideNetworkPolicy.
func parseAny(u unstructured.Unstructured, cluster string) (api.Rules, error) {
	data, err := json.Marshal(u.Object)
	if err != nil {
		return nil, err
	}
	if u.GetKind() == "CiliumClusterwideNetworkPolicy" {
		ccnp := &ciliumv2.CiliumClusterwideNetworkPolicy{}
		if err := json.Unmarshal(data, ccnp); err != nil {
			return nil, err
		}
		return ccnp.Parse(slog.New(slog.DiscardHandler), cluster)
	}
	cnp := &ciliumv2.CiliumNetworkPolicy{}
	if err := json.Unmarshal(data, cnp); err != nil {
		return nil, err
	}
	return cnp.Parse(slog.New(slog.DiscardHandler), cluster)
}
