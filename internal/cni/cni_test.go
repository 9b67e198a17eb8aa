package cni_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/isolator-dev/isolator/internal/cni"
)

// The DaemonSets below follow the names, namespaces, container names, images
// and arguments of each project's own manifests or Helm charts.

// ds is a DaemonSet whose three agent pods are all ready for its current
// generation, as the DaemonSet controller reports it.
func ds(ns, name string, containers ...cni.Container) cni.DaemonSet {
	return cni.DaemonSet{Namespace: ns, Name: name, Containers: containers,
		Generation: 1, ObservedGeneration: 1, DesiredNumberScheduled: 3, NumberReady: 3}
}

// agents returns d with the given status.
func agents(d cni.DaemonSet, generation, observed int64, desired, ready int32) cni.DaemonSet {
	d.Generation, d.ObservedGeneration, d.DesiredNumberScheduled, d.NumberReady = generation, observed, desired, ready
	return d
}

func ctr(name, image string, args ...string) cni.Container {
	return cni.Container{Name: name, Image: image, Args: args}
}

var (
	ciliumDS = ds("kube-system", "cilium",
		ctr("config", "quay.io/cilium/cilium:v1.16.3@sha256:62d2a09bbef840a46099ac4c69421c90f84f28d018d479749049011329aa7f28", "cilium-dbg", "build-config"),
		ctr("mount-cgroup", "quay.io/cilium/cilium:v1.16.3@sha256:62d2a09bbef840a46099ac4c69421c90f84f28d018d479749049011329aa7f28"),
		ctr("cilium-agent", "quay.io/cilium/cilium:v1.16.3@sha256:62d2a09bbef840a46099ac4c69421c90f84f28d018d479749049011329aa7f28", "--config-dir=/tmp/cilium/config-map"))
	ciliumConfig = func(mode string) cni.ConfigMap {
		return cni.ConfigMap{Namespace: "kube-system", Name: "cilium-config", Data: map[string]string{
			"enable-policy": mode, "cluster-name": "default", "tunnel-protocol": "vxlan",
		}}
	}
	ciliumConfigWith = func(extra map[string]string) cni.ConfigMap {
		cm := ciliumConfig("default")
		for k, v := range extra {
			cm.Data[k] = v
		}
		return cm
	}
	ciliumAgentWith = func(args ...string) cni.DaemonSet {
		d := ds("kube-system", "cilium", ctr("cilium-agent", "quay.io/cilium/cilium:v1.16.3", append([]string{"--config-dir=/tmp/cilium/config-map"}, args...)...))
		return d
	}
	canalDS = ds("kube-system", "canal",
		ctr("install-cni", "quay.io/calico/cni:v3.28.1", "/opt/cni/bin/install"),
		ctr("calico-node", "quay.io/calico/node:v3.28.1"),
		ctr("kube-flannel", "quay.io/coreos/flannel:v0.24.4", "--ip-masq", "--kube-subnet-mgr"))
	calicoDS         = ds("kube-system", "calico-node", ctr("upgrade-ipam", "docker.io/calico/cni:v3.27.3"), ctr("calico-node", "docker.io/calico/node:v3.27.3"))
	calicoOperatorDS = ds("calico-system", "calico-node", ctr("calico-node", "docker.io/calico/node:v3.29.0"))
	flannelDS        = ds("kube-flannel", "kube-flannel-ds",
		ctr("install-cni-plugin", "docker.io/flannel/flannel-cni-plugin:v1.5.1-flannel2"),
		ctr("kube-flannel", "docker.io/flannel/flannel:v0.25.7", "--ip-masq", "--kube-subnet-mgr"))
	kubeRouterDS = func(args ...string) cni.DaemonSet {
		return ds("kube-system", "kube-router", ctr("kube-router", "docker.io/cloudnativelabs/kube-router:v2.2.1", args...))
	}
	kindnetDS = func(image string, args ...string) cni.DaemonSet {
		return ds("kube-system", "kindnet", ctr("kindnet-cni", image, args...))
	}
	kubeNetworkPoliciesDS = ds("kube-system", "kube-network-policies",
		ctr("kube-network-policies", "registry.k8s.io/networking/kube-network-policies:v0.7.0", "/bin/netpol", "--hostname-override=$(MY_NODE_NAME)", "--v=2"))
	awsNode = func(agentArgs ...string) cni.DaemonSet {
		d := ds("kube-system", "aws-node",
			ctr("aws-vpc-cni-init", "602401143452.dkr.ecr.us-west-2.amazonaws.com/amazon-k8s-cni-init:v1.18.5-eksbuild.1"),
			ctr("aws-node", "602401143452.dkr.ecr.us-west-2.amazonaws.com/amazon-k8s-cni:v1.18.5-eksbuild.1"))
		if agentArgs != nil {
			d.Containers = append(d.Containers, ctr("aws-network-policy-agent",
				"602401143452.dkr.ecr.us-west-2.amazonaws.com/amazon/aws-network-policy-agent:v1.1.3-eksbuild.1", agentArgs...))
		}
		return d
	}
	awsConfig = func(enabled string) cni.ConfigMap {
		return cni.ConfigMap{Namespace: "kube-system", Name: "amazon-vpc-cni", Data: map[string]string{
			"enable-network-policy-controller": enabled, "enable-windows-ipam": "false",
		}}
	}
	anetdDS = ds("kube-system", "anetd",
		ctr("clean-cilium-state", "gke.gcr.io/cilium/cilium:v1.14.12-gke3.11"),
		ctr("cilium-agent", "gke.gcr.io/cilium/cilium:v1.14.12-gke3.11", "--config-dir=/tmp/cilium/config-map"))
	antreaDS = ds("kube-system", "antrea-agent",
		ctr("install-cni", "antrea/antrea-agent-ubuntu:v2.2.0"),
		ctr("antrea-agent", "antrea/antrea-agent-ubuntu:v2.2.0", "--config=/etc/antrea/antrea-agent.conf", "--logtostderr=false"),
		ctr("antrea-ovs", "antrea/antrea-agent-ubuntu:v2.2.0"))
	weaveDS = func(npc bool) cni.DaemonSet {
		d := ds("kube-system", "weave-net", ctr("weave", "ghcr.io/weaveworks/launcher/weave-kube:2.8.1"))
		if npc {
			d.Containers = append(d.Containers, ctr("weave-npc", "ghcr.io/weaveworks/launcher/weave-npc:2.8.1"))
		}
		return d
	}
	azureNPMDS = ds("kube-system", "azure-npm", ctr("azure-npm", "mcr.microsoft.com/containernetworking/azure-npm:v1.5.45"))
	kubeProxy  = ds("kube-system", "kube-proxy", ctr("kube-proxy", "registry.k8s.io/kube-proxy:v1.31.2", "--config=/var/lib/kube-proxy/config.conf"))
	kkpCilium  = func(values map[string]any) cni.Application {
		return cni.Application{Namespace: "kube-system", Name: "cilium", Application: "cilium", Version: "1.16.3", Values: values}
	}
)

