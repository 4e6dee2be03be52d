package pebbletest_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/crypto/acme"

	"github.com/gatehouse-proxy/gatehouse/tlsmgr/pebbletest"
)

// bindSolver answers DNS-01 challenges by updating a real BIND with
// TSIG-signed RFC 2136 messages.
type bindSolver struct{ ns *pebbletest.BIND }

func (s bindSolver) chalType() string { return "dns-01" }

func (s bindSolver) present(cl *acme.Client, name string, chal *acme.Challenge) (func(), error) {
	v, err := cl.DNS01ChallengeRecord(chal.Token)
	if err != nil {
		return nil, err
	}
	rr := &dns.TXT{
		Hdr: dns.RR_Header{Name: dns.Fqdn("_acme-challenge." + strings.TrimPrefix(name, "*.")), Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 1},
		Txt: []string{v},
	}
	send := func(update func(*dns.Msg)) error {
		m := new(dns.Msg).SetUpdate(s.ns.Zone)
		update(m)
		m.SetTsig(s.ns.KeyName, dns.Fqdn(s.ns.KeyAlgorithm), 300, time.Now().Unix())
		c := &dns.Client{TsigSecret: map[string]string{s.ns.KeyName: s.ns.KeySecret}, Timeout: 2 * time.Second}
		r, _, err := c.Exchange(m, s.ns.Addr)
		if err == nil && r.Rcode != dns.RcodeSuccess {
			err = &dnsError{rcode: r.Rcode}
		}
		return err
	}
	if err := send(func(m *dns.Msg) { m.Insert([]dns.RR{rr}) }); err != nil {
		return nil, err
	}
	return func() { _ = send(func(m *dns.Msg) { m.Remove([]dns.RR{rr}) }) }, nil
}

type dnsError struct{ rcode int }

func (e *dnsError) Error() string { return "DNS update answered " + dns.RcodeToString[e.rcode] }

// TestExternalResolver validates DNS-01 against a real BIND: the records
// live only there, written with TSIG-signed updates, and Pebble reads them
// through Options.Resolver.
func TestExternalResolver(t *testing.T) {
	t.Parallel()
	skipShort(t)
	ns := pebbletest.StartBIND(t, "bind.test")
	ca := pebbletest.Start(t, pebbletest.Options{Resolver: ns.Addr})
	cl := newClient(t, ca)
	chain := obtain(t, cl, bindSolver{ns}, "*.bind.test")
	verify(t, ca, chain, "www.bind.test")
	if vals, err := ns.TXT(t.Context(), "_acme-challenge.bind.test"); err != nil || len(vals) != 0 {
		t.Errorf("TXT after clean-up: %q (%v), want none", vals, err)
	}
	// The built-in resolver was not asked: it holds no record.
	m := new(dns.Msg)
	m.SetQuestion("_acme-challenge.bind.test.", dns.TypeTXT)
	if r, _, err := new(dns.Client).Exchange(m, ca.DNSAddr()); err != nil || len(r.Answer) != 0 {
		t.Errorf("built-in resolver: %v (%v), want no TXT", r, err)
	}
}

// TestProfilesAndARIRetryAfter checks extra profiles are offered in the
// directory and that the ARI endpoint's Retry-After is the one asked for.
func TestProfilesAndARIRetryAfter(t *testing.T) {
	t.Parallel()
	skipShort(t)
	httpLn, httpPort := listenLocal(t)
	ca := pebbletest.Start(t, pebbletest.Options{
		HTTPPort: httpPort,
		// Same validity as the default: an order without a profile
		// gets a random one.
		Profiles:      map[string]time.Duration{"shortlived": pebbletest.DefaultValidity},
		ARIRetryAfter: 3 * time.Second,
	})
	var dir struct {
		RenewalInfo string `json:"renewalInfo"`
		Meta        struct {
			Profiles map[string]string `json:"profiles"`
		} `json:"meta"`
	}
	getJSON(t, ca.HTTPClient(), ca.DirectoryURL(), &dir)
	var names []string
	for n := range dir.Meta.Profiles {
		names = append(names, n)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"default", "shortlived"}) {
		t.Errorf("directory profiles: got %v, want [default shortlived]", names)
	}

	cl := newClient(t, ca)
	leaf := obtain(t, cl, newHTTPSolver(t, httpLn), "ari.test")[0]
	resp, err := ca.HTTPClient().Get(dir.RenewalInfo + "/" + ariID(t, leaf))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("Retry-After"); resp.StatusCode != 200 || got != "3" {
		t.Errorf("renewalInfo: status %d, Retry-After %q; want 200, \"3\"", resp.StatusCode, got)
	}
}

