package cni

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/version"
)

// Well-known object names the classifier reads besides DaemonSets.
const (
	CiliumConfigMap = "cilium-config"
	AWSConfigMap    = "amazon-vpc-cni"
)

// ConfigMapNames are the ConfigMaps Classify reads, in the DaemonSet's namespace.
var ConfigMapNames = []string{CiliumConfigMap, AWSConfigMap}

// Keys of the ConfigMaps Classify reads.
const (
	ciliumEnablePolicy    = "enable-policy"
	ciliumPolicyAuditMode = "policy-audit-mode"
	ciliumEnableL7Proxy   = "enable-l7-proxy"
	// ciliumDisableEndpointCRD true: the agents maintain no CiliumEndpoint
	// objects, so coverage cannot be read per pod.
	ciliumDisableEndpointCRD = "disable-endpoint-crd"
	awsPolicyController      = "enable-network-policy-controller"
)

// ConfigMapKeys are, per ConfigMap name, the keys Classify reads: a cache of
// those ConfigMaps needs to keep no others.
var ConfigMapKeys = map[string][]string{
	CiliumConfigMap: {ciliumEnablePolicy, ciliumPolicyAuditMode, ciliumEnableL7Proxy, ciliumDisableEndpointCRD},
	AWSConfigMap:    {awsPolicyController},
}

func components(f Facts) []component {
	configMaps := map[string]ConfigMap{}
	for _, cm := range f.ConfigMaps {
		configMaps[cm.Namespace+"/"+cm.Name] = cm
	}
	var out []component
	envoys := map[string]DaemonSet{}
	for _, ds := range f.DaemonSets {
		if findContainer(ds, ciliumEnvoy) != nil {
			envoys[ds.Namespace] = ds
		}
	}
	for _, ds := range f.DaemonSets {
		if c, ok := daemonSetComponent(ds, configMaps); ok {
			c.notReady = agentsNotReady(ds)
			if envoy, ok := envoys[ds.Namespace]; ok && c.name == "cilium" {
				withEnvoy(&c, envoy)
			}
			out = append(out, c)
		}
	}
	out = withApplications(out, f.Applications)
	for i := range out {
		requireReadyAgents(&out[i])
	}
	return withAPIGroups(out, f.APIGroups)
}

// ciliumEnvoy is the container of Cilium's Envoy DaemonSet, which serves
// the L7 proxy on each node where it runs apart from the agent.
const ciliumEnvoy = "cilium-envoy"

// withEnvoy makes a Cilium agent's L7 enforcement depend on its Envoy
// DaemonSet: where Envoy is not ready, HTTP and DNS rules cannot be
// enforced (their traffic is dropped).
func withEnvoy(c *component, envoy DaemonSet) {
	c.evidence += fmt.Sprintf("; DaemonSet %s/%s (Envoy, the L7 proxy): %d of %d pods ready", envoy.Namespace, envoy.Name, envoy.NumberReady, envoy.DesiredNumberScheduled)
	if why := agentsNotReady(envoy); why != "" && c.l7 {
		c.l7 = false
		c.l7Note = "its Envoy proxy, which runs apart from the agent, is not ready everywhere: " + why
	}
}

// agentsNotReady says why a DaemonSet's agent pods are not all ready, or
// returns "" when at least one is scheduled, every scheduled one is ready,
// and the status is of the current generation.
func agentsNotReady(ds DaemonSet) string {
	var why string
	switch {
	case ds.ObservedGeneration < ds.Generation:
		why = fmt.Sprintf("its DaemonSet's status is of generation %d and its spec of generation %d, so how many agent pods run the current spec is not known yet",
			ds.ObservedGeneration, ds.Generation)
	case ds.DesiredNumberScheduled <= 0 || ds.NumberReady != ds.DesiredNumberScheduled:
		why = fmt.Sprintf("%d of %d agent pods are ready", ds.NumberReady, ds.DesiredNumberScheduled)
	default:
		return ""
	}
	return fmt.Sprintf("%s (DaemonSet %s/%s)", why, ds.Namespace, ds.Name)
}

