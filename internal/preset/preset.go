// Package preset holds named traffic sources, destinations and HTTP request
// sets ("presets") that a WorkloadIsolation can refer to instead of spelling
// them out. Presets are data: the built-ins are an embedded YAML document, and an administrator
// adds or redefines presets in the operator configuration file.
package preset

import (
	_ "embed"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	netutils "k8s.io/utils/net"
	"sigs.k8s.io/yaml"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
)

// NamespaceNameLabel is the label the API server sets on every namespace to
// its own name; presets pointed at a namespace select it through this label.
const NamespaceNameLabel = "kubernetes.io/metadata.name"

//go:embed builtin.yaml
var builtinYAML []byte

// Preset is a named set of NetworkPolicy peers: sources (from) an ingress
// rule can name, destinations (to) an egress rule can name, or both.
type Preset struct {
	// Name is how a WorkloadIsolation refers to the preset (a DNS label).
	Name string `json:"name"`
	// Description says in a sentence what the preset stands for.
	Description string `json:"description,omitempty"`
	// From lists the sources, with NetworkPolicyPeer semantics.
	From []networkingv1.NetworkPolicyPeer `json:"from,omitempty"`
	// To lists the destinations, with NetworkPolicyPeer semantics.
	To []networkingv1.NetworkPolicyPeer `json:"to,omitempty"`
	// Hosts lists destinations by DNS name, as an egress peer's hosts.
	Hosts []string `json:"hosts,omitempty"`
	// Ports are the destination ports of To and Hosts, used by an egress
	// rule whose only destination is this preset and which lists no ports
	// itself.
	Ports []networkingv1.NetworkPolicyPort `json:"ports,omitempty"`
	// HTTP lists HTTP requests, which an ingress rule's http.presets can
	// admit.
	HTTP []isolationv1alpha1.HTTPRequest `json:"http,omitempty"`
}

// Document is the YAML shape of a preset list: {presets: [...]}.
type Document struct {
	Presets []Preset `json:"presets"`
}

// UnknownError is returned by Resolve for a name the catalog does not hold.
type UnknownError struct {
	Name  string
	Known []string
}

func (e *UnknownError) Error() string {
	return fmt.Sprintf("unknown preset %q (known presets: %v); define it in the operator configuration or fix the name", e.Name, e.Known)
}

// Catalog is an immutable set of validated presets, safe for concurrent use.
type Catalog struct {
	byName map[string]Preset
}

// BuiltinYAML returns the document of the built-in presets.
func BuiltinYAML() []byte { return builtinYAML }

// Parse reads a preset document strictly: unknown fields are errors, so a
// typo in the operator configuration is reported instead of ignored.
func Parse(data []byte) ([]Preset, error) {
	var doc Document
	if err := yaml.UnmarshalStrict(data, &doc); err != nil {
		return nil, fmt.Errorf("parsing presets: %w", err)
	}
	return doc.Presets, nil
}

// NewCatalog validates presets and builds a catalog. Later lists override
// presets of the same name from earlier lists (so administrator presets can
// redefine built-ins); a name repeated within one list is an error.
func NewCatalog(lists ...[]Preset) (Catalog, error) {
	c := Catalog{byName: map[string]Preset{}}
	var errs []error
	for _, list := range lists {
		seen := map[string]bool{}
		for i, p := range list {
			path := field.NewPath("presets").Index(i)
			if seen[p.Name] {
				errs = append(errs, field.Duplicate(path.Child("name"), p.Name))
				continue
			}
			seen[p.Name] = true
			if fieldErrs := validate(p, path); len(fieldErrs) > 0 {
				errs = append(errs, fieldErrs.ToAggregate())
				continue
			}
			c.byName[p.Name] = p
		}
	}
	if err := errors.Join(errs...); err != nil {
		return Catalog{}, fmt.Errorf("invalid presets: %w", err)
	}
	return c, nil
}

// Names lists the preset names in order.
func (c Catalog) Names() []string {
	return slices.Sorted(maps.Keys(c.byName))
}

// namesWith lists, in order, the names of the presets that pass keep.
func (c Catalog) namesWith(keep func(Preset) bool) []string {
	var out []string
	for _, name := range c.Names() {
		if keep(c.byName[name]) {
			out = append(out, name)
		}
	}
	return out
}

// Get returns a preset by name.
func (c Catalog) Get(name string) (Preset, bool) {
	p, ok := c.byName[name]
	return p, ok
}

// Resolve returns the sources (from) of the named preset. A non-empty
// namespace points the preset at that namespace: the namespaceSelector of
// every peer becomes kubernetes.io/metadata.name=<namespace> (a peer with
// only a podSelector gains it). A preset made of ipBlocks cannot be pointed
// at a namespace. The result is a deep copy the caller may keep.
func (c Catalog) Resolve(name, namespace string) ([]networkingv1.NetworkPolicyPeer, error) {
	p, ok := c.byName[name]
	if !ok {
		return nil, &UnknownError{Name: name, Known: c.namesWith(func(p Preset) bool { return len(p.From) > 0 })}
	}
	if len(p.From) == 0 {
		return nil, fmt.Errorf("preset %q lists destinations (to) only: use it in egress", name)
	}
	return point(name, p.From, namespace)
}

