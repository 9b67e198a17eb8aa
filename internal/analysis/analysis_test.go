package analysis_test

import (
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"

	"github.com/isolator-dev/isolator/internal/analysis"
)

// policies parses a YAML list of NetworkPolicies in namespace local-ai.
func policies(t *testing.T, doc string) []networkingv1.NetworkPolicy {
	t.Helper()
	var out []networkingv1.NetworkPolicy
	if err := yaml.UnmarshalStrict([]byte(doc), &out); err != nil {
		t.Fatal(err)
	}
	for i := range out {
		out[i].Namespace = "local-ai"
	}
	return out
}

const seed = `
- metadata: {name: local-ai-default-deny, labels: {isolation.isolator.dev/workloadisolation: local-ai}}
  spec:
    podSelector: {matchLabels: {app.kubernetes.io/name: local-ai}}
    policyTypes: [Ingress]
- metadata: {name: local-ai-allow-nginx, labels: {isolation.isolator.dev/workloadisolation: local-ai}}
  spec:
    podSelector: {matchLabels: {app.kubernetes.io/name: local-ai}}
    policyTypes: [Ingress]
    ingress:
    - from:
      - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: nginx}}
        podSelector: {matchLabels: {app.kubernetes.io/name: ingress-nginx}}
      ports: [{protocol: TCP, port: 8080}]
`

var namespaces = []analysis.Object{
	{Name: "local-ai", Labels: map[string]string{"kubernetes.io/metadata.name": "local-ai"}},
	{Name: "nginx", Labels: map[string]string{"kubernetes.io/metadata.name": "nginx", "tier": "edge"}},
	{Name: "monitoring", Labels: map[string]string{"kubernetes.io/metadata.name": "monitoring"}},
}

// latent ends the summary of a latent widening.
const latent = " (latent: admits no existing namespace beyond the declared ones, but any namespace created or labelled to match)"

var targetPods = []analysis.Object{{Name: "local-ai-0", Labels: map[string]string{"app.kubernetes.io/name": "local-ai"}}}

func input(t *testing.T, declared, foreign string) analysis.Input {
	d := policies(t, declared)
	all := append(append([]networkingv1.NetworkPolicy(nil), d...), policies(t, foreign)...)
	return analysis.Input{
		Namespace: "local-ai", TargetPods: targetPods, Namespaces: namespaces,
		Policies: all, Declared: d, Self: "local-ai",
		OwnerOf: func(p *networkingv1.NetworkPolicy) string {
			return p.Labels["isolation.isolator.dev/workloadisolation"]
		},
	}
}

