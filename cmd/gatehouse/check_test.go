package main

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"

	"github.com/gatehouse-proxy/gatehouse/tlsmgr/pebbletest"
)

// zone is a DNS server on 127.0.0.1 (UDP and TCP) answering from fixed records:
// the stand-in for public DNS in `gatehouse check` tests.
type zone struct {
	addr string
	mu   sync.Mutex // guards rrs
	rrs  map[string][]dns.RR
}

// newZone serves records, each in zone-file syntax ("app.test. 60 IN A
// 127.0.0.1"). Names without records answer NXDOMAIN.
func newZone(t *testing.T, records ...string) *zone {
	t.Helper()
	z := &zone{rrs: map[string][]dns.RR{}}
	for _, s := range records {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatalf("record %q: %v", s, err)
		}
		name := strings.ToLower(rr.Header().Name)
		z.rrs[name] = append(z.rrs[name], rr)
	}
	// UDP and TCP on one port: Go's resolver (and so Pebble's) may use
	// either.
	var pc net.PacketConn
	var ln net.Listener
	for attempt := 0; ln == nil; attempt++ {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err != nil {
			pc.Close()
			if attempt == 10 {
				t.Fatalf("binding TCP beside UDP %s: %v", pc.LocalAddr(), err)
			}
		}
	}
	z.addr = pc.LocalAddr().String()
	for _, srv := range []*dns.Server{{PacketConn: pc}, {Listener: ln}} {
		started := make(chan struct{})
		srv.Handler = dns.HandlerFunc(z.serve)
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		<-started
		t.Cleanup(func() { srv.Shutdown() })
	}
	return z
}

func (z *zone) serve(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	z.mu.Lock()
	defer z.mu.Unlock()
	q := req.Question[0]
	rrs, exists := z.rrs[strings.ToLower(q.Name)]
	if !exists {
		m.Rcode = dns.RcodeNameError
	}
	for _, rr := range rrs {
		if rr.Header().Rrtype == q.Qtype {
			m.Answer = append(m.Answer, rr)
		}
	}
	w.WriteMsg(m)
}

// runCheck runs `gatehouse check` in-process and returns its error and
// output.
func runCheck(t *testing.T, args ...string) (error, string) {
	t.Helper()
	out := &syncBuffer{}
	env := &environment{stdout: out, stderr: out, getenv: func(string) string { return "" }}
	err := run(context.Background(), append([]string{"check"}, args...), env)
	return err, out.String()
}

// wantLines checks that out holds every line, each as a line prefix.
func wantLines(t *testing.T, out string, lines ...string) {
	t.Helper()
	for _, want := range lines {
		found := false
		for line := range strings.SplitSeq(out, "\n") {
			if strings.HasPrefix(line, want) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("no line starting with %q in:\n%s", want, out)
		}
	}
}

// TestCheckPasses is the preflight of a machine where everything is right:
// the name resolves here, both challenge ports can be bound and are
// reached through the name, CAA allows the CA and the CA's directory
// answers.
func TestCheckPasses(t *testing.T) {
	ca := pebbletest.Start(t, pebbletest.Options{})
	z := newZone(t,
		"app.test. 60 IN A 127.0.0.1",
		`app.test. 60 IN CAA 0 issue "pebble.test; validationmethods=http-01"`,
		`app.test. 60 IN CAA 0 iodef "mailto:ops@app.test"`,
		`test. 60 IN CAA 0 issuewild ";"`,
		`test. 60 IN CAA 0 issue "pebble.test"`,
	)
	p := newPorts(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "gatehouse.yaml")
	cfg := fmt.Sprintf(adminACMEConfig, ca.DirectoryURL(), ca.ClientRootFile(), "app.test, other.test")
	writeConfig(t, cfgPath, p, filepath.Join(dir, "storage"), cfg)
	// other.test has no records of its own: "test." governs its CAA.
	z.add(t, "other.test. 60 IN A 127.0.0.1")

	err, out := runCheck(t, "-config", cfgPath, "-resolver", z.addr, "-caa-identity", "pebble.test")
	if err != nil {
		t.Fatalf("check: %v\n%s", err, out)
	}
	wantLines(t, out,
		"ok    CA "+ca.DirectoryURL()+": the ACME directory answers",
		"ok    app.test: resolves to 127.0.0.1 (this machine)",
		fmt.Sprintf("ok    app.test: http-01: fetched http://app.test:%d/.well-known/acme-challenge/gatehouse-check-", p.HTTP),
		fmt.Sprintf("ok    app.test: tls-alpn-01: app.test:%d reaches a temporary TLS listener", p.HTTPS),
		"ok    app.test: CAA at app.test allows pebble.test",
		"ok    other.test: CAA at test allows pebble.test",
		fmt.Sprintf("note  listen.http: the CA validates http-01 on port 80, not %d", p.HTTP),
		"ok: nothing found",
	)
	if strings.Contains(out, "localhost") {
		t.Errorf("localhost uses the local CA and needs no preflight:\n%s", out)
	}
}