// Destinations are what an egress preset resolves to.
type Destinations struct {
	Peers []networkingv1.NetworkPolicyPeer
	Hosts []string
	Ports []networkingv1.NetworkPolicyPort
}

// ResolveTo returns the destinations (to and hosts) of the named preset and
// its ports, the peers pointed at namespace as Resolve does.
func (c Catalog) ResolveTo(name, namespace string) (Destinations, error) {
	p, ok := c.byName[name]
	if !ok {
		return Destinations{}, &UnknownError{Name: name, Known: c.namesWith(func(p Preset) bool { return len(p.To) > 0 || len(p.Hosts) > 0 })}
	}
	switch {
	case len(p.To) > 0 || len(p.Hosts) > 0:
	case len(p.From) > 0:
		return Destinations{}, fmt.Errorf("preset %q lists sources (from) only: use it in ingress", name)
	default:
		return Destinations{}, fmt.Errorf("preset %q lists HTTP requests only: use it in an ingress rule's http.presets", name)
	}
	peers, err := point(name, p.To, namespace)
	if err != nil {
		return Destinations{}, err
	}
	ports := make([]networkingv1.NetworkPolicyPort, 0, len(p.Ports))
	for _, port := range p.Ports {
		ports = append(ports, *port.DeepCopy())
	}
	return Destinations{Peers: peers, Hosts: slices.Clone(p.Hosts), Ports: ports}, nil
}

// ResolveHTTP returns the HTTP requests of the named preset, a copy the
// caller may keep.
func (c Catalog) ResolveHTTP(name string) ([]isolationv1alpha1.HTTPRequest, error) {
	p, ok := c.byName[name]
	if !ok {
		return nil, &UnknownError{Name: name, Known: c.namesWith(func(p Preset) bool { return len(p.HTTP) > 0 })}
	}
	if len(p.HTTP) == 0 {
		return nil, fmt.Errorf("preset %q lists no HTTP requests: http.presets takes presets with http", name)
	}
	return slices.Clone(p.HTTP), nil
}

func point(name string, list []networkingv1.NetworkPolicyPeer, namespace string) ([]networkingv1.NetworkPolicyPeer, error) {
	peers := make([]networkingv1.NetworkPolicyPeer, 0, len(list))
	for _, peer := range list {
		peer = *peer.DeepCopy()
		if namespace != "" {
			if peer.IPBlock != nil {
				return nil, fmt.Errorf("preset %q selects IP blocks, so presetNamespace %q cannot apply to it", name, namespace)
			}
			peer.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{NamespaceNameLabel: namespace}}
		}
		peers = append(peers, peer)
	}
	return peers, nil
}

func validate(p Preset, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, msg := range validation.IsDNS1123Label(p.Name) {
		errs = append(errs, field.Invalid(path.Child("name"), p.Name, msg))
	}
	if len(p.From) == 0 && len(p.To) == 0 && len(p.Hosts) == 0 && len(p.HTTP) == 0 {
		errs = append(errs, field.Required(path.Child("from"), "a preset needs at least one peer in from (sources) or to (destinations), hosts, or requests in http"))
	}
	for i, h := range p.Hosts {
		errs = append(errs, ValidateHost(h, path.Child("hosts").Index(i))...)
	}
	for i, r := range p.HTTP {
		errs = append(errs, ValidateHTTPRequest(r, path.Child("http").Index(i))...)
	}
	for i, peer := range p.From {
		errs = append(errs, ValidatePeer(peer, path.Child("from").Index(i))...)
	}
	for i, peer := range p.To {
		errs = append(errs, ValidatePeer(peer, path.Child("to").Index(i))...)
	}
	if len(p.Ports) > 0 && len(p.To) == 0 && len(p.Hosts) == 0 {
		errs = append(errs, field.Forbidden(path.Child("ports"), "ports apply to the destinations (to, hosts), which this preset does not list"))
	}
	for i, port := range p.Ports {
		errs = append(errs, ValidatePort(port, path.Child("ports").Index(i))...)
	}
	return errs
}

