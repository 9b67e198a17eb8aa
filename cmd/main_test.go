package main

import (
	"strings"
	"testing"

	"k8s.io/utils/ptr"

	"github.com/isolator-dev/isolator/internal/config"
)

func TestCNIOverridePrecedence(t *testing.T) {
	fromFile := config.Config{CNI: &config.CNI{Name: "calico", EnforcesNetworkPolicy: ptr.To(true)}}
	tests := []struct {
		name    string
		o       options
		cfg     config.Config
		want    string
		wantErr string
	}{
		{name: "nothing declared: detect", want: "<detect>"},
		{name: "configuration file", cfg: fromFile, want: "calico/True"},
		{name: "flags win over the file", o: options{cniName: "cilium", cniEnforces: "false"}, cfg: fromFile, want: "cilium/False"},
		{name: "flag without enforcement is unknown", o: options{cniName: "my-cni"}, want: "my-cni/Unknown"},
		{name: "enforcement without a name", o: options{cniEnforces: "true"}, wantErr: "--cni-enforces needs --cni-name"},
		{name: "bad boolean", o: options{cniName: "x", cniEnforces: "yes please"}, wantErr: `--cni-enforces="yes please": want true or false`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := cniOverride(tt.o, tt.cfg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			s := "<detect>"
			if got != nil {
				r := got.Result()
				s = r.Name + "/" + string(r.Enforces)
			}
			if s != tt.want {
				t.Errorf("cniOverride = %s, want %s", s, tt.want)
			}
		})
	}
}
