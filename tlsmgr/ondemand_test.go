package tlsmgr

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr/pebbletest"
)

// On-demand TLS against an in-process Pebble: each test has its own CA,
// Listeners and names.

// onDemandConfig returns g.acmeConfig for hosts as one on-demand Site
// with the given policy.
func (g *pebbleGatehouse) onDemandConfig(od *config.OnDemand, hosts ...string) *config.Config {
	cfg := g.acmeConfig(hosts...)
	cfg.Sites[0].TLS.OnDemand = true
	cfg.OnDemand = od
	return cfg
}

// mustHandshake handshakes as host and fails the test unless a certificate
// for host, issued by g's Pebble, is served.
func (g *pebbleGatehouse) mustHandshake(t *testing.T, host string) {
	t.Helper()
	leaf, err := g.handshake(host)
	if err != nil {
		t.Fatalf("handshake as %s: %v", host, err)
	}
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != host {
		t.Fatalf("certificate for %s names %v", host, leaf.DNSNames)
	}
}

// mustRefuse handshakes as host and fails the test unless the handshake is
// refused with a TLS alert (not a timeout).
func (g *pebbleGatehouse) mustRefuse(t *testing.T, host string) {
	t.Helper()
	_, err := handshakeWithin(g.httpsAddr, host, g.ca, askTimeout+10*time.Second)
	if err == nil {
		t.Fatalf("handshake as %s succeeded; want it refused", host)
	}
	if errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "remote error: tls") {
		t.Fatalf("handshake as %s: got %v, want a TLS alert from the server", host, err)
	}
}

func (g *pebbleGatehouse) checkOrders(t *testing.T, want int) {
	t.Helper()
	if got := g.ca.Orders(); got != want {
		t.Errorf("orders: got %d, want %d", got, want)
	}
}

// TestOnDemandAllowed obtains a certificate at the first handshake for an
// allowed name, refuses names the policy or the Site's hosts do not allow
// without ordering, and serves the stored certificate after a restart
// without a new order.
func TestOnDemandAllowed(t *testing.T) {
	skipShort(t)
	t.Parallel()
	g := startPebbleGatehouse(t, pebbletest.Options{})
	od := &config.OnDemand{Allow: []string{"shop.od.test", `~(a|b)[0-9]\.od\.test`, "*.tenants.od.test"}}
	cfg := g.onDemandConfig(od, "*")
	m := g.start(t, cfg, fastOptions())

	// Nothing is ordered at start.
	if _, err := g.handshake("shop.od.test"); err != nil {
		t.Fatalf("first handshake as shop.od.test: %v", err)
	}
	g.checkOrders(t, 1)
	g.mustHandshake(t, "shop.od.test")
	g.mustHandshake(t, "a1.od.test")
	g.mustHandshake(t, "x.tenants.od.test")
	g.checkOrders(t, 3)

	for _, denied := range []string{"shop2.od.test", "a12.od.test", "y.x.tenants.od.test", "tenants.od.test"} {
		g.mustRefuse(t, denied)
	}
	g.checkOrders(t, 3)
	if !m.servesOnDemand("shop.od.test") || m.servesOnDemand("") {
		t.Errorf("servesOnDemand(shop.od.test) = %v, want true", m.servesOnDemand("shop.od.test"))
	}

	// Restart on the same storage: served from storage, no order.
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	g.start(t, cfg, fastOptions())
	g.mustHandshake(t, "shop.od.test")
	g.checkOrders(t, 3)
}

// TestOnDemandSiteHosts checks a name must match the on-demand Site's
// hosts as well as the policy, and that other Sites are unaffected.
func TestOnDemandSiteHosts(t *testing.T) {
	skipShort(t)
	t.Parallel()
	g := startPebbleGatehouse(t, pebbletest.Options{})
	od := &config.OnDemand{Allow: []string{"a.customers.test", "b.elsewhere.test"}}
	cfg := g.onDemandConfig(od, "*.customers.test")
	cfg.Sites = append(cfg.Sites, config.Site{Hosts: []string{"local.internal"}})
	m := g.start(t, cfg, fastOptions())
	g.mustHandshake(t, "a.customers.test")
	g.mustRefuse(t, "b.elsewhere.test") // allowed by the policy, but no Site lists it
	g.checkOrders(t, 1)
	if m.servesOnDemand("local.internal") || m.servesOnDemand("b.elsewhere.test") {
		t.Error("IsOnDemand true for a name of no on-demand Site")
	}
	roots := x509.NewCertPool()
	roots.AddCert(m.ca.root)
	if _, err := handshake(g.httpsAddr, "local.internal", roots); err != nil {
		t.Errorf("handshake as local.internal (local CA): %v", err)
	}
}