// hostName is the pattern of a host name or wildcard pattern, as in the CRD.
var hostName = regexp.MustCompile(`^(\*\.)?([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)*[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// ValidateHost checks a host name the way the CRD does, and its labels'
// lengths.
func ValidateHost(h string, path *field.Path) field.ErrorList {
	name := strings.TrimPrefix(h, "*.")
	if len(h) > 253 || !hostName.MatchString(h) {
		return field.ErrorList{field.Invalid(path, h, "must be a lower-case DNS name, or one whose first label is '*' (*.hf.co)")}
	}
	for _, msg := range validation.IsDNS1123Subdomain(name) {
		return field.ErrorList{field.Invalid(path, h, msg)}
	}
	for _, label := range strings.Split(name, ".") {
		if len(label) > 63 {
			return field.ErrorList{field.Invalid(path, h, "a DNS label must be at most 63 characters")}
		}
	}
	return nil
}

// HTTPMethods are the methods an HTTP request may name.
var HTTPMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

// httpPath is the pattern of an exact request path, as in the CRD.
var httpPath = regexp.MustCompile(`^/[-A-Za-z0-9._~!$&'()*+,;=:@%/]*$`)

// MaxHTTPPath bounds a request path, as in the CRD.
const MaxHTTPPath = 1024

// ValidateHTTPRequest checks an HTTP request the way the CRD does.
func ValidateHTTPRequest(r isolationv1alpha1.HTTPRequest, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if r.Method != "" && !slices.Contains(HTTPMethods, r.Method) {
		errs = append(errs, field.NotSupported(path.Child("method"), r.Method, HTTPMethods))
	}
	switch {
	case len(r.Path) > MaxHTTPPath:
		errs = append(errs, field.TooLong(path.Child("path"), r.Path, MaxHTTPPath))
	case !httpPath.MatchString(r.Path):
		errs = append(errs, field.Invalid(path.Child("path"), r.Path, "must be an exact path starting with '/', without query string, fragment, spaces or control characters"))
	}
	return errs
}

// ValidatePort checks a NetworkPolicyPort the way the API server would.
func ValidatePort(port networkingv1.NetworkPolicyPort, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if port.Protocol != nil {
		switch *port.Protocol {
		case "TCP", "UDP", "SCTP":
		default:
			errs = append(errs, field.NotSupported(path.Child("protocol"), *port.Protocol, []string{"TCP", "UDP", "SCTP"}))
		}
	}
	if port.Port != nil {
		if port.Port.IntVal != 0 || port.Port.StrVal == "" {
			for _, msg := range validation.IsValidPortNum(int(port.Port.IntVal)) {
				errs = append(errs, field.Invalid(path.Child("port"), port.Port.IntVal, msg))
			}
		} else {
			for _, msg := range validation.IsValidPortName(port.Port.StrVal) {
				errs = append(errs, field.Invalid(path.Child("port"), port.Port.StrVal, msg))
			}
		}
	}
	if port.EndPort != nil && (port.Port == nil || port.Port.StrVal != "" || *port.EndPort < port.Port.IntVal) {
		errs = append(errs, field.Invalid(path.Child("endPort"), *port.EndPort, "needs a numeric port and must not be below it"))
	}
	return errs
}

// ValidatePeer checks a NetworkPolicyPeer the way the API server would:
// exactly one of ipBlock or selectors, valid label selectors, valid CIDRs.
func ValidatePeer(peer networkingv1.NetworkPolicyPeer, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	selectors := peer.NamespaceSelector != nil || peer.PodSelector != nil
	switch {
	case peer.IPBlock != nil && selectors:
		errs = append(errs, field.Forbidden(path, "ipBlock cannot be combined with namespaceSelector or podSelector"))
	case peer.IPBlock == nil && !selectors:
		errs = append(errs, field.Required(path, "one of namespaceSelector, podSelector or ipBlock"))
	}
	opts := metav1validation.LabelSelectorValidationOptions{}
	if peer.NamespaceSelector != nil {
		errs = append(errs, metav1validation.ValidateLabelSelector(peer.NamespaceSelector, opts, path.Child("namespaceSelector"))...)
	}
	if peer.PodSelector != nil {
		errs = append(errs, metav1validation.ValidateLabelSelector(peer.PodSelector, opts, path.Child("podSelector"))...)
	}
	if peer.IPBlock != nil {
		errs = append(errs, validateIPBlock(*peer.IPBlock, path.Child("ipBlock"))...)
	}
	return errs
}

func validateIPBlock(b networkingv1.IPBlock, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	_, outer, err := netutils.ParseCIDRSloppy(b.CIDR)
	if err != nil {
		return append(errs, field.Invalid(path.Child("cidr"), b.CIDR, "must be a valid CIDR"))
	}
	outerSize, _ := outer.Mask.Size()
	for i, e := range b.Except {
		_, inner, err := netutils.ParseCIDRSloppy(e)
		if err != nil {
			errs = append(errs, field.Invalid(path.Child("except").Index(i), e, "must be a valid CIDR"))
			continue
		}
		innerSize, _ := inner.Mask.Size()
		if !outer.Contains(inner.IP) || innerSize <= outerSize || netutils.IsIPv4CIDR(inner) != netutils.IsIPv4CIDR(outer) {
			errs = append(errs, field.Invalid(path.Child("except").Index(i), e, "must be a CIDR strictly inside cidr"))
		}
	}
	return errs
}
