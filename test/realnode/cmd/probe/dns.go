package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/netip"
	"net/url"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// DNS over TCP prefixes every message with its length (RFC 1035 4.2.2).
const dnsTCPIdle = 10 * time.Second

// dnsCmd answers DNS queries over UDP and TCP on one address until SIGTERM.
func dnsCmd(args []string) error {
	fs := flag.NewFlagSet("dns", flag.ExitOnError)
	listen := fs.String("listen", ":53", "address to answer on, over UDP and TCP")
	address := fs.String("address", "192.0.2.1", "IPv4 address every A query is answered with")
	ttl := fs.Uint("ttl", 5, "TTL of the answers, in seconds")
	_ = fs.Parse(args)
	a, err := netip.ParseAddr(*address)
	if err != nil || !a.Is4() {
		return fmt.Errorf("dns: --address %q is not an IPv4 address", *address)
	}
	pc, err := net.ListenPacket("udp", *listen)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		_ = pc.Close()
		return err
	}
	log.Printf("answering DNS on %s (udp) and %s (tcp) with %s", pc.LocalAddr(), ln.Addr(), a)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return serveDNS(ctx, pc, ln, dnsServer{addr: a.As4(), ttl: uint32(*ttl)})
}

// dnsServer answers every A query of class IN with one fixed address, and
// any other question with no records (NOERROR).
type dnsServer struct {
	addr [4]byte
	ttl  uint32
}

// answer builds the response to query, or fails when query is not a DNS
// query (such a message is dropped, as resolvers do with garbage).
func (s dnsServer) answer(query []byte) ([]byte, error) {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil, err
	}
	if h.Response {
		return nil, errors.New("not a query")
	}
	questions, err := p.AllQuestions()
	if err != nil {
		return nil, err
	}
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{
		ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired, RCode: dnsmessage.RCodeSuccess,
	})
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	for _, q := range questions {
		if err := b.Question(q); err != nil {
			return nil, err
		}
	}
	if err := b.StartAnswers(); err != nil {
		return nil, err
	}
	for _, q := range questions {
		if q.Type != dnsmessage.TypeA || q.Class != dnsmessage.ClassINET {
			continue
		}
		rh := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: s.ttl}
		if err := b.AResource(rh, dnsmessage.AResource{A: s.addr}); err != nil {
			return nil, err
		}
	}
	return b.Finish()
}

// serveDNS answers on pc (UDP) and ln (TCP) until ctx ends, then closes both.
func serveDNS(ctx context.Context, pc net.PacketConn, ln net.Listener, s dnsServer) error {
	errs := make(chan error, 2)
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				errs <- err
				return
			}
			resp, err := s.answer(buf[:n])
			if err != nil {
				continue
			}
			_, _ = pc.WriteTo(resp, from)
		}
	}()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				errs <- err
				return
			}
			go s.serveTCP(c)
		}
	}()
	var err error
	select {
	case <-ctx.Done():
	case err = <-errs:
	}
	_ = pc.Close()
	_ = ln.Close()
	return err
}

// serveTCP answers the queries of one connection until it goes idle or a
// message is not a query.
func (s dnsServer) serveTCP(c net.Conn) {
	defer func() { _ = c.Close() }()
	for {
		_ = c.SetDeadline(time.Now().Add(dnsTCPIdle))
		query, err := readTCPMessage(c)
		if err != nil {
			return
		}
		resp, err := s.answer(query)
		if err != nil {
			return
		}
		if err := writeTCPMessage(c, resp); err != nil {
			return
		}
	}
}

func readTCPMessage(r io.Reader) ([]byte, error) {
	var n uint16
	if err := binary.Read(r, binary.BigEndian, &n); err != nil {
		return nil, err
	}
	msg := make([]byte, n)
	_, err := io.ReadFull(r, msg)
	return msg, err
}

func writeTCPMessage(w io.Writer, msg []byte) error {
	out := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(msg)), uint16(len(msg)))
	_, err := w.Write(append(out, msg...))
	return err
}

