package cluster

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/isolator-dev/isolator/test/realnode/images"
)

// KubeRouterImage is the image of the NetworkPolicy dataplane: the
// kube-router binary, with /lib, /lib64, /sbin and /bin linked into /usr,
// where the pod mounts the node's /usr for iptables, ipset and their
// libraries (Debian's, which the node uses itself).
const KubeRouterImage = "isolator.local/kube-router:test"

var kubeRouterImage = images.Options{
	Path: "/kube-router", User: "0:0",
	Symlinks: map[string]string{"/lib": "usr/lib", "/lib64": "usr/lib64", "/sbin": "usr/sbin", "/bin": "usr/bin"},
}

// dataplane runs kube-router's NetworkPolicy firewall as a DaemonSet in
// kube-system, as clusters that use it do (k3s embeds the same code), and
// waits until its pod is Ready. It runs with the node's network, privileged
// (iptables, ipset), with the node's /usr and /etc/alternatives read-only (no /lib/modules: the
// host has the ip_set and netfilter modules loaded already).
// It is a test-only dataplane, never shipped.
func (c Config) dataplane(ctx context.Context, cs *kubernetes.Clientset) error {
	labels := map[string]string{"k8s-app": "kube-router"}
	objects := []func() error{
		func() error {
			_, err := cs.CoreV1().ServiceAccounts("kube-system").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "kube-router", Namespace: "kube-system"}}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := cs.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
				ObjectMeta: metav1.ObjectMeta{Name: "kube-router"},
				Rules: []rbacv1.PolicyRule{
					{APIGroups: []string{""}, Resources: []string{"namespaces", "pods", "services", "nodes", "endpoints"}, Verbs: []string{"get", "list", "watch"}},
					{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"networkpolicies"}, Verbs: []string{"get", "list", "watch"}},
					{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"get", "list", "watch"}},
					{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
				},
			}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: "kube-router"},
				RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "kube-router"},
				Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "kube-router", Namespace: "kube-system"}},
			}, metav1.CreateOptions{})
			return err
		},
		func() error {
			hostPath := func(name, path string, t corev1.HostPathType) corev1.Volume {
				return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: path, Type: &t}}}
			}
			_, err := cs.AppsV1().DaemonSets("kube-system").Create(ctx, &appsv1.DaemonSet{
				ObjectMeta: metav1.ObjectMeta{Name: "kube-router", Namespace: "kube-system", Labels: labels},
				Spec: appsv1.DaemonSetSpec{
					Selector: &metav1.LabelSelector{MatchLabels: labels},
					Template: corev1.PodTemplateSpec{
						ObjectMeta: metav1.ObjectMeta{Labels: labels},
						Spec: corev1.PodSpec{
							ServiceAccountName: "kube-router",
							HostNetwork:        true,
							PriorityClassName:  "system-node-critical",
							Tolerations:        []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
							Containers: []corev1.Container{{
								Name: "kube-router", Image: KubeRouterImage, ImagePullPolicy: corev1.PullNever,
								Args: []string{"--run-firewall=true", "--run-router=false", "--run-service-proxy=false",
									"--hostname-override=$(NODE_NAME)", "--metrics-port=0", "--health-port=20244"},
								Env:             []corev1.EnvVar{{Name: "NODE_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}}},
								SecurityContext: &corev1.SecurityContext{Privileged: ptr.To(true)},
								ReadinessProbe: &corev1.Probe{
									ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(20244)}},
									PeriodSeconds: 1,
								},
								VolumeMounts: []corev1.VolumeMount{
									{Name: "usr", MountPath: "/usr", ReadOnly: true},
									{Name: "alternatives", MountPath: "/etc/alternatives", ReadOnly: true},
									{Name: "xtables-lock", MountPath: "/run/xtables.lock"},
								},
							}},
							Volumes: []corev1.Volume{
								hostPath("usr", "/usr", corev1.HostPathDirectory),
								hostPath("alternatives", "/etc/alternatives", corev1.HostPathDirectory),
								// /run is the cluster's own tmpfs.
								hostPath("xtables-lock", "/run/xtables.lock", corev1.HostPathFileOrCreate),
							},
						},
					},
				},
			}, metav1.CreateOptions{})
			return err
		},
	}
	for _, create := range objects {
		if err := create(); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating kube-router: %w", err)
		}
	}
	var ds *appsv1.DaemonSet
	err := poll(ctx, 2*time.Minute, func() bool {
		var err error
		ds, err = cs.AppsV1().DaemonSets("kube-system").Get(ctx, "kube-router", metav1.GetOptions{})
		return err == nil && ds.Status.DesiredNumberScheduled > 0 && ds.Status.NumberReady == ds.Status.DesiredNumberScheduled
	}, "kube-router's DaemonSet pod Ready")
	if err != nil && ds != nil {
		return fmt.Errorf("%w (desired %d, ready %d)", err, ds.Status.DesiredNumberScheduled, ds.Status.NumberReady)
	}
	return err
}
