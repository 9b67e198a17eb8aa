package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The harness's names and addresses. It refuses to start when any of them is
// in use, and removes exactly these (plus kube-router's KUBE-* chains and
// ipsets) when it ends, even after a failure.
const (
	bridge    = "isob0"
	subnet    = "10.213.0."
	hostIP    = subnet + "1"
	prefixLen = "/24"
	nsPrefix  = "iso-"
	vethHost  = "isv-"
	nodeName  = "isolator-e2e-node"
)

// netPod is a "pod": a network namespace on the bridge.
type netPod struct {
	name, namespace string
	labels          map[string]string
	ip              string
}

func (p netPod) netns() string { return nsPrefix + p.name }

func run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func quiet(args ...string) { _ = exec.Command(args[0], args[1:]...).Run() }

// ciEnv is the variable CI systems set to true.
const ciEnv = "CI"

// inCI reports whether the suite runs in CI (CI=true or CI=1).
func inCI() bool {
	ci := os.Getenv(ciEnv)
	return ci == "true" || ci == "1"
}

// cannotRun skips the suite when a prerequisite is missing, except in CI,
// where it fails with the reason: in CI a suite that cannot run must not
// pass as skipped.
func cannotRun(t *testing.T, format string, args ...any) {
	t.Helper()
	reason := fmt.Sprintf(format, args...)
	if inCI() {
		t.Fatalf("%s (%s=%s: a suite that cannot run fails in CI instead of being skipped)", reason, ciEnv, os.Getenv(ciEnv))
	}
	t.Skip(reason)
}

// preflight stops the suite where it cannot run (see cannotRun), and
// refuses to start when its names or subnet are in use.
func preflight(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		cannotRun(t, "the real-traffic e2e suite needs root (network namespaces, iptables, ipset)")
	}
	for _, tool := range []string{"ip", "iptables", "iptables-save", "iptables-restore", "ipset"} {
		if _, err := exec.LookPath(tool); err != nil {
			cannotRun(t, "the real-traffic e2e suite needs %s (Debian packages iproute2, iptables, ipset)", tool)
		}
	}
	if v, err := os.ReadFile("/proc/sys/net/bridge/bridge-nf-call-iptables"); err != nil {
		cannotRun(t, "the real-traffic e2e suite needs netfilter on bridges (br_netfilter): /proc/sys/net/bridge/bridge-nf-call-iptables is missing")
	} else if strings.TrimSpace(string(v)) != "1" {
		if err := os.WriteFile("/proc/sys/net/bridge/bridge-nf-call-iptables", []byte("1"), 0o644); err != nil {
			cannotRun(t, "cannot enable bridge-nf-call-iptables: %v", err)
		}
	}
	if exec.Command("ip", "link", "show", bridge).Run() == nil {
		t.Fatalf("refusing to start: link %s exists (left by another run? remove it with: ip link del %s)", bridge, bridge)
	}
	if out, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(out), nsPrefix) {
		t.Fatalf("refusing to start: network namespaces named %s* exist:\n%s", nsPrefix, out)
	}
	if out, _ := exec.Command("ip", "-4", "addr").Output(); strings.Contains(string(out), subnet) {
		t.Fatalf("refusing to start: an address in %s0%s is already in use", subnet, prefixLen)
	}
	if out, _ := exec.Command("iptables-save").Output(); strings.Contains(string(out), ":KUBE-") {
		t.Fatal("refusing to start: KUBE-* iptables chains exist (another kube-router or kube-proxy runs here)")
	}
}

// setupNetwork creates the bridge and one namespace per pod, with no default
// route inside the namespaces, so no packet can leave them.
func setupNetwork(t *testing.T, pods []netPod) {
	t.Helper()
	t.Cleanup(func() { cleanupNetwork(pods) })
	run(t, "ip", "link", "add", bridge, "type", "bridge")
	run(t, "ip", "addr", "add", hostIP+prefixLen, "dev", bridge)
	run(t, "ip", "link", "set", bridge, "up")
	for i, p := range pods {
		host := fmt.Sprintf("%s%d", vethHost, i)
		run(t, "ip", "netns", "add", p.netns())
		run(t, "ip", "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", p.netns())
		run(t, "ip", "link", "set", host, "master", bridge)
		run(t, "ip", "link", "set", host, "up")
		run(t, "ip", "netns", "exec", p.netns(), "ip", "addr", "add", p.ip+prefixLen, "dev", "eth0")
		run(t, "ip", "netns", "exec", p.netns(), "ip", "link", "set", "eth0", "up")
		run(t, "ip", "netns", "exec", p.netns(), "ip", "link", "set", "lo", "up")
	}
}

