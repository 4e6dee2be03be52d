package tlsmgr

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr/pebbletest"
	"github.com/miekg/dns"
)

// TestDNS01WildcardRFC2136 obtains a wildcard certificate and one for the
// zone apex through DNS-01: gatehouse writes the TXT records into a real
// BIND with TSIG-signed dynamic updates (lego's RFC 2136 provider), Pebble
// validates them by asking that BIND, and the records are gone afterwards.
func TestDNS01WildcardRFC2136(t *testing.T) {
	skipShort(t)
	t.Parallel()
	ns := pebbletest.StartBIND(t, "example.test")
	g := startPebbleGatehouse(t, pebbletest.Options{Resolver: ns.Addr})
	cfg := g.acmeConfig("*.example.test", "example.test")
	cfg.Sites[0].TLS.DNS = &config.DNS{
		Provider: "rfc2136",
		Credentials: map[string]string{
			"nameserver": ns.Addr, "tsig_key": ns.KeyName, "tsig_secret": ns.KeySecret, "tsig_algorithm": ns.KeyAlgorithm,
		},
		PropagationTimeout: 20 * time.Second,
		Resolvers:          []string{ns.Addr},
	}
	g.start(t, cfg, fastOptions())

	leaf := g.waitForCert(t, "a.example.test", "", 60*time.Second)
	if !slices.Equal(leaf.DNSNames, []string{"*.example.test"}) {
		t.Errorf("certificate for a.example.test names %v, want [*.example.test]", leaf.DNSNames)
	}
	other := g.waitForCert(t, "other.example.test", "", 5*time.Second)
	if other.SerialNumber.Cmp(leaf.SerialNumber) != 0 {
		t.Errorf("other.example.test got serial %v, want the wildcard's %v", other.SerialNumber, leaf.SerialNumber)
	}
	checkChallenges(t, g.ca, "*.example.test", "dns-01")
	apex := g.waitForCert(t, "example.test", "", 60*time.Second)
	checkChallenges(t, g.ca, "example.test", "dns-01")
	if !slices.Equal(apex.DNSNames, []string{"example.test"}) {
		t.Errorf("certificate for example.test names %v, want [example.test]", apex.DNSNames)
	}
	// One label only: a.b.example.test is no host of the site.
	if _, err := g.handshake("a.b.example.test"); err == nil {
		t.Error("a.b.example.test was served; a wildcard covers one label")
	}
	if got := g.ca.Orders(); got != 2 {
		t.Errorf("orders: got %d, want 2 (one wildcard, one apex)", got)
	}

	// The challenge records were removed from the zone.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for {
		vals, err := ns.TXT(ctx, "_acme-challenge.example.test")
		if err == nil && len(vals) == 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("_acme-challenge.example.test still holds TXT %q (err %v)", vals, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDNS01Exec obtains a wildcard certificate through lego's exec
// provider: a shell script that calls BIND's nsupdate, as a user would
// script any DNS service gatehouse has no provider for.
func TestDNS01Exec(t *testing.T) {
	skipShort(t)
	t.Parallel()
	nsupdate, err := exec.LookPath("nsupdate")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("nsupdate not found in CI: .ci/run should install bind9-dnsutils: %v", err)
		}
		t.Skip("nsupdate not installed: apt-get install -y bind9-dnsutils")
	}
	ns := pebbletest.StartBIND(t, "exec.test")
	host, port, _ := net.SplitHostPort(ns.Addr)
	script := filepath.Join(t.TempDir(), "dns-hook")
	// lego's exec provider runs: PROGRAM present|cleanup FQDN VALUE.
	body := fmt.Sprintf(`#!/bin/sh
set -e
case "$1" in
present) op="update add $2 1 TXT \"$3\"" ;;
cleanup) op="update delete $2 TXT \"$3\"" ;;
*) exit 0 ;;
esac
printf 'server %s %s\nzone exec.test.\n%%s\nsend\n' "$op" | %s -y %s:%s:%s
`, host, port, nsupdate, ns.KeyAlgorithm, strings.TrimSuffix(ns.KeyName, "."), ns.KeySecret)
	if err := os.WriteFile(script, []byte(body), 0o700); err != nil {
		t.Fatal(err)
	}
	g := startPebbleGatehouse(t, pebbletest.Options{Resolver: ns.Addr})
	g.acme = config.ACME{
		CA: g.ca.DirectoryURL(), CARoot: g.ca.ClientRootFile(),
		DNS: &config.DNS{
			Provider: "exec", Credentials: map[string]string{"program": script},
			PropagationTimeout: 20 * time.Second, Resolvers: []string{ns.Addr},
		},
	}
	g.start(t, g.acmeConfig("*.exec.test"), fastOptions())
	leaf := g.waitForCert(t, "www.exec.test", "", 60*time.Second)
	if !slices.Equal(leaf.DNSNames, []string{"*.exec.test"}) {
		t.Errorf("certificate for www.exec.test names %v, want [*.exec.test]", leaf.DNSNames)
	}
	checkChallenges(t, g.ca, "*.exec.test", "dns-01")
	if vals, err := ns.TXT(t.Context(), "_acme-challenge.exec.test"); err != nil || len(vals) != 0 {
		t.Errorf("_acme-challenge.exec.test after issuance: TXT %q (err %v), want none", vals, err)
	}
}

