// Package config loads the operator configuration file: the presets an
// administrator adds to (or redefines among) the built-in ones, and the
// cluster's CNI where detection cannot see it.
package config

import (
	"errors"
	"fmt"
	"os"

	"sigs.k8s.io/yaml"

	"github.com/isolator-dev/isolator/internal/cni"
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

	// CNI declares the cluster's CNI, for clusters where detection cannot
	// see it. It wins over detection and is reported as Configured.
	CNI *CNI `json:"cni,omitempty"`
}

// CNI is a CNI declared by the administrator.
//
//	cni:
//	  name: cilium
//	  enforcesNetworkPolicy: true
//	  l7Policy: true
type CNI struct {
	// Name of the CNI, as shown in status.
	Name string `json:"name"`
	// EnforcesNetworkPolicy says whether it enforces NetworkPolicy; absent
	// means unknown.
	EnforcesNetworkPolicy *bool `json:"enforcesNetworkPolicy,omitempty"`
	// L7Policy says whether it also enforces HTTP-aware policies.
	L7Policy bool `json:"l7Policy,omitempty"`
}

// Result returns the declared CNI as a classification result.
func (c *CNI) Result() *cni.Result {
	enforces := cni.EnforcementUnknown
	if c.EnforcesNetworkPolicy != nil {
		enforces = cni.EnforcementFalse
		if *c.EnforcesNetworkPolicy {
			enforces = cni.EnforcementTrue
		}
	}
	r := cni.Configured(c.Name, enforces, c.L7Policy)
	return &r
}

// Validate checks the configuration beyond its syntax.
func (c Config) Validate() error {
	if c.CNI != nil && c.CNI.Name == "" {
		return errors.New("cni.name is required when cni is set")
	}
	return nil
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
	if err == nil {
		err = c.Validate()
	}
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
