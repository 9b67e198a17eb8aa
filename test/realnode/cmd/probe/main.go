// Command probe tests connectivity from inside a pod of the real-node test
// cluster. Subcommands:
//
//	probe watch --targets URL[,URL] [--interval 200ms] [--timeout 2s] [--listen :8081]
//	    probes every target continuously and serves the latest result of each
//	    on GET /results, so a test on the host can read the pod's view of the
//	    network over HTTP;
//	probe serve [--listen :8080[,:9090]]
//	    answers 200 with the host name on any path, for pods that must be
//	    reachable;
//	probe get [--timeout 2s] URL...
//	    probes each URL once and prints "URL ok|fail DETAIL" per line; it
//	    exits 0 whatever the results, so its output can be parsed as a matrix;
//	probe dns [--listen :53] [--address 192.0.2.1]
//	    answers every DNS A query, for any name, with the given address, over
//	    UDP and TCP, for pods that stand in for the cluster DNS.
//
// A target is an http(s) URL, or dns+udp://SERVER[:PORT]/NAME or
// dns+tcp://SERVER[:PORT]/NAME, which asks SERVER for the A records of NAME.
// Each probe opens a new connection (a new socket for DNS) with a 1 s connect
// timeout, so a dropped connection shows quickly; errors start with their
// kind: refused, connect timeout, timeout, unreachable, reset, dns or error.
// Servers answer with X-Served-By set to the host name (the pod name) and
// stop on SIGTERM.
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/isolator-dev/isolator/test/realnode/internal/httpserve"
)

// connectTimeout bounds each TCP connect.
const connectTimeout = time.Second

func main() {
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	if len(os.Args) < 2 {
		usage()
	}
	host, err := os.Hostname()
	if err != nil {
		log.Fatalf("hostname: %v", err)
	}
	args := os.Args[2:]
	switch os.Args[1] {
	case "watch":
		err = watchCmd(host, args)
	case "serve":
		err = serveCmd(host, args)
	case "get":
		err = getCmd(args, os.Stdout)
	case "dns":
		err = dnsCmd(args)
	default:
		usage()
	}
	if err != nil {
		log.Fatal(err)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: probe watch|serve|get|dns [flags] (see -h of each)")
	os.Exit(2)
}

func watchCmd(host string, args []string) error {
	fs := flag.NewFlagSet("watch", flag.ExitOnError)
	var targets, listen list
	fs.Var(&targets, "targets", "URLs to probe, repeatable or comma separated")
	fs.Var(&listen, "listen", `addresses serving GET /results (default ":8081")`)
	interval := fs.Duration("interval", 200*time.Millisecond, "pause between two probes of a target")
	timeout := fs.Duration("timeout", 2*time.Second, "time limit of one probe")
	tokenFile := fs.String("bearer-token-file", "", "file whose content is sent as bearer token (read before every probe: tokens rotate)")
	insecure := fs.Bool("insecure-skip-verify", false, "accept any TLS certificate (for self-signed metrics endpoints)")
	_ = fs.Parse(args)
	if len(targets) == 0 {
		return errors.New("watch: --targets is required")
	}
	if len(listen) == 0 {
		listen = list{":8081"}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	client := newClient(*timeout)
	if *insecure {
		client.Transport.(*http.Transport).TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // reachability probe of self-signed endpoints
	}
	if *tokenFile != "" {
		client.Transport = bearer{file: *tokenFile, next: client.Transport}
	}
	w := newWatcher(targets, *interval, client)
	go w.run(ctx)
	return serve(ctx, listen, withServedBy(host, w.handler()))
}

func serveCmd(host string, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	var listen list
	fs.Var(&listen, "listen", `addresses to listen on, repeatable or comma separated (default ":8080")`)
	_ = fs.Parse(args)
	if len(listen) == 0 {
		listen = list{":8080"}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return serve(ctx, listen, withServedBy(host, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = fmt.Fprintln(w, host)
	})))
}

func getCmd(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("get", flag.ExitOnError)
	timeout := fs.Duration("timeout", 2*time.Second, "time limit of one probe")
	_ = fs.Parse(args)
	if fs.NArg() == 0 {
		return errors.New("get: no URL given")
	}
	client := newClient(*timeout)
	for _, u := range fs.Args() {
		r := probeTarget(context.Background(), client, u)
		_, _ = fmt.Fprintln(out, u, r.line())
	}
	return nil
}

// bearer adds the token read from file to every request.
type bearer struct {
	file string
	next http.RoundTripper
}

func (b bearer) RoundTrip(req *http.Request) (*http.Response, error) {
	token, err := os.ReadFile(b.file)
	if err != nil {
		return nil, fmt.Errorf("reading the bearer token: %w", err)
	}
	req = req.Clone(req.Context())
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	return b.next.RoundTrip(req)
}

// list is a flag taking values repeatedly or comma separated.
type list []string

func (l *list) String() string { return strings.Join(*l, ",") }

func (l *list) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// Result is the outcome of one probe of a target.
type Result struct {
	// OK is true when the target answered with a status below 400 (HTTP),
	// or with at least one A record (DNS).
	OK bool `json:"ok"`
	// Reached is true when an answer came, whatever it says: the network
	// let the exchange through.
	Reached bool `json:"reached"`
	// Status is the HTTP status, 0 when no answer came or for DNS.
	Status int `json:"status"`
	// Error says why the probe failed, starting with its kind.
	Error string `json:"error"`
	// ServedBy is the answer's X-Served-By header.
	ServedBy string `json:"servedBy,omitempty"`
	// Answer lists the addresses of a DNS answer, comma separated.
	Answer string `json:"answer,omitempty"`
	// At is when the probe finished.
	At time.Time `json:"at"`
}

func (r Result) line() string {
	switch {
	case r.OK && r.Status == 0:
		return "ok dns " + r.Answer
	case r.OK:
		return fmt.Sprintf("ok %d %s", r.Status, r.ServedBy)
	}
	return "fail " + r.Error
}

// newClient returns a client that opens a fresh connection for every request
// (an existing connection would hide a policy change), uses no proxy and does
// not follow redirects.
func newClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext:       (&net.Dialer{Timeout: connectTimeout}).DialContext,
			DisableKeepAlives: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// probeTarget probes a target once: a DNS query for dns+udp and dns+tcp
// URLs, an HTTP GET otherwise.
func probeTarget(ctx context.Context, client *http.Client, raw string) Result {
	target, isDNS, err := parseDNSTarget(raw)
	switch {
	case err != nil:
		return Result{Error: "error: " + err.Error(), At: time.Now()}
	case isDNS:
		return checkDNS(ctx, target, client.Timeout)
	}
	return check(ctx, client, raw)
}

// check probes url once over HTTP.
func check(ctx context.Context, client *http.Client, url string) Result {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return Result{Error: "error: " + err.Error(), At: time.Now()}
	}
	resp, err := client.Do(req)
	if err != nil {
		return Result{Error: classify(err), At: time.Now()}
	}
	_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	_ = resp.Body.Close()
	r := Result{Reached: true, Status: resp.StatusCode, ServedBy: resp.Header.Get("X-Served-By"), At: time.Now()}
	switch {
	case err != nil:
		r.Error = classify(err)
	case resp.StatusCode >= 400:
		r.Error = fmt.Sprintf("status: %s", resp.Status)
	default:
		r.OK = true
	}
	return r
}