// askServer is an on_demand.ask service: it allows ok.*, denies no.*,
// redirects redir.* to an allowing URL, and answers slow.* only after the
// question has been given up. It counts the questions per name.
type askServer struct {
	*httptest.Server
	// mu guards asked.
	mu    sync.Mutex
	asked map[string]int
}

func startAskServer(t *testing.T) *askServer {
	t.Helper()
	a := &askServer{asked: map[string]int{}}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/yes" {
			w.WriteHeader(http.StatusOK)
			return
		}
		name := r.URL.Query().Get("domain")
		if r.URL.Query().Get("token") != "s3cret" {
			http.Error(w, "bad token", http.StatusUnauthorized)
			return
		}
		a.mu.Lock()
		a.asked[name]++
		a.mu.Unlock()
		switch {
		case strings.HasPrefix(name, "ok"):
			w.WriteHeader(http.StatusNoContent)
		case strings.HasPrefix(name, "redir"):
			http.Redirect(w, r, "/yes", http.StatusFound)
		case strings.HasPrefix(name, "slow"):
			select {
			case <-r.Context().Done():
			case <-time.After(askTimeout + 5*time.Second):
			}
			w.WriteHeader(http.StatusOK)
		default:
			http.Error(w, "no", http.StatusForbidden)
		}
	}))
	t.Cleanup(a.Close)
	return a
}

func (a *askServer) count(name string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.asked[name]
}

// TestOnDemandAsk checks on_demand.ask: 2xx allows; 403, a redirect, a
// slow answer and an unreachable service deny, with no order; a denied
// name is not asked about again at once.
func TestOnDemandAsk(t *testing.T) {
	skipShort(t)
	t.Parallel()
	g := startPebbleGatehouse(t, pebbletest.Options{})
	ask := startAskServer(t)
	cfg := g.onDemandConfig(&config.OnDemand{Ask: ask.URL + "/check?token=s3cret"}, "*.ask.test")
	m := g.start(t, cfg, fastOptions())

	g.mustHandshake(t, "ok.ask.test")
	g.checkOrders(t, 1)
	if n := ask.count("ok.ask.test"); n != 1 {
		t.Errorf("ok.ask.test asked %d times, want 1 (later handshakes use the cached certificate)", n)
	}

	for _, name := range []string{"no.ask.test", "redir.ask.test"} {
		g.mustRefuse(t, name)
		g.mustRefuse(t, name)
		if n := ask.count(name); n != 1 {
			t.Errorf("%s asked %d times, want 1 (denials are cached)", name, n)
		}
	}

	start := time.Now()
	g.mustRefuse(t, "slow.ask.test")
	// No upper bound here: the slow service says yes after askTimeout+5s,
	// so waiting for it would let the handshake through.
	if d := time.Since(start); d < askTimeout-time.Second {
		t.Errorf("slow ask denied after %v, before the %v timeout", d, askTimeout)
	}
	g.checkOrders(t, 1)

	// The ask service down: fail closed.
	down := fmt.Sprintf("http://127.0.0.1:%d/check", pebbletest.FreePort(t))
	if err := m.Apply(t.Context(), g.onDemandConfig(&config.OnDemand{Ask: down}, "*.ask.test")); err != nil {
		t.Fatal(err)
	}
	g.mustRefuse(t, "ok2.ask.test")
	g.checkOrders(t, 1)
	// Already obtained certificates are still served.
	g.mustHandshake(t, "ok.ask.test")
}