func TestAnalyze(t *testing.T) {
	tests := []struct {
		name     string
		declared string
		foreign  string
		want     []string // exposure summaries; nil means isolated
	}{{
		name: "the seed policies alone",
		want: nil,
	}, {
		name: "allow-all from every namespace",
		foreign: `
- metadata: {name: allow-all-ingress}
  spec:
    podSelector: {}
    policyTypes: [Ingress]
    ingress: [{from: [{namespaceSelector: {}}]}]
`,
		want: []string{"allow-all-ingress: all pods in all namespaces, all ports"},
	}, {
		name: "an empty rule admits every source",
		foreign: `
- metadata: {name: open}
  spec: {podSelector: {}, policyTypes: [Ingress], ingress: [{}]}
`,
		want: []string{"open: all sources, all ports"},
	}, {
		name: "policyTypes defaulted by the API server count as Ingress",
		foreign: `
- metadata: {name: open}
  spec: {podSelector: {}, ingress: [{}]}
`,
		want: []string{"open: all sources, all ports"},
	}, {
		name: "a policy for other pods does not matter",
		foreign: `
- metadata: {name: web}
  spec: {podSelector: {matchLabels: {app: web}}, policyTypes: [Ingress], ingress: [{}]}
`,
	}, {
		name: "an egress-only policy does not matter",
		foreign: `
- metadata: {name: egress}
  spec: {podSelector: {}, policyTypes: [Egress], egress: [{}]}
`,
	}, {
		name: "a narrower duplicate of the declared rule is fine",
		foreign: `
- metadata: {name: chart-policy}
  spec:
    podSelector: {matchLabels: {app.kubernetes.io/name: local-ai, app.kubernetes.io/instance: local-ai}}
    policyTypes: [Ingress]
    ingress:
    - from:
      - namespaceSelector: {matchLabels: {tier: edge}}
        podSelector:
          matchLabels: {app.kubernetes.io/component: controller}
          matchExpressions: [{key: app.kubernetes.io/name, operator: In, values: [ingress-nginx]}]
      ports: [{port: 8080}]
`,
	}, {
		name: "the declared sources on another port",
		foreign: `
- metadata: {name: metrics}
  spec:
    podSelector: {matchLabels: {app.kubernetes.io/name: local-ai}}
    policyTypes: [Ingress]
    ingress:
    - from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: nginx}}, podSelector: {matchLabels: {app.kubernetes.io/name: ingress-nginx}}}]
      ports: [{port: 9090}]
`,
		want: []string{"metrics: pods app.kubernetes.io/name=ingress-nginx in namespaces kubernetes.io/metadata.name=nginx, TCP 9090"},
	}, {
		name: "a port range around the declared port",
		foreign: `
- metadata: {name: range}
  spec:
    podSelector: {}
    ingress:
    - from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: nginx}}, podSelector: {matchLabels: {app.kubernetes.io/name: ingress-nginx}}}]
      ports: [{protocol: TCP, port: 8000, endPort: 9000}]
`,
		want: []string{"range: pods app.kubernetes.io/name=ingress-nginx in namespaces kubernetes.io/metadata.name=nginx, TCP 8000-9000"},
	}, {
		name: "UDP on the declared port number",
		foreign: `
- metadata: {name: udp}
  spec:
    podSelector: {}
    ingress:
    - from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: nginx}}, podSelector: {matchLabels: {app.kubernetes.io/name: ingress-nginx}}}]
      ports: [{protocol: UDP, port: 8080}]
`,
		want: []string{"udp: pods app.kubernetes.io/name=ingress-nginx in namespaces kubernetes.io/metadata.name=nginx, UDP 8080"},
	}, {
		name: "all pods of the nginx namespace, not just the controller",
		foreign: `
- metadata: {name: nginx-ns}
  spec:
    podSelector: {}
    ingress: [{from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: nginx}}}], ports: [{port: 8080}]}]
`,
		want: []string{"nginx-ns: all pods in namespaces kubernetes.io/metadata.name=nginx, TCP 8080"},
	}, {
		name: "the controller pods of any namespace",
		foreign: `
- metadata: {name: any-ns}
  spec:
    podSelector: {}
    ingress: [{from: [{namespaceSelector: {}, podSelector: {matchLabels: {app.kubernetes.io/name: ingress-nginx}}}], ports: [{port: 8080}]}]
`,
		want: []string{"any-ns: pods app.kubernetes.io/name=ingress-nginx in all namespaces, TCP 8080"},
	}, {
		name: "pods of the own namespace",
		foreign: `
- metadata: {name: same-ns}
  spec:
    podSelector: {}
    ingress: [{from: [{podSelector: {matchLabels: {app: client}}}]}]
`,
		want: []string{"same-ns: pods app=client in namespace local-ai, all ports"},
	}, {
		name: "a namespace selector that selects no namespace yet is a latent widening",
		foreign: `
- metadata: {name: nowhere}
  spec:
    podSelector: {}
    ingress: [{from: [{namespaceSelector: {matchLabels: {team: none}}}]}]
`,
		want: []string{"nowhere: all pods in namespaces team=none, all ports" + latent},
	}, {
		name: "a grant to a namespace that does not exist yet is latent",
		foreign: `
- metadata: {name: future-monitoring}
  spec:
    podSelector: {matchLabels: {app.kubernetes.io/name: local-ai}}
    policyTypes: [Ingress]
    ingress: [{from: [{namespaceSelector: {matchLabels: {team: monitoring}}}], ports: [{port: 9090}]}]
`,
		want: []string{"future-monitoring: all pods in namespaces team=monitoring, TCP 9090" + latent},
	}, {
		name: "a grant to an existing namespace is open now",
		foreign: `
- metadata: {name: edge}
  spec:
    podSelector: {}
    ingress: [{from: [{namespaceSelector: {matchLabels: {tier: edge}}}], ports: [{port: 8080}]}]
`,
		want: []string{"edge: all pods in namespaces tier=edge, TCP 8080"},
	}, {
		name: "declared sources by another namespace label: latent, however few namespaces carry it today",
		foreign: `
- metadata: {name: by-tier}
  spec:
    podSelector: {}
    ingress: [{from: [{namespaceSelector: {matchLabels: {tier: edge}}, podSelector: {matchLabels: {app.kubernetes.io/name: ingress-nginx}}}], ports: [{port: 8080}]}]
`,
		want: []string{"by-tier: pods app.kubernetes.io/name=ingress-nginx in namespaces tier=edge, TCP 8080" + latent},
	}, {
		name: "the namespace name label written as an expression is inside the declared one",
		foreign: `
- metadata: {name: same-sources}
  spec:
    podSelector: {}
    ingress:
    - from:
      - namespaceSelector: {matchExpressions: [{key: kubernetes.io/metadata.name, operator: In, values: [nginx]}], matchLabels: {tier: edge}}
        podSelector: {matchLabels: {app.kubernetes.io/name: ingress-nginx, app.kubernetes.io/component: controller}}
      ports: [{protocol: TCP, port: 8080}]
`,
	}, {
		name: "a namespace selector that can select no namespace admits nothing",
		foreign: `
- metadata: {name: impossible}
  spec:
    podSelector: {}
    ingress:
    - from:
      - namespaceSelector: {matchExpressions: [{key: kubernetes.io/metadata.name, operator: DoesNotExist}]}
      - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: a}, matchExpressions: [{key: kubernetes.io/metadata.name, operator: In, values: [b]}]}
`,
	}, {
		name: "no namespaceSelector is the policy's own namespace, by its name label",
		declared: `
- metadata: {name: wi-allow-clients}
  spec:
    podSelector: {matchLabels: {app.kubernetes.io/name: local-ai}}
    ingress: [{from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: local-ai}}, podSelector: {matchLabels: {app: client}}}]}]
`,
		foreign: `
- metadata: {name: clients}
  spec:
    podSelector: {}
    ingress: [{from: [{podSelector: {matchLabels: {app: client}}}], ports: [{port: 80}]}]
- metadata: {name: all-named-namespaces}
  spec:
    podSelector: {}
    ingress: [{from: [{namespaceSelector: {matchExpressions: [{key: kubernetes.io/metadata.name, operator: Exists}]}, podSelector: {matchLabels: {app: client}}}], ports: [{port: 80}]}]
`,
		want: []string{"all-named-namespaces: pods app=client in namespaces kubernetes.io/metadata.name, TCP 80"},
	}, {
		name: "ingress rules count whatever policyTypes say",
		foreign: `
- metadata: {name: egress-typed}
  spec: {podSelector: {}, policyTypes: [Egress], ingress: [{}], egress: [{}]}
`,
		want: []string{"egress-typed: all sources, all ports"},
	}, {
		name: "an ipBlock inside a declared ipBlock",
		declared: `
- metadata: {name: wi-allow-lan}
  spec:
    podSelector: {matchLabels: {app.kubernetes.io/name: local-ai}}
    ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.9.0.0/16]}}], ports: [{port: 8080}]}]
`,
		foreign: `
- metadata: {name: office}
  spec:
    podSelector: {}
    ingress: [{from: [{ipBlock: {cidr: 10.1.0.0/16}}, {ipBlock: {cidr: 10.8.0.0/15, except: [10.9.0.0/16]}}], ports: [{port: 8080}]}]
`,
	}, {
		name: "conservative: exceptions that only together cover a declared exception are reported",
		declared: `
- metadata: {name: wi-allow-lan}
  spec:
    podSelector: {matchLabels: {app.kubernetes.io/name: local-ai}}
    ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.9.0.0/16]}}], ports: [{port: 8080}]}]
`,
		foreign: `
- metadata: {name: office}
  spec:
    podSelector: {}
    ingress: [{from: [{ipBlock: {cidr: 10.9.0.0/16, except: [10.9.0.0/17, 10.9.128.0/17]}}], ports: [{port: 8080}]}]
`,
		want: []string{"office: IP block 10.9.0.0/16 except 10.9.0.0/17, 10.9.128.0/17, TCP 8080"},
	}, {
		name: "an ipBlock reaching into a declared exception",
		declared: `
- metadata: {name: wi-allow-lan}
  spec:
    podSelector: {matchLabels: {app.kubernetes.io/name: local-ai}}
    ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.9.0.0/16]}}], ports: [{port: 8080}]}]
`,
		foreign: `
- metadata: {name: office}
  spec:
    podSelector: {}
    ingress: [{from: [{ipBlock: {cidr: 10.8.0.0/15}}], ports: [{port: 8080}]}]
`,
		want: []string{"office: IP block 10.8.0.0/15, TCP 8080"},
	}, {
		name: "an ipBlock is never inside a selector",
		foreign: `
- metadata: {name: world}
  spec:
    podSelector: {}
    ingress: [{from: [{ipBlock: {cidr: 0.0.0.0/0, except: [10.0.0.0/8]}}]}]
`,
		want: []string{"world: IP block 0.0.0.0/0 except 10.0.0.0/8, all ports"},
	}, {
		name: "a named port inside the same named port",
		declared: `
- metadata: {name: wi-allow-api}
  spec:
    podSelector: {matchLabels: {app.kubernetes.io/name: local-ai}}
    ingress: [{from: [{podSelector: {matchLabels: {app: client}}}], ports: [{port: http}]}]
`,
		foreign: `
- metadata: {name: same-name}
  spec:
    podSelector: {}
    ingress: [{from: [{podSelector: {matchLabels: {app: client, tier: web}}}], ports: [{protocol: TCP, port: http}]}]
- metadata: {name: number-for-name}
  spec:
    podSelector: {}
    ingress: [{from: [{podSelector: {matchLabels: {app: client}}}], ports: [{port: 8080}]}]
`,
		want: []string{"number-for-name: pods app=client in namespace local-ai, TCP 8080"},
	}, {
		name: "declared rule without ports covers any port of its sources",
		declared: `
- metadata: {name: wi-allow-clients}
  spec:
    podSelector: {matchLabels: {app.kubernetes.io/name: local-ai}}
    ingress: [{from: [{podSelector: {matchExpressions: [{key: app, operator: Exists}]}}]}]
`,
		foreign: `
- metadata: {name: clients}
  spec:
    podSelector: {}
    ingress: [{from: [{podSelector: {matchLabels: {app: a}}}, {podSelector: {matchExpressions: [{key: app, operator: In, values: [b, c]}]}}], ports: [{port: 1}, {protocol: UDP, port: 53}]}]
`,
	}, {
		name: "NotIn and DoesNotExist requirements",
		declared: `
- metadata: {name: wi-allow-stable}
  spec:
    podSelector: {matchLabels: {app.kubernetes.io/name: local-ai}}
    ingress: [{from: [{podSelector: {matchExpressions: [{key: track, operator: NotIn, values: [canary, dev]}]}}]}]
`,
		foreign: `
- metadata: {name: prod}
  spec:
    podSelector: {}
    ingress: [{from: [{podSelector: {matchLabels: {track: prod}}}, {podSelector: {matchExpressions: [{key: track, operator: DoesNotExist}]}}, {podSelector: {matchExpressions: [{key: track, operator: NotIn, values: [canary, dev, test]}]}}]}]
- metadata: {name: canary}
  spec:
    podSelector: {}
    ingress: [{from: [{podSelector: {matchExpressions: [{key: track, operator: NotIn, values: [dev]}]}}]}]
`,
		want: []string{"canary: pods track notin (dev) in namespace local-ai, all ports"},
	}, {
		name: "an own policy widened by hand is reported",
		foreign: `
- metadata: {name: local-ai-allow-nginx, labels: {isolation.isolator.dev/workloadisolation: local-ai}}
  spec:
    podSelector: {matchLabels: {app.kubernetes.io/name: local-ai}}
    ingress: [{from: [{namespaceSelector: {}}], ports: [{port: 8080}]}]
`,
		want: []string{"local-ai-allow-nginx: all pods in all namespaces, TCP 8080"},
	}, {
		name: "another WorkloadIsolation selecting the same pods",
		foreign: `
- metadata: {name: other-default-deny, labels: {isolation.isolator.dev/workloadisolation: other}}
  spec: {podSelector: {matchLabels: {app.kubernetes.io/name: local-ai}}, policyTypes: [Ingress]}
- metadata: {name: other-allow-monitoring, labels: {isolation.isolator.dev/workloadisolation: other}}
  spec:
    podSelector: {matchLabels: {app.kubernetes.io/name: local-ai}}
    ingress: [{from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}}], ports: [{port: 9090}]}]
`,
		want: []string{
			"other-allow-monitoring: all pods in namespaces kubernetes.io/metadata.name=monitoring, TCP 9090",
			"other-default-deny: generated for WorkloadIsolation other, which selects the same pods",
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			declared := tt.declared
			if declared == "" {
				declared = seed
			} else {
				declared = seed + declared
			}
			report := analysis.Analyze(input(t, declared, tt.foreign))
			var got []string
			for _, e := range report.Exposures {
				got = append(got, e.Summary)
			}
			checkExposures(t, report, got, tt.want)
		})
	}
}

