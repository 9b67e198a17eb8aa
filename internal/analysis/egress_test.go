package analysis_test

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/analysis"
	"github.com/isolator-dev/isolator/internal/policy"
	"github.com/isolator-dev/isolator/internal/preset"
)

// egressSeed is what the operator generates for the walkthrough's LocalAI
// with egress isolated: name resolution (cluster-dns), the object store in
// namespace minio, and an HTTPS mirror on the private network outside the
// service range.
const egressSeed = `
- metadata: {name: local-ai-default-deny, labels: {isolation.isolator.dev/workloadisolation: local-ai}}
  spec:
    podSelector: {matchLabels: {app.kubernetes.io/name: local-ai}}
    policyTypes: [Ingress, Egress]
- metadata: {name: local-ai-allow-nginx, labels: {isolation.isolator.dev/workloadisolation: local-ai}}
  spec:
    podSelector: {matchLabels: {app.kubernetes.io/name: local-ai}}
    policyTypes: [Ingress]
    ingress:
    - from:
      - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: nginx}}
        podSelector: {matchLabels: {app.kubernetes.io/name: ingress-nginx}}
      ports: [{protocol: TCP, port: 8080}]
- metadata: {name: local-ai-dns, labels: {isolation.isolator.dev/workloadisolation: local-ai}}
  spec:
    podSelector: {matchLabels: {app.kubernetes.io/name: local-ai}}
    policyTypes: [Egress]
    egress:
    - to:
      - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}
        podSelector: {matchLabels: {k8s-app: kube-dns}}
      - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}
        podSelector: {matchLabels: {k8s-app: node-local-dns}}
      - ipBlock: {cidr: 169.254.20.10/32}
      ports: [{protocol: UDP, port: 53}, {protocol: TCP, port: 53}]
- metadata: {name: local-ai-egress-models, labels: {isolation.isolator.dev/workloadisolation: local-ai}}
  spec:
    podSelector: {matchLabels: {app.kubernetes.io/name: local-ai}}
    policyTypes: [Egress]
    egress:
    - to:
      - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: minio}}
        podSelector: {matchLabels: {app: minio}}
      ports: [{protocol: TCP, port: 9000}]
- metadata: {name: local-ai-egress-mirror, labels: {isolation.isolator.dev/workloadisolation: local-ai}}
  spec:
    podSelector: {matchLabels: {app.kubernetes.io/name: local-ai}}
    policyTypes: [Egress]
    egress:
    - to: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.96.0.0/12]}}]
      ports: [{protocol: TCP, port: 443}]
`

// egressNamespaces are the walkthrough's namespaces plus kube-system and
// the object store's.
var egressNamespaces = append(append([]analysis.Object(nil), namespaces...),
	analysis.Object{Name: "kube-system", Labels: map[string]string{"kubernetes.io/metadata.name": "kube-system"}},
	analysis.Object{Name: "minio", Labels: map[string]string{"kubernetes.io/metadata.name": "minio", "tier": "storage"}},
)

func egressInput(t *testing.T, declared, foreign string) analysis.Input {
	in := input(t, declared, foreign)
	in.Namespaces = egressNamespaces
	return in
}

// exposures renders a report as "Direction summary" lines.
func exposures(r analysis.Report) []string {
	var out []string
	for _, e := range r.Exposures {
		out = append(out, fmt.Sprintf("%s %s", e.Direction, e.Summary))
	}
	return out
}