// TestOnDemandAllowFile edits allow_file at runtime: a name added is
// allowed (after its earlier denial), and a file with a bad line keeps the
// last good list.
func TestOnDemandAllowFile(t *testing.T) {
	skipShort(t)
	t.Parallel()
	g := startPebbleGatehouse(t, pebbletest.Options{})
	file := filepath.Join(t.TempDir(), "allowed.txt")
	write := func(content string) {
		t.Helper()
		tmp := file + ".tmp"
		if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, file); err != nil {
			t.Fatal(err)
		}
	}
	write("# customers\nfirst.file.test\nkeep.file.test\n")
	cfg := g.onDemandConfig(&config.OnDemand{AllowFile: file}, "*.file.test")
	h, reported := signalOn(testLog(t), "on_demand.allow_file has problems; keeping the last good list")
	g.startLogged(t, cfg, fastOptions(), h)

	g.mustHandshake(t, "first.file.test")
	g.mustRefuse(t, "second.file.test")
	g.checkOrders(t, 1)

	write("# customers\nfirst.file.test\nkeep.file.test\nsecond.file.test\n")
	g.waitForCert(t, "second.file.test", "", 15*time.Second)
	g.checkOrders(t, 2)

	write("first.file.test\n~[broken\n")
	deadline := time.After(15 * time.Second)
	for waiting := true; waiting; {
		// A handshake for a new name makes the file be looked at.
		_, _ = g.handshake("probe.file.test")
		select {
		case <-reported:
			waiting = false
		case <-deadline:
			t.Fatal("the bad allow_file was not reported")
		case <-time.After(200 * time.Millisecond):
		}
	}
	g.mustHandshake(t, "keep.file.test") // still on the last good list
	g.checkOrders(t, 3)
}

// TestOnDemandConcurrent makes 50 handshakes for one new name at once:
// all succeed, with one order.
func TestOnDemandConcurrent(t *testing.T) {
	skipShort(t)
	t.Parallel()
	g := startPebbleGatehouse(t, pebbletest.Options{})
	g.start(t, g.onDemandConfig(&config.OnDemand{Allow: []string{"*.many.test"}}, "*.many.test"), fastOptions())

	const n = 50
	start := make(chan struct{})
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			<-start
			leaf, err := handshakeWithin(g.httpsAddr, "one.many.test", g.ca, 60*time.Second)
			if err == nil && leaf.DNSNames[0] != "one.many.test" {
				err = fmt.Errorf("certificate names %v", leaf.DNSNames)
			}
			errs <- err
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if err != nil {
			failed++
			t.Log(err)
		}
	}
	if failed > 0 {
		t.Errorf("%d of %d concurrent handshakes failed", failed, n)
	}
	g.checkOrders(t, 1)
}

// TestOnDemandQueuedHandshakesOutliveTheirDeadline makes handshakes for
// new names, many per name at once, through a Listener whose handshake
// deadline (timeouts.read_header in the command) is shorter than ask takes
// to answer. Every handshake that waits, for its own decision and order or
// for another's, must be given the longer deadline before certmagic
// queues it: one queued behind the first before that one reached decide
// used to keep the short deadline, get its Certificate after it and fail
// to send it, and the client saw EOF.
func TestOnDemandQueuedHandshakesOutliveTheirDeadline(t *testing.T) {
	skipShort(t)
	t.Parallel()
	g := startPebbleGatehouse(t, pebbletest.Options{})
	const deadline = 500 * time.Millisecond
	ask := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(3 * deadline):
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer ask.Close()
	const names, perName = 5, 10 // names ≤ askConcurrency
	od := &config.OnDemand{Ask: ask.URL, Rate: &config.Rate{Burst: names, Per: time.Hour}}
	m := g.start(t, g.onDemandConfig(od, "*.queue.test"), fastOptions())
	addr := serveTLSWithDeadline(t, m.TLSConfig(), deadline)

	begin := make(chan struct{})
	errs := make(chan error, names*perName)
	var wg sync.WaitGroup
	for i := range names {
		host := fmt.Sprintf("n%d.queue.test", i)
		for range perName {
			wg.Go(func() {
				<-begin
				if _, err := handshakeWithin(addr, host, g.ca, 60*time.Second); err != nil {
					errs <- fmt.Errorf("handshake as %s: %w", host, err)
				}
			})
		}
	}
	close(begin)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	g.checkOrders(t, names)
}