// requireReadyAgents turns an enforcing component whose agents are not all
// ready into Unknown: it enforces nothing where its agent does not run. A
// component that does not enforce stays as it is.
func requireReadyAgents(c *component) {
	if c.enforces != EnforcementTrue || c.notReady == "" {
		return
	}
	c.enforces, c.reason, c.l7 = EnforcementUnknown, ReasonAgentsNotReady, false
	c.l7Note = "its agents are not all ready"
	c.message = fmt.Sprintf("%s enforces NetworkPolicy only where its agent runs: %s", c.name, c.notReady)
}

func daemonSetComponent(ds DaemonSet, configMaps map[string]ConfigMap) (component, bool) {
	has := func(name string) *Container { return findContainer(ds, name) }
	switch {
	case has("calico-node") != nil && has("kube-flannel") != nil:
		return enforcing("canal", ds, has("calico-node"), false), true
	case has("cilium-agent") != nil && ds.Name == "anetd":
		return enforcing("gke-dataplane-v2", ds, has("cilium-agent"), false), true
	case has("cilium-agent") != nil:
		return cilium(ds, has("cilium-agent"), configMaps[ds.Namespace+"/"+CiliumConfigMap]), true
	case has("calico-node") != nil:
		return enforcing("calico", ds, has("calico-node"), false), true
	case has("kube-router") != nil:
		return kubeRouter(ds, has("kube-router")), true
	case has("aws-node") != nil:
		return awsVPC(ds, has("aws-node"), has("aws-network-policy-agent"), configMaps[ds.Namespace+"/"+AWSConfigMap]), true
	case has("kindnet-cni") != nil:
		return kindnet(ds, has("kindnet-cni")), true
	case has("antrea-agent") != nil:
		return enforcing("antrea", ds, has("antrea-agent"), false), true
	case has("weave") != nil && strings.Contains(has("weave").Image, "weave"):
		return weave(ds, has("weave"), has("weave-npc")), true
	case has("azure-npm") != nil:
		return enforcing("azure-npm", ds, has("azure-npm"), false), true
	case imageContains(ds, "kube-network-policies") != nil:
		return enforcing("kube-network-policies", ds, imageContains(ds, "kube-network-policies"), false), true
	case has("kube-flannel") != nil:
		c := has("kube-flannel")
		return component{
			name: "flannel", version: imageTag(c.Image), enforces: EnforcementFalse, reason: ReasonDoesNotEnforce,
			message:  "Flannel provides pod networking only and does not enforce NetworkPolicy: the generated policies have no effect; add a policy agent (Canal, kube-network-policies) or use a CNI that enforces",
			evidence: evidence(ds, c),
		}, true
	}
	return component{}, false
}

func enforcing(name string, ds DaemonSet, c *Container, l7 bool) component {
	return component{
		name: name, version: imageTag(c.Image), enforces: EnforcementTrue, reason: ReasonEnforcing, l7: l7, enforcer: true,
		message:  fmt.Sprintf("%s enforces NetworkPolicy", name),
		evidence: evidence(ds, c),
	}
}