func TestAnalyzeEgress(t *testing.T) {
	tests := []struct {
		name     string
		declared string // default: egressSeed
		foreign  string
		want     []string // "Direction summary"; nil means isolated
	}{{
		name: "the generated policies alone",
	}, {
		name: "an allow-all egress policy",
		foreign: `
- metadata: {name: allow-all-egress}
  spec: {podSelector: {}, policyTypes: [Egress], egress: [{}]}
`,
		want: []string{"Egress allow-all-egress: egress to all destinations, all ports"},
	}, {
		name: "policyTypes defaulted by the API server count as Egress",
		foreign: `
- metadata: {name: open}
  spec: {podSelector: {matchLabels: {app.kubernetes.io/name: local-ai}}, egress: [{}]}
`,
		want: []string{"Egress open: egress to all destinations, all ports"},
	}, {
		name: "egress rules count whatever policyTypes say",
		foreign: `
- metadata: {name: ingress-typed}
  spec: {podSelector: {}, policyTypes: [Ingress], egress: [{to: [{ipBlock: {cidr: 169.254.169.254/32}}]}]}
`,
		want: []string{"Egress ingress-typed: egress to IP block 169.254.169.254/32, all ports"},
	}, {
		name: "an egress policy for other pods does not matter",
		foreign: `
- metadata: {name: web}
  spec: {podSelector: {matchLabels: {app: web}}, policyTypes: [Egress], egress: [{}]}
`,
	}, {
		name: "an egress deny of others admits nothing",
		foreign: `
- metadata: {name: deny-egress}
  spec: {podSelector: {}, policyTypes: [Egress]}
`,
	}, {
		name: "a copy of the DNS policy and a narrower DNS rule are fine",
		foreign: `
- metadata: {name: dns-copy}
  spec:
    podSelector: {}
    policyTypes: [Egress]
    egress:
    - to:
      - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}
        podSelector: {matchLabels: {k8s-app: kube-dns}}
      - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}
        podSelector: {matchLabels: {k8s-app: node-local-dns}}
      - ipBlock: {cidr: 169.254.20.10/32}
      ports: [{protocol: UDP, port: 53}, {protocol: TCP, port: 53}]
- metadata: {name: coredns-udp}
  spec:
    podSelector: {}
    policyTypes: [Egress]
    egress:
    - to: [{namespaceSelector: {matchExpressions: [{key: kubernetes.io/metadata.name, operator: In, values: [kube-system]}]}, podSelector: {matchLabels: {k8s-app: kube-dns}}}]
      ports: [{protocol: UDP, port: 53}]
`,
	}, {
		name: "DNS to every pod of kube-system is a wider selector",
		foreign: `
- metadata: {name: kube-system-dns}
  spec:
    podSelector: {}
    policyTypes: [Egress]
    egress: [{to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}}], ports: [{protocol: UDP, port: 53}]}]
`,
		want: []string{"Egress kube-system-dns: egress to all pods in namespaces kubernetes.io/metadata.name=kube-system, UDP 53"},
	}, {
		name: "the object store pods of any namespace",
		foreign: `
- metadata: {name: any-minio}
  spec:
    podSelector: {}
    policyTypes: [Egress]
    egress: [{to: [{namespaceSelector: {}, podSelector: {matchLabels: {app: minio}}}], ports: [{port: 9000}]}]
`,
		want: []string{"Egress any-minio: egress to pods app=minio in all namespaces, TCP 9000"},
	}, {
		name: "pods of the own namespace",
		foreign: `
- metadata: {name: same-ns}
  spec:
    podSelector: {}
    policyTypes: [Egress]
    egress: [{to: [{podSelector: {}}]}]
`,
		want: []string{"Egress same-ns: egress to all pods in namespace local-ai, all ports"},
	}, {
		name: "a narrower object store rule is fine",
		foreign: `
- metadata: {name: minio-api}
  spec:
    podSelector: {matchLabels: {app.kubernetes.io/name: local-ai, tier: inference}}
    policyTypes: [Egress]
    egress:
    - to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: minio}}, podSelector: {matchLabels: {app: minio, component: api}}}]
      ports: [{port: 9000}]
`,
	}, {
		name: "more ports to a declared destination",
		foreign: `
- metadata: {name: minio-console}
  spec:
    podSelector: {}
    policyTypes: [Egress]
    egress:
    - to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: minio}}, podSelector: {matchLabels: {app: minio}}}]
      ports: [{protocol: TCP, port: 9000, endPort: 9001}]
- metadata: {name: minio-udp}
  spec:
    podSelector: {}
    policyTypes: [Egress]
    egress:
    - to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: minio}}, podSelector: {matchLabels: {app: minio}}}]
      ports: [{protocol: UDP, port: 9000}]
- metadata: {name: minio-all-ports}
  spec:
    podSelector: {}
    policyTypes: [Egress]
    egress: [{to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: minio}}, podSelector: {matchLabels: {app: minio}}}]}]
`,
		want: []string{
			"Egress minio-all-ports: egress to pods app=minio in namespaces kubernetes.io/metadata.name=minio, all ports",
			"Egress minio-console: egress to pods app=minio in namespaces kubernetes.io/metadata.name=minio, TCP 9000-9001",
			"Egress minio-udp: egress to pods app=minio in namespaces kubernetes.io/metadata.name=minio, UDP 9000",
		},
	}, {
		name: "a CIDR inside the declared one, outside its exception",
		foreign: `
- metadata: {name: mirror-subnet}
  spec:
    podSelector: {}
    policyTypes: [Egress]
    egress:
    - to: [{ipBlock: {cidr: 10.1.0.0/16}}, {ipBlock: {cidr: 10.0.0.0/8, except: [10.96.0.0/12]}}, {ipBlock: {cidr: 10.64.0.0/10, except: [10.96.0.0/11]}}]
      ports: [{protocol: TCP, port: 443}]
`,
	}, {
		name: "a wider CIDR",
		foreign: `
- metadata: {name: wider}
  spec:
    podSelector: {}
    policyTypes: [Egress]
    egress: [{to: [{ipBlock: {cidr: 10.0.0.0/7}}], ports: [{port: 443}]}]
`,
		want: []string{"Egress wider: egress to IP block 10.0.0.0/7, TCP 443"},
	}, {
		name: "the declared CIDR without its exception reaches into the hole",
		foreign: `
- metadata: {name: no-except}
  spec:
    podSelector: {}
    policyTypes: [Egress]
    egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8}}], ports: [{port: 443}]}]
- metadata: {name: in-the-hole}
  spec:
    podSelector: {}
    policyTypes: [Egress]
    egress: [{to: [{ipBlock: {cidr: 10.96.0.0/16}}], ports: [{port: 443}]}]
- metadata: {name: narrower-except}
  spec:
    podSelector: {}
    policyTypes: [Egress]
    egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.96.0.0/13]}}], ports: [{port: 443}]}]
`,
		want: []string{
			"Egress in-the-hole: egress to IP block 10.96.0.0/16, TCP 443",
			"Egress narrower-except: egress to IP block 10.0.0.0/8 except 10.96.0.0/13, TCP 443",
			"Egress no-except: egress to IP block 10.0.0.0/8, TCP 443",
		},
	}, {
		name: "the cloud metadata service and the whole internet",
		foreign: `
- metadata: {name: metadata}
  spec:
    podSelector: {}
    policyTypes: [Egress]
    egress: [{to: [{ipBlock: {cidr: 169.254.169.254/32}}], ports: [{port: 80}]}]
- metadata: {name: internet}
  spec:
    podSelector: {}
    policyTypes: [Egress]
    egress: [{to: [{ipBlock: {cidr: 0.0.0.0/0, except: [10.0.0.0/8]}}, {ipBlock: {cidr: "::/0"}}], ports: [{port: 443}]}]
`,
		want: []string{
			"Egress internet: egress to IP block 0.0.0.0/0 except 10.0.0.0/8 or IP block ::/0, TCP 443",
			"Egress metadata: egress to IP block 169.254.169.254/32, TCP 80",
		},
	}, {
		name: "conservative: a CIDR only two declared ipBlocks cover together is reported",
		declared: `
- metadata: {name: local-ai-egress-halves, labels: {isolation.isolator.dev/workloadisolation: local-ai}}
  spec:
    podSelector: {matchLabels: {app.kubernetes.io/name: local-ai}}
    policyTypes: [Egress]
    egress: [{to: [{ipBlock: {cidr: 192.168.0.0/17}}, {ipBlock: {cidr: 192.168.128.0/17}}], ports: [{port: 443}]}]
`,
		foreign: `
- metadata: {name: whole}
  spec:
    podSelector: {}
    policyTypes: [Egress]
    egress: [{to: [{ipBlock: {cidr: 192.168.0.0/16}}], ports: [{port: 443}]}]
`,
		want: []string{"Egress whole: egress to IP block 192.168.0.0/16, TCP 443"},
	}, {
		name: "an ipBlock is never inside a selector",
		foreign: `
- metadata: {name: dns-by-address}
  spec:
    podSelector: {}
    policyTypes: [Egress]
    egress: [{to: [{ipBlock: {cidr: 10.96.0.10/32}}], ports: [{protocol: UDP, port: 53}]}]
`,
		want: []string{"Egress dns-by-address: egress to IP block 10.96.0.10/32, UDP 53"},
	}, {
		name: "a destination namespace that does not exist yet is latent",
		foreign: `
- metadata: {name: future-store}
  spec:
    podSelector: {}
    policyTypes: [Egress]
    egress: [{to: [{namespaceSelector: {matchLabels: {team: storage}}}], ports: [{port: 9000}]}]
`,
		want: []string{"Egress future-store: egress to all pods in namespaces team=storage, TCP 9000" + latent},
	}, {
		name: "declared destinations by another namespace label: latent",
		foreign: `
- metadata: {name: by-tier}
  spec:
    podSelector: {}
    policyTypes: [Egress]
    egress: [{to: [{namespaceSelector: {matchLabels: {tier: storage}}, podSelector: {matchLabels: {app: minio}}}], ports: [{port: 9000}]}]
`,
		want: []string{"Egress by-tier: egress to pods app=minio in namespaces tier=storage, TCP 9000" + latent},
	}, {
		name: "a policy that widens both directions is reported once per direction",
		foreign: `
- metadata: {name: open-both}
  spec: {podSelector: {}, policyTypes: [Ingress, Egress], ingress: [{}], egress: [{}]}
`,
		want: []string{
			"Ingress open-both: all sources, all ports",
			"Egress open-both: egress to all destinations, all ports",
		},
	}, {
		name: "another WorkloadIsolation's egress: a wider rule widens, a copy is shared",
		foreign: `
- metadata: {name: other-default-deny, labels: {isolation.isolator.dev/workloadisolation: other}}
  spec: {podSelector: {matchLabels: {app.kubernetes.io/name: local-ai}}, policyTypes: [Egress]}
- metadata: {name: other-egress-web, labels: {isolation.isolator.dev/workloadisolation: other}}
  spec:
    podSelector: {matchLabels: {app.kubernetes.io/name: local-ai}}
    policyTypes: [Egress]
    egress: [{to: [{ipBlock: {cidr: 0.0.0.0/0}}], ports: [{protocol: TCP, port: 443}]}]
`,
		want: []string{
			"Egress other-default-deny: generated for WorkloadIsolation other, which selects the same pods",
			"Egress other-egress-web: egress to IP block 0.0.0.0/0, TCP 443",
		},
	}, {
		name:     "no egress declared: egress policies of others are not reported",
		declared: "-",
		foreign: `
- metadata: {name: allow-all-egress}
  spec: {podSelector: {}, policyTypes: [Egress], egress: [{}]}
- metadata: {name: both}
  spec:
    podSelector: {}
    policyTypes: [Ingress, Egress]
    ingress: [{from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: nginx}}, podSelector: {matchLabels: {app.kubernetes.io/name: ingress-nginx}}}], ports: [{port: 8080}]}]
    egress: [{to: [{ipBlock: {cidr: 169.254.169.254/32}}]}]
`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			declared := egressSeed + tt.declared
			switch tt.declared {
			case "-":
				declared = seed
			case "":
				declared = egressSeed
			}
			report := analysis.Analyze(egressInput(t, declared, tt.foreign))
			checkExposures(t, report, exposures(report), tt.want)
		})
	}
}