// TestOnDemandMayWait checks which handshakes get the longer deadline
// before certmagic sees them: those for a name with no Certificate in
// memory, or only an expired one (certmagic renews it during the
// handshake), and not those it serves at once.
func TestOnDemandMayWait(t *testing.T) {
	e, err := newCertmagicEngine(offlineSettings(t), fastOptions(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer e.close()
	var tbl atomic.Pointer[table]
	o, err := newOnDemand(e, &tbl, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer o.close()
	// Leaves of a day from the local CA: one issued now, one two days ago.
	clock := &fakeClock{t: time.Now().Add(-48 * time.Hour)}
	ca, err := openLocalCA(t.Context(), t.TempDir(), clock.now)
	if err != nil {
		t.Fatal(err)
	}
	expired, err := ca.issueLeaf("old.example.test", clock.now())
	if err != nil {
		t.Fatal(err)
	}
	valid, err := ca.issueLeaf("new.example.test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*tls.Certificate{expired, valid} {
		if _, err := o.cfg.CacheUnmanagedTLSCertificate(t.Context(), *c, nil); err != nil {
			t.Fatal(err)
		}
	}
	if got := len(o.cache.AllMatchingCertificates("old.example.test")); got != 1 {
		t.Fatalf("expired certificates in memory: got %d, want 1", got)
	}
	for name, want := range map[string]bool{"unknown.example.test": true, "old.example.test": true, "new.example.test": false} {
		if got := o.mayWait(name); got != want {
			t.Errorf("mayWait(%s): got %v, want %v", name, got, want)
		}
	}
}

// serveTLSWithDeadline serves handshakes with cfg on a new loopback
// Listener, each under a deadline of d from its accept, as net/http does
// with its handshake timeout, and returns the Listener's address.
func serveTLSWithDeadline(t *testing.T, cfg *tls.Config, d time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(d))
				tc := tls.Server(c, cfg)
				if err := tc.Handshake(); err == nil {
					// Wait for the client to hang up, so it reads all
					// the server sent.
					_, _ = io.Copy(io.Discard, tc)
				}
			})
		}
	})
	return ln.Addr().String()
}

// TestOnDemandFlood sends 500 handshakes for random names the policy
// denies: no order is made, the negative cache stays bounded, and a
// handshake for a name already served completes during the flood.
func TestOnDemandFlood(t *testing.T) {
	skipShort(t)
	t.Parallel()
	g := startPebbleGatehouse(t, pebbletest.Options{})
	g.start(t, g.onDemandConfig(&config.OnDemand{Allow: []string{"good.flood.test"}}, "*.flood.test"), fastOptions())
	g.mustHandshake(t, "good.flood.test")

	const total, workers = 500, 25
	names := make(chan string)
	var denied, accepted sync.WaitGroup
	var mu sync.Mutex
	succeeded := 0
	for range workers {
		denied.Go(func() {
			for name := range names {
				if _, err := g.handshake(name); err == nil {
					mu.Lock()
					succeeded++
					mu.Unlock()
				}
			}
		})
	}
	half := make(chan struct{})
	go func() {
		for i := range total {
			if i == total/2 {
				close(half)
			}
			names <- randomLabel(t) + ".flood.test"
		}
		close(names)
	}()

	<-half
	accepted.Go(func() {
		if _, err := handshakeWithin(g.httpsAddr, "good.flood.test", g.ca, 10*time.Second); err != nil {
			t.Errorf("handshake for good.flood.test during the flood: %v", err)
		}
	})
	accepted.Wait()
	denied.Wait()
	if succeeded != 0 {
		t.Errorf("%d handshakes for denied names succeeded", succeeded)
	}
	g.checkOrders(t, 1)
}

// TestOnDemandRate checks on_demand.rate: past its burst, allowed names
// get no order, but a Certificate in storage is still served.
func TestOnDemandRate(t *testing.T) {
	skipShort(t)
	t.Parallel()
	g := startPebbleGatehouse(t, pebbletest.Options{})
	od := &config.OnDemand{Allow: []string{"*.rate.test"}, Rate: &config.Rate{Burst: 1, Per: time.Hour}}
	cfg := g.onDemandConfig(od, "*.rate.test")
	m := g.start(t, cfg, fastOptions())
	g.mustHandshake(t, "one.rate.test")
	// certmagic would retry after a minute; a refusal is final (and
	// mustRefuse gives up well before that minute).
	g.mustRefuse(t, "two.rate.test")
	for range 20 {
		g.mustRefuse(t, randomLabel(t)+".rate.test")
	}
	g.checkOrders(t, 1)
	g.mustHandshake(t, "one.rate.test")

	// After a restart: spend the token on a new name, then a name whose
	// Certificate is only in storage still loads.
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	g.start(t, cfg, fastOptions())
	g.mustHandshake(t, "three.rate.test")
	g.mustRefuse(t, "four.rate.test")
	g.mustHandshake(t, "one.rate.test")
	g.checkOrders(t, 2)
}