// cilium reads the agent's settings from its flags or, failing those, the
// cilium-config ConfigMap: enable-policy (default and always enforce, never
// does not), policy-audit-mode (true: policy verdicts are only logged,
// nothing is dropped) and enable-l7-proxy (false: no HTTP-aware policy).
func cilium(ds DaemonSet, agent *Container, cm ConfigMap) component {
	c := enforcing("cilium", ds, agent, true)
	setting := func(key string) (value, from string, ok bool) {
		if v, ok := flagValue(agent, key); ok {
			c.evidence += fmt.Sprintf("; flag --%s=%s", key, v)
			return v, "flag --" + key, true
		}
		if v, ok := cm.Data[key]; ok {
			c.evidence += fmt.Sprintf("; ConfigMap %s/%s %s=%s", cm.Namespace, cm.Name, key, v)
			return v, fmt.Sprintf("ConfigMap %s/%s key %s", cm.Namespace, cm.Name, key), true
		}
		return "", "", false
	}
	mode, modeFrom, _ := setting(ciliumEnablePolicy)
	audit, auditFrom, _ := setting(ciliumPolicyAuditMode)
	if l7, from, ok := setting(ciliumEnableL7Proxy); ok && !isTrue(l7) {
		c.l7 = false
		c.l7Note = fmt.Sprintf("its L7 proxy is off (%s=%s, %s)", ciliumEnableL7Proxy, l7, from)
	}
	c.endpoints = true
	if v, from, ok := setting(ciliumDisableEndpointCRD); ok && isTrue(v) {
		c.endpoints = false
		c.endpointsNote = fmt.Sprintf("Cilium maintains no CiliumEndpoints (%s=%s, %s): which target pods it manages cannot be read, so enforcement rests on its agents", ciliumDisableEndpointCRD, v, from)
	}
	switch {
	case strings.EqualFold(mode, "never"):
		c.enforces, c.reason, c.l7, c.l7Note = EnforcementFalse, ReasonEnforcementDisabled, false, "it enforces no policy"
		c.message = fmt.Sprintf("Cilium runs with enable-policy=never (%s): NetworkPolicies are not enforced; set it to default", modeFrom)
	case isTrue(audit):
		c.enforces, c.reason, c.l7, c.l7Note = EnforcementFalse, ReasonAuditMode, false, "it runs in policy audit mode"
		c.message = fmt.Sprintf("Cilium runs in policy audit mode (%s=%s, %s): it logs what NetworkPolicies would drop and drops nothing; set it to false", ciliumPolicyAuditMode, audit, auditFrom)
	}
	return c
}

// kubeRouter enforces unless its firewall is switched off (--run-firewall
// defaults to true).
func kubeRouter(ds DaemonSet, c *Container) component {
	comp := enforcing("kube-router", ds, c, false)
	if v, ok := flagValue(c, "run-firewall"); ok && !isTrue(v) {
		comp.enforces, comp.reason = EnforcementFalse, ReasonEnforcementDisabled
		comp.message = "kube-router runs with --run-firewall=false: NetworkPolicies are not enforced"
	}
	return comp
}

// awsVPC enforces only when the network policy agent runs with
// --enable-network-policy=true and the ConfigMap enables the controller.
func awsVPC(ds DaemonSet, node, agent *Container, cm ConfigMap) component {
	comp := component{name: "aws-vpc-cni", version: imageTag(node.Image), enforcer: true, evidence: evidence(ds, node)}
	if agent == nil {
		comp.enforces, comp.reason = EnforcementFalse, ReasonEnforcementDisabled
		comp.message = "AWS VPC CNI runs without its network policy agent: NetworkPolicies are not enforced; enable the add-on's enableNetworkPolicy"
		return comp
	}
	comp.evidence = evidence(ds, agent)
	flag, _ := flagValue(agent, "enable-network-policy")
	controller := cm.Data[awsPolicyController]
	comp.evidence += fmt.Sprintf(", --enable-network-policy=%s", flag)
	if cm.Name != "" {
		comp.evidence += fmt.Sprintf("; ConfigMap %s/%s %s=%s", cm.Namespace, cm.Name, awsPolicyController, controller)
	}
	switch {
	case !isTrue(flag):
		comp.enforces, comp.reason = EnforcementFalse, ReasonEnforcementDisabled
		comp.message = "AWS VPC CNI's network policy agent runs with --enable-network-policy=false: NetworkPolicies are not enforced"
	case !isTrue(controller):
		comp.enforces, comp.reason = EnforcementFalse, ReasonEnforcementDisabled
		comp.message = fmt.Sprintf("AWS VPC CNI's network policy controller is not enabled (ConfigMap %s enable-network-policy-controller): NetworkPolicies are not enforced", AWSConfigMap)
	default:
		comp.version = imageTag(agent.Image)
		comp.enforces, comp.reason = EnforcementTrue, ReasonEnforcing
		comp.message = "AWS VPC CNI's network policy agent enforces NetworkPolicy"
	}
	return comp
}