// TestDNSProviders builds each DNS provider from every credential key
// gatehouse documents, so a key the validator accepts always reaches the
// provider. It only builds them: rfc2136, exec and httpreq are driven end
// to end against BIND and Pebble by TestDNS01WildcardRFC2136,
// TestDNS01Exec, TestDNS01PropagationWait and TestDNS01RecordTurns; the
// others need their vendors' APIs.
func TestDNSProviders(t *testing.T) {
	tsigFile := filepath.Join(t.TempDir(), "tsig.key")
	if err := os.WriteFile(tsigFile, []byte("key \"k.\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2VjcmV0\";\n};\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		provider string
		creds    map[string]string
		wantErr  string
	}{
		{"rfc2136", map[string]string{"nameserver": "127.0.0.1:53", "tsig_key": "k", "tsig_secret": "c2VjcmV0", "tsig_algorithm": "hmac-sha512", "zone": "example.test", "ttl": "30"}, ""},
		{"rfc2136", map[string]string{"nameserver": "127.0.0.1", "tsig_file": tsigFile}, ""},
		{"rfc2136", map[string]string{"nameserver": "127.0.0.1", "tsig_key": "k", "tsig_secret": "c2VjcmV0", "tsig_algorithm": "hmac-md4"}, "unsupported TSIG algorithm"},
		{"cloudflare", map[string]string{"api_token": "t", "zone_token": "z", "base_url": "https://api.example.test/", "ttl": "300"}, ""},
		{"cloudflare", map[string]string{"email": "ops@example.test", "api_key": "k"}, ""},
		{"cloudflare", map[string]string{"api_token": "t", "ttl": "30"}, "invalid TTL"},
		{"route53", map[string]string{
			"access_key_id": "AKID", "secret_access_key": "secret", "session_token": "s", "region": "eu-west-1",
			"hosted_zone_id": "Z1", "assume_role_arn": "", "external_id": "", "private_zone": "true", "max_retries": "2", "ttl": "10",
		}, ""},
		{"digitalocean", map[string]string{"auth_token": "t", "base_url": "https://api.example.test", "ttl": "60"}, ""},
		{"exec", map[string]string{"program": "/bin/true", "mode": "RAW"}, ""},
		{"httpreq", map[string]string{"endpoint": "https://dns.example.test/", "mode": "RAW", "username": "u", "password": "p"}, ""},
		{"httpreq", map[string]string{"endpoint": "/relative"}, "not an absolute URL"},
	} {
		t.Run(tc.provider, func(t *testing.T) {
			d := &config.DNS{Provider: tc.provider, Credentials: tc.creds, PropagationTimeout: time.Minute}
			// Every key used here is one the validator accepts.
			var known []string
			for _, c := range config.DNSProviders[tc.provider] {
				known = append(known, c.Key)
			}
			for k := range tc.creds {
				if !slices.Contains(known, k) {
					t.Fatalf("credential %q is not in config.DNSProviders[%q]", k, tc.provider)
				}
			}
			_, _, err := newDNSProvider(d)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("newDNSProvider: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("newDNSProvider: got error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// httpreqEndpoint is the HTTP service lego's httpreq provider talks to, as
// a user would run one in front of their DNS: POST /present and /cleanup
// with {"fqdn", "value"}. It writes the records into a real BIND with
// TSIG-signed updates.
type httpreqEndpoint struct {
	t  *testing.T
	ns *pebbletest.BIND
	// onPresent, if set, runs after a record is presented, before the
	// answer: a test holds a present here.
	onPresent func(fqdn, value string)
	// deferWrite holds records back from BIND: presents are answered
	// but only written by release.
	deferWrite bool

	mu sync.Mutex // guards the fields below
	// live holds the values presented and not yet cleaned up, by name.
	live map[string][]string
	// pending holds the values presented but not yet written (deferWrite).
	pending map[string]string
	// overlaps lists presents that came while another value of the same
	// name was live.
	overlaps []string
	presents int
}

func startHTTPReqEndpoint(t *testing.T, ns *pebbletest.BIND) (*httpreqEndpoint, string) {
	e := &httpreqEndpoint{t: t, ns: ns, live: map[string][]string{}, pending: map[string]string{}}
	srv := httptest.NewServer(http.HandlerFunc(e.serve))
	t.Cleanup(srv.Close)
	return e, srv.URL
}

func (e *httpreqEndpoint) serve(w http.ResponseWriter, r *http.Request) {
	var msg struct{ FQDN, Value string }
	if err := json.NewDecoder(r.Body).Decode(&msg); err != nil || msg.FQDN == "" || msg.Value == "" {
		http.Error(w, "want {fqdn, value}", http.StatusBadRequest)
		return
	}
	name := dns.CanonicalName(msg.FQDN)
	var err error
	switch r.URL.Path {
	case "/present":
		e.mu.Lock()
		e.presents++
		if len(e.live[name]) > 0 {
			e.overlaps = append(e.overlaps, fmt.Sprintf("%s presented while %q still live", name, e.live[name]))
		}
		e.live[name] = append(e.live[name], msg.Value)
		write := !e.deferWrite
		if !write {
			e.pending[name] = msg.Value
		}
		e.mu.Unlock()
		if write {
			// Replace the record set, as lego's RFC 2136 provider and
			// many DNS APIs do.
			err = e.ns.SetTXT(r.Context(), name, msg.Value)
		}
		if err == nil && e.onPresent != nil {
			e.onPresent(name, msg.Value)
		}
	case "/cleanup":
		e.mu.Lock()
		e.live[name] = slices.DeleteFunc(e.live[name], func(v string) bool { return v == msg.Value })
		delete(e.pending, name)
		e.mu.Unlock()
		err = e.ns.RemoveTXT(r.Context(), name, msg.Value)
	default:
		http.NotFound(w, r)
		return
	}
	if err != nil {
		e.t.Errorf("httpreq endpoint %s %s: %v", r.URL.Path, name, err)
		http.Error(w, err.Error(), http.StatusBadGateway)
	}
}

// release writes the value held back for name into BIND, if any.
func (e *httpreqEndpoint) release(name string) {
	e.mu.Lock()
	v, ok := e.pending[name]
	delete(e.pending, name)
	e.mu.Unlock()
	if ok {
		if err := e.ns.SetTXT(context.Background(), name, v); err != nil {
			e.t.Errorf("writing %s late: %v", name, err)
		}
	}
}

func (e *httpreqEndpoint) report() (presents int, overlaps []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.presents, slices.Clone(e.overlaps)
}

// startDNSForwarder serves DNS on 127.0.0.1 (UDP and TCP, one port),
// forwarding every query to upstream, and calls afterTXT with the name of
// each TXT query once it is answered. Given as gatehouse's resolvers, it
// shows when and how often the propagation check asks.
func startDNSForwarder(t *testing.T, upstream string, afterTXT func(name string)) string {
	t.Helper()
	pc, ln, err := pebbletest.ListenDNS()
	if err != nil {
		t.Fatal(err)
	}
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
		if _, ok := w.RemoteAddr().(*net.TCPAddr); ok {
			c.Net = "tcp"
		}
		resp, _, err := c.Exchange(req, upstream)
		if err != nil {
			resp = new(dns.Msg).SetRcode(req, dns.RcodeServerFailure)
		}
		_ = w.WriteMsg(resp)
		for _, q := range req.Question {
			if q.Qtype == dns.TypeTXT {
				afterTXT(dns.CanonicalName(q.Name))
			}
		}
	})
	started := make(chan struct{}, 2)
	servers := []*dns.Server{
		{PacketConn: pc, Handler: handler, NotifyStartedFunc: func() { started <- struct{}{} }},
		{Listener: ln, Handler: handler, NotifyStartedFunc: func() { started <- struct{}{} }},
	}
	for _, s := range servers {
		go func() { _ = s.ActivateAndServe() }()
	}
	for range servers {
		<-started
	}
	t.Cleanup(func() {
		for _, s := range servers {
			_ = s.Shutdown()
		}
	})
	return pc.LocalAddr().String()
}

// waitForCertFirstTry is waitForCert that fails the test at once if an
// attempt fails (failed closes): the certificate must come from the first
// order.
func (g *pebbleGatehouse) waitForCertFirstTry(t *testing.T, host string, failed <-chan struct{}, timeout time.Duration) *x509.Certificate {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if leaf, err := g.handshake(host); err == nil {
			return leaf
		}
		select {
		case <-failed:
			t.Fatalf("an attempt for %s failed; validations: %+v", host, g.ca.Validations())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no certificate for %s within %v; validations: %+v", host, timeout, g.ca.Validations())
		}
	}
}

// TestDNS01PropagationWait obtains a certificate through lego's httpreq
// provider whose record reaches the authoritative BIND late: only after
// gatehouse's propagation check has asked once and not found it. Without
// the wait, Pebble would look before the record is there and the order
// would fail.
func TestDNS01PropagationWait(t *testing.T) {
	skipShort(t)
	t.Parallel()
	ns := pebbletest.StartBIND(t, "late.test")
	ep, url := startHTTPReqEndpoint(t, ns)
	ep.deferWrite = true
	var mu sync.Mutex // guards asked
	asked := 0
	resolver := startDNSForwarder(t, ns.Addr, func(name string) {
		if name != "_acme-challenge.late.test." {
			return
		}
		mu.Lock()
		asked++
		mu.Unlock()
		ep.release(name)
	})
	g := startPebbleGatehouse(t, pebbletest.Options{Resolver: ns.Addr})
	g.acme.DNS = &config.DNS{
		Provider: "httpreq", Credentials: map[string]string{"endpoint": url},
		PropagationTimeout: 20 * time.Second, Resolvers: []string{resolver},
	}
	h, failed := signalOn(testLog(t), "obtaining certificate failed; will retry")
	g.startLogged(t, g.acmeConfig("*.late.test"), fastOptions(), h)
	leaf := g.waitForCertFirstTry(t, "www.late.test", failed, 60*time.Second)
	if !slices.Equal(leaf.DNSNames, []string{"*.late.test"}) {
		t.Errorf("certificate names %v, want [*.late.test]", leaf.DNSNames)
	}
	checkChallenges(t, g.ca, "*.late.test", "dns-01")
	mu.Lock()
	defer mu.Unlock()
	if asked < 2 {
		t.Errorf("the propagation check asked %d times, want at least 2 (once before the record was there)", asked)
	}
	if vals, err := ns.TXT(t.Context(), "_acme-challenge.late.test"); err != nil || len(vals) != 0 {
		t.Errorf("_acme-challenge.late.test after issuance: TXT %q (err %v), want none", vals, err)
	}
}

// TestDNS01RecordTurns obtains the wildcard and the apex certificate of a
// zone at once through lego's httpreq provider, whose endpoint replaces
// the record set on every present as many DNS APIs do. Both challenges
// answer at _acme-challenge.turns.test: they must take turns, or the
// second present wipes the first's value before Pebble reads it. The
// endpoint holds the first present until the second order is about to
// present too, so the two always meet.
func TestDNS01RecordTurns(t *testing.T) {
	skipShort(t)
	t.Parallel()
	ns := pebbletest.StartBIND(t, "turns.test")
	ep, url := startHTTPReqEndpoint(t, ns)
	t.Cleanup(func() {
		if _, overlaps := ep.report(); t.Failed() && len(overlaps) > 0 {
			t.Logf("challenges did not take turns: %q", overlaps)
		}
	})

	// trying receives the identifier of each challenge acmez is about to
	// present for (it logs, at debug, just before it calls Present).
	trying := make(chan string, 16)
	h := tapHandler{Handler: allLevels{testLog(t)}, tap: func(r slog.Record) {
		if r.Message != "trying to solve challenge" {
			return
		}
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "identifier" {
				trying <- a.Value.String()
			}
			return true
		})
	}}
	var once sync.Once
	ep.onPresent = func(string, string) {
		once.Do(func() {
			seen := map[string]bool{}
			timeout := time.After(30 * time.Second)
			for !seen["*.turns.test"] || !seen["turns.test"] {
				select {
				case id := <-trying:
					seen[id] = true
				case <-timeout:
					t.Errorf("the second order never came to its challenge while the first held the record (seen %v)", seen)
					return
				}
			}
		})
	}

	g := startPebbleGatehouse(t, pebbletest.Options{Resolver: ns.Addr})
	g.acme.DNS = &config.DNS{
		Provider: "httpreq", Credentials: map[string]string{"endpoint": url},
		PropagationTimeout: 20 * time.Second, Resolvers: []string{ns.Addr},
	}
	failedH, failed := signalOn(h, "obtaining certificate failed; will retry")
	g.startLogged(t, g.acmeConfig("*.turns.test", "turns.test"), fastOptions(), failedH)
	g.waitForCertFirstTry(t, "a.turns.test", failed, 60*time.Second)
	g.waitForCertFirstTry(t, "turns.test", failed, 60*time.Second)

	presents, overlaps := ep.report()
	for _, o := range overlaps {
		t.Errorf("challenges did not take turns: %s", o)
	}
	if presents != 2 {
		t.Errorf("presents: got %d, want 2", presents)
	}
	g.checkOrders(t, 2)
	checkChallenges(t, g.ca, "*.turns.test", "dns-01")
	checkChallenges(t, g.ca, "turns.test", "dns-01")
}

// allLevels passes on the records its Handler is enabled for, but reports
// every level enabled, so a tap in front of it sees debug records too
// (certmagic's, which gatehouse demotes to debug).
type allLevels struct{ slog.Handler }

func (allLevels) Enabled(context.Context, slog.Level) bool { return true }

func (h allLevels) Handle(ctx context.Context, r slog.Record) error {
	if !h.Handler.Enabled(ctx, r.Level) {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h allLevels) WithAttrs(attrs []slog.Attr) slog.Handler {
	return allLevels{h.Handler.WithAttrs(attrs)}
}

func (h allLevels) WithGroup(name string) slog.Handler { return allLevels{h.Handler.WithGroup(name)} }
