package main

import (
	"bytes"
	"context"
	"net"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// startDNS runs a DNS server answering 192.0.2.7 on local UDP and TCP
// sockets and returns their addresses.
func startDNS(t *testing.T) (udpAddr, tcpAddr string) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serveDNS(ctx, pc, ln, dnsServer{addr: [4]byte{192, 0, 2, 7}, ttl: 5}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serveDNS: %v", err)
		}
	})
	return pc.LocalAddr().String(), ln.Addr().String()
}

func TestDNSServerAnswersAnyNameOverUDPAndTCP(t *testing.T) {
	udpAddr, tcpAddr := startDNS(t)
	client := newClient(time.Second)
	for _, u := range []string{
		"dns+udp://" + udpAddr + "/huggingface.co",
		"dns+tcp://" + tcpAddr + "/minio.minio.svc.cluster.local.",
	} {
		r := probeTarget(context.Background(), client, u)
		if !r.OK || !r.Reached || r.Answer != "192.0.2.7" || r.Error != "" || r.Status != 0 || time.Since(r.At) > time.Second {
			t.Errorf("%s: %+v", u, r)
		}
		if got := r.line(); got != "ok dns 192.0.2.7" {
			t.Errorf("%s: line %q", u, got)
		}
	}
	// Several queries over one TCP connection, as resolvers send them.
	c, err := net.Dial("tcp", tcpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	for i := range 3 {
		if err := writeTCPMessage(c, query(t, uint16(100+i), dnsmessage.TypeA, "a.example.")); err != nil {
			t.Fatal(err)
		}
		resp, err := readTCPMessage(c)
		if err != nil {
			t.Fatalf("query %d over the same connection: %v", i, err)
		}
		var m dnsmessage.Message
		if err := m.Unpack(resp); err != nil || m.ID != uint16(100+i) || len(m.Answers) != 1 {
			t.Errorf("query %d: %v %+v", i, err, m)
		}
	}
}

func query(t *testing.T, id uint16, typ dnsmessage.Type, name string) []byte {
	t.Helper()
	q, err := (&dnsmessage.Message{
		Header:    dnsmessage.Header{ID: id, RecursionDesired: true},
		Questions: []dnsmessage.Question{{Name: dnsmessage.MustNewName(name), Type: typ, Class: dnsmessage.ClassINET}},
	}).Pack()
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func TestDNSServerAnswer(t *testing.T) {
	s := dnsServer{addr: [4]byte{192, 0, 2, 9}, ttl: 30}
	resp, err := s.answer(query(t, 4242, dnsmessage.TypeA, "Models.Example."))
	if err != nil {
		t.Fatal(err)
	}
	var m dnsmessage.Message
	if err := m.Unpack(resp); err != nil {
		t.Fatal(err)
	}
	if m.ID != 4242 || !m.Response || !m.Authoritative || !m.RecursionDesired || m.RCode != dnsmessage.RCodeSuccess {
		t.Errorf("header %+v", m.Header)
	}
	if len(m.Questions) != 1 || m.Questions[0].Name.String() != "Models.Example." {
		t.Errorf("questions %+v", m.Questions)
	}
	if len(m.Answers) != 1 {
		t.Fatalf("answers %+v", m.Answers)
	}
	a, ok := m.Answers[0].Body.(*dnsmessage.AResource)
	if !ok || netip.AddrFrom4(a.A).String() != "192.0.2.9" || m.Answers[0].Header.TTL != 30 || m.Answers[0].Header.Name.String() != "Models.Example." {
		t.Errorf("answer %+v", m.Answers[0])
	}

	// Another type: no records, no error (NODATA).
	resp, err = s.answer(query(t, 7, dnsmessage.TypeAAAA, "models.example."))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Unpack(resp); err != nil || m.ID != 7 || m.RCode != dnsmessage.RCodeSuccess || len(m.Answers) != 0 {
		t.Errorf("AAAA: %v %+v", err, m)
	}

	// Garbage and responses are not answered.
	if _, err := s.answer([]byte{1, 2, 3}); err == nil {
		t.Error("a 3-byte message was answered")
	}
	if _, err := s.answer(resp); err == nil {
		t.Error("a response was answered")
	}
}

func TestDNSTargetsNotReached(t *testing.T) {
	client := newClient(300 * time.Millisecond)

	// Nothing listens: UDP gets an ICMP port unreachable, TCP a reset.
	closedUDP, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	udpAddr := closedUDP.LocalAddr().String()
	_ = closedUDP.Close()
	closedTCP, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tcpAddr := closedTCP.Addr().String()
	_ = closedTCP.Close()
	for _, u := range []string{"dns+udp://" + udpAddr + "/a.example", "dns+tcp://" + tcpAddr + "/a.example"} {
		if r := probeTarget(context.Background(), client, u); r.OK || r.Reached || !strings.HasPrefix(r.Error, "refused: ") {
			t.Errorf("%s: %+v", u, r)
		}
	}

	// A server that drops every query, as a firewall does.
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = silent.Close() }()
	begin := time.Now()
	r := probeTarget(context.Background(), client, "dns+udp://"+silent.LocalAddr().String()+"/a.example")
	if r.OK || r.Reached || !strings.HasPrefix(r.Error, "timeout: ") {
		t.Errorf("silent server: %+v", r)
	}
	if took := time.Since(begin); took < 250*time.Millisecond || took > 2*time.Second {
		t.Errorf("silent server: gave up after %s, want the 300ms timeout", took)
	}
}

func TestDNSTargetReachedWithoutRecords(t *testing.T) {
	// A server that answers NXDOMAIN: reached, not OK.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pc.Close() }()
	go func() {
		buf := make([]byte, 512)
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		var m dnsmessage.Message
		if m.Unpack(buf[:n]) != nil {
			return
		}
		m.Response, m.RCode = true, dnsmessage.RCodeNameError
		resp, _ := m.Pack()
		_, _ = pc.WriteTo(resp, from)
	}()
	r := probeTarget(context.Background(), newClient(time.Second), "dns+udp://"+pc.LocalAddr().String()+"/nowhere.example")
	if r.OK || !r.Reached || r.Error != "dns: RCodeNameError" {
		t.Errorf("NXDOMAIN: %+v", r)
	}
}

func TestParseDNSTarget(t *testing.T) {
	for raw, want := range map[string]dnsTarget{
		"dns+udp://10.0.0.10/huggingface.co":     {network: "udp", server: "10.0.0.10:53", name: "huggingface.co"},
		"dns+tcp://10.0.0.10:5353/a.example.":    {network: "tcp", server: "10.0.0.10:5353", name: "a.example."},
		"dns+udp://[fd00::a]/kubernetes.default": {network: "udp", server: "[fd00::a]:53", name: "kubernetes.default"},
	} {
		got, ok, err := parseDNSTarget(raw)
		if err != nil || !ok || got != want {
			t.Errorf("%s: %+v %t %v, want %+v", raw, got, ok, err, want)
		}
	}
	for _, raw := range []string{"http://10.0.0.10:53/x", "https://a/", "%zz", "dnsx://a/b"} {
		if _, ok, err := parseDNSTarget(raw); ok || err != nil {
			t.Errorf("%s: taken for a DNS target (%t, %v)", raw, ok, err)
		}
	}
	for _, raw := range []string{"dns+sctp://10.0.0.10/a", "dns+udp://10.0.0.10/", "dns+udp:///a", "dns+tcp://10.0.0.10/a/b", "dns+udp://%zz/a"} {
		if _, ok, err := parseDNSTarget(raw); !ok || err == nil {
			t.Errorf("%s: accepted (%t, %v)", raw, ok, err)
		}
		if r := probeTarget(context.Background(), newClient(time.Second), raw); r.Reached || !strings.HasPrefix(r.Error, "error: ") {
			t.Errorf("%s: probed: %+v", raw, r)
		}
	}
}

func TestWatchProbesDNSTargets(t *testing.T) {
	udpAddr, tcpAddr := startDNS(t)
	okURL, _, _, _ := targets(t)
	dnsUDP, dnsTCP := "dns+udp://"+udpAddr+"/a.example", "dns+tcp://"+tcpAddr+"/a.example"
	w := newWatcher([]string{dnsUDP, dnsTCP, okURL}, 20*time.Millisecond, newClient(300*time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(5 * time.Second)
	for len(w.snapshot()) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("results never covered all targets: %v", w.snapshot())
		}
		time.Sleep(20 * time.Millisecond)
	}
	got := w.snapshot()
	for _, u := range []string{dnsUDP, dnsTCP} {
		if r := got[u]; !r.OK || !r.Reached || r.Answer != "192.0.2.7" {
			t.Errorf("%s: %+v", u, r)
		}
	}
	if r := got[okURL]; !r.OK || !r.Reached || r.Status != 200 {
		t.Errorf("%s: %+v", okURL, r)
	}
	rec := httptest.NewRecorder()
	w.handler().ServeHTTP(rec, httptest.NewRequest("GET", "/results", nil))
	if !bytes.Contains(rec.Body.Bytes(), []byte(`"answer":"192.0.2.7"`)) {
		t.Errorf("/results lacks the DNS answer: %s", rec.Body.String())
	}
}