func TestAnalyzeNamesOwners(t *testing.T) {
	report := analysis.Analyze(input(t, seed, `
- metadata: {name: other-default-deny, labels: {isolation.isolator.dev/workloadisolation: other}}
  spec: {podSelector: {matchLabels: {app.kubernetes.io/name: local-ai}}, policyTypes: [Ingress]}
`))
	if len(report.Exposures) != 1 || report.Exposures[0].WorkloadIsolation != "other" || report.Exposures[0].Widens || report.Widened() {
		t.Fatalf("want one non-widening exposure naming WorkloadIsolation other, got %+v", report.Exposures)
	}
}

func TestAnalyzeReportsPodsNoPolicySelects(t *testing.T) {
	in := input(t, seed, "")
	in.Policies = nil // Audit mode: nothing written yet
	r := analysis.Analyze(in)
	if len(r.Exposures) != 1 || r.Exposures[0].Policy != analysis.Unselected ||
		r.Exposures[0].Summary != "1 target pods are selected by no NetworkPolicy: all sources, all ports" || !r.Widened() {
		t.Fatalf("want the unselected pod reported, got %+v", r.Exposures)
	}
}

func TestAnalyzeWithoutPods(t *testing.T) {
	in := input(t, seed, `
- metadata: {name: open}
  spec: {podSelector: {}, ingress: [{}]}
`)
	in.TargetPods = nil
	if r := analysis.Analyze(in); !r.Isolated() {
		t.Fatalf("with no target pods nothing can be reached, got %+v", r.Exposures)
	}
}