// kindnet enforces NetworkPolicy from kindnetd v20240723 (kind v0.24) and
// from aojea/kindnet v1.3.0, unless --network-policy=false.
var kindnetDateTag = regexp.MustCompile(`^v(\d{8})-[0-9a-f]+$`)

const (
	kindnetFirstDate   = 20240723
	kindnetFirstSemver = "1.3.0"
)

func kindnet(ds DaemonSet, c *Container) component {
	comp := enforcing("kindnet", ds, c, false)
	tag := imageTag(c.Image)
	if v, ok := flagValue(c, "network-policy"); ok && !isTrue(v) {
		comp.enforces, comp.reason = EnforcementFalse, ReasonEnforcementDisabled
		comp.message = "kindnet runs with --network-policy=false: NetworkPolicies are not enforced"
		return comp
	}
	if m := kindnetDateTag.FindStringSubmatch(tag); m != nil {
		date, _ := strconv.Atoi(m[1])
		if date < kindnetFirstDate {
			comp.enforces, comp.reason = EnforcementFalse, ReasonDoesNotEnforce
			comp.message = fmt.Sprintf("kindnetd %s predates NetworkPolicy support (kind v0.24): the generated policies have no effect", tag)
		}
		return comp
	}
	if v, err := version.ParseSemantic(tag); err == nil {
		if v.LessThan(version.MustParseSemantic(kindnetFirstSemver)) {
			comp.enforces, comp.reason = EnforcementFalse, ReasonDoesNotEnforce
			comp.message = fmt.Sprintf("kindnet %s predates NetworkPolicy support (v%s): the generated policies have no effect", tag, kindnetFirstSemver)
		}
		return comp
	}
	comp.enforces, comp.reason = EnforcementUnknown, ReasonUnknown
	comp.message = fmt.Sprintf("kindnet %q: the image tag does not tell whether this version enforces NetworkPolicy", tag)
	return comp
}

// weave enforces through its weave-npc container.
func weave(ds DaemonSet, router, npc *Container) component {
	if npc != nil {
		return enforcing("weave-net", ds, npc, false)
	}
	return component{
		name: "weave-net", version: imageTag(router.Image), enforces: EnforcementFalse, reason: ReasonEnforcementDisabled, enforcer: true,
		message:  "Weave Net runs without its weave-npc container: NetworkPolicies are not enforced",
		evidence: evidence(ds, router),
	}
}

// withApplications folds in KKP's managed Cilium (an ApplicationInstallation
// of the cilium application): it confirms a running agent, or, before the
// agent runs, says that enforcement is not in place yet.
func withApplications(comps []component, apps []Application) []component {
	for _, app := range apps {
		if app.Application != "cilium" {
			continue
		}
		line := fmt.Sprintf("ApplicationInstallation %s/%s (cilium %s)", app.Namespace, app.Name, app.Version)
		mode, _ := app.Values["policyEnforcementMode"].(string)
		audit := isTrue(fmt.Sprint(app.Values["policyAuditMode"]))
		// apply folds the Helm values in where the agent's own settings
		// (flags, ConfigMap) did not already decide.
		apply := func(c *component) {
			switch {
			case strings.EqualFold(mode, "never") && !strings.Contains(c.evidence, ciliumEnablePolicy+"="):
				c.enforces, c.reason, c.l7 = EnforcementFalse, ReasonEnforcementDisabled, false
				c.message = fmt.Sprintf("Cilium is installed with policyEnforcementMode=never (%s): NetworkPolicies are not enforced", line)
			case audit && !strings.Contains(c.evidence, ciliumPolicyAuditMode+"=") && c.enforces != EnforcementFalse:
				c.enforces, c.reason, c.l7 = EnforcementFalse, ReasonAuditMode, false
				c.message = fmt.Sprintf("Cilium is installed with policyAuditMode=true (%s): it logs what NetworkPolicies would drop and drops nothing", line)
			}
		}
		found := false
		for i := range comps {
			if comps[i].name != "cilium" {
				continue
			}
			found = true
			comps[i].evidence += "; " + line
			if comps[i].enforces == EnforcementTrue {
				apply(&comps[i])
			}
		}
		if found {
			continue
		}
		comp := component{name: "cilium", version: app.Version, enforcer: true, evidence: line,
			enforces: EnforcementUnknown, reason: ReasonUnknown,
			message: fmt.Sprintf("KKP installs Cilium (%s), but its agent DaemonSet is not running yet", line)}
		apply(&comp)
		comps = append(comps, comp)
	}
	return comps
}