func TestClassify(t *testing.T) {
	tests := []struct {
		name     string
		facts    cni.Facts
		wantName string
		version  string
		enforces cni.Enforcement
		reason   string
		l7       bool
		evidence []string // substrings of the evidence
	}{{
		name:     "Cilium, enable-policy default",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{kubeProxy, ciliumDS}, ConfigMaps: []cni.ConfigMap{ciliumConfig("default")}, APIGroups: []string{"cilium.io"}},
		wantName: "cilium", version: "v1.16.3", enforces: cni.EnforcementTrue, reason: cni.ReasonEnforcing, l7: true,
		evidence: []string{"DaemonSet kube-system/cilium, image quay.io/cilium/cilium:v1.16.3", "3 of 3 agent pods ready", "ConfigMap kube-system/cilium-config enable-policy=default"},
	}, {
		name:     "Cilium, enable-policy always",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{ciliumDS}, ConfigMaps: []cni.ConfigMap{ciliumConfig("always")}},
		wantName: "cilium", version: "v1.16.3", enforces: cni.EnforcementTrue, reason: cni.ReasonEnforcing, l7: true,
	}, {
		name:     "Cilium, enable-policy never",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{ciliumDS}, ConfigMaps: []cni.ConfigMap{ciliumConfig("never")}},
		wantName: "cilium", version: "v1.16.3", enforces: cni.EnforcementFalse, reason: cni.ReasonEnforcementDisabled,
		evidence: []string{"enable-policy=never"},
	}, {
		name:     "Cilium in policy audit mode enforces nothing",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{ciliumDS}, ConfigMaps: []cni.ConfigMap{ciliumConfigWith(map[string]string{"policy-audit-mode": "true"})}},
		wantName: "cilium", version: "v1.16.3", enforces: cni.EnforcementFalse, reason: cni.ReasonAuditMode,
		evidence: []string{"ConfigMap kube-system/cilium-config policy-audit-mode=true"},
	}, {
		name:     "Cilium with policy audit mode off enforces",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{ciliumDS}, ConfigMaps: []cni.ConfigMap{ciliumConfigWith(map[string]string{"policy-audit-mode": "false"})}},
		wantName: "cilium", version: "v1.16.3", enforces: cni.EnforcementTrue, reason: cni.ReasonEnforcing, l7: true,
		evidence: []string{"policy-audit-mode=false"},
	}, {
		name:     "Cilium in policy audit mode by the agent's flag",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{ciliumAgentWith("--policy-audit-mode")}, ConfigMaps: []cni.ConfigMap{ciliumConfig("default")}},
		wantName: "cilium", version: "v1.16.3", enforces: cni.EnforcementFalse, reason: cni.ReasonAuditMode,
		evidence: []string{"flag --policy-audit-mode=true"},
	}, {
		name:     "Cilium with enable-policy never and audit mode: never is what to fix first",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{ciliumDS}, ConfigMaps: []cni.ConfigMap{{Namespace: "kube-system", Name: "cilium-config", Data: map[string]string{"enable-policy": "never", "policy-audit-mode": "true"}}}},
		wantName: "cilium", version: "v1.16.3", enforces: cni.EnforcementFalse, reason: cni.ReasonEnforcementDisabled,
	}, {
		name:     "Cilium without its L7 proxy enforces, but not HTTP-aware policy",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{ciliumDS}, ConfigMaps: []cni.ConfigMap{ciliumConfigWith(map[string]string{"enable-l7-proxy": "false"})}},
		wantName: "cilium", version: "v1.16.3", enforces: cni.EnforcementTrue, reason: cni.ReasonEnforcing, l7: false,
		evidence: []string{"ConfigMap kube-system/cilium-config enable-l7-proxy=false"},
	}, {
		name:     "Cilium with its L7 proxy on",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{ciliumDS}, ConfigMaps: []cni.ConfigMap{ciliumConfigWith(map[string]string{"enable-l7-proxy": "true"})}},
		wantName: "cilium", version: "v1.16.3", enforces: cni.EnforcementTrue, reason: cni.ReasonEnforcing, l7: true,
	}, {
		name:     "Cilium without its L7 proxy by the agent's flag",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{ciliumAgentWith("--enable-l7-proxy=false")}},
		wantName: "cilium", version: "v1.16.3", enforces: cni.EnforcementTrue, reason: cni.ReasonEnforcing, l7: false,
	}, {
		name:     "KKP managed Cilium installed with policyAuditMode",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{ciliumDS}, Applications: []cni.Application{kkpCilium(map[string]any{"policyAuditMode": true})}},
		wantName: "cilium", version: "v1.16.3", enforces: cni.EnforcementFalse, reason: cni.ReasonAuditMode,
		evidence: []string{"ApplicationInstallation kube-system/cilium"},
	}, {
		name:     "Cilium without its ConfigMap (defaults enforce)",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{ciliumDS}},
		wantName: "cilium", version: "v1.16.3", enforces: cni.EnforcementTrue, reason: cni.ReasonEnforcing, l7: true,
	}, {
		name:     "KKP managed Cilium: ApplicationInstallation plus agent",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{ciliumDS}, ConfigMaps: []cni.ConfigMap{ciliumConfig("default")}, Applications: []cni.Application{kkpCilium(nil)}},
		wantName: "cilium", version: "v1.16.3", enforces: cni.EnforcementTrue, reason: cni.ReasonEnforcing, l7: true,
		evidence: []string{"ApplicationInstallation kube-system/cilium (cilium 1.16.3)"},
	}, {
		name:     "KKP managed Cilium before its agent runs",
		facts:    cni.Facts{Applications: []cni.Application{kkpCilium(nil)}, APIGroups: []string{"apps.kubermatic.k8c.io"}},
		wantName: "cilium", version: "1.16.3", enforces: cni.EnforcementUnknown, reason: cni.ReasonUnknown,
	}, {
		name:     "KKP managed Cilium installed with policyEnforcementMode never",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{ciliumDS}, Applications: []cni.Application{kkpCilium(map[string]any{"policyEnforcementMode": "never"})}},
		wantName: "cilium", version: "v1.16.3", enforces: cni.EnforcementFalse, reason: cni.ReasonEnforcementDisabled,
	}, {
		name:     "Canal (KKP default): calico-node and kube-flannel in one DaemonSet",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{kubeProxy, canalDS}, APIGroups: []string{"crd.projectcalico.org"}},
		wantName: "canal", version: "v3.28.1", enforces: cni.EnforcementTrue, reason: cni.ReasonEnforcing,
		evidence: []string{"DaemonSet kube-system/canal, image quay.io/calico/node:v3.28.1"},
	}, {
		name:     "Calico manifest install in kube-system",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{calicoDS}},
		wantName: "calico", version: "v3.27.3", enforces: cni.EnforcementTrue, reason: cni.ReasonEnforcing,
	}, {
		name:     "Calico operator install in calico-system",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{calicoOperatorDS}, APIGroups: []string{"crd.projectcalico.org", "operator.tigera.io"}},
		wantName: "calico", version: "v3.29.0", enforces: cni.EnforcementTrue, reason: cni.ReasonEnforcing,
		evidence: []string{"DaemonSet calico-system/calico-node"},
	}, {
		name:     "Flannel alone does not enforce",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{kubeProxy, flannelDS}},
		wantName: "flannel", version: "v0.25.7", enforces: cni.EnforcementFalse, reason: cni.ReasonDoesNotEnforce,
	}, {
		name:     "Flannel plus kube-network-policies enforces",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{flannelDS, kubeNetworkPoliciesDS}},
		wantName: "flannel+kube-network-policies", version: "v0.7.0", enforces: cni.EnforcementTrue, reason: cni.ReasonEnforcing,
		evidence: []string{"kube-flannel/kube-flannel-ds", "kube-system/kube-network-policies"},
	}, {
		name:     "Flannel plus a separate calico-node (policy only)",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{calicoDS, flannelDS}},
		wantName: "flannel+calico", version: "v3.27.3", enforces: cni.EnforcementTrue, reason: cni.ReasonEnforcing,
	}, {
		name:     "kube-router with the firewall on by default",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{kubeRouterDS("--run-router=true", "--run-service-proxy=true", "--bgp-graceful-restart=true")}},
		wantName: "kube-router", version: "v2.2.1", enforces: cni.EnforcementTrue, reason: cni.ReasonEnforcing,
	}, {
		name:     "kube-router with the firewall explicitly on",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{kubeRouterDS("--run-router=true", "--run-firewall=true")}},
		wantName: "kube-router", version: "v2.2.1", enforces: cni.EnforcementTrue, reason: cni.ReasonEnforcing,
	}, {
		name:     "kube-router with the firewall off",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{kubeRouterDS("--run-router=true", "--run-firewall=false", "--run-service-proxy=true")}},
		wantName: "kube-router", version: "v2.2.1", enforces: cni.EnforcementFalse, reason: cni.ReasonEnforcementDisabled,
	}, {
		name:     "kindnet from kind v0.23 (no policy support)",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{kindnetDS("docker.io/kindest/kindnetd:v20240513-cd2ac642")}},
		wantName: "kindnet", version: "v20240513-cd2ac642", enforces: cni.EnforcementFalse, reason: cni.ReasonDoesNotEnforce,
	}, {
		name:     "kindnet from kind v0.24 (policy support)",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{kindnetDS("docker.io/kindest/kindnetd:v20240813-c6f155d6")}},
		wantName: "kindnet", version: "v20240813-c6f155d6", enforces: cni.EnforcementTrue, reason: cni.ReasonEnforcing,
	}, {
		name:     "standalone kindnet v1.8",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{kindnetDS("ghcr.io/aojea/kindnet:v1.8.5")}},
		wantName: "kindnet", version: "v1.8.5", enforces: cni.EnforcementTrue, reason: cni.ReasonEnforcing,
	}, {
		name:     "standalone kindnet v1.2",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{kindnetDS("ghcr.io/aojea/kindnet:v1.2.0")}},
		wantName: "kindnet", version: "v1.2.0", enforces: cni.EnforcementFalse, reason: cni.ReasonDoesNotEnforce,
	}, {
		name:     "kindnet with network policies switched off",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{kindnetDS("ghcr.io/aojea/kindnet:v1.8.5", "--network-policy=false")}},
		wantName: "kindnet", version: "v1.8.5", enforces: cni.EnforcementFalse, reason: cni.ReasonEnforcementDisabled,
	}, {
		name:     "kindnet with an unrecognised tag",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{kindnetDS("registry.example/kindnetd:latest")}},
		wantName: "kindnet", version: "latest", enforces: cni.EnforcementUnknown, reason: cni.ReasonUnknown,
	}, {
		name:     "kindnet plus kube-network-policies",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{kindnetDS("docker.io/kindest/kindnetd:v20240513-cd2ac642"), kubeNetworkPoliciesDS}},
		wantName: "kindnet+kube-network-policies", version: "v0.7.0", enforces: cni.EnforcementTrue, reason: cni.ReasonEnforcing,
	}, {
		name:     "AWS VPC CNI with the network policy agent and controller enabled",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{awsNode("--enable-ipv6=false", "--enable-network-policy=true", "--enable-cloudwatch-logs=false")}, ConfigMaps: []cni.ConfigMap{awsConfig("true")}},
		wantName: "aws-vpc-cni", version: "v1.1.3-eksbuild.1", enforces: cni.EnforcementTrue, reason: cni.ReasonEnforcing,
		evidence: []string{"--enable-network-policy=true", "enable-network-policy-controller=true"},
	}, {
		name:     "AWS VPC CNI with the agent flag off",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{awsNode("--enable-ipv6=false", "--enable-network-policy=false")}, ConfigMaps: []cni.ConfigMap{awsConfig("true")}},
		wantName: "aws-vpc-cni", version: "v1.18.5-eksbuild.1", enforces: cni.EnforcementFalse, reason: cni.ReasonEnforcementDisabled,
	}, {
		name:     "AWS VPC CNI with the agent on but the controller off",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{awsNode("--enable-network-policy=true")}, ConfigMaps: []cni.ConfigMap{awsConfig("false")}},
		wantName: "aws-vpc-cni", version: "v1.18.5-eksbuild.1", enforces: cni.EnforcementFalse, reason: cni.ReasonEnforcementDisabled,
	}, {
		name:     "AWS VPC CNI without the agent container",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{awsNode()}},
		wantName: "aws-vpc-cni", version: "v1.18.5-eksbuild.1", enforces: cni.EnforcementFalse, reason: cni.ReasonEnforcementDisabled,
	}, {
		name:     "AWS VPC CNI without policy, plus Calico in policy-only mode",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{awsNode(), calicoOperatorDS}},
		wantName: "aws-vpc-cni+calico", version: "v3.29.0", enforces: cni.EnforcementTrue, reason: cni.ReasonEnforcing,
	}, {
		name:     "GKE Dataplane V2",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{anetdDS}, APIGroups: []string{"cilium.io", "networking.gke.io"}},
		wantName: "gke-dataplane-v2", version: "v1.14.12-gke3.11", enforces: cni.EnforcementTrue, reason: cni.ReasonEnforcing,
	}, {
		name:     "Antrea",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{antreaDS}, APIGroups: []string{"crd.antrea.io"}},
		wantName: "antrea", version: "v2.2.0", enforces: cni.EnforcementTrue, reason: cni.ReasonEnforcing,
	}, {
		name:     "Weave Net with weave-npc",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{weaveDS(true)}},
		wantName: "weave-net", version: "2.8.1", enforces: cni.EnforcementTrue, reason: cni.ReasonEnforcing,
	}, {
		name:     "Weave Net without weave-npc",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{weaveDS(false)}},
		wantName: "weave-net", version: "2.8.1", enforces: cni.EnforcementFalse, reason: cni.ReasonEnforcementDisabled,
	}, {
		name:     "Azure NPM",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{azureNPMDS}},
		wantName: "azure-npm", version: "v1.5.45", enforces: cni.EnforcementTrue, reason: cni.ReasonEnforcing,
	}, {
		name:     "nothing recognised",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{kubeProxy}},
		wantName: "unknown", enforces: cni.EnforcementUnknown, reason: cni.ReasonUnknown,
	}, {
		name:     "Calico CRDs without an agent",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{kubeProxy}, APIGroups: []string{"crd.projectcalico.org"}},
		wantName: "calico", enforces: cni.EnforcementUnknown, reason: cni.ReasonUnknown,
		evidence: []string{"API group crd.projectcalico.org"},
	}, {
		name:     "Flannel plus Calico CRDs left without an agent does not enforce",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{kubeProxy, flannelDS}, APIGroups: []string{"crd.projectcalico.org"}},
		wantName: "flannel+calico", version: "v0.25.7", enforces: cni.EnforcementFalse, reason: cni.ReasonDoesNotEnforce,
		evidence: []string{"kube-flannel/kube-flannel-ds", "API group crd.projectcalico.org"},
	}, {
		name:     "an old kindnet while KKP's Cilium is not running yet does not enforce",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{kindnetDS("docker.io/kindest/kindnetd:v20240513-cd2ac642")}, Applications: []cni.Application{kkpCilium(nil)}},
		wantName: "kindnet+cilium", version: "v20240513-cd2ac642", enforces: cni.EnforcementFalse, reason: cni.ReasonDoesNotEnforce,
	}, {
		name:     "Flannel plus a disabled Cilium: the disabled enforcer is what to fix",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{flannelDS, ciliumDS}, ConfigMaps: []cni.ConfigMap{ciliumConfig("never")}},
		wantName: "flannel+cilium", version: "v1.16.3", enforces: cni.EnforcementFalse, reason: cni.ReasonEnforcementDisabled,
	}, {
		name:     "an unknown-version kindnet does not hide a working policy agent",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{kindnetDS("registry.example/kindnetd:latest"), kubeNetworkPoliciesDS}},
		wantName: "kindnet+kube-network-policies", version: "v0.7.0", enforces: cni.EnforcementTrue, reason: cni.ReasonEnforcing,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := cni.Classify(tt.facts)
			if got.Name != tt.wantName || got.Version != tt.version || got.Enforces != tt.enforces || got.Reason != tt.reason || got.L7 != tt.l7 {
				t.Errorf("Classify = {name %q version %q enforces %s reason %s l7 %v}, want {name %q version %q enforces %s reason %s l7 %v}\nmessage: %s",
					got.Name, got.Version, got.Enforces, got.Reason, got.L7, tt.wantName, tt.version, tt.enforces, tt.reason, tt.l7, got.Message)
			}
			if got.Message == "" || got.Source != cni.SourceDetected {
				t.Errorf("want a message and source Detected, got %q / %q", got.Message, got.Source)
			}
			for _, e := range tt.evidence {
				if !strings.Contains(got.EvidenceString(), e) {
					t.Errorf("evidence %q does not mention %q", got.EvidenceString(), e)
				}
			}
		})
	}
}

