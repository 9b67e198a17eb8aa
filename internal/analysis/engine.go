package analysis

import (
	"fmt"
	"math/bits"
	"net/netip"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// namespaceNameLabel is set by the API server on every namespace to the
// namespace's name.
const namespaceNameLabel = corev1.LabelMetadataName

// analyzer holds what one analysis computes once and reuses: the declared
// rules in a form that answers containment questions quickly, one compiled
// selector per distinct selector, and the matches of each against the
// namespaces and target pods.
type analyzer struct {
	in     Input
	budget int
	steps  int

	// declared holds the declared rules of each direction.
	declared map[Direction][]*declaredRule
	// exact holds the declared rules, keyed by direction, namespace and
	// content: a rule equal to a declared one is covered without further
	// proof.
	exact map[string]bool
	// egressDeclared is true when a declared policy isolates egress: only
	// then is egress analysed.
	egressDeclared bool

	selectors map[string]*selector
	// compiled remembers the compiled form of each selector object seen.
	compiled map[compiledKey]*selector
	// nsLabels are the labels of in.Namespaces, with the name label the
	// API server sets added where the caller left it out.
	nsLabels []labels.Set
	// podsSelected caches, per policy index, how many target pods the
	// policy selects (-1: not computed yet).
	podsSelected []int
}

type declaredRule struct {
	ports portSet
	every bool // no peers: every source or destination
	peers []declaredPeer
	// ipBlocks holds the rule's ipBlocks by their masked CIDR, and ipBits
	// the distinct prefix lengths among them, ascending: the blocks that
	// may contain a prefix are found by masking it to each length, not by
	// comparing it with every block.
	ipBlocks map[netip.Prefix][]networkingv1.IPBlock
	ipBits   []int
	// byPivot indexes the peers by one In requirement of their pod
	// selector (key, then each value): a pod selector is inside theirs
	// only if it allows no other value for that key. unindexed are the
	// peers whose pod selector has no In requirement.
	byPivot   map[string]map[string][]int
	unindexed []int
}

// index builds byPivot and unindexed.
func (d *declaredRule) index() {
	d.byPivot = map[string]map[string][]int{}
	for i, dp := range d.peers {
		pivot := -1
		if !dp.pods.invalid {
			pivot = slices.IndexFunc(dp.pods.reqs, func(r metav1.LabelSelectorRequirement) bool { return r.Operator == metav1.LabelSelectorOpIn })
		}
		if pivot < 0 {
			d.unindexed = append(d.unindexed, i)
			continue
		}
		r := dp.pods.reqs[pivot]
		if d.byPivot[r.Key] == nil {
			d.byPivot[r.Key] = map[string][]int{}
		}
		for _, v := range r.Values {
			d.byPivot[r.Key][v] = append(d.byPivot[r.Key][v], i)
		}
	}
}

// podCandidates returns the peers whose pod selector may contain pods: a
// superset of those that do.
func (d *declaredRule) podCandidates(pods *selector) []int {
	out := d.unindexed
	if pods.invalid {
		return out
	}
	for key, byValue := range d.byPivot {
		f, ok := pods.keys[key]
		if !ok || len(f.inList) == 0 {
			continue
		}
		if more := byValue[f.inList[0]]; len(more) > 0 {
			out = append(slices.Clip(out), more...)
		}
	}
	return out
}

type declaredPeer struct{ ns, pods *selector }

type compiledKey struct {
	sel       *metav1.LabelSelector
	namespace bool
}

// verdict is the result of comparing a rule or peer with the declared rules.
type verdict struct {
	// covered: proven to admit nothing beyond a declared rule.
	covered bool
	// latent (only when not covered): admits no existing source beyond the
	// declared rules.
	latent bool
}

func newAnalyzer(in Input) *analyzer {
	a := &analyzer{in: in, budget: in.Budget, exact: map[string]bool{}, declared: map[Direction][]*declaredRule{},
		selectors: map[string]*selector{}, compiled: map[compiledKey]*selector{}}
	if a.budget <= 0 {
		a.budget = DefaultBudget
	}
	for _, ns := range in.Namespaces {
		set := labels.Set(ns.Labels)
		if _, ok := set[namespaceNameLabel]; !ok {
			set = labels.Merge(set, labels.Set{namespaceNameLabel: ns.Name})
		}
		a.nsLabels = append(a.nsLabels, set)
	}
	a.podsSelected = make([]int, len(in.Policies))
	for i := range a.podsSelected {
		a.podsSelected[i] = -1
	}
	for i := range in.Declared {
		if isolatesEgress(&in.Declared[i]) {
			a.egressDeclared = true
		}
	}
	for i := range in.Declared {
		p := &in.Declared[i]
		for _, dir := range []Direction{Ingress, Egress} {
			if !isolates(p, dir) {
				continue // admits nothing on every CNI: not part of the intent
			}
			for _, r := range rulesOf(p, dir) {
				a.addDeclared(dir, r, p.Namespace)
			}
		}
	}
	return a
}

// addDeclared records one declared rule of a policy in namespace ns.
func (a *analyzer) addDeclared(dir Direction, r rule, ns string) {
	a.spend(1 + len(r.ports) + len(r.peers))
	a.exact[a.ruleKey(dir, ns, r)] = true
	d := &declaredRule{ports: newPortSet(r.ports), every: len(r.peers) == 0, ipBlocks: map[netip.Prefix][]networkingv1.IPBlock{}}
	for _, peer := range r.peers {
		if peer.IPBlock != nil {
			// A CIDR that cannot be parsed covers nothing.
			if prefix, err := netip.ParsePrefix(peer.IPBlock.CIDR); err == nil {
				prefix = prefix.Masked()
				d.ipBlocks[prefix] = append(d.ipBlocks[prefix], *peer.IPBlock)
				if !slices.Contains(d.ipBits, prefix.Bits()) {
					d.ipBits = append(d.ipBits, prefix.Bits())
				}
			}
			continue
		}
		d.peers = append(d.peers, declaredPeer{
			ns: a.namespaceSelector(peer.NamespaceSelector, ns), pods: a.podSelector(peer.PodSelector),
		})
	}
	slices.Sort(d.ipBits)
	d.index()
	a.declared[dir] = append(a.declared[dir], d)
}

// spend charges evaluation steps against the budget.
func (a *analyzer) spend(n int) { a.steps += n }

func (a *analyzer) exhausted() bool { return a.steps > a.budget }

// ruleKey is a canonical form of a rule in direction dir of a policy in
// namespace ns: two rules with the same key admit the same peers on the
// same ports.
func (a *analyzer) ruleKey(dir Direction, ns string, r rule) string {
	var b strings.Builder
	b.WriteString(string(dir) + "|")
	for _, p := range r.ports {
		fmt.Fprintf(&b, "%s/%s", protocol(p), p.Port.String())
		if p.EndPort != nil {
			fmt.Fprintf(&b, "-%d", *p.EndPort)
		}
		b.WriteByte(',')
	}
	b.WriteString("|peers")
	for _, peer := range r.peers {
		b.WriteByte('\x04')
		if peer.IPBlock != nil {
			b.WriteString(peer.IPBlock.CIDR + " except " + strings.Join(peer.IPBlock.Except, ","))
			continue
		}
		b.WriteString(a.namespaceSelector(peer.NamespaceSelector, ns).key + "\x05" + a.podSelector(peer.PodSelector).key)
	}
	return b.String()
}

// ruleVerdict compares one rule in direction dir of a policy in namespace
// ns with the declared rules of that direction.
func (a *analyzer) ruleVerdict(dir Direction, r rule, ns string) verdict {
	a.spend(1)
	if a.exact[a.ruleKey(dir, ns, r)] {
		return verdict{covered: true}
	}
	var rules []*declaredRule
	for _, d := range a.declared[dir] {
		a.spend(1 + len(r.ports))
		if d.ports.covers(r.ports) {
			rules = append(rules, d)
		}
	}
	if len(r.peers) == 0 {
		// Every peer: only a declared rule that also admits every peer
		// covers it; declared rules always name their peers.
		return verdict{covered: slices.ContainsFunc(rules, func(d *declaredRule) bool { return d.every })}
	}
	out := verdict{covered: true, latent: true}
	for _, peer := range r.peers {
		if a.exhausted() {
			return verdict{}
		}
		v := a.peerVerdict(peer, ns, rules)
		if v.covered {
			continue
		}
		out.covered = false
		if !v.latent {
			out.latent = false
			break // open now: nothing more to learn from this rule
		}
	}
	if out.covered {
		out.latent = false
	}
	return out
}

// peerVerdict compares one peer (source or destination) of a rule with the
// peers of the declared rules whose ports cover the rule's.
func (a *analyzer) peerVerdict(peer networkingv1.NetworkPolicyPeer, ns string, rules []*declaredRule) verdict {
	if peer.IPBlock != nil {
		inner, err := netip.ParsePrefix(peer.IPBlock.CIDR)
		if err != nil {
			return verdict{}
		}
		inner = inner.Masked()
		for _, d := range rules {
			// A declared block contains inner only if its CIDR is inner
			// masked to the block's length.
			for _, bits := range d.ipBits {
				a.spend(1)
				if bits > inner.Bits() {
					break
				}
				outer, err := inner.Addr().Prefix(bits)
				if err != nil {
					continue
				}
				for _, b := range d.ipBlocks[outer] {
					a.spend(1 + len(b.Except)*(1+len(peer.IPBlock.Except)))
					if ipBlockInside(*peer.IPBlock, b) {
						return verdict{covered: true}
					}
				}
			}
		}
		return verdict{}
	}
	nsSel := a.namespaceSelector(peer.NamespaceSelector, ns)
	podSel := a.podSelector(peer.PodSelector)
	if (nsSel.empty && !nsSel.invalid) || (podSel.empty && !podSel.invalid) {
		return verdict{covered: true} // selects nothing
	}
	var candidates []*selector // namespace selectors of declared sources whose pod selector contains podSel
	for _, d := range rules {
		for _, i := range d.podCandidates(podSel) {
			dp := d.peers[i]
			if !a.inside(podSel, dp.pods) {
				continue
			}
			if a.inside(nsSel, dp.ns) {
				return verdict{covered: true}
			}
			if !dp.ns.invalid {
				candidates = append(candidates, dp.ns)
			}
		}
	}
	// Not provably covered. It is open now if an existing namespace it
	// admits is admitted by none of the declared sources that admit the
	// same pods on the same ports; latent otherwise.
	admitted := a.namespaceMatches(nsSel)
	covered := make(bitset, len(admitted))
	for _, c := range candidates {
		a.spend(len(covered))
		covered.or(a.namespaceMatches(c))
	}
	a.spend(len(covered))
	return verdict{latent: admitted.subsetOf(covered)}
}

// targetPodsSelected returns how many target pods policy i selects. A
// selector that cannot be parsed is taken to select them all.
func (a *analyzer) targetPodsSelected(i int) int {
	if a.podsSelected[i] >= 0 {
		return a.podsSelected[i]
	}
	s := a.podSelector(&a.in.Policies[i].Spec.PodSelector)
	n := len(a.in.TargetPods)
	if !s.invalid {
		n = a.podMatches(s).count()
	}
	a.podsSelected[i] = n
	return n
}

// unselected counts the target pods no policy isolates in dir. A selector
// that cannot be parsed isolates nothing.
func (a *analyzer) unselected(dir Direction) int {
	isolated := make(bitset, words(len(a.in.TargetPods)))
	for i := range a.in.Policies {
		p := &a.in.Policies[i]
		if !isolates(p, dir) {
			continue
		}
		s := a.podSelector(&p.Spec.PodSelector)
		if s.invalid {
			continue
		}
		a.spend(len(isolated))
		isolated.or(a.podMatches(s))
	}
	return len(a.in.TargetPods) - isolated.count()
}

// --- selectors ---

// selector is a label selector compiled once: its requirements per key
// (to decide containment) and a labels.Selector with its matches (to count
// the objects it selects).
type selector struct {
	key       string // canonical form
	namespace bool   // selects namespaces: every object carries the name label
	invalid   bool   // could not be parsed
	reqs      []metav1.LabelSelectorRequirement
	keys      map[string]*keyFacts
	empty     bool // its requirements contradict each other: selects nothing
	match     labels.Selector
	matches   bitset // over namespaces or target pods; nil until computed
}

// keyFacts is what a selector's requirements say about one key.
type keyFacts struct {
	exists, absent bool
	in             map[string]bool // nil: any value; else the only values allowed
	inList         []string        // in, sorted
	notIn          map[string]bool
}

func (a *analyzer) podSelector(sel *metav1.LabelSelector) *selector {
	return a.compile(sel, false)
}

// namespaceSelector compiles a peer's namespace selector; nil means the
// policy's own namespace.
func (a *analyzer) namespaceSelector(sel *metav1.LabelSelector, policyNamespace string) *selector {
	if sel == nil {
		sel = &metav1.LabelSelector{MatchLabels: map[string]string{namespaceNameLabel: policyNamespace}}
	}
	return a.compile(sel, true)
}

func (a *analyzer) compile(sel *metav1.LabelSelector, namespace bool) *selector {
	a.spend(1)
	if s, ok := a.compiled[compiledKey{sel, namespace}]; ok && sel != nil {
		return s
	}
	s := a.compileNew(sel, namespace)
	if sel != nil {
		a.compiled[compiledKey{sel, namespace}] = s
	}
	return s
}

func (a *analyzer) compileNew(sel *metav1.LabelSelector, namespace bool) *selector {
	var reqs []metav1.LabelSelectorRequirement
	if sel != nil {
		for k, v := range sel.MatchLabels {
			reqs = append(reqs, metav1.LabelSelectorRequirement{Key: k, Operator: metav1.LabelSelectorOpIn, Values: []string{v}})
		}
		for _, r := range sel.MatchExpressions {
			r.Values = slices.Clone(r.Values)
			sort.Strings(r.Values)
			reqs = append(reqs, r)
		}
	}
	sort.Slice(reqs, func(i, j int) bool {
		if reqs[i].Key != reqs[j].Key {
			return reqs[i].Key < reqs[j].Key
		}
		if reqs[i].Operator != reqs[j].Operator {
			return reqs[i].Operator < reqs[j].Operator
		}
		return strings.Join(reqs[i].Values, "\x00") < strings.Join(reqs[j].Values, "\x00")
	})
	var key strings.Builder
	if namespace {
		key.WriteString("ns")
	} else {
		key.WriteString("pod")
	}
	for _, r := range reqs {
		key.WriteString("\x01" + r.Key + "\x02" + string(r.Operator) + "\x02" + strings.Join(r.Values, "\x03"))
	}
	a.spend(1 + len(reqs))
	if s, ok := a.selectors[key.String()]; ok {
		return s
	}
	// Parsing validates every key and value: charge it like a comparison
	// of each requirement with several others.
	a.spend(8 * len(reqs))
	s := &selector{key: key.String(), namespace: namespace, reqs: reqs, keys: map[string]*keyFacts{}}
	a.selectors[key.String()] = s
	match, err := metav1.LabelSelectorAsSelector(&metav1.LabelSelector{MatchExpressions: reqs})
	if err != nil {
		s.invalid, s.reqs, s.match = true, nil, labels.Everything()
		return s
	}
	s.match = match
	if namespace {
		s.facts(namespaceNameLabel).exists = true
	}
	for _, r := range reqs {
		f := s.facts(r.Key)
		switch r.Operator {
		case metav1.LabelSelectorOpIn:
			f.exists = true
			if f.in == nil {
				f.in = set(r.Values)
			} else {
				for v := range f.in {
					if !slices.Contains(r.Values, v) {
						delete(f.in, v)
					}
				}
			}
		case metav1.LabelSelectorOpNotIn:
			if f.notIn == nil {
				f.notIn = map[string]bool{}
			}
			for _, v := range r.Values {
				f.notIn[v] = true
			}
		case metav1.LabelSelectorOpExists:
			f.exists = true
		case metav1.LabelSelectorOpDoesNotExist:
			f.absent = true
		}
	}
	for _, f := range s.keys {
		for v := range f.notIn {
			delete(f.in, v)
		}
		if (f.in != nil && len(f.in) == 0) || (f.exists && f.absent) {
			s.empty = true
		}
		for v := range f.in {
			f.inList = append(f.inList, v)
		}
		sort.Strings(f.inList)
	}
	return s
}

func (s *selector) facts(key string) *keyFacts {
	f, ok := s.keys[key]
	if !ok {
		f = &keyFacts{}
		s.keys[key] = f
	}
	return f
}

func set(values []string) map[string]bool {
	out := make(map[string]bool, len(values))
	for _, v := range values {
		out[v] = true
	}
	return out
}

// inside reports whether every object inner selects is selected by outer,
// by showing that inner's requirements imply each of outer's. It may answer
// false for selectors that are in fact inside (see the package doc). A
// selector that cannot be parsed is taken to select everything as inner
// and nothing as outer.
func (a *analyzer) inside(inner, outer *selector) bool {
	a.spend(1 + len(outer.reqs))
	switch {
	case outer.invalid:
		return false
	case inner.empty && !inner.invalid:
		return true
	}
	none := &keyFacts{}
	for _, w := range outer.reqs {
		f := none
		if !inner.invalid {
			if got, ok := inner.keys[w.Key]; ok {
				f = got
			}
		}
		if outer.namespace && w.Key == namespaceNameLabel && w.Operator == metav1.LabelSelectorOpExists {
			continue // every namespace has it
		}
		if !f.implies(w) {
			return false
		}
	}
	return true
}

// implies reports whether every label set with these facts satisfies w.
func (f *keyFacts) implies(w metav1.LabelSelectorRequirement) bool {
	switch w.Operator {
	case metav1.LabelSelectorOpExists:
		return f.exists
	case metav1.LabelSelectorOpDoesNotExist:
		return f.absent
	case metav1.LabelSelectorOpIn:
		return f.in != nil && !slices.ContainsFunc(f.inList, func(v string) bool { return !slices.Contains(w.Values, v) })
	case metav1.LabelSelectorOpNotIn:
		if f.absent {
			return true
		}
		if f.in != nil && !slices.ContainsFunc(w.Values, func(v string) bool { return f.in[v] }) {
			return true
		}
		return !slices.ContainsFunc(w.Values, func(v string) bool { return !f.notIn[v] })
	}
	return false
}

// namespaceMatches returns the existing namespaces a namespace selector
// selects, computed once per selector.
func (a *analyzer) namespaceMatches(s *selector) bitset {
	if s.matches == nil {
		s.matches = make(bitset, words(len(a.nsLabels)))
		a.spend(len(a.nsLabels))
		for i, l := range a.nsLabels {
			if s.match.Matches(l) {
				s.matches.set(i)
			}
		}
	}
	return s.matches
}

// podMatches returns the target pods a pod selector selects, computed once
// per selector.
func (a *analyzer) podMatches(s *selector) bitset {
	if s.matches == nil {
		s.matches = make(bitset, words(len(a.in.TargetPods)))
		a.spend(len(a.in.TargetPods))
		for i, p := range a.in.TargetPods {
			if s.match.Matches(labels.Set(p.Labels)) {
				s.matches.set(i)
			}
		}
	}
	return s.matches
}

// --- ports ---

// portSet is the ports of a declared rule, merged per protocol.
type portSet struct {
	all       bool // no ports: every port of every protocol
	protocols map[corev1.Protocol]*protocolPorts
}

type protocolPorts struct {
	any    bool       // a port without number: every port of the protocol
	ranges [][2]int32 // sorted, merged, inclusive
	names  map[string]bool
}

func newPortSet(ports []networkingv1.NetworkPolicyPort) portSet {
	s := portSet{all: len(ports) == 0, protocols: map[corev1.Protocol]*protocolPorts{}}
	for _, p := range ports {
		pp, ok := s.protocols[protocol(p)]
		if !ok {
			pp = &protocolPorts{names: map[string]bool{}}
			s.protocols[protocol(p)] = pp
		}
		switch {
		case p.Port == nil:
			pp.any = true
		case p.Port.Type == intstr.String:
			pp.names[p.Port.StrVal] = true
		default:
			lo, hi := portRange(p)
			pp.ranges = append(pp.ranges, [2]int32{lo, hi})
		}
	}
	for _, pp := range s.protocols {
		sort.Slice(pp.ranges, func(i, j int) bool { return pp.ranges[i][0] < pp.ranges[j][0] })
		var merged [][2]int32
		for _, r := range pp.ranges {
			if n := len(merged); n > 0 && r[0] <= merged[n-1][1]+1 {
				merged[n-1][1] = max(merged[n-1][1], r[1])
				continue
			}
			merged = append(merged, r)
		}
		pp.ranges = merged
	}
	return s
}

// covers reports whether every port the given ports admit is in the set.
// No ports means every port of every protocol.
func (s portSet) covers(ports []networkingv1.NetworkPolicyPort) bool {
	if s.all {
		return true
	}
	if len(ports) == 0 {
		return false
	}
	for _, p := range ports {
		pp := s.protocols[protocol(p)]
		switch {
		case pp == nil:
			return false
		case pp.any:
			continue
		case p.Port == nil:
			return false
		case p.Port.Type == intstr.String:
			if p.EndPort != nil || !pp.names[p.Port.StrVal] {
				return false
			}
		default:
			lo, hi := portRange(p)
			i := sort.Search(len(pp.ranges), func(i int) bool { return pp.ranges[i][1] >= lo })
			if i == len(pp.ranges) || pp.ranges[i][0] > lo || pp.ranges[i][1] < hi {
				return false
			}
		}
	}
	return true
}

// --- bit sets ---

type bitset []uint64

func words(n int) int { return (n + 63) / 64 }

func (b bitset) set(i int) { b[i/64] |= 1 << (i % 64) }

func (b bitset) or(o bitset) {
	for i := range b {
		b[i] |= o[i]
	}
}

func (b bitset) subsetOf(o bitset) bool {
	for i := range b {
		if b[i]&^o[i] != 0 {
			return false
		}
	}
	return true
}

func (b bitset) count() int {
	n := 0
	for _, w := range b {
		n += bits.OnesCount64(w)
	}
	return n
}