func (z *zone) add(t *testing.T, record string) {
	t.Helper()
	rr, err := dns.NewRR(record)
	if err != nil {
		t.Fatal(err)
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	name := strings.ToLower(rr.Header().Name)
	z.rrs[name] = append(z.rrs[name], rr)
}

// TestCheckFails finds everything that would make orders fail, says why,
// and exits 1: a stale AAAA record, a name that does not resolve, CAA that
// allows another CA, a port held by another program, and a CA that is
// down.
func TestCheckFails(t *testing.T) {
	z := newZone(t,
		"app.test. 60 IN A 127.0.0.1",
		"stale.test. 60 IN A 127.0.0.1",
		"stale.test. 60 IN AAAA 2001:db8::1",
		"sub.locked.test. 60 IN A 127.0.0.1",
		`locked.test. 60 IN CAA 0 issue "letsencrypt.org"`,
		`crit.test. 60 IN A 127.0.0.1`,
		`crit.test. 60 IN CAA 128 tbs "x"`,
	)
	p := newPorts(t)
	// Another program holds the HTTP port.
	busy, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p.HTTP))
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dir := t.TempDir()
	// A well-formed root of a CA that is down.
	probe, err := throwawayCertificate()
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "root.pem")
	if err := os.WriteFile(root, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: probe.Certificate[0]}), 0o644); err != nil {
		t.Fatal(err)
	}
	caDown := fmt.Sprintf("https://127.0.0.1:%d/dir", pebbletest.FreePort(t))
	cfgPath := filepath.Join(dir, "gatehouse.yaml")
	cfg := fmt.Sprintf(adminACMEConfig, caDown, root, "app.test, stale.test, missing.test, sub.locked.test, crit.test")
	writeConfig(t, cfgPath, p, filepath.Join(dir, "storage"), cfg)

	err, out := runCheck(t, "-config", cfgPath, "-resolver", z.addr, "-caa-identity", "pebble.test")
	var exit exitError
	if !errors.As(err, &exit) || exit != 1 {
		t.Fatalf("check: got %v, want exit status 1\n%s", err, out)
	}
	wantLines(t, out,
		"FAIL  CA "+caDown+": the ACME directory does not answer",
		"FAIL  stale.test: resolves to 127.0.0.1, 2001:db8::1, and 2001:db8::1 is not an address of this machine",
		"FAIL  missing.test: has no A or AAAA record",
		// TLS-ALPN-01 still works, so the lost HTTP-01 is only noted.
		fmt.Sprintf("note  app.test: http-01: 127.0.0.1:%d (listen.http) is held by another program, not a running gatehouse", p.HTTP),
		fmt.Sprintf("ok    app.test: tls-alpn-01: app.test:%d reaches a temporary TLS listener", p.HTTPS),
		"FAIL  sub.locked.test: CAA at locked.test allows only letsencrypt.org, not pebble.test",
		`FAIL  crit.test: CAA at crit.test has a critical "tbs" property`,
		"ok    app.test: CAA: no records up to the top-level domain",
	)
	if !strings.Contains(out, "5 problems would make obtaining certificates fail") {
		t.Errorf("want 5 problems (CA, stale, missing, locked, crit):\n%s", out)
	}

	// With the HTTPS port held too, no challenge can work.
	busyTLS, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p.HTTPS))
	if err != nil {
		t.Fatal(err)
	}
	defer busyTLS.Close()
	_, out = runCheck(t, "-config", cfgPath, "-resolver", z.addr, "-caa-identity", "pebble.test")
	wantLines(t, out,
		fmt.Sprintf("FAIL  app.test: http-01: 127.0.0.1:%d (listen.http) is held by another program", p.HTTP),
		fmt.Sprintf("FAIL  app.test: tls-alpn-01: 127.0.0.1:%d (listen.https) is held by another program", p.HTTPS),
	)
}