func TestExplain(t *testing.T) {
	in := input(t, seed, `
- metadata: {name: allow-all-ingress}
  spec: {podSelector: {}, ingress: [{from: [{namespaceSelector: {}}]}]}
`)
	in.TargetPods = append(in.TargetPods, analysis.Object{Name: "stray", Labels: map[string]string{"app.kubernetes.io/name": "local-ai", "x": "y"}})
	got := analysis.Explain(in)
	want := []analysis.Path{
		{Direction: analysis.Ingress, Policy: "local-ai-default-deny", Pods: 2, Peers: "none (deny)", Ports: "-", Declared: true},
		{Direction: analysis.Ingress, Policy: "local-ai-allow-nginx", Pods: 2, Peers: "pods app.kubernetes.io/name=ingress-nginx in namespaces kubernetes.io/metadata.name=nginx", Ports: "TCP 8080", Declared: true},
		{Direction: analysis.Ingress, Policy: "allow-all-ingress", Pods: 2, Peers: "all pods in all namespaces", Ports: "all ports", Declared: false},
	}
	if len(got) != len(want) {
		t.Fatalf("paths = %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("path %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	in.Policies = nil
	if got := analysis.Explain(in); len(got) != 1 || got[0].Policy != "" || got[0].Pods != 2 {
		t.Errorf("without policies every target pod is open: %+v", got)
	}
}

func TestAnalyzeSaysOpenOrLatent(t *testing.T) {
	report := analysis.Analyze(input(t, seed, `
- metadata: {name: future}
  spec:
    podSelector: {}
    ingress: [{from: [{namespaceSelector: {matchLabels: {team: monitoring}}}], ports: [{port: 9090}]}]
- metadata: {name: now}
  spec:
    podSelector: {}
    ingress: [{from: [{namespaceSelector: {matchLabels: {team: monitoring}}}, {namespaceSelector: {matchLabels: {tier: edge}}}], ports: [{port: 9090}]}]
`))
	want := []analysis.Exposure{
		{Policy: "future", Direction: analysis.Ingress, Widens: true, Latent: true, Summary: "future: all pods in namespaces team=monitoring, TCP 9090" + latent},
		{Policy: "now", Direction: analysis.Ingress, Widens: true, Summary: "now: all pods in namespaces team=monitoring or all pods in namespaces tier=edge, TCP 9090"},
	}
	if len(report.Exposures) != len(want) {
		t.Fatalf("exposures = %+v", report.Exposures)
	}
	for i := range want {
		if report.Exposures[i] != want[i] {
			t.Errorf("exposure %d = %+v, want %+v", i, report.Exposures[i], want[i])
		}
	}
	if !report.Widened() || report.Isolated() {
		t.Error("latent and open widenings both widen the isolation")
	}

	// A latent widening alone widens too, whether or not the namespace
	// exists: status cannot tell a tenant which namespaces exist.
	alone := analysis.Analyze(input(t, seed, `
- metadata: {name: future}
  spec:
    podSelector: {}
    ingress: [{from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: not-yet}}}]}]
`))
	if !alone.Widened() || len(alone.Exposures) != 1 || !alone.Exposures[0].Latent {
		t.Errorf("want one latent widening, got %+v", alone.Exposures)
	}
	in := input(t, seed, `
- metadata: {name: future}
  spec:
    podSelector: {}
    ingress: [{from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: not-yet}}}]}]
`)
	in.Namespaces = append(in.Namespaces, analysis.Object{Name: "not-yet"}) // the API server's name label is implied
	if r := analysis.Analyze(in); !r.Widened() || len(r.Exposures) != 1 || r.Exposures[0].Latent {
		t.Errorf("once the namespace exists the widening is open, got %+v", r.Exposures)
	}
}

func TestAnalyzeEgressTypedPolicyDoesNotIsolate(t *testing.T) {
	in := input(t, "", `
- metadata: {name: egress-typed}
  spec:
    podSelector: {matchLabels: {app.kubernetes.io/name: local-ai}}
    policyTypes: [Egress]
    ingress: [{from: [{podSelector: {matchLabels: {app: client}}}]}]
`)
	r := analysis.Analyze(in)
	var got []string
	for _, e := range r.Exposures {
		got = append(got, e.Summary)
	}
	want := []string{
		"egress-typed: pods app=client in namespace local-ai, all ports",
		"1 target pods are selected by no NetworkPolicy: all sources, all ports",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("exposures:\n got %q\nwant %q", got, want)
	}
}

func TestAnalyzeBudgetFailsClosed(t *testing.T) {
	in := input(t, seed, `
- metadata: {name: narrower}
  spec:
    podSelector: {}
    ingress: [{from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: nginx}}, podSelector: {matchLabels: {app.kubernetes.io/name: ingress-nginx, x: y}}}], ports: [{port: 8080}]}]
`)
	if r := analysis.Analyze(in); !r.Isolated() || r.Incomplete != "" {
		t.Fatalf("with the default budget the analysis completes: %+v", r)
	}
	in.Budget = 3
	r := analysis.Analyze(in)
	if r.Incomplete == "" || r.Isolated() || !r.Widened() {
		t.Fatalf("an analysis out of budget must not be isolated: %+v", r)
	}
	last := r.Exposures[len(r.Exposures)-1]
	if last.Policy != analysis.Incomplete || !last.Widens || !strings.Contains(last.Summary, "budget") {
		t.Errorf("want a closing Incomplete exposure, got %+v", last)
	}
}

// checkExposures compares a report's exposures, as rendered by the caller,
// with the wanted ones, and checks that it is Isolated exactly when none are
// wanted.
func checkExposures(t *testing.T, report analysis.Report, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("exposures:\n got %q\nwant %q", got, want)
	}
	if report.Isolated() != (len(want) == 0) {
		t.Errorf("Isolated() = %v", report.Isolated())
	}
}