// classify prefixes a request error with its kind.
func classify(err error) string {
	var (
		dnsErr *net.DNSError
		netErr net.Error
		opErr  *net.OpError
	)
	kind := "error"
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		kind = "refused"
	case errors.Is(err, syscall.ECONNRESET):
		kind = "reset"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		kind = "unreachable"
	case errors.As(err, &dnsErr):
		kind = "dns"
	case errors.As(err, &opErr) && opErr.Op == "dial" && opErr.Timeout():
		kind = "connect timeout"
	case errors.As(err, &netErr) && netErr.Timeout(), errors.Is(err, context.DeadlineExceeded):
		kind = "timeout"
	}
	return kind + ": " + err.Error()
}

// watcher probes its targets continuously and keeps the latest result of each.
type watcher struct {
	targets  []string
	interval time.Duration
	client   *http.Client

	mu      sync.Mutex
	results map[string]Result
}

func newWatcher(targets []string, interval time.Duration, client *http.Client) *watcher {
	return &watcher{targets: targets, interval: interval, client: client, results: map[string]Result{}}
}

// run probes every target in its own loop, so a slow target delays no
// other, until ctx ends.
func (w *watcher) run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, t := range w.targets {
		wg.Go(func() {
			for {
				r := probeTarget(ctx, w.client, t)
				if ctx.Err() != nil {
					return
				}
				w.mu.Lock()
				prev, seen := w.results[t]
				w.results[t] = r
				w.mu.Unlock()
				if !seen || prev.OK != r.OK {
					log.Printf("%s %s", t, r.line())
				}
				select {
				case <-ctx.Done():
					return
				case <-time.After(w.interval):
				}
			}
		})
	}
	wg.Wait()
}

func (w *watcher) snapshot() map[string]Result {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]Result, len(w.results))
	for k, v := range w.results {
		out[k] = v
	}
	return out
}

// handler serves GET /results (target URL → latest Result; a target not yet
// probed is absent) and GET /healthz.
func (w *watcher) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /results", func(rw http.ResponseWriter, _ *http.Request) {
		rw.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(rw).Encode(w.snapshot())
	})
	mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(rw, "ok")
	})
	return mux
}

func withServedBy(host string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Served-By", host)
		h.ServeHTTP(w, r)
	})
}

// serve listens on every address and serves h until ctx ends.
func serve(ctx context.Context, addrs []string, h http.Handler) error {
	return httpserve.Serve(ctx, addrs, h, 5*time.Second)
}
