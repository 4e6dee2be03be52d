package tlsmgr

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
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

// writeSelfSigned writes a self-signed certificate for names and its key
// (mode 0600) into dir and returns the two paths and the serial.
func writeSelfSigned(t *testing.T, dir, base string, names ...string) (certFile, keyFile string, serial *big.Int) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err = randomSerial()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, base+".pem"), filepath.Join(dir, base+".key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, serial
}

// fakeEngine records what the Manager asks of an ACME engine.
type fakeEngine struct {
	cert *tls.Certificate
	// mu guards the fields below.
	mu      sync.Mutex
	gets    []string
	managed []string
}

func (f *fakeEngine) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gets = append(f.gets, hello.ServerName)
	return f.cert, nil
}

func (f *fakeEngine) handleHTTP(w http.ResponseWriter, r *http.Request) bool {
	if r.URL.Path == "/.well-known/acme-challenge/known" {
		_, _ = w.Write([]byte("key-authz"))
		return true
	}
	return false
}

func (f *fakeEngine) manage(hosts []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.managed = hosts
}

func (f *fakeEngine) close() error { return nil }

func (f *fakeEngine) calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.gets...)
}

// newFakeManager returns a Manager whose ACME engine is fake, with cfg
// applied, so dispatch is tested without any CA.
func newFakeManager(t *testing.T, cfg *config.Config) (*Manager, *fakeEngine) {
	t.Helper()
	if cfg.Storage == "" {
		cfg.Storage = t.TempDir()
	}
	ca, err := openLocalCA(t.Context(), cfg.Storage, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c, k, _ := writeSelfSigned(t, dir, "acme", "acme.test")
	pair, err := tls.LoadX509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	fe := &fakeEngine{cert: &pair}
	m := &Manager{
		logger: slog.New(slog.DiscardHandler), ca: ca, engine: fe,
		frozen:  frozen{storage: cfg.Storage, acme: cfg.ACME, listen: cfg.Listen},
		http01:  true,
		tlsALPN: true,
	}
	m.table.Store(&table{})
	if err := m.Apply(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	return m, fe
}

// gatehouse mimics the command: Listeners bound before New, serving
// m.HTTPHandler(nil) and tls.NewListener(ln, m.TLSConfig()). The Manager
// behind them can be swapped to test a restart.
type gatehouse struct {
	httpAddr, httpsAddr string
	httpPort, httpsPort int
	cur                 atomic.Pointer[Manager]
	// noHTTP01 and noTLSALPN01 hold host names (keys, values unused)
	// whose HTTP-01 requests and acme-tls/1 handshakes never reach the
	// Manager, as if the CA could not reach that port for them: set them
	// with blockChallenge.
	noHTTP01, noTLSALPN01 sync.Map
}

// blockChallenge makes the CA's validations of challenge type typ for host
// fail at g's Listeners: a 404 for HTTP-01, a handshake error for
// TLS-ALPN-01, as when a port is not routed to gatehouse.
func (g *gatehouse) blockChallenge(typ, host string) {
	switch typ {
	case config.ChallengeHTTP01:
		g.noHTTP01.Store(host, true)
	case config.ChallengeTLSALPN01:
		g.noTLSALPN01.Store(host, true)
	default:
		panic("blockChallenge: no such challenge type " + typ)
	}
}

func startGatehouse(t *testing.T) *gatehouse {
	t.Helper()
	g := &gatehouse{}
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g.httpAddr, g.httpsAddr = httpLn.Addr().String(), httpsLn.Addr().String()
	g.httpPort, g.httpsPort = httpLn.Addr().(*net.TCPAddr).Port, httpsLn.Addr().(*net.TCPAddr).Port

	httpSrv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, blocked := g.noHTTP01.Load(hostOnly(r.Host)); blocked && strings.HasPrefix(r.URL.Path, "/.well-known/acme-challenge/") {
				http.NotFound(w, r)
				return
			}
			if m := g.cur.Load(); m != nil {
				m.HTTPHandler(nil).ServeHTTP(w, r)
				return
			}
			http.NotFound(w, r)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(slog.DiscardHandler, slog.LevelError),
	}
	tc := &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1", acmeTLS1},
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if _, blocked := g.noTLSALPN01.Load(hello.ServerName); blocked && slices.Contains(hello.SupportedProtos, acmeTLS1) {
				return nil, errors.New("acme-tls/1 blocked by the test")
			}
			m := g.cur.Load()
			if m == nil {
				return nil, errors.New("no manager")
			}
			return m.TLSConfig().GetCertificate(hello)
		},
	}
	httpsSrv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) }),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(slog.DiscardHandler, slog.LevelError),
	}
	go func() { _ = httpSrv.Serve(httpLn) }()
	go func() { _ = httpsSrv.Serve(tls.NewListener(httpsLn, tc)) }()
	t.Cleanup(func() {
		_ = httpSrv.Close()
		_ = httpsSrv.Close()
	})
	return g
}