func TestAnalyzeEgressSaysLatentOrOpen(t *testing.T) {
	report := analysis.Analyze(egressInput(t, egressSeed, `
- metadata: {name: future-store}
  spec:
    podSelector: {}
    policyTypes: [Egress]
    egress: [{to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: minio-2}}, podSelector: {matchLabels: {app: minio}}}], ports: [{port: 9000}]}]
`))
	want := []analysis.Exposure{{
		Policy: "future-store", Direction: analysis.Egress, Widens: true, Latent: true,
		Summary: "future-store: egress to pods app=minio in namespaces kubernetes.io/metadata.name=minio-2, TCP 9000" + latent,
	}}
	if len(report.Exposures) != 1 || report.Exposures[0] != want[0] || !report.Widened() || report.Isolated() {
		t.Fatalf("exposures = %+v, want %+v", report.Exposures, want)
	}
	in := egressInput(t, egressSeed, `
- metadata: {name: future-store}
  spec:
    podSelector: {}
    policyTypes: [Egress]
    egress: [{to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: minio-2}}, podSelector: {matchLabels: {app: minio}}}], ports: [{port: 9000}]}]
`)
	in.Namespaces = append(in.Namespaces, analysis.Object{Name: "minio-2"})
	if r := analysis.Analyze(in); len(r.Exposures) != 1 || r.Exposures[0].Latent || r.Exposures[0].Direction != analysis.Egress {
		t.Errorf("once the namespace exists the egress widening is open, got %+v", r.Exposures)
	}
}

