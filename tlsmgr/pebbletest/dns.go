package pebbletest

import (
	"errors"
	"fmt"
	"log"
	"net"
	"slices"
	"strings"
	"sync"

	"github.com/miekg/dns"
)

// resolver is a DNS server on 127.0.0.1, UDP and TCP on one port, that
// answers A 127.0.0.1 for every name, no AAAA records, the TXT records it
// was given, and an SOA for every two-label name (so "app.test." is the zone
// of "_acme-challenge.app.test.").
type resolver struct {
	addr    string
	log     *log.Logger
	servers []*dns.Server

	mu  sync.Mutex          // guards txt
	txt map[string][]string // canonical FQDN -> values
}

// startResolver binds UDP and TCP on the same random port and serves both.
func startResolver(logger *log.Logger) (*resolver, error) {
	r := &resolver{log: logger, txt: make(map[string][]string)}
	pc, ln, err := ListenDNS()
	if err != nil {
		return nil, err
	}
	r.addr = pc.LocalAddr().String()
	mux := dns.HandlerFunc(r.serveDNS)
	started := make(chan struct{}, 2)
	notify := func() { started <- struct{}{} }
	r.servers = []*dns.Server{
		{PacketConn: pc, Handler: mux, NotifyStartedFunc: notify},
		{Listener: ln, Handler: mux, NotifyStartedFunc: notify},
	}
	errc := make(chan error, 2)
	for _, s := range r.servers {
		go func() {
			// ActivateAndServe returns when Shutdown is called.
			if err := s.ActivateAndServe(); err != nil {
				errc <- err
			}
		}()
	}
	for range r.servers {
		select {
		case <-started:
		case err := <-errc:
			pc.Close()
			ln.Close()
			return nil, fmt.Errorf("serving DNS: %w", err)
		}
	}
	return r, nil
}

// ListenDNS listens on a random UDP port of 127.0.0.1 and on the same TCP
// port, as a DNS server does, retrying when the TCP port is taken (the UDP
// port comes from the ephemeral range, where outgoing TCP connections
// live too).
func ListenDNS() (net.PacketConn, net.Listener, error) {
	var lastErr error
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, fmt.Errorf("listening for DNS over UDP: %w", err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		lastErr = err
	}
	return nil, nil, fmt.Errorf("listening for DNS over TCP: %w", lastErr)
}

func (r *resolver) close() {
	var errs []error
	for _, s := range r.servers {
		errs = append(errs, s.Shutdown())
	}
	if err := errors.Join(errs...); err != nil {
		r.log.Printf("pebbletest: stopping DNS resolver: %v", err)
	}
}

func (r *resolver) serveDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	m.RecursionAvailable = true
	for _, q := range req.Question {
		name := dns.CanonicalName(q.Name)
		hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: 0}
		switch q.Qtype {
		case dns.TypeA:
			hdr.Rrtype = dns.TypeA
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: net.IPv4(127, 0, 0, 1)})
		case dns.TypeTXT:
			hdr.Rrtype = dns.TypeTXT
			for _, v := range r.lookupTXT(name) {
				m.Answer = append(m.Answer, &dns.TXT{Hdr: hdr, Txt: splitTXT(v)})
			}
		case dns.TypeSOA:
			if dns.CountLabel(name) == 2 {
				hdr.Rrtype = dns.TypeSOA
				m.Answer = append(m.Answer, &dns.SOA{
					Hdr: hdr, Ns: "ns." + name, Mbox: "hostmaster." + name,
					Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: 0,
				})
			}
		}
		// Anything else, AAAA included, gets an empty NOERROR answer, so
		// Pebble dials 127.0.0.1 rather than ::1.
	}
	if err := w.WriteMsg(m); err != nil {
		r.log.Printf("pebbletest: writing DNS answer: %v", err)
	}
}

// splitTXT splits v into the 255-byte character-strings one TXT record is
// made of; resolvers join them again.
func splitTXT(v string) []string {
	var parts []string
	for len(v) > 255 {
		parts = append(parts, v[:255])
		v = v[255:]
	}
	return append(parts, v)
}

func canonicalName(name string) string {
	return dns.CanonicalName(strings.TrimSpace(name))
}

func (r *resolver) lookupTXT(name string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.txt[name])
}

func (r *resolver) addTXT(name, value string) {
	name = canonicalName(name)
	r.mu.Lock()
	defer r.mu.Unlock()
	if !slices.Contains(r.txt[name], value) {
		r.txt[name] = append(r.txt[name], value)
	}
}

func (r *resolver) removeTXT(name, value string) {
	name = canonicalName(name)
	r.mu.Lock()
	defer r.mu.Unlock()
	vs := slices.DeleteFunc(r.txt[name], func(v string) bool { return v == value })
	if len(vs) == 0 {
		delete(r.txt, name)
		return
	}
	r.txt[name] = vs
}

func (r *resolver) clearTXT(name string) {
	name = canonicalName(name)
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.txt, name)
}
