package main

import (
	"strings"
	"testing"
	"time"

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

func TestLeaseTimings(t *testing.T) {
	tests := []struct {
		name                string
		lease, renew, retry time.Duration
		wantErr             string
	}{
		{name: "controller-runtime's defaults", lease: 15 * time.Second, renew: 10 * time.Second, retry: 2 * time.Second},
		{name: "short", lease: 4 * time.Second, renew: 3 * time.Second, retry: 500 * time.Millisecond},
		{name: "renewal outlives the lease", lease: 10 * time.Second, renew: 10 * time.Second, retry: 2 * time.Second, wantErr: "--leader-elect-lease-duration=10s must be longer"},
		{name: "retries too slow for the deadline", lease: 15 * time.Second, renew: 2 * time.Second, retry: 2 * time.Second, wantErr: "--leader-elect-renew-deadline=2s must be longer"},
		{name: "no retry period", lease: 15 * time.Second, renew: 10 * time.Second, wantErr: "--leader-elect-retry-period=0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkLeaseTimings(options{leaseDuration: tt.lease, renewDeadline: tt.renew, retryPeriod: tt.retry})
			if tt.wantErr == "" && err != nil {
				t.Fatal(err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("error = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestDetectionNamespaces(t *testing.T) {
	tests := []struct {
		value   string
		want    []string
		wantErr string
	}{
		{value: "kube-system,calico-system,kube-flannel,cilium", want: []string{"kube-system", "calico-system", "kube-flannel", "cilium"}},
		{value: " kube-system , cilium,kube-system", want: []string{"kube-system", "cilium"}},
		{value: "", wantErr: "--cni-namespaces is empty"},
		{value: " ", wantErr: "--cni-namespaces is empty"},
		{value: "kube-system,", wantErr: `--cni-namespaces="kube-system,": namespace ""`},
		{value: "Kube_System", wantErr: `namespace "Kube_System"`},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			got, err := detectionNamespaces(options{cniNamespaces: tt.value})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("namespaces = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestWatchNamespaces(t *testing.T) {
	if got, err := namespaceList("--watch-namespaces", ""); err != nil || got != nil {
		t.Errorf("empty --watch-namespaces must mean all namespaces: %v, %v", got, err)
	}
	if _, err := namespaceList("--watch-namespaces", "team-a,,team-b"); err == nil {
		t.Error("an empty entry must be an error")
	}
}

func TestResyncSetting(t *testing.T) {
	for _, tt := range []struct{ flag, want time.Duration }{
		{10 * time.Minute, 10 * time.Minute},
		{30 * time.Second, 30 * time.Second},
		{0, -1}, // disabled
	} {
		if got := resyncSetting(tt.flag); got != tt.want {
			t.Errorf("resyncSetting(%v) = %v, want %v", tt.flag, got, tt.want)
		}
	}
}
