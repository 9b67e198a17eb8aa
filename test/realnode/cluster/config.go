// Package cluster runs a real one-node Kubernetes cluster on this machine for
// the tests: etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
// containerd with runc and the bridge CNI plugin, kubelet and kube-proxy
// (nftables), plus kube-router's NetworkPolicy firewall as the test-only
// dataplane. Everything runs inside the cluster's own network namespace and a
// private mount namespace, so ports, nftables rules, sysctls and mounts stay
// off the host. Whatever the harness creates on the host is written to its
// records first and removed by name on teardown; a run that died is cleaned
// up by the next one, and the harness refuses to start only when something it
// did not create occupies its names or subnets.
package cluster

import (
	"net/netip"
	"path/filepath"
)

// Config names what the cluster occupies on the host. The defaults are
// chosen to be unlikely to collide; every name and subnet can be changed so
// that two clusters can share a machine.
type Config struct {
	// Name prefixes the network namespace, the host link and the cgroups.
	Name string
	// StateDir holds the records, certificates, configuration, data and logs.
	StateDir string
	// BinDir holds etcd, kube-apiserver, kube-controller-manager,
	// kube-scheduler, kubelet and kube-proxy.
	BinDir string
	// KubeRouter is the kube-router binary that enforces NetworkPolicy.
	KubeRouter string
	// ImageDir holds image tarballs imported into containerd before the
	// kubelet starts.
	ImageDir string
	// LinkNet is the /30 between the host and the node: the host takes the
	// first address, the node the second.
	LinkNet netip.Prefix
	// PodNet is the bridge's pod subnet; ServiceNet the Service ClusterIPs.
	PodNet, ServiceNet netip.Prefix
	// NodeName is the Node's name.
	NodeName string
	// SandboxImage is the pause image containerd runs as pod sandbox.
	SandboxImage string
}

// DefaultConfig returns the harness's defaults.
func DefaultConfig() Config {
	return Config{
		Name:         "isorn",
		StateDir:     "/var/lib/isolator-realnode",
		LinkNet:      netip.MustParsePrefix("10.240.77.0/30"),
		PodNet:       netip.MustParsePrefix("10.240.78.0/24"),
		ServiceNet:   netip.MustParsePrefix("10.240.79.0/24"),
		NodeName:     "realnode",
		SandboxImage: "isolator.local/pause:1",
	}
}

// HostIP is the host's end of the link.
func (c Config) HostIP() netip.Addr { return c.LinkNet.Addr().Next() }

// NodeIP is the node's address: kube-apiserver's advertise address, the
// kubelet's InternalIP and the next hop for the pod and Service subnets.
func (c Config) NodeIP() netip.Addr { return c.HostIP().Next() }

// APIServiceIP is the ClusterIP of the kubernetes Service.
func (c Config) APIServiceIP() netip.Addr { return c.ServiceNet.Addr().Next() }

// NetNS is the network namespace's name (under /run/netns).
func (c Config) NetNS() string { return c.Name }

// HostLink is the host's end of the veth pair.
func (c Config) HostLink() string { return c.Name + "0" }

// CgroupRoot is the cgroup every process of the cluster runs under.
func (c Config) CgroupRoot() string { return "/" + c.Name }

// Bridge is the CNI bridge inside the network namespace.
func (c Config) Bridge() string { return c.Name + "-br" }

func (c Config) path(elem ...string) string {
	return filepath.Join(append([]string{c.StateDir}, elem...)...)
}

// Kubeconfig is the cluster administrator's kubeconfig.
func (c Config) Kubeconfig() string { return c.path("pki", "admin.kubeconfig") }

// ContainerdSocket is containerd's gRPC socket, reachable from the host.
func (c Config) ContainerdSocket() string { return c.path("containerd", "containerd.sock") }

// LogDir holds one log file per component.
func (c Config) LogDir() string { return c.path("logs") }

func (c Config) recordsFile() string { return c.path("records.json") }
