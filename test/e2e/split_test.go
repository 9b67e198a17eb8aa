package e2e

import (
	"slices"
	"testing"
)

func TestSplitQuoted(t *testing.T) {
	got := splitQuoted(`INPUT -m comment --comment "kube-router netpol - 4IA2OSFRMVNDXBVV" -j KUBE-ROUTER-INPUT`)
	want := []string{"INPUT", "-m", "comment", "--comment", "kube-router netpol - 4IA2OSFRMVNDXBVV", "-j", "KUBE-ROUTER-INPUT"}
	if !slices.Equal(got, want) {
		t.Fatalf("splitQuoted = %q", got)
	}
}
