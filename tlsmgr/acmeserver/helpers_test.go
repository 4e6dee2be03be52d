package acmeserver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-acme/lego/v5/lego"
	"github.com/go-acme/lego/v5/registration"

	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr/pebbletest"
)

// testCA is an ACME server on gatehouse's real local CA (a tlsmgr.Manager
// on a temporary storage), served over TLS by the Manager's certificate
// for the server's host on 127.0.0.1.
type testCA struct {
	srv  *Server
	mgr  *tlsmgr.Manager
	root *x509.Certificate
	// rootFile is the root in PEM, for clients that read a file.
	rootFile string
	// dirURL is the directory URL; addr is host:port the server listens
	// on (127.0.0.1:PORT).
	dirURL, addr string
	ports        ports
	// opts started srv; current is the server requests go to (srv, but
	// for the handler's goroutines).
	opts    Options
	current atomic.Pointer[Server]
}

// startCA starts an ACME server for host (resolved by clients to
// 127.0.0.1), with acme_server as modify leaves it; validation dials the
// free ports it picks for HTTP-01 and TLS-ALPN-01 rather than 80 and 443.
func startCA(t *testing.T, host string, resolvers []string, modify func(*config.ACMEServer)) *testCA {
	t.Helper()
	storage := t.TempDir()
	as := &config.ACMEServer{Host: host, AllowedNames: []string{"*.localhost", "*.lab.home.arpa"}}
	if modify != nil {
		modify(as)
	}
	cfg := &config.Config{Storage: storage, Admin: config.Off, Listen: config.Listen{HTTPS: "127.0.0.1:" + freePort(t)}, ACMEServer: as}
	if err := config.Complete(cfg); err != nil {
		t.Fatalf("config: %v", err)
	}
	logger := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	mgr, err := tlsmgr.New(t.Context(), cfg, logger)
	if err != nil {
		t.Fatalf("tlsmgr.New: %v", err)
	}
	t.Cleanup(func() { mgr.Close() })
	root, issuer := mgr.LocalIssuer()
	p := ports{http: freePort(t), tls: freePort(t)}
	opts := Options{
		Config: *cfg.ACMEServer, Resolvers: resolvers, Root: root, Issuer: issuer,
		Dir: filepath.Join(storage, "acme_server"), Logger: logger, ports: &p,
	}
	srv, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ca := &testCA{srv: srv, opts: opts}
	ca.current.Store(srv)
	t.Cleanup(func() {
		if err := ca.current.Load().Close(); err != nil {
			t.Error(err)
		}
	})
	// Not httptest's StartTLS: it adds a certificate of its own, which
	// Go serves to a client that sends no SNI (one dialling 127.0.0.1).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ca.current.Load().Handler(http.NotFoundHandler()).ServeHTTP(w, r)
	}), ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(tls.NewListener(ln, mgr.TLSConfig()))
	t.Cleanup(func() { hs.Close() })
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	rootFile := filepath.Join(t.TempDir(), "root.pem")
	if err := os.WriteFile(rootFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	ca.mgr, ca.root, ca.rootFile, ca.ports = mgr, root, rootFile, p
	ca.dirURL = "https://" + net.JoinHostPort(host, port) + "/acme/directory"
	ca.addr = ln.Addr().String()
	return ca
}

// restart stops the server and starts another on its database with its
// acme_server as modify leaves it, as gatehouse does on a restart after
// the config changed; requests go to the new one.
func (ca *testCA) restart(t *testing.T, modify func(*config.ACMEServer)) {
	t.Helper()
	if err := ca.current.Load().Close(); err != nil {
		t.Fatal(err)
	}
	modify(&ca.opts.Config)
	srv, err := New(ca.opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ca.srv = srv
	ca.current.Store(srv)
}

// httpClient trusts only the local CA's root and reaches the server
// whatever host it is asked for.
func (ca *testCA) httpClient() *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(ca.root)
	d := net.Dialer{Timeout: 10 * time.Second}
	return &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, ca.addr)
		},
	}}
}

// verify checks that chainPEM (leaf first) chains to the local CA's root
// for name, and returns the leaf.
func (ca *testCA) verify(t *testing.T, chainPEM []byte, name string) *x509.Certificate {
	t.Helper()
	var certs []*x509.Certificate
	for rest := chainPEM; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatalf("parsing the chain: %v", err)
		}
		certs = append(certs, c)
	}
	if len(certs) < 2 {
		t.Fatalf("chain has %d certificates, want leaf and intermediate", len(certs))
	}
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(ca.root)
	for _, c := range certs[1:] {
		inters.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{DNSName: name, Roots: roots, Intermediates: inters}); err != nil {
		t.Fatalf("leaf for %s does not verify to the local CA's root: %v", name, err)
	}
	return certs[0]
}

// verifyFile is verify of the chain in file.
func (ca *testCA) verifyFile(t *testing.T, file, name string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return ca.verify(t, b, name)
}

// issued returns the server's record of serial (lowercase hex).
func (ca *testCA) issued(t *testing.T, serial string) (Issued, bool) {
	t.Helper()
	all, err := ca.srv.Issued()
	if err != nil {
		t.Fatalf("Issued: %v", err)
	}
	for _, c := range all {
		if c.Serial == serial {
			return c, true
		}
	}
	return Issued{}, false
}

// newLego returns a lego client of ca with a fresh key, not registered.
func (ca *testCA) newLego(t *testing.T) (*lego.Client, *pebbletest.LegoAccount) {
	t.Helper()
	u := pebbletest.NewLegoAccount(t)
	cfg := lego.NewConfig(u)
	cfg.CADirURL = ca.dirURL
	cfg.HTTPClient = ca.httpClient()
	c, err := lego.NewClient(cfg)
	if err != nil {
		t.Fatalf("lego.NewClient: %v", err)
	}
	return c, u
}

// register registers u's account with lego's c.
func register(t *testing.T, c *lego.Client, u *pebbletest.LegoAccount) {
	t.Helper()
	reg, err := c.Registration.Register(t.Context(), registration.RegisterOptions{TermsOfServiceAgreed: true})
	if err != nil {
		t.Fatalf("registering: %v", err)
	}
	u.Reg = reg
}

func freePort(t *testing.T) string {
	t.Helper()
	return strconv.Itoa(pebbletest.FreePort(t))
}

// testWriter sends the server's log to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}