// In Audit mode nothing is written: the target pods are isolated in
// neither direction.
func TestAnalyzeReportsPodsNoEgressPolicySelects(t *testing.T) {
	in := egressInput(t, egressSeed, "")
	in.Policies = nil
	got := exposures(analysis.Analyze(in))
	want := []string{
		"Ingress 1 target pods are selected by no NetworkPolicy: all sources, all ports",
		"Egress 1 target pods are selected by no egress NetworkPolicy: egress to all destinations, all ports",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("exposures:\n got %q\nwant %q", got, want)
	}

	// A policy with egress rules but without the Egress type does not
	// isolate the pods for egress.
	in = egressInput(t, egressSeed, `
- metadata: {name: ingress-typed}
  spec: {podSelector: {}, policyTypes: [Ingress], egress: [{to: [{podSelector: {}}], ports: [{port: 1}]}]}
`)
	in.Policies = in.Policies[len(in.Declared):]
	got = exposures(analysis.Analyze(in))
	want = []string{
		"Egress ingress-typed: egress to all pods in namespace local-ai, TCP 1",
		"Egress 1 target pods are selected by no egress NetworkPolicy: egress to all destinations, all ports",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("exposures:\n got %q\nwant %q", got, want)
	}
}

// The policies the operator renders for a spec with egress (cluster-dns
// and the minio preset) are the intent: alone they are isolated, and a
// foreign allow-all egress policy is reported.
func TestAnalyzeGeneratedEgress(t *testing.T) {
	presets, err := preset.Parse(preset.BuiltinYAML())
	if err != nil {
		t.Fatal(err)
	}
	catalog, err := preset.NewCatalog(presets)
	if err != nil {
		t.Fatal(err)
	}
	wi := &isolationv1alpha1.WorkloadIsolation{
		ObjectMeta: metav1.ObjectMeta{Name: "local-ai", Namespace: "local-ai", UID: "uid"},
		Spec: isolationv1alpha1.WorkloadIsolationSpec{
			Target: isolationv1alpha1.Target{PodSelector: &isolationv1alpha1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": "local-ai"}}},
			Egress: []isolationv1alpha1.EgressRule{{
				Name:  "mirror",
				To:    []isolationv1alpha1.EgressPeer{{IPBlock: &isolationv1alpha1.IPBlock{CIDR: "10.0.0.0/8", Except: []string{"10.96.0.0/12"}}}},
				Ports: []isolationv1alpha1.Port{{Protocol: corev1.ProtocolTCP, Port: ptr.To(intstr.FromInt32(443))}},
			}},
		},
	}
	declared, err := policy.Build(wi, *wi.Spec.Target.PodSelector.LabelSelector(), catalog)
	if err != nil {
		t.Fatal(err)
	}
	in := analysis.Input{
		Namespace: "local-ai", TargetPods: targetPods, Namespaces: egressNamespaces,
		Policies: declared, Declared: declared, Self: "local-ai", OwnerOf: analysis.ControllingIsolation,
	}
	if r := analysis.Analyze(in); !r.Isolated() {
		t.Fatalf("the generated policies alone must be isolated: %+v", r.Exposures)
	}
	in.Policies = append(in.Policies[:len(in.Policies):len(in.Policies)], policies(t, `
- metadata: {name: allow-all-egress}
  spec: {podSelector: {}, policyTypes: [Egress], egress: [{}]}
`)...)
	r := analysis.Analyze(in)
	if got := exposures(r); len(got) != 1 || got[0] != "Egress allow-all-egress: egress to all destinations, all ports" || r.Isolated() {
		t.Errorf("exposures = %q", got)
	}
}

func TestExplainEgress(t *testing.T) {
	in := egressInput(t, egressSeed, `
- metadata: {name: allow-all-egress}
  spec: {podSelector: {}, policyTypes: [Egress], egress: [{}]}
`)
	var got []string
	for _, p := range analysis.Explain(in) {
		if p.Direction == analysis.Egress {
			got = append(got, fmt.Sprintf("%s|%d|%s|%s|%v", p.Policy, p.Pods, p.Peers, p.Ports, p.Declared))
		}
	}
	want := []string{
		"local-ai-default-deny|1|none (deny)|-|true",
		"local-ai-dns|1|pods k8s-app=kube-dns in namespaces kubernetes.io/metadata.name=kube-system or pods k8s-app=node-local-dns in namespaces kubernetes.io/metadata.name=kube-system or IP block 169.254.20.10/32|TCP 53, UDP 53|true",
		"local-ai-egress-models|1|pods app=minio in namespaces kubernetes.io/metadata.name=minio|TCP 9000|true",
		"local-ai-egress-mirror|1|IP block 10.0.0.0/8 except 10.96.0.0/12|TCP 443|true",
		"allow-all-egress|1|all destinations|all ports|false",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("egress paths:\n got %q\nwant %q", got, want)
	}

	// Without declared egress the target's egress is not isolated: no
	// egress paths.
	for _, p := range analysis.Explain(input(t, seed, "")) {
		if p.Direction != analysis.Ingress {
			t.Errorf("no egress declared, yet an egress path: %+v", p)
		}
	}
}
