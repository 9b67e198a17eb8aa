package config_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/isolator-dev/isolator/internal/config"
)

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(`
presets:
- name: monitoring
  from:
  - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := cfg.Catalog()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.Names(), ","); got != "cluster-dns,huggingface,ingress-nginx,minio,monitoring,openai-inference" {
		t.Errorf("presets = %s, want the built-in plus the configured one", got)
	}
}

func TestLoadEmptyPathMeansBuiltinsOnly(t *testing.T) {
	cfg, err := config.Load("")
	if err != nil {
		t.Fatal(err)
	}
	c, err := cfg.Catalog()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.Names(), ","); got != "cluster-dns,huggingface,ingress-nginx,minio,openai-inference" {
		t.Errorf("presets = %s", got)
	}
}

func TestLoadErrorsNameTheFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte("preset: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := config.Load(path)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), `unknown field "preset"`) {
		t.Fatalf("error = %v, want the path and the unknown field", err)
	}
	if _, err := config.Load(filepath.Join(dir, "missing.yaml")); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Fatalf("error = %v, want the missing file named", err)
	}
}

func TestCNIDeclaration(t *testing.T) {
	tests := []struct {
		doc, want, wantErr string
	}{
		{doc: "cni:\n  name: cilium\n  enforcesNetworkPolicy: true\n  l7Policy: true\n", want: "cilium/True/true/Configured"},
		{doc: "cni:\n  name: flannel\n  enforcesNetworkPolicy: false\n", want: "flannel/False/false/Configured"},
		{doc: "cni:\n  name: my-cni\n", want: "my-cni/Unknown/false/Configured"},
		{doc: "cni:\n  enforcesNetworkPolicy: true\n", wantErr: "cni.name is required"},
		{doc: "cni:\n  name: x\n  enforces: true\n", wantErr: `unknown field "enforces"`},
	}
	for _, tt := range tests {
		path := filepath.Join(t.TempDir(), "config.yaml")
		if err := os.WriteFile(path, []byte(tt.doc), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load(path)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Load(%q) error = %v, want %q", tt.doc, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		r := cfg.CNI.Result()
		if got := fmt.Sprintf("%s/%s/%v/%s", r.Name, r.Enforces, r.L7, r.Source); got != tt.want {
			t.Errorf("Load(%q) = %s, want %s", tt.doc, got, tt.want)
		}
	}
}