func cleanupNetwork(pods []netPod) {
	for i, p := range pods {
		quiet("ip", "netns", "del", p.netns())
		quiet("ip", "link", "del", fmt.Sprintf("%s%d", vethHost, i))
	}
	quiet("ip", "link", "del", bridge)
}

// cleanupKubeRouter removes what kube-router's firewall left: jumps to
// KUBE-* chains from the built-in chains, the KUBE-* chains of the filter
// table, and KUBE-* ipsets (its --cleanup-config is broken in v2.1.0).
func cleanupKubeRouter() {
	out, _ := exec.Command("iptables-save", "-t", "filter").Output()
	var chains []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, ":KUBE-"):
			chains = append(chains, strings.Fields(line[1:])[0])
		case strings.HasPrefix(line, "-A INPUT ") || strings.HasPrefix(line, "-A FORWARD ") || strings.HasPrefix(line, "-A OUTPUT "):
			if strings.Contains(line, "-j KUBE-") {
				args := append([]string{"-t", "filter", "-D"}, splitQuoted(strings.TrimPrefix(line, "-A "))...)
				quiet(append([]string{"iptables"}, args...)...)
			}
		}
	}
	for _, c := range chains {
		quiet("iptables", "-t", "filter", "-F", c)
	}
	for _, c := range chains {
		quiet("iptables", "-t", "filter", "-X", c)
	}
	sets, _ := exec.Command("ipset", "list", "-n").Output()
	for _, s := range strings.Fields(string(sets)) {
		if strings.HasPrefix(s, "KUBE-") || strings.HasPrefix(s, "inet6:KUBE-") {
			quiet("ipset", "destroy", s)
		}
	}
}

// splitQuoted splits an iptables-save rule into arguments, keeping
// double-quoted strings (comments) whole.
func splitQuoted(s string) []string {
	var out []string
	var cur strings.Builder
	quoted, inWord := false, false
	for _, r := range s {
		switch {
		case r == '"':
			quoted, inWord = !quoted, true
		case r == ' ' && !quoted:
			if inWord {
				out = append(out, cur.String())
			}
			cur.Reset()
			inWord = false
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out
}

// The test binary doubles as the pods' server and client: TestMain runs one
// of these when the environment asks for it, inside a network namespace.
const (
	serveEnv = "ISOLATOR_E2E_SERVE" // comma-separated listen addresses
	getEnv   = "ISOLATOR_E2E_GET"   // address to GET /v1/models from
)

// models is what LocalAI answers on GET /v1/models with no models loaded.
const models = `{"object":"list","data":[]}`

func serve(addrs string) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/models", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, models)
	})
	errs := make(chan error)
	for _, addr := range strings.Split(addrs, ",") {
		go func() {
			server := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
			errs <- server.ListenAndServe()
		}()
	}
	fmt.Fprintln(os.Stderr, <-errs)
	os.Exit(1)
}

// get exits 0 when GET /v1/models answers the LocalAI body within a second.
// The address is an IP: no DNS lookup is made.
func get(addr string) {
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{
		DialContext: (&net.Dialer{Timeout: time.Second}).DialContext,
	}}
	resp, err := c.Get("http://" + addr + "/v1/models")
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || string(body) != models {
		fmt.Printf("status %d, body %q\n", resp.StatusCode, body)
		os.Exit(1)
	}
	os.Exit(0)
}

// reaches reports whether pod from gets the LocalAI answer from addr.
func reaches(from netPod, addr string) bool {
	cmd := exec.Command("ip", "netns", "exec", from.netns(), os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), getEnv+"="+addr)
	return cmd.Run() == nil
}