// TestClassifyAgentReadiness checks that a component counts as enforcing
// only while its DaemonSet has at least one scheduled agent pod, every
// scheduled one is ready, and the status is of the current spec.
func TestClassifyAgentReadiness(t *testing.T) {
	kubeRouter := kubeRouterDS("--run-router=true")
	tests := []struct {
		name     string
		facts    cni.Facts
		wantName string
		enforces cni.Enforcement
		reason   string
		message  string   // exact, when set
		evidence []string // substrings of the evidence
	}{{
		name:     "kube-router with every agent ready enforces",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{agents(kubeRouter, 2, 2, 2, 2)}},
		wantName: "kube-router", enforces: cni.EnforcementTrue, reason: cni.ReasonEnforcing,
		evidence: []string{"DaemonSet kube-system/kube-router, image docker.io/cloudnativelabs/kube-router:v2.2.1, 2 of 2 agent pods ready"},
	}, {
		name:     "kube-router scheduled on no node",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{agents(kubeRouter, 1, 1, 0, 0)}},
		wantName: "kube-router", enforces: cni.EnforcementUnknown, reason: cni.ReasonAgentsNotReady,
		message:  "kube-router enforces NetworkPolicy only where its agent runs: 0 of 0 agent pods are ready (DaemonSet kube-system/kube-router)",
		evidence: []string{"0 of 0 agent pods ready"},
	}, {
		name:     "kube-router crash-looping on every node",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{agents(kubeRouter, 1, 1, 3, 0)}},
		wantName: "kube-router", enforces: cni.EnforcementUnknown, reason: cni.ReasonAgentsNotReady,
		message: "kube-router enforces NetworkPolicy only where its agent runs: 0 of 3 agent pods are ready (DaemonSet kube-system/kube-router)",
	}, {
		name:     "Calico with 1 of 2 agents ready",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{agents(calicoDS, 1, 1, 2, 1)}},
		wantName: "calico", enforces: cni.EnforcementUnknown, reason: cni.ReasonAgentsNotReady,
		message:  "calico enforces NetworkPolicy only where its agent runs: 1 of 2 agent pods are ready (DaemonSet kube-system/calico-node)",
		evidence: []string{"DaemonSet kube-system/calico-node, image docker.io/calico/node:v3.27.3, 1 of 2 agent pods ready"},
	}, {
		name:     "Cilium whose status lags its spec",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{agents(ciliumDS, 4, 3, 2, 2)}, ConfigMaps: []cni.ConfigMap{ciliumConfig("default")}},
		wantName: "cilium", enforces: cni.EnforcementUnknown, reason: cni.ReasonAgentsNotReady,
		message:  "cilium enforces NetworkPolicy only where its agent runs: its DaemonSet's status is of generation 3 and its spec of generation 4, so how many agent pods run the current spec is not known yet (DaemonSet kube-system/cilium)",
		evidence: []string{"2 of 2 agent pods ready (status of generation 3, spec of generation 4)"},
	}, {
		name:     "a DaemonSet with no status yet",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{{Namespace: "kube-system", Name: "canal", Containers: canalDS.Containers, Generation: 1}}},
		wantName: "canal", enforces: cni.EnforcementUnknown, reason: cni.ReasonAgentsNotReady,
	}, {
		name:     "Cilium with enable-policy never stays False whatever its agents",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{agents(ciliumDS, 1, 1, 0, 0)}, ConfigMaps: []cni.ConfigMap{ciliumConfig("never")}},
		wantName: "cilium", enforces: cni.EnforcementFalse, reason: cni.ReasonEnforcementDisabled,
	}, {
		name:     "KKP Cilium in audit mode stays False whatever its agents",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{agents(ciliumDS, 1, 1, 3, 1)}, Applications: []cni.Application{kkpCilium(map[string]any{"policyAuditMode": true})}},
		wantName: "cilium", enforces: cni.EnforcementFalse, reason: cni.ReasonAuditMode,
	}, {
		name:     "kube-router with the firewall off stays False whatever its agents",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{agents(kubeRouterDS("--run-firewall=false"), 1, 1, 0, 0)}},
		wantName: "kube-router", enforces: cni.EnforcementFalse, reason: cni.ReasonEnforcementDisabled,
	}, {
		name:     "a ready enforcer wins over one whose agents are not ready",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{agents(kubeRouter, 1, 1, 3, 0), calicoOperatorDS}},
		wantName: "kube-router+calico", enforces: cni.EnforcementTrue, reason: cni.ReasonEnforcing,
	}, {
		name:     "Flannel plus a policy agent whose pods are not ready does not enforce",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{flannelDS, agents(kubeNetworkPoliciesDS, 1, 1, 3, 2)}},
		wantName: "flannel+kube-network-policies", enforces: cni.EnforcementFalse, reason: cni.ReasonDoesNotEnforce,
		evidence: []string{"kube-system/kube-network-policies, image registry.k8s.io/networking/kube-network-policies:v0.7.0, 2 of 3 agent pods ready"},
	}, {
		name:     "a not-ready enforcer next to an unknown-version kindnet is Unknown",
		facts:    cni.Facts{DaemonSets: []cni.DaemonSet{kindnetDS("registry.example/kindnetd:latest"), agents(kubeNetworkPoliciesDS, 1, 1, 1, 0)}},
		wantName: "kindnet+kube-network-policies", enforces: cni.EnforcementUnknown, reason: cni.ReasonAgentsNotReady,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := cni.Classify(tt.facts)
			if got.Name != tt.wantName || got.Enforces != tt.enforces || got.Reason != tt.reason {
				t.Errorf("Classify = {name %q enforces %s reason %s}, want {name %q enforces %s reason %s}\nmessage: %s",
					got.Name, got.Enforces, got.Reason, tt.wantName, tt.enforces, tt.reason, got.Message)
			}
			if tt.enforces != cni.EnforcementTrue && got.L7 {
				t.Errorf("L7 = true on a CNI that does not enforce")
			}
			if tt.message != "" && got.Message != tt.message {
				t.Errorf("message = %q, want %q", got.Message, tt.message)
			}
			for _, e := range tt.evidence {
				if !strings.Contains(got.EvidenceString(), e) {
					t.Errorf("evidence %q does not mention %q", got.EvidenceString(), e)
				}
			}
		})
	}
}