// hostOnly strips the port from an HTTP Host.
func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}

// checkChallenges checks that every challenge the CA was asked to
// validate for name was of type typ, and that one was valid: the
// configured challenge was used, and no other was tried first.
func checkChallenges(t *testing.T, ca *pebbletest.CA, name, typ string) {
	t.Helper()
	var valid bool
	var seen []pebbletest.Validation
	for _, v := range ca.Validations() {
		if v.Name != name {
			continue
		}
		seen = append(seen, v)
		if v.Type != typ {
			t.Errorf("CA was asked to validate %s for %s; want %s only", v.Type, name, typ)
		}
		valid = valid || v.Status == "valid" && v.Type == typ
	}
	if !valid {
		t.Errorf("no valid %s challenge for %s; validations: %+v", typ, name, seen)
	}
}

// config returns a Config with one Site for hosts, served on g's
// Listeners, with the storage and ACME settings given.
func (g *gatehouse) config(storage string, acme config.ACME, hosts ...string) *config.Config {
	return &config.Config{
		Storage: storage,
		Listen:  config.Listen{HTTP: g.httpAddr, HTTPS: g.httpsAddr},
		ACME:    acme,
		Sites:   []config.Site{{Hosts: hosts}},
	}
}

// start creates a Manager with short knobs and serves it.
func (g *gatehouse) start(t *testing.T, cfg *config.Config, opts options) *Manager {
	t.Helper()
	return g.startLogged(t, cfg, opts, testLog(t))
}

func (g *gatehouse) startLogged(t *testing.T, cfg *config.Config, opts options, h slog.Handler) *Manager {
	t.Helper()
	logger := slog.New(h)
	m, err := newManager(t.Context(), cfg, logger, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	g.cur.Store(m)
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// pebbleGatehouse is gatehouse's Listeners with a Pebble of their own,
// and the storage and ACME settings of the Configs a test builds for them.
type pebbleGatehouse struct {
	*gatehouse
	ca *pebbletest.CA
	// acme issues from ca under an account with an email. A test that
	// needs other settings changes it before it calls acmeConfig.
	acme config.ACME
	// storage is the test's own, so a restart on it finds what the
	// Manager before stored.
	storage string
}

// startPebbleGatehouse starts gatehouse's Listeners and a Pebble with opts
// that validates challenges on them, or on the ports opts names.
func startPebbleGatehouse(t *testing.T, opts pebbletest.Options) *pebbleGatehouse {
	t.Helper()
	g := startGatehouse(t)
	if opts.HTTPPort == 0 && opts.TLSPort == 0 {
		opts.HTTPPort, opts.TLSPort = g.httpPort, g.httpsPort
	}
	ca := pebbletest.Start(t, opts)
	return &pebbleGatehouse{
		gatehouse: g,
		ca:        ca,
		acme:      config.ACME{CA: ca.DirectoryURL(), CARoot: ca.ClientRootFile(), Email: "admin@example.org"},
		storage:   t.TempDir(),
	}
}

// acmeConfig returns a Config with one Site for hosts, issued by g.acme
// and stored in g.storage.
func (g *pebbleGatehouse) acmeConfig(hosts ...string) *config.Config {
	return g.config(g.storage, g.acme, hosts...)
}

// waitForCert is waitForCert for a certificate issued by g's Pebble.
func (g *pebbleGatehouse) waitForCert(t *testing.T, host, notSerial string, timeout time.Duration) *x509.Certificate {
	t.Helper()
	return waitForCert(t, g.gatehouse, host, g.ca.IssuerRoots(), notSerial, timeout)
}

// handshake is handshake with g's HTTPS Listener for a certificate issued
// by g's Pebble.
func (g *pebbleGatehouse) handshake(host string) (*x509.Certificate, error) {
	return handshake(g.httpsAddr, host, g.ca.IssuerRoots())
}

// testLog is where a Manager under test logs: the test's output, Info
// and up.
func testLog(t *testing.T) slog.Handler {
	return slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo})
}