// TestOnDemandAutocert checks on-demand Sites are refused with the
// autocert engine, at Apply as in validation.
func TestOnDemandAutocert(t *testing.T) {
	g := startGatehouse(t)
	cfg := &config.Config{
		Storage:  t.TempDir(),
		Listen:   config.Listen{HTTP: g.httpAddr, HTTPS: g.httpsAddr},
		ACME:     config.ACME{CA: "https://127.0.0.1:1/dir", Engine: config.EngineAutocert},
		Sites:    []config.Site{{Hosts: []string{"*"}, TLS: config.SiteTLS{OnDemand: true}}},
		OnDemand: &config.OnDemand{Allow: []string{"a.test"}},
	}
	_, err := newManager(t.Context(), cfg, nil, fastOptions())
	if err == nil || !strings.Contains(err.Error(), "acme.engine certmagic") {
		t.Errorf("New with on_demand and autocert: got %v, want an error naming acme.engine certmagic", err)
	}
}

// handshakeWithin is handshake with a longer bound, for handshakes that
// wait for an order.
func handshakeWithin(addr, host string, ca *pebbletest.CA, timeout time.Duration) (*x509.Certificate, error) {
	d := &tls.Dialer{Config: &tls.Config{ServerName: host, RootCAs: ca.IssuerRoots()}}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.(*tls.Conn).ConnectionState().PeerCertificates[0], nil
}

func randomLabel(t *testing.T) string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Error(err)
	}
	return hex.EncodeToString(b)
}

// TestOnDemandRenewRevoke renews and revokes an on-demand Certificate
// through the Manager (as gatehouse certs does): each time the next
// handshake gets the new Certificate, and Pebble has the revoked one
// revoked.
func TestOnDemandRenewRevoke(t *testing.T) {
	skipShort(t)
	t.Parallel()
	g := startPebbleGatehouse(t, pebbletest.Options{})
	m := g.start(t, g.onDemandConfig(&config.OnDemand{Allow: []string{"*.life.test"}}, "*.life.test"), fastOptions())
	const name = "shop.life.test"
	first, err := handshakeWithin(g.httpsAddr, name, g.ca, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Renew(t.Context(), name, true); err != nil {
		t.Fatalf("Renew: %v", err)
	}
	renewed, err := handshakeWithin(g.httpsAddr, name, g.ca, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if renewed.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Fatalf("after Renew the handshake still gets serial %v", first.SerialNumber)
	}
	if err := m.Revoke(t.Context(), name, "keyCompromise"); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	if !g.ca.Revoked(renewed.SerialNumber) {
		t.Errorf("Pebble does not have serial %v revoked", renewed.SerialNumber)
	}
	replaced, err := handshakeWithin(g.httpsAddr, name, g.ca, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if replaced.SerialNumber.Cmp(renewed.SerialNumber) == 0 {
		t.Errorf("after Revoke the handshake still gets the revoked serial %v", renewed.SerialNumber)
	}
	var info *CertificateInfo
	for _, ci := range m.Certificates() {
		if slices.Contains(ci.Names, name) {
			info = &ci
		}
	}
	if info == nil || info.Source != SourceOnDemand {
		t.Errorf("inventory entry of %s: got %+v, want source %q", name, info, SourceOnDemand)
	}
	g.checkOrders(t, 3)
}

// TestOnDemandAskFlood floods an ask-only policy with random names while
// the ask service is slow: at most askConcurrency questions are in flight,
// nothing is ordered, and a name already served still handshakes.
func TestOnDemandAskFlood(t *testing.T) {
	skipShort(t)
	t.Parallel()
	g := startPebbleGatehouse(t, pebbletest.Options{})
	var mu sync.Mutex
	inFlight, maxInFlight, asked := 0, 0, 0
	ask := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("domain") == "ok.askflood.test" {
			w.WriteHeader(http.StatusOK)
			return
		}
		mu.Lock()
		inFlight++
		asked++
		maxInFlight = max(maxInFlight, inFlight)
		mu.Unlock()
		select {
		case <-r.Context().Done():
		case <-time.After(100 * time.Millisecond):
		}
		mu.Lock()
		inFlight--
		mu.Unlock()
		w.WriteHeader(http.StatusForbidden)
	}))
	t.Cleanup(ask.Close)
	g.start(t, g.onDemandConfig(&config.OnDemand{Ask: ask.URL}, "*.askflood.test"), fastOptions())
	g.mustHandshake(t, "ok.askflood.test")

	const total, workers = 300, 40
	names := make(chan string)
	var wg sync.WaitGroup
	var succeeded sync.Map
	for range workers {
		wg.Go(func() {
			for name := range names {
				if _, err := g.handshake(name); err == nil {
					succeeded.Store(name, true)
				}
			}
		})
	}
	for i := range total {
		if i == total/2 {
			if _, err := handshakeWithin(g.httpsAddr, "ok.askflood.test", g.ca, 10*time.Second); err != nil {
				t.Errorf("handshake for ok.askflood.test during the flood: %v", err)
			}
		}
		names <- randomLabel(t) + ".askflood.test"
	}
	close(names)
	wg.Wait()
	succeeded.Range(func(k, _ any) bool {
		t.Errorf("handshake for %v succeeded", k)
		return true
	})
	mu.Lock()
	defer mu.Unlock()
	if maxInFlight > askConcurrency || maxInFlight == 0 {
		t.Errorf("questions in flight at once: got %d, want 1 to %d", maxInFlight, askConcurrency)
	}
	if asked >= total {
		t.Errorf("ask was asked %d times for %d names; want the busy ones denied without asking", asked, total)
	}
	g.checkOrders(t, 1)
}

