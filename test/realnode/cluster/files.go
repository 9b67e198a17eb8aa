package cluster

import (
	"fmt"
	"os"
	"path/filepath"
)

// configFiles writes containerd's, the CNI's, the kubelet's and
// kube-proxy's configuration into the state directory.
func (c Config) configFiles() error {
	pki := c.path("pki")
	files := map[string]string{
		// containerd: private root, state and socket; the CRI plugin with
		// the local pause image, cgroupfs, and the bridge CNI from Debian's
		// containernetworking-plugins. restrict_oom_score_adj because the
		// machine refuses negative OOM scores. The opt plugin (which would
		// create /opt/containerd) and the snapshotters that probe the host
		// are disabled.
		c.path("containerd", "config.toml"): fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = %[3]q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[4]q
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %[5]q
`, c.path("containerd", "root"), c.path("containerd", "state"), c.ContainerdSocket(), c.SandboxImage, c.path("cni", "net.d")),

		c.path("cni", "net.d", "10-bridge.conflist"): fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "isolator-realnode",
  "plugins": [{
    "type": "bridge",
    "bridge": %q,
    "isGateway": true,
    "ipMasq": false,
    "hairpinMode": true,
    "ipam": {
      "type": "host-local",
      "dataDir": %q,
      "ranges": [[{"subnet": %q}]],
      "routes": [{"dst": "0.0.0.0/0"}]
    }
  }]
}
`, c.Bridge(), c.path("cni", "ipam"), c.PodNet.String()),

		// kubelet: cgroup v1 with cgroupfs under the cluster's own cgroup
		// root; no image garbage collection (nothing can be pulled back);
		// eviction thresholds low enough that a busy shared disk does not
		// evict the test pods; webhook authentication and authorization.
		c.path("kubelet", "config.yaml"): fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: %[1]s
failSwapOn: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
containerRuntimeEndpoint: unix://%[2]s
readOnlyPort: 0
address: %[3]s
healthzBindAddress: 127.0.0.1
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %[4]s}
authorization: {mode: Webhook}
tlsCertFile: %[5]s
tlsPrivateKeyFile: %[6]s
clusterDomain: cluster.local
resolvConf: %[7]s
evictionHard: {memory.available: "10Mi", nodefs.available: "1%%", imagefs.available: "1%%", nodefs.inodesFree: "1%%"}
localStorageCapacityIsolation: false
serializeImagePulls: false
shutdownGracePeriod: 0s
podLogsDir: /var/log/pods
`, c.CgroupRoot(), c.ContainerdSocket(), c.NodeIP(), filepath.Join(pki, "ca.crt"),
			filepath.Join(pki, "kubelet-serving.crt"), filepath.Join(pki, "kubelet-serving.key"), c.path("kubelet", "resolv.conf")),

		// Pods resolve nothing: the cluster has no DNS server.
		c.path("kubelet", "resolv.conf"): "nameserver 127.0.0.1\n",

		// kube-proxy: nftables; it leaves the machine-wide conntrack
		// settings alone.
		c.path("kube-proxy", "config.yaml"): fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
clientConnection: {kubeconfig: %s}
hostnameOverride: %s
clusterCIDR: %s
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
`, filepath.Join(pki, "kube-proxy.kubeconfig"), c.NodeName, c.PodNet),
	}
	for path, content := range files {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			return err
		}
	}
	return nil
}
