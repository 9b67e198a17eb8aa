package config_test

import (
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
	if got := strings.Join(c.Names(), ","); got != "ingress-nginx,monitoring" {
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
	if got := strings.Join(c.Names(), ","); got != "ingress-nginx" {
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
