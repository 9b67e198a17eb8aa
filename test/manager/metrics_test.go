package manager

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/isolator-dev/isolator/internal/localcp"
)

// TestMetricsNeedAuthorization runs the operator as a cluster runs it
// (--metrics-secure=true, the default) and scrapes its metrics over HTTPS:
// without credentials (401), with the token of a ServiceAccount that may not
// read them (403), and with the token of one bound to the metrics-reader
// ClusterRole of config/rbac (200). The API server authenticates the tokens
// and authorizes the requests.
func TestMetricsNeedAuthorization(t *testing.T) {
	ctx := context.Background()
	cp, c := startControlPlane(t)
	op, err := localcp.StartOperator(ctx, managerBinary, cp.Kubeconfig, filepath.Join(t.TempDir(), "manager.log"), "--metrics-secure=true")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(op.Stop)

	data, err := os.ReadFile(filepath.Join("..", "..", "config", "rbac", "metrics_reader_role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	reader := &rbacv1.ClusterRole{}
	if err := yaml.Unmarshal(data, reader); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "monitoring"}}); err != nil {
		t.Fatal(err)
	}
	for _, sa := range []string{"prometheus", "intruder"} {
		if err := c.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa, Namespace: "monitoring"}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Create(ctx, reader); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "prometheus-metrics-reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: reader.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "prometheus", Namespace: "monitoring"}},
	}); err != nil {
		t.Fatal(err)
	}
	clientset, err := kubernetes.NewForConfig(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	token := func(sa string) string {
		tr, err := clientset.CoreV1().ServiceAccounts("monitoring").CreateToken(ctx, sa,
			&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](600)}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}

	// The certificate is self-signed, as a cluster's scraper sees it too.
	httpsClient := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // the operator's certificate is self-signed
	}}
	get := func(url, token string) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := httpsClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(body)
	}

	url := "https://" + op.MetricsAddr + "/metrics"
	// The metrics listener may open a moment after /readyz answers.
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		conn, dialErr := net.DialTimeout("tcp", op.MetricsAddr, time.Second)
		if dialErr != nil { // not listening yet
			return false, nil //nolint:nilerr // a refused connection means "not yet"
		}
		return true, conn.Close()
	}); err != nil {
		t.Fatalf("the metrics endpoint %s does not listen: %v", op.MetricsAddr, err)
	}
	for _, tc := range []struct {
		name, token string
		want        int
	}{
		{"no credentials", "", http.StatusUnauthorized},
		// The API server cannot review it: refused, whatever the code.
		{"a token that is not the API server's", "not-a-token", 0},
		{"a ServiceAccount without metrics-reader", token("intruder"), http.StatusForbidden},
		{"a ServiceAccount bound to metrics-reader", token("prometheus"), http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := get(url, tc.token)
			if tc.want == 0 && status < http.StatusBadRequest {
				t.Fatalf("GET %s: %d, want a refusal: %.200s", url, status, body)
			}
			if tc.want != 0 && status != tc.want {
				t.Fatalf("GET %s: %d, want %d: %.200s", url, status, tc.want, body)
			}
			if status == http.StatusOK && !strings.Contains(body, "isolator_cni_classified") {
				t.Errorf("the metrics lack isolator_cni_classified:\n%.2000s", body)
			}
			if status != http.StatusOK && strings.Contains(body, "isolator_") {
				t.Errorf("a refused request got metrics: %.200s", body)
			}
		})
	}
	t.Run("plain HTTP", func(t *testing.T) {
		status, body := get("http://"+op.MetricsAddr+"/metrics", "")
		if status == http.StatusOK || strings.Contains(body, "isolator_") {
			t.Fatalf("plain HTTP must not serve metrics: %d %.200s", status, body)
		}
	})
}
