package tlsmgr

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr/pebbletest"
	"github.com/mholt/acmez/v3/acme"
)

// TestIssuerFailover lists an unreachable CA first and Pebble second: the
// certificate comes from Pebble and the log names Pebble as its issuer. A
// second Site overrides the list with Pebble alone.
func TestIssuerFailover(t *testing.T) {
	skipShort(t)
	t.Parallel()
	g := startPebbleGatehouse(t, pebbletest.Options{})
	// A reserved port with nothing listening: connections are refused.
	down := fmt.Sprintf("https://127.0.0.1:%d/dir", pebbletest.FreePort(t))
	g.acme = config.ACME{
		Email: "admin@example.org",
		Issuers: []config.Issuer{
			{CA: down, CARoot: g.ca.ClientRootFile()},
			{CA: g.ca.DirectoryURL(), CARoot: g.ca.ClientRootFile()},
		},
	}
	cfg := g.acmeConfig("failover.test")
	cfg.Sites = append(cfg.Sites, config.Site{
		Hosts: []string{"override.test"},
		TLS:   config.SiteTLS{Issuers: []config.Issuer{{CA: g.ca.DirectoryURL(), CARoot: g.ca.ClientRootFile()}}},
	})
	logs := &recordHandler{Handler: testLog(t)}
	m := g.startLogged(t, cfg, fastOptions(), logs)

	leaf := g.waitForCert(t, "failover.test", "", 60*time.Second)
	if leaf.DNSNames[0] != "failover.test" {
		t.Errorf("DNS names: got %v, want [failover.test]", leaf.DNSNames)
	}
	g.waitForCert(t, "override.test", "", 60*time.Second)
	pebbleKey := issuerKey(t, g.ca.DirectoryURL())
	for _, host := range []string{"failover.test", "override.test"} {
		if got := logs.attr("certificate obtained", "host", host, "issuer"); got != pebbleKey {
			t.Errorf("issuer logged for %s: got %q, want %q", host, got, pebbleKey)
		}
	}
	// Only failover.test tried the unreachable CA first.
	if got := logs.attr("could not get certificate from issuer", "identifier", "failover.test", "issuer"); got != issuerKey(t, down) {
		t.Errorf("failed issuer logged for failover.test: got %q, want %q", got, issuerKey(t, down))
	}
	if got := logs.attr("could not get certificate from issuer", "identifier", "override.test", "issuer"); got != "" {
		t.Errorf("override.test tried issuer %q; its site lists Pebble alone", got)
	}
	// The inventory names the CA that issued each certificate.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var ca1 string
		for _, ci := range m.Certificates() {
			if slices.Equal(ci.Names, []string{"failover.test"}) {
				ca1 = ci.CA
			}
		}
		if ca1 == g.ca.DirectoryURL() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("inventory CA of failover.test: got %q, want %q", ca1, g.ca.DirectoryURL())
		}
		time.Sleep(50 * time.Millisecond)
	}
	e := m.engine.(*certmagicEngine)
	if c := e.configFor("override.test"); len(c.Issuers) != 1 || c == e.configFor("failover.test") {
		t.Errorf("override.test shares the global Config or has %d issuers, want its own with 1", len(c.Issuers))
	}
}

// issuerKey is certmagic's name for the issuer of an ACME directory, as it
// logs it.
func issuerKey(t *testing.T, dir string) string {
	t.Helper()
	return strings.NewReplacer("https://", "", "http://", "", "/", "-").Replace(dir)
}

// recordHandler passes records on to Handler and keeps them, so a test can
// look for an attribute. Attributes added with WithAttrs are not kept.
type recordHandler struct {
	slog.Handler
	mu      sync.Mutex
	records []slog.Record
}

func (h *recordHandler) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	h.records = append(h.records, r.Clone())
	h.mu.Unlock()
	return h.Handler.Handle(ctx, r)
}