func TestConfigured(t *testing.T) {
	for _, tt := range []struct {
		enforces cni.Enforcement
		reason   string
	}{
		{cni.EnforcementTrue, cni.ReasonEnforcing},
		{cni.EnforcementFalse, cni.ReasonDoesNotEnforce},
		{"", cni.ReasonUnknown},
	} {
		got := cni.Configured("cilium", tt.enforces, true)
		if got.Source != cni.SourceConfigured || got.Reason != tt.reason || got.Name != "cilium" {
			t.Errorf("Configured(%q) = %+v", tt.enforces, got)
		}
	}
}

// Where Cilium runs Envoy apart from the agent (cilium-envoy DaemonSet), HTTP
// and DNS rules are enforced only where Envoy is ready.
func TestCiliumL7NeedsItsEnvoyReady(t *testing.T) {
	envoy := ds("kube-system", "cilium-envoy", ctr("cilium-envoy", "quay.io/cilium/cilium-envoy:v1.34.4"))
	tests := []struct {
		name string
		dss  []cni.DaemonSet
		l7   bool
		note string
	}{
		{"embedded proxy", []cni.DaemonSet{ciliumDS}, true, ""},
		{"Envoy ready", []cni.DaemonSet{ciliumDS, envoy}, true, ""},
		{"Envoy not ready on one node", []cni.DaemonSet{ciliumDS, agents(envoy, 1, 1, 3, 2)}, false, "Envoy proxy, which runs apart from the agent, is not ready everywhere: 2 of 3 agent pods are ready"},
		{"agents not ready", []cni.DaemonSet{agents(ciliumDS, 1, 1, 3, 2)}, false, "its agents are not all ready"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := cni.Classify(cni.Facts{DaemonSets: tt.dss})
			if got.L7 != tt.l7 || !strings.Contains(got.L7Note, tt.note) || (tt.note == "") != (got.L7Note == "") {
				t.Errorf("L7 = %v, note %q; want %v, %q", got.L7, got.L7Note, tt.l7, tt.note)
			}
			if got.Enforces != cni.EnforcementTrue && tt.name != "agents not ready" {
				t.Errorf("Enforces = %s: Envoy decides L7 only", got.Enforces)
			}
		})
	}
}

// The installed Cilium policy CRDs are part of the classification, so that
// their arrival re-evaluates every WorkloadIsolation.
func TestClassifyNamesCiliumPolicyCRDs(t *testing.T) {
	without := cni.Classify(cni.Facts{DaemonSets: []cni.DaemonSet{ciliumDS}})
	with := cni.Classify(cni.Facts{DaemonSets: []cni.DaemonSet{ciliumDS},
		CiliumPolicyCRDs: []string{cni.CiliumClusterwideNetworkPolicyCRD, cni.CiliumNetworkPolicyCRD}})
	if len(without.CiliumPolicyCRDs) != 0 {
		t.Errorf("CiliumPolicyCRDs = %v without CRDs", without.CiliumPolicyCRDs)
	}
	if want := []string{cni.CiliumClusterwideNetworkPolicyCRD, cni.CiliumNetworkPolicyCRD}; !slices.Equal(with.CiliumPolicyCRDs, want) {
		t.Errorf("CiliumPolicyCRDs = %v, want %v", with.CiliumPolicyCRDs, want)
	}
}