func TestAllowSetMatch(t *testing.T) {
	s, err := compileAllowSet([]string{"Shop.Example.com.", "*.tenants.example.com", `~(a|b)[0-9]+\.example\.org`})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{
		"shop.example.com":          true,
		"x.shop.example.com":        false,
		"x.tenants.example.com":     true,
		"tenants.example.com":       false,
		"y.x.tenants.example.com":   false,
		"a12.example.org":           true,
		"a12.example.org.evil.test": false,
		"c1.example.org":            false,
	} {
		if got := s.match(name); got != want {
			t.Errorf("match(%q): got %v, want %v", name, got, want)
		}
	}
	if _, err := compileAllowSet([]string{"*"}); err == nil {
		t.Error(`compileAllowSet("*"): got no error`)
	}
}

func TestNegCacheBounded(t *testing.T) {
	c := newNegCache(time.Minute, 100)
	now := time.Now()
	for i := range 1000 {
		c.add(fmt.Sprintf("n%d.test", i), now)
		if c.len() > 100 {
			t.Fatalf("after %d adds the cache holds %d names, want at most 100", i+1, c.len())
		}
	}
	if !c.has("n999.test", now) {
		t.Error("the latest denial was forgotten")
	}
	if c.has("n999.test", now.Add(time.Minute)) {
		t.Error("a denial outlived its TTL")
	}
	c.add("x.test", now)
	c.clear()
	if c.has("x.test", now) {
		t.Error("clear kept a denial")
	}
}

// TestOnDemandIgnoresGlobalDNS checks on-demand names are validated on the
// Listeners even when acme.dns is set for the configured hosts: the names
// are not known in advance, so their zones are not gatehouse's to write.
func TestOnDemandIgnoresGlobalDNS(t *testing.T) {
	skipShort(t)
	t.Parallel()
	g := startPebbleGatehouse(t, pebbletest.Options{})
	cfg := g.onDemandConfig(&config.OnDemand{Allow: []string{"*.nodns.test"}}, "*.nodns.test")
	// A DNS provider that always fails: any DNS-01 attempt would fail.
	cfg.ACME.DNS = &config.DNS{Provider: "exec", Credentials: map[string]string{"program": "/bin/false"}, PropagationTimeout: time.Second}
	g.start(t, cfg, fastOptions())
	if _, err := handshakeWithin(g.httpsAddr, "a.nodns.test", g.ca, 30*time.Second); err != nil {
		t.Fatalf("handshake as a.nodns.test: %v", err)
	}
	g.checkOrders(t, 1)
}

