// Package config loads the operator configuration file: the presets an
// administrator adds to (or redefines among) the built-in ones. The Helm
// chart renders it from values into a ConfigMap mounted into the manager.
package config

import (
	"fmt"
	"os"

	"sigs.k8s.io/yaml"

	"github.com/isolator-dev/isolator/internal/preset"
)

// Config is the operator configuration file.
//
//	presets:
//	- name: monitoring
//	  description: Prometheus in namespace monitoring
//	  from:
//	  - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}
//	    podSelector: {matchLabels: {app.kubernetes.io/name: prometheus}}
type Config struct {
	// Presets are added to the built-in presets; a preset with a built-in's
	// name replaces it.
	Presets []preset.Preset `json:"presets,omitempty"`
}

// Parse reads a configuration document strictly: unknown fields are errors.
func Parse(data []byte) (Config, error) {
	var c Config
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return Config{}, fmt.Errorf("parsing operator configuration: %w", err)
	}
	return c, nil
}

// Load reads the configuration file at path; an empty path is the empty
// configuration.
func Load(path string) (Config, error) {
	if path == "" {
		return Config{}, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("reading operator configuration: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Catalog returns the built-in presets with the configured ones on top.
func (c Config) Catalog() (preset.Catalog, error) {
	builtin, err := preset.Parse(preset.BuiltinYAML())
	if err != nil {
		return preset.Catalog{}, err
	}
	return preset.NewCatalog(builtin, c.Presets)
}