// withAPIGroups notes policy engines whose CRDs are installed but whose
// agent was not found: they cannot be counted on, but they make the verdict
// Unknown rather than "no CNI".
func withAPIGroups(comps []component, groups []string) []component {
	engines := map[string]string{"cilium.io": "cilium", "crd.projectcalico.org": "calico", "crd.antrea.io": "antrea"}
	for _, g := range groups {
		name, ok := engines[g]
		if !ok {
			continue
		}
		seen := false
		for _, c := range comps {
			seen = seen || c.name == name || (name == "calico" && c.name == "canal") || (name == "cilium" && c.name == "gke-dataplane-v2")
		}
		if !seen {
			comps = append(comps, component{
				name: name, enforces: EnforcementUnknown, reason: ReasonUnknown, enforcer: true,
				message:  fmt.Sprintf("the %s API group is installed but no %s agent DaemonSet was found in the system namespaces", g, name),
				evidence: "API group " + g,
			})
		}
	}
	return comps
}

func findContainer(ds DaemonSet, name string) *Container {
	for i := range ds.Containers {
		if ds.Containers[i].Name == name {
			return &ds.Containers[i]
		}
	}
	return nil
}

func imageContains(ds DaemonSet, s string) *Container {
	for i := range ds.Containers {
		if strings.Contains(ds.Containers[i].Image, s) {
			return &ds.Containers[i]
		}
	}
	return nil
}

func evidence(ds DaemonSet, c *Container) string {
	line := fmt.Sprintf("DaemonSet %s/%s, image %s, %d of %d agent pods ready", ds.Namespace, ds.Name, c.Image, ds.NumberReady, ds.DesiredNumberScheduled)
	if ds.ObservedGeneration < ds.Generation {
		line += fmt.Sprintf(" (status of generation %d, spec of generation %d)", ds.ObservedGeneration, ds.Generation)
	}
	return line
}

// imageTag returns the tag of an image reference, without any digest.
func imageTag(image string) string {
	if i := strings.Index(image, "@"); i >= 0 {
		image = image[:i]
	}
	slash := strings.LastIndex(image, "/")
	if colon := strings.LastIndex(image, ":"); colon > slash {
		return image[colon+1:]
	}
	return ""
}

// flagValue finds --name=value, --name value, -name=value or a bare --name
// (true) in a container's command and args.
func flagValue(c *Container, name string) (string, bool) {
	argv := append(append([]string(nil), c.Command...), c.Args...)
	for i, a := range argv {
		trimmed := strings.TrimLeft(a, "-")
		if trimmed == a {
			continue
		}
		if v, ok := strings.CutPrefix(trimmed, name+"="); ok {
			return v, true
		}
		if trimmed == name {
			if i+1 < len(argv) && !strings.HasPrefix(argv[i+1], "-") {
				return argv[i+1], true
			}
			return "true", true
		}
	}
	return "", false
}

func isTrue(v string) bool {
	b, err := strconv.ParseBool(v)
	return err == nil && b
}