// tapHandler shows each record to tap, then passes it on to Handler. The
// loggers derived with WithAttrs and WithGroup keep the tap, so a test
// sees what every part of the Manager logs.
type tapHandler struct {
	slog.Handler
	tap func(slog.Record)
}

func (h tapHandler) Handle(ctx context.Context, r slog.Record) error {
	h.tap(r)
	return h.Handler.Handle(ctx, r)
}

func (h tapHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	h.Handler = h.Handler.WithAttrs(attrs)
	return h
}

func (h tapHandler) WithGroup(name string) slog.Handler {
	h.Handler = h.Handler.WithGroup(name)
	return h
}

// signalOn returns a handler that passes records on to next, and a channel
// it closes at the first record with message msg, so a test can wait for
// something to be logged.
func signalOn(next slog.Handler, msg string) (slog.Handler, <-chan struct{}) {
	seen := make(chan struct{})
	var once sync.Once
	return tapHandler{Handler: next, tap: func(r slog.Record) {
		if r.Message == msg {
			once.Do(func() { close(seen) })
		}
	}}, seen
}

// signalOnAttr is signalOn for the first record with message msg whose
// attribute key has the value val.
func signalOnAttr(next slog.Handler, msg, key, val string) (slog.Handler, <-chan struct{}) {
	seen := make(chan struct{})
	var once sync.Once
	return tapHandler{Handler: next, tap: func(r slog.Record) {
		if r.Message != msg {
			return
		}
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == key && a.Value.String() == val {
				once.Do(func() { close(seen) })
				return false
			}
			return true
		})
	}}, seen
}

// offlineSettings returns the ACME settings of a Config whose CA nothing
// listens at, for engines that are built but never issue.
func offlineSettings(t *testing.T) acmeSettings {
	t.Helper()
	s, err := newACMESettings(&config.Config{Storage: t.TempDir(), ACME: config.ACME{CA: "https://127.0.0.1:1/dir"}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func fastOptions() options {
	o := defaultOptions()
	o.backoffBase, o.backoffMax = 200*time.Millisecond, time.Second
	return o
}

// waitForCert handshakes with the HTTPS Listener as host until it serves a
// certificate for host that verifies against roots, with a serial other
// than notSerial, and returns the leaf.
func waitForCert(t *testing.T, g *gatehouse, host string, roots *x509.CertPool, notSerial string, timeout time.Duration) *x509.Certificate {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for time.Now().Before(deadline) {
		leaf, err := handshake(g.httpsAddr, host, roots)
		if err == nil && leaf.SerialNumber.String() != notSerial {
			return leaf
		}
		if err == nil {
			err = fmt.Errorf("still serving serial %s", notSerial)
		}
		lastErr = err
		<-tick.C
	}
	t.Fatalf("no certificate for %s within %v: %v", host, timeout, lastErr)
	return nil
}

// handshake dials addr with SNI host and verifies the chain served (leaf
// plus intermediate) against roots for host.
func handshake(addr, host string, roots *x509.CertPool) (*x509.Certificate, error) {
	d := &tls.Dialer{Config: &tls.Config{ServerName: host, RootCAs: roots}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	st := c.(*tls.Conn).ConnectionState()
	if len(st.PeerCertificates) < 2 {
		return nil, fmt.Errorf("chain has %d certificates, want leaf and intermediate", len(st.PeerCertificates))
	}
	return st.PeerCertificates[0], nil
}

func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("Pebble integration test; skipped with -short")
	}
}
