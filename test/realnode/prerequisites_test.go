package realnode

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestMissingPrerequisiteFails runs the suite in a child process whose PATH
// holds none of the cluster's tools: it fails with the reason, in CI and
// outside it; a suite that cannot run never passes or skips.
func TestMissingPrerequisiteFails(t *testing.T) {
	emptyPath := t.TempDir()
	for _, tc := range []struct {
		ci       string
		wantFail bool
		verdict  string
	}{
		{ci: "", wantFail: true, verdict: "--- FAIL: TestOperatorOnARealCluster"},
		{ci: "true", wantFail: true, verdict: "--- FAIL: TestOperatorOnARealCluster"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestOperatorOnARealCluster$", "-test.v")
		cmd.Env = append(environWithout(ciEnv, "PATH", "REALNODE_BIN_DIR", "KUBE_ROUTER", "REALNODE_SUPERVISOR"), "PATH="+emptyPath, ciEnv+"="+tc.ci)
		out, err := cmd.CombinedOutput()
		if strings.Contains(string(out), "--- SKIP") {
			t.Errorf("CI=%q: the suite skipped instead of failing:\n%s", tc.ci, out)
		}
		if failed := err != nil; failed != tc.wantFail {
			t.Errorf("CI=%q: the suite failed=%t (%v), want failed=%t; its output:\n%s", tc.ci, failed, err, tc.wantFail, out)
		}
		if !strings.Contains(string(out), tc.verdict) {
			t.Errorf("CI=%q: output lacks %q", tc.ci, tc.verdict)
		}
		if !strings.Contains(string(out), "the real-node suite needs") {
			t.Errorf("CI=%q: output does not say what is missing", tc.ci)
		}
	}
}

func environWithout(names ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		keep := true
		for _, n := range names {
			keep = keep && name != n
		}
		if keep {
			out = append(out, kv)
		}
	}
	return out
}