// TestOnDemandChallenges obtains on-demand Certificates with each
// challenge alone: HTTP-01 on the HTTP Listener, TLS-ALPN-01 on the HTTPS
// Listener (whose dispatch must let the validation through for a name no
// Site lists exactly).
func TestOnDemandChallenges(t *testing.T) {
	skipShort(t)
	t.Parallel()
	for _, ch := range []string{config.ChallengeHTTP01, config.ChallengeTLSALPN01} {
		t.Run(ch, func(t *testing.T) {
			t.Parallel()
			g := startPebbleGatehouse(t, pebbletest.Options{})
			// certmagic joins concurrent loads and orders of one name
			// process-wide, so parallel tests use different names.
			cfg := g.onDemandConfig(&config.OnDemand{Allow: []string{"*.chal.test"}}, "*")
			cfg.ACME.Challenges = []string{ch}
			// The other type would fail: a fallback to it shows.
			// A fresh name: certmagic's state for an on-demand name whose
			// order failed (its retry, handshakes joined to it) is
			// process-wide, and a repeated run (-count) must not meet it.
			blocked := "no-" + ch + "-" + randomLabel(t) + ".chal.test"
			g.blockChallenge(ch, blocked)
			h, failed := signalOnAttr(testLog(t), "certificate event", "event", "obtain_failed")
			g.startLogged(t, cfg, fastOptions(), h)
			g.mustHandshake(t, ch+".chal.test")
			g.checkOrders(t, 1)
			checkChallenges(t, g.ca, ch+".chal.test", ch)

			// With the configured type failing, the attempt fails
			// without trying the other type. The handshake waits for
			// certmagic's retry; it ends with the test.
			go func() { _, _ = handshakeWithin(g.httpsAddr, blocked, g.ca, 2*time.Minute) }()
			select {
			case <-failed:
			case <-time.After(30 * time.Second):
				t.Fatalf("no failed attempt for %s; validations: %+v", blocked, g.ca.Validations())
			}
			for _, v := range g.ca.Validations() {
				if v.Name == blocked && (v.Type != ch || v.Status == "valid") {
					t.Errorf("validation %+v; want %s only, never valid", v, ch)
				}
			}
		})
	}
}

// TestAskFailuresLoggedSparingly checks a flood of names while ask is down
// logs one line, not one per name.
func TestAskFailuresLoggedSparingly(t *testing.T) {
	var buf strings.Builder
	now := time.Now()
	o := &onDemand{logger: slog.New(slog.NewTextHandler(&buf, nil)), now: func() time.Time { return now }}
	for i := range 100 {
		o.warnAsk(t.Context(), fmt.Sprintf("n%d.test", i), errors.New("connection refused"))
	}
	if n := strings.Count(buf.String(), "on_demand.ask failed"); n != 1 {
		t.Errorf("logged %d lines for 100 failures, want 1:\n%s", n, buf.String())
	}
	now = now.Add(askWarnEvery)
	o.warnAsk(t.Context(), "late.test", errors.New("connection refused"))
	if !strings.Contains(buf.String(), "failures_not_logged=99") {
		t.Errorf("second line does not count the 99 failures not logged:\n%s", buf.String())
	}
}

// TestOnDemandReload turns on-demand on and off by Apply: a config that
// gains an on-demand Site serves it without a restart, and one that drops
// it refuses its names again, even those with a Certificate in memory.
func TestOnDemandReload(t *testing.T) {
	skipShort(t)
	t.Parallel()
	g := startPebbleGatehouse(t, pebbletest.Options{})
	plain := g.acmeConfig("local.internal")
	m := g.start(t, plain, fastOptions())
	g.mustRefuse(t, "a.reload.test")

	on := g.onDemandConfig(&config.OnDemand{Allow: []string{"*.reload.test"}}, "*.reload.test")
	on.Sites = append(on.Sites, plain.Sites[0])
	if err := m.Apply(t.Context(), on); err != nil {
		t.Fatalf("Apply with an on-demand site: %v", err)
	}
	g.mustHandshake(t, "a.reload.test")

	if err := m.Apply(t.Context(), plain); err != nil {
		t.Fatalf("Apply without it: %v", err)
	}
	g.mustRefuse(t, "a.reload.test")
	g.checkOrders(t, 1)

	// A policy that no longer allows a name refuses it once it is not in
	// memory (here: after a restart), even though storage has it.
	narrow := g.onDemandConfig(&config.OnDemand{Allow: []string{"b.reload.test"}}, "*.reload.test")
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	g.start(t, narrow, fastOptions())
	g.mustRefuse(t, "a.reload.test")
	g.checkOrders(t, 1)
}
