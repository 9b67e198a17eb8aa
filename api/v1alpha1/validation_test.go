package v1alpha1_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	kstatus "sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/isolator-dev/isolator/internal/localcp"
)

// These specs send manifests to a real kube-apiserver with the generated CRD
// installed, and check that bad input is rejected with a message a user can
// act on, and that good input is accepted and defaulted.

var (
	controlPlane *localcp.ControlPlane
	k8sClient    client.Client
)

func TestValidation(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "CRD Validation Suite")
}

var _ = BeforeSuite(func() {
	var err error
	controlPlane, err = localcp.Start(localcp.Options{
		CRDDirectoryPaths: []string{filepath.Join("..", "..", "config", "crd", "bases")},
	})
	Expect(err).NotTo(HaveOccurred())
	k8sClient, err = client.New(controlPlane.Config, client.Options{})
	Expect(err).NotTo(HaveOccurred())
})

var _ = AfterSuite(func() {
	if controlPlane != nil {
		Expect(controlPlane.Stop()).To(Succeed())
	}
})

// egressRules lists n egress rules to the minio preset.
func egressRules(n int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString("  - name: r" + strings.Repeat("x", i%3) + string(rune('a'+i%26)) + string(rune('a'+i/26)) + "\n    to: [{preset: minio}]\n")
	}
	return b.String()
}

// manifest wraps a spec in a WorkloadIsolation named name in namespace default.
func manifest(name, spec string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	doc := "apiVersion: isolation.isolator.dev/v1alpha1\nkind: WorkloadIsolation\nmetadata:\n  name: " + name + "\n  namespace: default\nspec:\n" + spec
	Expect(yaml.Unmarshal([]byte(doc), &u.Object)).To(Succeed())
	return u
}

const seedTarget = "  target:\n    podSelector:\n      matchLabels:\n        app.kubernetes.io/name: local-ai\n"