// ariID is a certificate's ARI identifier (RFC 9773 §4.1).
func ariID(t *testing.T, leaf *x509.Certificate) string {
	t.Helper()
	serial, err := asn1.Marshal(leaf.SerialNumber)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(leaf.AuthorityKeyId) + "." +
		base64.RawURLEncoding.EncodeToString(serial[2:])
}

// TestBINDUpdates checks SetTXT replaces a name's record set, RemoveTXT
// removes one value, and BIND's port lies below the ephemeral range.
func TestBINDUpdates(t *testing.T) {
	t.Parallel()
	ns := pebbletest.StartBIND(t, "upd.test")
	_, portStr, err := net.SplitHostPort(ns.Addr)
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(portStr)
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		var first, last int
		if _, err := fmt.Sscan(string(b), &first, &last); err == nil && first >= 11000 && port >= first {
			t.Errorf("BIND on port %d, want one below the ephemeral range starting at %d", port, first)
		}
	}
	ctx := t.Context()
	name := "_acme-challenge.upd.test"
	txt := func() []string {
		t.Helper()
		vs, err := ns.TXT(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(vs)
		return vs
	}
	for _, v := range []string{"one", "two"} {
		if err := ns.SetTXT(ctx, name, v); err != nil {
			t.Fatal(err)
		}
	}
	if got := txt(); !slices.Equal(got, []string{"two"}) {
		t.Errorf("TXT after SetTXT one, two = %q, want [two]", got)
	}
	if err := ns.RemoveTXT(ctx, name, "two"); err != nil {
		t.Fatal(err)
	}
	if got := txt(); len(got) != 0 {
		t.Errorf("TXT after RemoveTXT = %q, want none", got)
	}
}

// TestEAB checks a CA with Options.EAB refuses an account without a
// binding or with a wrong key, and registers one bound with its key.
func TestEAB(t *testing.T) {
	t.Parallel()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	ca := pebbletest.Start(t, pebbletest.Options{EAB: map[string]string{"kid": base64.RawURLEncoding.EncodeToString(key)}})
	register := func(eab *acme.ExternalAccountBinding) error {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		cl := &acme.Client{Key: k, DirectoryURL: ca.DirectoryURL(), HTTPClient: ca.HTTPClient()}
		_, err = cl.Register(t.Context(), &acme.Account{ExternalAccountBinding: eab}, acme.AcceptTOS)
		return err
	}
	if err := register(nil); err == nil || !strings.Contains(err.Error(), "externalAccountRequired") {
		t.Errorf("register without EAB: %v, want externalAccountRequired", err)
	}
	if err := register(&acme.ExternalAccountBinding{KID: "kid", Key: []byte("wrong key, 32 bytes long.......")}); err == nil {
		t.Error("register with a wrong MAC key succeeded")
	}
	if err := register(&acme.ExternalAccountBinding{KID: "kid", Key: key}); err != nil {
		t.Errorf("register with the right key: %v", err)
	}
}

// TestRateLimitOrders checks refused orders get Boulder's 429 rateLimited
// problem naming the time, carry a usable nonce, and are not counted; the
// next order goes through.
func TestRateLimitOrders(t *testing.T) {
	t.Parallel()
	ca := pebbletest.Start(t, pebbletest.Options{})
	cl := newClient(t, ca)
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	ca.RateLimitOrders(1, at)
	// x/crypto/acme would wait out Retry-After (years): stop it, and look
	// at the header.
	var retryAfter string
	cl.RetryBackoff = func(_ int, _ *http.Request, resp *http.Response) time.Duration {
		if resp != nil && resp.StatusCode == http.StatusTooManyRequests {
			retryAfter = resp.Header.Get("Retry-After")
			return -1
		}
		return time.Second // a rejected nonce: retry
	}
	_, err := cl.AuthorizeOrder(t.Context(), acme.DomainIDs("rl.test"))
	if secs, err := strconv.Atoi(retryAfter); err != nil || time.Until(at)-time.Duration(secs)*time.Second > time.Minute {
		t.Errorf("Retry-After = %q, want the seconds until %v", retryAfter, at)
	}
	var ae *acme.Error
	if !errors.As(err, &ae) || ae.StatusCode != 429 || ae.ProblemType != "urn:ietf:params:acme:error:rateLimited" ||
		!strings.Contains(ae.Detail, "retry after 2030-01-02 03:04:05 UTC") {
		t.Fatalf("first order: %v, want a 429 rateLimited problem naming 2030-01-02 03:04:05 UTC", err)
	}
	if got := ca.Orders(); got != 0 {
		t.Errorf("Orders() after a refused order = %d, want 0", got)
	}
	if _, err := cl.AuthorizeOrder(t.Context(), acme.DomainIDs("rl.test")); err != nil {
		t.Fatalf("second order: %v", err)
	}
	if got := ca.Orders(); got != 1 {
		t.Errorf("Orders() = %d, want 1", got)
	}
}