// TestCheckWhileRunning checks a config whose gatehouse is already serving:
// the ports are its own, so the probes go to it.
func TestCheckWhileRunning(t *testing.T) {
	if testing.Short() {
		t.Skip("starts gatehouse with an in-process Pebble")
	}
	p := newPorts(t)
	ca := pebbletest.Start(t, pebbletest.Options{HTTPPort: p.HTTP, TLSPort: p.HTTPS})
	z := newZone(t, "app.test. 60 IN A 127.0.0.1")
	in := start(t, p, fmt.Sprintf(adminACMEConfig, ca.DirectoryURL(), ca.ClientRootFile(), "app.test"))

	err, out := runCheck(t, "-config", in.cfgPath, "-resolver", z.addr)
	if err != nil {
		t.Fatalf("check: %v\n%s", err, out)
	}
	wantLines(t, out,
		fmt.Sprintf("ok    app.test: http-01: http://app.test:%d/.well-known/acme-challenge/", p.HTTP),
		fmt.Sprintf("ok    app.test: tls-alpn-01: app.test:%d reaches the running gatehouse", p.HTTPS),
	)
}

func TestCAAIdentity(t *testing.T) {
	for _, tc := range []struct{ directory, want string }{
		{"https://acme-v02.api.letsencrypt.org/directory", "letsencrypt.org"},
		{"https://acme-staging-v02.api.letsencrypt.org/directory", "letsencrypt.org"},
		{"https://acme.zerossl.com/v2/DV90", "sectigo.com"},
		{"https://dv.acme-v02.api.pki.goog/directory", "pki.goog"},
		{"https://127.0.0.1:14000/dir", ""},
		{"https://notletsencrypt.org/directory", ""},
	} {
		if got := caaIdentity(tc.directory); got != tc.want {
			t.Errorf("caaIdentity(%q): got %q, want %q", tc.directory, got, tc.want)
		}
	}
}

// TestCheckWildcard checks a wildcard host solved through DNS-01: no
// address or port is needed, and its CAA is read from issuewild.
func TestCheckWildcard(t *testing.T) {
	ca := pebbletest.Start(t, pebbletest.Options{})
	z := newZone(t,
		`wild.test. 60 IN CAA 0 issue ";"`,
		`wild.test. 60 IN CAA 0 issuewild "pebble.test"`,
		`locked.test. 60 IN CAA 0 issuewild "letsencrypt.org"`,
	)
	p := newPorts(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "gatehouse.yaml")
	writeConfig(t, cfgPath, p, filepath.Join(dir, "storage"), fmt.Sprintf(`listen: {http: "127.0.0.1:{{HTTP}}", https: "127.0.0.1:{{HTTPS}}"}
admin: "off"
storage: {{STORAGE}}
acme: {ca: %s, ca_root: %s}
sites:
  - hosts: ["*.wild.test", "*.locked.test"]
    tls: {dns: {provider: exec, credentials: {program: /bin/true}}}
    routes: [{respond: {body: wild}}]
`, ca.DirectoryURL(), ca.ClientRootFile()))

	err, out := runCheck(t, "-config", cfgPath, "-resolver", z.addr, "-caa-identity", "pebble.test")
	wantLines(t, out,
		"ok    *.wild.test: solved with DNS-01: no address or open port needed",
		"ok    *.wild.test: CAA at wild.test allows pebble.test",
		"FAIL  *.locked.test: CAA at locked.test allows only letsencrypt.org, not pebble.test",
		"1 problem would make obtaining certificates fail",
	)
	if strings.Contains(out, "http-01") || strings.Contains(out, "tls-alpn-01") {
		t.Errorf("DNS-01 hosts need no port probe:\n%s", out)
	}
	var exit exitError
	if !errors.As(err, &exit) || exit != 1 {
		t.Errorf("got %v, want exit status 1", err)
	}
}