// attr returns the value of attribute key in the first record with message
// msg whose attribute matchKey is matchVal, or "".
func (h *recordHandler) attr(msg, matchKey, matchVal, key string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.records {
		if r.Message != msg {
			continue
		}
		attrs := map[string]string{}
		r.Attrs(func(a slog.Attr) bool {
			attrs[a.Key] = a.Value.String()
			return true
		})
		if attrs[matchKey] == matchVal {
			return attrs[key]
		}
	}
	return ""
}

// TestACMEProfileAndKeyType asks Pebble for a profile with a short validity
// and checks the served leaf has it and the configured key type. Pebble,
// like Let's Encrypt, refuses Ed25519 CSRs: the refusal is reported and
// nothing is served.
func TestACMEProfileAndKeyType(t *testing.T) {
	skipShort(t)
	t.Parallel()
	for _, tc := range []struct {
		keyType string
		check   func(pub any) bool
	}{
		{"", func(pub any) bool { k, ok := pub.(*ecdsa.PublicKey); return ok && k.Curve == elliptic.P256() }},
		{config.KeyP384, func(pub any) bool { k, ok := pub.(*ecdsa.PublicKey); return ok && k.Curve == elliptic.P384() }},
		{config.KeyRSA2048, func(pub any) bool { k, ok := pub.(*rsa.PublicKey); return ok && k.N.BitLen() == 2048 }},
		{config.KeyEd25519, nil},
	} {
		name := tc.keyType
		if name == "" {
			name = "default"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			g := startPebbleGatehouse(t, pebbletest.Options{Profiles: map[string]time.Duration{"shortlived": 6 * time.Hour}})
			g.acme = config.ACME{CA: g.ca.DirectoryURL(), CARoot: g.ca.ClientRootFile(), Profile: "shortlived", KeyType: tc.keyType}
			host := name + ".keys.test"
			if tc.check == nil {
				h, failed := signalOn(testLog(t), "obtaining certificate failed; will retry")
				logs := &recordHandler{Handler: h}
				g.startLogged(t, g.acmeConfig(host), fastOptions(), logs)
				select {
				case <-failed:
				case <-time.After(30 * time.Second):
					t.Fatal("no failed attempt logged")
				}
				if got := logs.attr("obtaining certificate failed; will retry", "host", host, "error"); !strings.Contains(got, "badCSR") {
					t.Errorf("error logged: got %q, want the CA's badCSR refusal", got)
				}
				if _, err := g.handshake(host); err == nil {
					t.Error("a certificate was served although the CA refused the CSR")
				}
				return
			}
			g.start(t, g.acmeConfig(host), fastOptions())
			leaf := g.waitForCert(t, host, "", 60*time.Second)
			if !tc.check(leaf.PublicKey) {
				t.Errorf("leaf key: got %T (%s), want %s", leaf.PublicKey, leaf.PublicKeyAlgorithm, name)
			}
			// Pebble's validity is whole seconds, NotAfter inclusive.
			if life := leaf.NotAfter.Sub(leaf.NotBefore) + time.Second; life != 6*time.Hour {
				t.Errorf("lifetime %v, want 6h from the shortlived profile", life)
			}
		})
	}
}