// TestDownAtFinalize holds an order's finalize request, then lets it
// through into a CA gone down: it and every request after it fail and
// are counted, the order stays counted once, and after Up the same order
// is finalized.
func TestDownAtFinalize(t *testing.T) {
	t.Parallel()
	skipShort(t)
	ln, port := listenLocal(t)
	s := newHTTPSolver(t, ln)
	ca := pebbletest.Start(t, pebbletest.Options{HTTPPort: port})
	cl := newClient(t, ca)
	// A request that fails is not retried by x/crypto/acme when it has
	// no response at all; keep it from waiting on anything else.
	cl.RetryBackoff = func(int, *http.Request, *http.Response) time.Duration { return -1 }
	o := readyOrder(t, cl, s, "down.test")
	csr := newCSR(t, "down.test")

	held, release := ca.HoldFinalize()
	defer release()
	ca.DownAtFinalize()
	errc := make(chan error, 1)
	go func() {
		_, _, err := cl.CreateCertFromOrder(t.Context(), o, csr, true)
		errc <- err
	}()
	select {
	case <-held:
	case <-time.After(30 * time.Second):
		t.Fatal("finalize request not held within 30s")
	}
	if ca.IsDown() {
		t.Error("CA down while the finalize request is held, want it up until the request goes on")
	}
	release()
	if err := <-errc; err == nil {
		t.Fatal("finalize with the CA down succeeded")
	}
	if !ca.IsDown() || ca.Refused() < 1 {
		t.Errorf("after finalize: down %v, refused %d; want down, at least 1 refused", ca.IsDown(), ca.Refused())
	}
	refused := ca.Refused()
	if _, err := cl.GetOrder(t.Context(), o.URI); err == nil {
		t.Error("getting the order while the CA is down succeeded")
	}
	if ca.Refused() <= refused {
		t.Errorf("refused after another request: got %d, want more than %d", ca.Refused(), refused)
	}

	ca.Up()
	if ca.IsDown() {
		t.Error("CA still down after Up")
	}
	ders, _, err := cl.CreateCertFromOrder(t.Context(), o, csr, true)
	if err != nil {
		t.Fatalf("finalizing after Up: %v", err)
	}
	if len(ders) < 2 {
		t.Errorf("chain after Up: %d certificates, want leaf and intermediate", len(ders))
	}
	if got := ca.Orders(); got != 1 {
		t.Errorf("Orders() = %d, want 1", got)
	}
}

// TestBadNonces checks Options.BadNonces makes Pebble reject nonces, that
// BadNonces counts them, and that other CAs are left alone.
func TestBadNonces(t *testing.T) {
	t.Parallel()
	noisy := pebbletest.Start(t, pebbletest.Options{BadNonces: 50})
	quiet := pebbletest.Start(t, pebbletest.Options{})
	for _, ca := range []*pebbletest.CA{noisy, quiet} {
		// x/crypto/acme retries badNonce with backoff; 20 accounts at
		// 50% all accepted at once has odds of one in a million.
		for range 20 {
			k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			cl := &acme.Client{Key: k, DirectoryURL: ca.DirectoryURL(), HTTPClient: ca.HTTPClient(),
				RetryBackoff: func(n int, _ *http.Request, _ *http.Response) time.Duration {
					return time.Duration(n) * 10 * time.Millisecond
				}}
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			_, err = cl.Register(ctx, &acme.Account{}, acme.AcceptTOS)
			cancel()
			if err != nil {
				t.Fatalf("registering despite rejected nonces: %v", err)
			}
		}
	}
	if noisy.BadNonces() == 0 {
		t.Error("a CA rejecting 50% of nonces rejected none")
	}
	if n := quiet.BadNonces(); n != 0 {
		t.Errorf("a CA with BadNonces unset rejected %d nonces", n)
	}
}