var _ = Describe("WorkloadIsolation validation", func() {
	ctx := context.Background()

	DescribeTable("rejects invalid manifests with a clear message",
		func(spec, message string) {
			// Strict field validation, as kubectl apply uses by default.
			err := k8sClient.Create(ctx, manifest("invalid", spec), client.DryRunAll, client.FieldValidation("Strict"))
			Expect(err).To(HaveOccurred())
			Expect(apierrors.IsInvalid(err) || apierrors.IsBadRequest(err)).To(BeTrue(), "expected a validation error, got %v", err)
			Expect(err.Error()).To(ContainSubstring(message))
		},
		Entry("no target", "  ingress: []\n",
			"spec.target: Required value"),
		Entry("neither podSelector nor workloadRef", "  target: {}\n",
			"exactly one of podSelector or workloadRef must be set"),
		Entry("both podSelector and workloadRef",
			"  target:\n    podSelector: {matchLabels: {app: a}}\n    workloadRef: {kind: Deployment, name: a}\n",
			"exactly one of podSelector or workloadRef must be set"),
		Entry("empty podSelector without confirmation", "  target:\n    podSelector: {}\n",
			"podSelector is empty and would select every pod in the namespace; set selectAllPods: true to confirm"),
		Entry("selectAllPods with a non-empty podSelector",
			"  target:\n    podSelector: {matchLabels: {app: a}}\n    selectAllPods: true\n",
			"selectAllPods: true requires an empty podSelector"),
		Entry("workloadRef of an unsupported kind", "  target:\n    workloadRef: {kind: Job, name: a}\n",
			`spec.target.workloadRef.kind: Unsupported value: "Job"`),
		Entry("workloadRef with an invalid name", "  target:\n    workloadRef: {kind: Deployment, name: Local_AI}\n",
			"spec.target.workloadRef.name in body should match"),
		Entry("matchExpressions with an unknown operator",
			"  target:\n    podSelector: {matchExpressions: [{key: app, operator: Equals, values: [a]}]}\n",
			`operator: Unsupported value: "Equals"`),
		Entry("In without values",
			"  target:\n    podSelector: {matchExpressions: [{key: app, operator: In}]}\n",
			"In and NotIn need values; Exists and DoesNotExist take none"),
		Entry("Exists with values",
			"  target:\n    podSelector: {matchExpressions: [{key: app, operator: Exists, values: [a]}]}\n",
			"In and NotIn need values; Exists and DoesNotExist take none"),
		Entry("unknown mode", seedTarget+"  mode: DryRun\n",
			`spec.mode: Unsupported value: "DryRun"`),
		Entry("unknown guard", seedTarget+"  guard: Strict\n",
			`spec.guard: Unsupported value: "Strict"`),
		Entry("rule without a name", seedTarget+"  ingress:\n  - from: [{preset: ingress-nginx}]\n",
			"spec.ingress[0].name: Required value"),
		Entry("rule name that is not a DNS label", seedTarget+"  ingress:\n  - name: Nginx_Ingress\n    from: [{preset: ingress-nginx}]\n",
			"spec.ingress[0].name in body should match"),
		Entry("rule name longer than 63 characters",
			seedTarget+"  ingress:\n  - name: a123456789012345678901234567890123456789012345678901234567890123\n    from: [{preset: ingress-nginx}]\n",
			"spec.ingress[0].name: Too long"),
		Entry("duplicate rule names",
			seedTarget+"  ingress:\n  - name: nginx\n    from: [{preset: ingress-nginx}]\n  - name: nginx\n    from: [{preset: ingress-nginx}]\n",
			`spec.ingress[1]: Duplicate value: {"name":"nginx"}`),
		Entry("rule without sources", seedTarget+"  ingress:\n  - name: nginx\n    from: []\n",
			"spec.ingress[0].from: Invalid value: 0: spec.ingress[0].from in body should have at least 1 items"),
		Entry("from entry with nothing in it", seedTarget+"  ingress:\n  - name: nginx\n    from: [{}]\n",
			"each from entry needs one of preset, namespaceSelector, podSelector or ipBlock"),
		Entry("preset mixed with a selector",
			seedTarget+"  ingress:\n  - name: nginx\n    from: [{preset: ingress-nginx, podSelector: {matchLabels: {app: x}}}]\n",
			"preset cannot be combined with namespaceSelector, podSelector or ipBlock in the same from entry"),
		Entry("ipBlock mixed with a selector",
			seedTarget+"  ingress:\n  - name: lan\n    from: [{ipBlock: {cidr: 10.0.0.0/8}, namespaceSelector: {}}]\n",
			"ipBlock cannot be combined with namespaceSelector or podSelector in the same from entry"),
		Entry("presetNamespace without preset",
			seedTarget+"  ingress:\n  - name: nginx\n    from: [{presetNamespace: ingress, podSelector: {matchLabels: {app: x}}}]\n",
			"presetNamespace is only valid together with preset"),
		Entry("preset name that is not a DNS label", seedTarget+"  ingress:\n  - name: nginx\n    from: [{preset: Ingress_Nginx}]\n",
			"spec.ingress[0].from[0].preset in body should match"),
		Entry("http without ports", seedTarget+"  ingress:\n  - name: api\n    from: [{preset: ingress-nginx}]\n    http: {presets: [openai-inference]}\n",
			"http needs ports, each TCP with a port and without endPort"),
		Entry("http on UDP", seedTarget+"  ingress:\n  - name: api\n    from: [{preset: ingress-nginx}]\n    ports: [{protocol: UDP, port: 8080}]\n    http: {presets: [openai-inference]}\n",
			"http needs ports, each TCP with a port and without endPort"),
		Entry("http on a port range", seedTarget+"  ingress:\n  - name: api\n    from: [{preset: ingress-nginx}]\n    ports: [{port: 8080, endPort: 8090}]\n    http: {presets: [openai-inference]}\n",
			"http needs ports, each TCP with a port and without endPort"),
		Entry("empty http", seedTarget+"  ingress:\n  - name: api\n    from: [{preset: ingress-nginx}]\n    ports: [{port: 8080}]\n    http: {}\n",
			"http needs at least one preset or request"),
		Entry("http path with a query", seedTarget+"  ingress:\n  - name: api\n    from: [{preset: ingress-nginx}]\n    ports: [{port: 8080}]\n    http: {requests: [{path: \"/v1/models?all=1\"}]}\n",
			"spec.ingress[0].http.requests[0].path in body should match"),
		Entry("http path without a leading slash", seedTarget+"  ingress:\n  - name: api\n    from: [{preset: ingress-nginx}]\n    ports: [{port: 8080}]\n    http: {requests: [{path: v1/models}]}\n",
			"spec.ingress[0].http.requests[0].path in body should match"),
		Entry("http method not known", seedTarget+"  ingress:\n  - name: api\n    from: [{preset: ingress-nginx}]\n    ports: [{port: 8080}]\n    http: {requests: [{method: TRACE, path: /}]}\n",
			`spec.ingress[0].http.requests[0].method: Unsupported value: "TRACE"`),
		Entry("hosts mixed with an ipBlock", seedTarget+"  egress:\n  - name: m\n    to: [{hosts: [hf.co], ipBlock: {cidr: 10.0.0.0/8}}]\n",
			"hosts cannot be combined with namespaceSelector, podSelector or ipBlock in the same to entry"),
		Entry("hosts mixed with a preset", seedTarget+"  egress:\n  - name: m\n    to: [{hosts: [hf.co], preset: minio}]\n",
			"preset cannot be combined with hosts"),
		Entry("a bare wildcard host", seedTarget+"  egress:\n  - name: m\n    to: [{hosts: [\"*\"]}]\n",
			"spec.egress[0].to[0].hosts[0] in body should match"),
		Entry("an upper-case host", seedTarget+"  egress:\n  - name: m\n    to: [{hosts: [HF.co]}]\n",
			"spec.egress[0].to[0].hosts[0] in body should match"),
		Entry("a wildcard inside a host", seedTarget+"  egress:\n  - name: m\n    to: [{hosts: [\"cdn.*.hf.co\"]}]\n",
			"spec.egress[0].to[0].hosts[0] in body should match"),
		Entry("empty hosts", seedTarget+"  egress:\n  - name: m\n    to: [{hosts: []}]\n",
			"spec.egress[0].to[0].hosts: Invalid value"),
		Entry("invalid CIDR", seedTarget+"  ingress:\n  - name: lan\n    from: [{ipBlock: {cidr: 10.0.0.300/8}}]\n",
			"cidr must be a valid CIDR such as 10.0.0.0/8 or 2001:db8::/32"),
		Entry("CIDR without a prefix length", seedTarget+"  ingress:\n  - name: lan\n    from: [{ipBlock: {cidr: 10.0.0.1}}]\n",
			"cidr must be a valid CIDR"),
		Entry("except outside the CIDR",
			seedTarget+"  ingress:\n  - name: lan\n    from: [{ipBlock: {cidr: 10.0.0.0/8, except: [192.168.0.0/16]}}]\n",
			"every except entry must be a CIDR strictly inside cidr, of the same IP family"),
		Entry("except equal to the CIDR",
			seedTarget+"  ingress:\n  - name: lan\n    from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.0.0.0/8]}}]\n",
			"every except entry must be a CIDR strictly inside cidr"),
		Entry("port 0", seedTarget+"  ingress:\n  - name: nginx\n    from: [{preset: ingress-nginx}]\n    ports: [{port: 0}]\n",
			"port must be between 1 and 65535"),
		Entry("port above 65535", seedTarget+"  ingress:\n  - name: nginx\n    from: [{preset: ingress-nginx}]\n    ports: [{port: 70000}]\n",
			"port must be between 1 and 65535"),
		Entry("invalid named port",
			seedTarget+"  ingress:\n  - name: nginx\n    from: [{preset: ingress-nginx}]\n    ports: [{port: HTTP_API}]\n",
			"a named port must be an IANA service name"),
		Entry("named port longer than 15 characters",
			seedTarget+"  ingress:\n  - name: nginx\n    from: [{preset: ingress-nginx}]\n    ports: [{port: openai-compatible-api}]\n",
			"Too long"),
		Entry("unknown protocol",
			seedTarget+"  ingress:\n  - name: nginx\n    from: [{preset: ingress-nginx}]\n    ports: [{protocol: ICMP, port: 8080}]\n",
			`protocol: Unsupported value: "ICMP"`),
		Entry("endPort below port",
			seedTarget+"  ingress:\n  - name: nginx\n    from: [{preset: ingress-nginx}]\n    ports: [{port: 9000, endPort: 8000}]\n",
			"endPort needs a numeric port and must not be below it"),
		Entry("endPort with a named port",
			seedTarget+"  ingress:\n  - name: nginx\n    from: [{preset: ingress-nginx}]\n    ports: [{port: http, endPort: 8000}]\n",
			"endPort needs a numeric port and must not be below it"),
		Entry("unknown field (a typo)", seedTarget+"  ingres: []\n",
			`unknown field "spec.ingres"`),
		Entry("CIDR with host bits, which NetworkPolicy rejects",
			seedTarget+"  ingress:\n  - name: lan\n    from: [{ipBlock: {cidr: 10.0.0.1/8}}]\n",
			"cidr 10.0.0.1/8 has host bits set: write the network address"),
		Entry("IPv6 CIDR with host bits",
			seedTarget+"  ingress:\n  - name: lan\n    from: [{ipBlock: {cidr: '2001:db8::1/32'}}]\n",
			"cidr 2001:db8::1/32 has host bits set: write the network address"),
		Entry("except entry with host bits",
			seedTarget+"  ingress:\n  - name: lan\n    from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.1/16]}}]\n",
			"every except entry must be a network address without host bits"),
		Entry("matchExpressions key with a name part over 63 characters",
			"  target:\n    podSelector: {matchExpressions: [{key: example.com/"+strings.Repeat("k", 64)+", operator: Exists}]}\n",
			"spec.target.podSelector.matchExpressions[0].key: Invalid value"),
		Entry("matchExpressions value over 63 characters in a peer",
			seedTarget+"  ingress:\n  - name: nginx\n    from: [{namespaceSelector: {matchExpressions: [{key: team, operator: In, values: ["+strings.Repeat("v", 64)+"]}]}}]\n",
			"Too long"),
		Entry("matchExpressions key that is not a label key",
			"  target:\n    podSelector: {matchExpressions: [{key: 'app/', operator: Exists}]}\n",
			"spec.target.podSelector.matchExpressions[0].key: Invalid value"),
		Entry("matchExpressions value that is not a label value",
			"  target:\n    podSelector: {matchExpressions: [{key: app, operator: In, values: ['a b']}]}\n",
			"spec.target.podSelector.matchExpressions[0].values[0]: Invalid value"),
		Entry("egress rule without a name", seedTarget+"  egress:\n  - to: [{preset: minio}]\n",
			"spec.egress[0].name: Required value"),
		Entry("egress rule name that is not a DNS label", seedTarget+"  egress:\n  - name: Object_Store\n    to: [{preset: minio}]\n",
			"spec.egress[0].name in body should match"),
		Entry("duplicate egress rule names",
			seedTarget+"  egress:\n  - name: s3\n    to: [{preset: minio}]\n  - name: s3\n    to: [{preset: minio}]\n",
			`spec.egress[1]: Duplicate value: {"name":"s3"}`),
		Entry("egress rule without destinations", seedTarget+"  egress:\n  - name: s3\n    to: []\n",
			"spec.egress[0].to in body should have at least 1 items"),
		Entry("to entry with nothing in it", seedTarget+"  egress:\n  - name: s3\n    to: [{}]\n",
			"each to entry needs one of preset, hosts, namespaceSelector, podSelector or ipBlock"),
		Entry("egress preset mixed with a selector",
			seedTarget+"  egress:\n  - name: s3\n    to: [{preset: minio, podSelector: {matchLabels: {app: x}}}]\n",
			"preset cannot be combined with hosts, namespaceSelector, podSelector or ipBlock in the same to entry"),
		Entry("egress ipBlock mixed with a selector",
			seedTarget+"  egress:\n  - name: lan\n    to: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]\n",
			"ipBlock cannot be combined with namespaceSelector or podSelector in the same to entry"),
		Entry("egress presetNamespace without preset",
			seedTarget+"  egress:\n  - name: s3\n    to: [{presetNamespace: storage, podSelector: {matchLabels: {app: x}}}]\n",
			"presetNamespace is only valid together with preset"),
		Entry("a host name as destination, which NetworkPolicy cannot express",
			seedTarget+"  egress:\n  - name: hf\n    to: [{host: huggingface.co}]\n",
			`unknown field "spec.egress[0].to[0].host"`),
		Entry("egress CIDR with host bits",
			seedTarget+"  egress:\n  - name: s3\n    to: [{ipBlock: {cidr: 52.216.0.1/15}}]\n",
			"cidr 52.216.0.1/15 has host bits set"),
		Entry("egress port out of range",
			seedTarget+"  egress:\n  - name: s3\n    to: [{preset: minio}]\n    ports: [{port: 0}]\n",
			"port must be between 1 and 65535"),
		Entry("more than 32 egress rules", seedTarget+"  egress:\n"+egressRules(33),
			"spec.egress: Too many: 33: must have at most 32 items"),
		Entry("dns in capitals, which is neither a preset name nor None", seedTarget+"  egress: []\n  dns: NONE\n",
			`spec.dns in body should match`),
		Entry("dns that is not a DNS label", seedTarget+"  egress: []\n  dns: Cluster_DNS\n",
			"spec.dns in body should match"),
	)

	It("gives a new resource Ready=Unknown (Pending) until the operator reconciles it", func() {
		u := manifest("pending", seedTarget)
		Expect(k8sClient.Create(ctx, u)).To(Succeed())
		DeferCleanup(func() { Expect(k8sClient.Delete(ctx, u)).To(Succeed()) })
		got := &unstructured.Unstructured{}
		got.SetGroupVersionKind(u.GroupVersionKind())
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(u), got)).To(Succeed())
		conditions, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
		Expect(conditions).To(ConsistOf(And(
			HaveKeyWithValue("type", "Ready"), HaveKeyWithValue("status", "Unknown"), HaveKeyWithValue("reason", "Pending"),
		)))
		res, err := kstatus.Compute(got)
		Expect(err).NotTo(HaveOccurred())
		Expect(res.Status).To(Equal(kstatus.InProgressStatus), "kstatus, Flux and Argo CD must wait for the operator")
	})

	It("accepts the seed manifest and defaults mode and protocol", func() {
		u := manifest("local-ai", seedTarget+"  ingress:\n  - name: nginx\n    from: [{preset: ingress-nginx}]\n    ports: [{port: 8080}]\n")
		Expect(k8sClient.Create(ctx, u, client.DryRunAll)).To(Succeed())
		mode, _, _ := unstructured.NestedString(u.Object, "spec", "mode")
		Expect(mode).To(Equal("Enforce"))
		_, hasGuard, _ := unstructured.NestedFieldNoCopy(u.Object, "spec", "guard")
		Expect(hasGuard).To(BeFalse(), "guard has no default: existing resources stay unguarded")
		ports, _, _ := unstructured.NestedSlice(u.Object, "spec", "ingress")
		Expect(ports[0]).To(HaveKeyWithValue("ports", ConsistOf(HaveKeyWithValue("protocol", "TCP"))))
	})

	DescribeTable("accepts valid variants",
		func(spec string) {
			Expect(k8sClient.Create(ctx, manifest("valid", spec), client.DryRunAll)).To(Succeed())
		},
		Entry("workloadRef", "  target:\n    workloadRef: {kind: StatefulSet, name: local-ai}\n"),
		Entry("explicit select-all", "  target:\n    podSelector: {}\n    selectAllPods: true\n"),
		Entry("matchExpressions", "  target:\n    podSelector: {matchExpressions: [{key: app, operator: In, values: [a, b]}, {key: canary, operator: DoesNotExist}]}\n"),
		Entry("deny all ingress", seedTarget+"  ingress: []\n"),
		Entry("egress to hosts", seedTarget+"  egress:\n  - name: models\n    to: [{hosts: [huggingface.co, \"*.hf.co\", \"*.xethub.hf.co\"]}, {preset: huggingface}]\n    ports: [{port: 443}]\n"),
		Entry("http allow-list", seedTarget+"  ingress:\n  - name: api\n    from: [{preset: ingress-nginx}]\n    ports: [{port: 8080}, {port: http}]\n    http:\n      presets: [openai-inference]\n      requests: [{method: GET, path: \"/v1/models/local-ai\"}, {path: \"/a-b_c.d~e/%20/x:y@z\"}]\n"),
		Entry("preset pointed at another namespace", seedTarget+"  ingress:\n  - name: nginx\n    from: [{preset: ingress-nginx, presetNamespace: ingress-system}]\n"),
		Entry("label keys with a prefix, and empty label values",
			"  target:\n    podSelector: {matchLabels: {app.kubernetes.io/name: local-ai, example.com/canary: ''}, matchExpressions: [{key: example.com/tier, operator: NotIn, values: ['', web.v1_2]}]}\n"),
		Entry("egress isolated with nothing allowed but DNS", seedTarget+"  egress: []\n"),
		Entry("guarded", seedTarget+"  guard: Enforce\n"),
		Entry("guard off", seedTarget+"  guard: \"Off\"\n"),
		Entry("egress with DNS off", seedTarget+"  egress: []\n  dns: None\n"),
		Entry("egress to presets, selectors and CIDRs",
			seedTarget+"  dns: cluster-dns\n  egress:\n  - name: s3\n    to: [{preset: minio, presetNamespace: storage}]\n"+
				"  - name: internet\n    to: [{ipBlock: {cidr: 0.0.0.0/0, except: [10.0.0.0/8, 169.254.0.0/16]}}]\n    ports: [{port: 443}]\n"+
				"  - name: db\n    to: [{namespaceSelector: {matchLabels: {team: data}}, podSelector: {matchLabels: {app: postgres}}}]\n"),
		Entry("all peer forms and port forms",
			seedTarget+"  ingress:\n  - name: mixed\n    from:\n    - namespaceSelector: {matchLabels: {team: a}}\n      podSelector: {matchLabels: {app: client}}\n"+
				"    - ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}\n    - ipBlock: {cidr: '2001:db8::/32'}\n"+
				"    ports: [{port: http}, {protocol: UDP, port: 53}, {port: 8000, endPort: 8100}, {protocol: SCTP}]\n"),
	)
})