// TestRateLimited checks a CA's rateLimited problem is told apart from
// other failures and waited out for as long as the CA says, within bounds.
func TestRateLimited(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	rl := func(detail string) error {
		return fmt.Errorf("[x.test] Obtain: %w", acme.Problem{Type: acme.ProblemTypeRateLimited, Detail: detail, Status: 429})
	}
	for _, tc := range []struct {
		name string
		err  error
		want time.Duration
		ok   bool
	}{
		{"lets encrypt wording", rl("too many certificates (5) already issued for this exact set of identifiers in the last 168h0m0s, retry after 2026-11-28 15:30:00 UTC: see https://letsencrypt.org/docs/rate-limits/"), 3*time.Hour + 30*time.Minute, true},
		{"RFC 3339", rl("retry after 2026-11-28T12:10:00Z"), 10 * time.Minute, true},
		{"no time", rl("slow down"), rateLimitDelay, true},
		{"far future", rl("retry after 2027-01-28 12:00:00 UTC"), maxRateLimitDelay, true},
		{"past", rl("retry after 2026-11-28 11:00:00 UTC"), time.Second, true},
		{"pointer", fmt.Errorf("wrapped: %w", &acme.Problem{Type: acme.ProblemTypeRateLimited}), rateLimitDelay, true},
		{"other problem", fmt.Errorf("x: %w", acme.Problem{Type: acme.ProblemTypeUnauthorized, Detail: "retry after 2026-11-28 15:30:00 UTC"}), 0, false},
		{"plain error", fmt.Errorf("dial tcp: connection refused"), 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, ok := rateLimited(tc.err, now)
			if d != tc.want || ok != tc.ok {
				t.Errorf("rateLimited: got %v, %v; want %v, %v", d, ok, tc.want, tc.ok)
			}
		})
	}
}

// TestObtainerWaitsOutRateLimit checks the obtain loop waits until the time
// a rateLimited problem names before it asks the CA again, however short
// its own backoff.
func TestObtainerWaitsOutRateLimit(t *testing.T) {
	var mu sync.Mutex // guards calls
	var calls []time.Time
	var retryAt time.Time
	done := make(chan struct{})
	o := newObtainer(slog.New(slog.DiscardHandler), time.Millisecond, 2*time.Millisecond,
		func(ctx context.Context, host string) error {
			mu.Lock()
			defer mu.Unlock()
			calls = append(calls, time.Now())
			if len(calls) == 1 {
				// Let's Encrypt's wording; whole seconds, as the CA writes them.
				retryAt = time.Now().Add(1500 * time.Millisecond).Truncate(time.Second).Add(time.Second)
				return fmt.Errorf("[%s] Obtain: %w", host, acme.Problem{
					Type:   acme.ProblemTypeRateLimited,
					Status: 429,
					Detail: "too many new orders recently: retry after " + retryAt.UTC().Format("2006-01-02 15:04:05") + " UTC",
				})
			}
			close(done)
			return nil
		}, func([]string) {})
	defer o.stop()
	o.set([]string{"limited.test"})
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("no second attempt within 10s")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != 2 {
		t.Fatalf("attempts: got %d, want 2", len(calls))
	}
	if calls[1].Before(retryAt) {
		t.Errorf("second attempt at %v, before the CA's retry-after %v", calls[1].Format(time.StampMilli), retryAt.Format(time.StampMilli))
	}
}

// TestARIWindowRenews checks the CA's renewal window (ARI, RFC 9773) is
// honoured: a 90-day certificate is far from its lifetime-based renewal
// point, yet once the CA moves its suggested window into the past, a new
// certificate is obtained and served.
func TestARIWindowRenews(t *testing.T) {
	skipShort(t)
	t.Parallel()
	g := startPebbleGatehouse(t, pebbletest.Options{ARIRetryAfter: time.Second})
	opts := fastOptions()
	opts.renewCheckInterval = time.Second
	g.start(t, g.acmeConfig("ari.test"), opts)
	first := g.waitForCert(t, "ari.test", "", 30*time.Second)

	// Untouched, the default window (two thirds into 90 days) renews
	// nothing: a negative, so wait until certmagic has fetched the window
	// three more times (its maintenance refreshes ARI as the CA's
	// Retry-After says, then decides on renewal with it).
	seen := g.ca.RenewalInfoRequests()
	deadline := time.After(30 * time.Second)
	for g.ca.RenewalInfoRequests() < seen+3 {
		select {
		case <-deadline:
			t.Fatalf("certmagic fetched the renewal window %d times in 30s, want 3", g.ca.RenewalInfoRequests()-seen)
		case <-time.After(50 * time.Millisecond):
		}
	}
	if again := g.waitForCert(t, "ari.test", "", 5*time.Second); again.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Fatalf("renewed to serial %v with no reason", again.SerialNumber)
	}

	now := time.Now()
	if err := g.ca.SetRenewalWindow(first.SerialNumber, now.Add(-2*time.Hour), now.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	renewed := g.waitForCert(t, "ari.test", first.SerialNumber.String(), 30*time.Second)
	if renewed.NotAfter.Before(first.NotAfter) {
		t.Errorf("renewed NotAfter %v before the first %v", renewed.NotAfter, first.NotAfter)
	}
}

