package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// targets starts local servers and returns URLs that answer 200, answer 503,
// refuse the connection, and accept it but never answer.
func targets(t *testing.T) (ok, failing, refused, silent string) {
	t.Helper()
	okSrv := httptest.NewServer(withServedBy("pod-b", http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})))
	t.Cleanup(okSrv.Close)
	badSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(badSrv.Close)

	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refusedAddr := closed.Addr().String()
	_ = closed.Close()

	hang, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hang.Close() })
	go func() {
		for {
			c, err := hang.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { _ = c.Close() })
		}
	}()
	return okSrv.URL + "/healthz", badSrv.URL + "/", "http://" + refusedAddr + "/", "http://" + hang.Addr().String() + "/"
}

func TestWatchServesLatestResultPerTarget(t *testing.T) {
	okURL, badURL, refusedURL, silentURL := targets(t)
	w := newWatcher([]string{okURL, badURL, refusedURL, silentURL}, 20*time.Millisecond, newClient(300*time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	srv := httptest.NewServer(withServedBy("pod-a", w.handler()))
	defer srv.Close()

	var got map[string]Result
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get(srv.URL + "/results")
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" ||
			resp.Header.Get("X-Served-By") != "pod-a" {
			t.Fatalf("GET /results: %d %v", resp.StatusCode, resp.Header)
		}
		got = nil
		err = json.NewDecoder(resp.Body).Decode(&got)
		_ = resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("results never covered all targets: %v", got)
		}
		time.Sleep(20 * time.Millisecond)
	}

	if r := got[okURL]; !r.OK || !r.Reached || r.Status != 200 || r.ServedBy != "pod-b" || r.Error != "" {
		t.Errorf("ok target: %+v", r)
	}
	if r := got[badURL]; r.OK || !r.Reached || r.Status != 503 || !strings.HasPrefix(r.Error, "status: 503") {
		t.Errorf("503 target: %+v", r)
	}
	if r := got[refusedURL]; r.OK || r.Reached || r.Status != 0 || !strings.HasPrefix(r.Error, "refused: ") {
		t.Errorf("refused target: %+v", r)
	}
	if r := got[silentURL]; r.OK || r.Reached || r.Status != 0 || !strings.HasPrefix(r.Error, "timeout: ") {
		t.Errorf("silent target: %+v", r)
	}
	for u, r := range got {
		if time.Since(r.At) > 5*time.Second || r.At.After(time.Now()) {
			t.Errorf("%s: at %v", u, r.At)
		}
	}

	// Results keep being refreshed.
	first := got[okURL].At
	time.Sleep(100 * time.Millisecond)
	if again := w.snapshot()[okURL].At; !again.After(first) {
		t.Errorf("ok target not probed again: %v then %v", first, again)
	}
}

func TestWatchResultsJSONShape(t *testing.T) {
	w := newWatcher(nil, time.Second, newClient(time.Second))
	w.results["http://x/"] = Result{OK: true, Reached: true, Status: 200, ServedBy: "p", At: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)}
	rec := httptest.NewRecorder()
	w.handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/results", nil))
	want := `{"http://x/":{"ok":true,"reached":true,"status":200,"error":"","servedBy":"p","at":"2026-01-02T03:04:05.000000006Z"}}`
	if got := strings.TrimSpace(rec.Body.String()); got != want {
		t.Errorf("body\n got %s\nwant %s", got, want)
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestClassifyTellsConnectTimeoutFromResponseTimeout(t *testing.T) {
	dial := &net.OpError{Op: "dial", Net: "tcp", Err: timeoutErr{}}
	if got := classify(dial); !strings.HasPrefix(got, "connect timeout: ") {
		t.Errorf("dial timeout: %q", got)
	}
	read := &net.OpError{Op: "read", Net: "tcp", Err: timeoutErr{}}
	if got := classify(read); !strings.HasPrefix(got, "timeout: ") {
		t.Errorf("read timeout: %q", got)
	}
	if got := classify(errors.New("boom")); got != "error: boom" {
		t.Errorf("other: %q", got)
	}
	unreach := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.EHOSTUNREACH)}
	if got := classify(unreach); !strings.HasPrefix(got, "unreachable: ") {
		t.Errorf("unreachable: %q", got)
	}
}

func TestGetPrintsOneLinePerURLAndSucceeds(t *testing.T) {
	okURL, _, refusedURL, _ := targets(t)
	var out bytes.Buffer
	if err := getCmd([]string{"--timeout", "1s", okURL, refusedURL}, &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || lines[0] != okURL+" ok 200 pod-b" || !strings.HasPrefix(lines[1], refusedURL+" fail refused: ") {
		t.Errorf("output:\n%s", out.String())
	}
}