// dnsTarget is a DNS probe target: dns+udp://SERVER[:PORT]/NAME or
// dns+tcp://SERVER[:PORT]/NAME (port 53 when absent).
type dnsTarget struct {
	network, server, name string
}

// parseDNSTarget parses a dns+udp or dns+tcp URL; ok is false for any
// other scheme.
func parseDNSTarget(raw string) (target dnsTarget, ok bool, err error) {
	scheme, _, _ := strings.Cut(raw, ":")
	network, isDNS := strings.CutPrefix(strings.ToLower(scheme), "dns+")
	if !isDNS {
		return dnsTarget{}, false, nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return dnsTarget{}, true, err
	}
	if network != "udp" && network != "tcp" {
		return dnsTarget{}, true, fmt.Errorf("%s: the scheme is dns+udp or dns+tcp", raw)
	}
	name := strings.TrimPrefix(u.Path, "/")
	if u.Hostname() == "" || name == "" || strings.Contains(name, "/") {
		return dnsTarget{}, true, fmt.Errorf("%s: want %s://SERVER[:PORT]/NAME", raw, u.Scheme)
	}
	port := u.Port()
	if port == "" {
		port = "53"
	}
	return dnsTarget{network: network, server: net.JoinHostPort(u.Hostname(), port), name: name}, true, nil
}

// checkDNS asks the target's server for the A records of its name, once,
// over a new socket, within timeout. The target is reached when a response
// with the query's ID arrives, whatever its code; it is OK when that
// response holds at least one A record.
func checkDNS(ctx context.Context, target dnsTarget, timeout time.Duration) Result {
	fail := func(err error) Result { return Result{Error: classify(err), At: time.Now()} }
	name, err := dnsmessage.NewName(dnsName(target.name))
	if err != nil {
		return Result{Error: "error: " + err.Error(), At: time.Now()}
	}
	id := uint16(rand.Uint32()) //nolint:gosec // a query ID, not a secret
	query, err := (&dnsmessage.Message{
		Header:    dnsmessage.Header{ID: id, RecursionDesired: true},
		Questions: []dnsmessage.Question{{Name: name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}},
	}).Pack()
	if err != nil {
		return Result{Error: "error: " + err.Error(), At: time.Now()}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := (&net.Dialer{Timeout: connectTimeout}).DialContext(ctx, target.network, target.server)
	if err != nil {
		return fail(err)
	}
	defer func() { _ = c.Close() }()
	deadline, _ := ctx.Deadline()
	_ = c.SetDeadline(deadline)
	var resp []byte
	if target.network == "tcp" {
		if err := writeTCPMessage(c, query); err != nil {
			return fail(err)
		}
		if resp, err = readTCPMessage(c); err != nil {
			return fail(err)
		}
	} else {
		if _, err := c.Write(query); err != nil {
			return fail(err)
		}
		buf := make([]byte, 65535)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return fail(err)
			}
			// Skip a datagram that answers another query.
			if n >= 2 && binary.BigEndian.Uint16(buf) == id {
				resp = buf[:n]
				break
			}
		}
	}
	var msg dnsmessage.Message
	if err := msg.Unpack(resp); err != nil {
		return Result{Error: "dns: malformed response: " + err.Error(), At: time.Now()}
	}
	if msg.ID != id || !msg.Response {
		return Result{Error: "dns: the response does not answer the query", At: time.Now()}
	}
	r := Result{Reached: true, At: time.Now()}
	var addrs []string
	for _, a := range msg.Answers {
		if body, ok := a.Body.(*dnsmessage.AResource); ok {
			addrs = append(addrs, netip.AddrFrom4(body.A).String())
		}
	}
	r.Answer = strings.Join(addrs, ",")
	switch {
	case msg.RCode != dnsmessage.RCodeSuccess:
		r.Error = "dns: " + msg.RCode.String()
	case len(addrs) == 0:
		r.Error = "dns: no A record"
	default:
		r.OK = true
	}
	return r
}

// dnsName makes name fully qualified.
func dnsName(name string) string {
	if strings.HasSuffix(name, ".") {
		return name
	}
	return name + "."
}