// TestACMEExternalAccountBinding issues from a CA that requires an
// external account binding, as ZeroSSL does: acme.eab's key registers the
// account; a wrong MAC key, an unknown key ID or no binding at all is
// refused with the CA's reason in the log, and nothing is served.
func TestACMEExternalAccountBinding(t *testing.T) {
	skipShort(t)
	t.Parallel()
	mac := func() string {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	key := mac()
	for _, tc := range []struct {
		name    string
		eab     *config.EAB
		inList  bool   // eab on an entry of acme.issuers, not acme.eab
		wantErr string // in the failed attempt's error; "" means issued
	}{
		{"right key", &config.EAB{KeyID: "kid-1", MACKey: key}, false, ""},
		{"right key in issuers", &config.EAB{KeyID: "kid-1", MACKey: key}, true, ""},
		{"wrong key", &config.EAB{KeyID: "kid-1", MACKey: mac()}, false, "external account binding JWS verification error"},
		{"wrong key in issuers", &config.EAB{KeyID: "kid-1", MACKey: mac()}, true, "external account binding JWS verification error"},
		{"unknown key id", &config.EAB{KeyID: "kid-2", MACKey: key}, false, "references a key that is not known"},
		{"none", nil, false, "externalAccountRequired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g := startPebbleGatehouse(t, pebbletest.Options{EAB: map[string]string{"kid-1": key}})
			if tc.inList {
				g.acme.Issuers = []config.Issuer{{CA: g.ca.DirectoryURL(), CARoot: g.ca.ClientRootFile(), EAB: tc.eab}}
			} else {
				g.acme.EAB = tc.eab
			}
			host := strings.ReplaceAll(tc.name, " ", "-") + ".eab.test"
			if tc.wantErr == "" {
				g.start(t, g.acmeConfig(host), fastOptions())
				g.waitForCert(t, host, "", 30*time.Second)
				g.checkOrders(t, 1)
				return
			}
			h, failed := signalOn(testLog(t), "obtaining certificate failed; will retry")
			logs := &recordHandler{Handler: h}
			g.startLogged(t, g.acmeConfig(host), fastOptions(), logs)
			select {
			case <-failed:
			case <-time.After(30 * time.Second):
				t.Fatal("no failed attempt logged")
			}
			if got := logs.attr("obtaining certificate failed; will retry", "host", host, "error"); !strings.Contains(got, tc.wantErr) {
				t.Errorf("error logged: got %q, want it to contain %q", got, tc.wantErr)
			}
			if _, err := g.handshake(host); err == nil {
				t.Error("a certificate was served although the CA refused the account")
			}
			g.checkOrders(t, 0)
		})
	}
}

// TestACMEBadNonces issues from a Pebble that rejects half of the good
// nonces with badNonce (its default is 5%, off in other tests): every
// rejected request is retried with a fresh nonce and both certificates
// arrive.
func TestACMEBadNonces(t *testing.T) {
	skipShort(t)
	t.Parallel()
	g := startPebbleGatehouse(t, pebbletest.Options{BadNonces: 50})
	g.start(t, g.acmeConfig("one.nonce.test", "two.nonce.test"), fastOptions())
	g.waitForCert(t, "one.nonce.test", "", 60*time.Second)
	g.waitForCert(t, "two.nonce.test", "", 60*time.Second)
	// Two orders make some 20 requests: all of them accepted at the
	// first nonce has odds of one in a million.
	if n := g.ca.BadNonces(); n == 0 {
		t.Error("Pebble rejected no nonce, so no retry was exercised")
	} else {
		t.Logf("%d requests rejected with badNonce and retried", n)
	}
}

// TestACMERateLimited has the CA refuse the first order as rate limited
// until a time it names, as Let's Encrypt does. Pebble enforces no rate
// limits, so pebbletest answers for it (CA.RateLimitOrders) with Boulder's
// status, header and wording; the problem then travels through the real
// ACME client. gatehouse logs the refusal as rate limited, waits until
// the CA's time rather than its short backoff, then obtains the
// certificate with one order.
func TestACMERateLimited(t *testing.T) {
	skipShort(t)
	t.Parallel()
	g := startPebbleGatehouse(t, pebbletest.Options{})
	// Whole seconds, as the CA writes it; at least two seconds away, far
	// beyond the 200ms backoff.
	retryAt := time.Now().Add(3 * time.Second).Truncate(time.Second)
	g.ca.RateLimitOrders(1, retryAt)
	logs := &recordHandler{Handler: testLog(t)}
	g.startLogged(t, g.acmeConfig("limited.test"), fastOptions(), logs)
	leaf := g.waitForCert(t, "limited.test", "", 30*time.Second)
	g.checkOrders(t, 1)

	var failures []slog.Record
	logs.mu.Lock()
	for _, r := range logs.records {
		if r.Message == "obtaining certificate failed; will retry" {
			failures = append(failures, r)
		}
	}
	logs.mu.Unlock()
	if len(failures) != 1 {
		t.Fatalf("failed attempts logged: got %d, want 1", len(failures))
	}
	attrs := map[string]string{}
	failures[0].Attrs(func(a slog.Attr) bool { attrs[a.Key] = a.Value.String(); return true })
	if attrs["rate_limited"] != "true" || !strings.Contains(attrs["error"], "rateLimited") {
		t.Errorf("failed attempt logged with rate_limited=%s error=%q; want true and the CA's rateLimited problem", attrs["rate_limited"], attrs["error"])
	}
	wait, err := time.ParseDuration(attrs["retry_in"])
	if err != nil {
		t.Fatalf("retry_in %q: %v", attrs["retry_in"], err)
	}
	// The delay was computed before the record was made, so the retry is
	// due no earlier than record time + delay; rounded to milliseconds.
	if due := failures[0].Time.Add(wait + time.Millisecond); due.Before(retryAt) {
		t.Errorf("retry due at %v, before the CA's retry-after %v", due.Format(time.StampMilli), retryAt.Format(time.StampMilli))
	}
	// Pebble sets NotBefore to the time it issues, in whole seconds.
	if leaf.NotBefore.Before(retryAt) {
		t.Errorf("certificate issued at %v, before the CA's retry-after %v", leaf.NotBefore, retryAt)
	}
}

// TestIssuerCANames checks that a CA given by name reaches certmagic as
// its directory URL, in acme.ca and in issuers lists alike.
func TestIssuerCANames(t *testing.T) {
	got := globalIssuers(config.ACME{CA: "letsencrypt-staging", Profile: "shortlived"})
	if len(got) != 1 || got[0].CA != "https://acme-staging-v02.api.letsencrypt.org/directory" || got[0].Profile != "shortlived" {
		t.Errorf("acme.ca letsencrypt-staging: got %+v", got)
	}
	got = globalIssuers(config.ACME{Issuers: []config.Issuer{{CA: "buypass"}, {CA: "https://ca.example/dir"}}})
	if len(got) != 2 || got[0].CA != "https://api.buypass.com/acme/directory" || got[1].CA != "https://ca.example/dir" {
		t.Errorf("issuers buypass and a URL: got %+v", got)
	}
}
