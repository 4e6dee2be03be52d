package proxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// testCA is a throwaway CA issuing client certificates.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test client CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key}
}

// clientCert writes a client certificate and key signed by ca into dir.
func (ca *testCA) clientCert(t *testing.T, dir, name string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// newTLSBackend starts an HTTPS echo backend whose handler also reports
// the server name and client certificate it saw, and writes its
// certificate as a CA file.
func newTLSBackend(t *testing.T, configure func(*tls.Config)) (srv *httptest.Server, caFile string) {
	t.Helper()
	srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-SNI", r.TLS.ServerName)
		if len(r.TLS.PeerCertificates) > 0 {
			w.Header().Set("X-Client", r.TLS.PeerCertificates[0].Subject.CommonName)
		}
		echoHandler("tls").ServeHTTP(w, r)
	}))
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{}
	if configure != nil {
		configure(srv.TLS)
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	caFile = filepath.Join(t.TempDir(), "backend-ca.pem")
	writeCertPEM(t, caFile, srv.Certificate())
	return srv, caFile
}

func TestUpstreamMutualTLS(t *testing.T) {
	ca := newTestCA(t)
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	backend, caFile := newTLSBackend(t, func(c *tls.Config) {
		c.ClientAuth = tls.RequireAndVerifyClientCert
		c.ClientCAs = pool
	})
	certFile, keyFile := ca.clientCert(t, t.TempDir(), "gatehouse")
	f := newFrontend(t, proxyConfig(
		config.Route{Path: "/with", Upstreams: []string{backend.URL}, CA: caFile,
			UpstreamTLS: &config.UpstreamTLS{ClientCert: certFile, ClientKey: keyFile}},
		config.Route{Path: "/without", Upstreams: []string{backend.URL}, CA: caFile},
	))
	if res, _ := f.getRes(t, host, "/with"); res.StatusCode != http.StatusOK || res.Header.Get("X-Client") != "gatehouse" {
		t.Errorf("with client certificate: %v, client %q; want 200 as gatehouse", res.Status, res.Header.Get("X-Client"))
	}
	if res, _ := f.getRes(t, host, "/without"); res.StatusCode != http.StatusBadGateway {
		t.Errorf("without client certificate: %v, want 502", res.Status)
	}
}

func TestUpstreamServerName(t *testing.T) {
	// httptest's certificate is valid for example.com and 127.0.0.1.
	backend, caFile := newTLSBackend(t, nil)
	f := newFrontend(t, proxyConfig(
		config.Route{Path: "/right", Upstreams: []string{backend.URL}, CA: caFile,
			UpstreamTLS: &config.UpstreamTLS{ServerName: "example.com"}},
		config.Route{Path: "/wrong", Upstreams: []string{backend.URL}, CA: caFile,
			UpstreamTLS: &config.UpstreamTLS{ServerName: "other.example"}},
	))
	if res, _ := f.getRes(t, host, "/right"); res.StatusCode != http.StatusOK || res.Header.Get("X-SNI") != "example.com" {
		t.Errorf("server_name example.com: %v, SNI %q; want 200 with SNI example.com", res.Status, res.Header.Get("X-SNI"))
	}
	if res, _ := f.getRes(t, host, "/wrong"); res.StatusCode != http.StatusBadGateway {
		t.Errorf("server_name the certificate does not cover: %v, want 502", res.Status)
	}
}

func TestUpstreamInsecureSkipVerify(t *testing.T) {
	backend, _ := newTLSBackend(t, nil)
	f := newFrontend(t, proxyConfig(
		config.Route{Path: "/", Upstreams: []string{backend.URL},
			UpstreamTLS: &config.UpstreamTLS{InsecureSkipVerify: true}},
	))
	if res, _ := f.getRes(t, host, "/"); res.StatusCode != http.StatusOK {
		t.Errorf("status = %v, want 200 without verification", res.Status)
	}
	warned := false
	for _, l := range f.log.lines(t) {
		if l["level"] == "WARN" && strings.Contains(l["msg"].(string), "insecure_skip_verify") && l["route"] == "/" {
			warned = true
		}
	}
	if !warned {
		t.Errorf("no warning about insecure_skip_verify at compile:\n%s", f.log.String())
	}
}

func TestUnixSocketUpstream(t *testing.T) {
	dir, err := os.MkdirTemp("", "gh-sock")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "app.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: echoHandler("unix")}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	f := newCheckedFrontend(t, proxyConfig(checkedRoute(&config.HealthCheck{Path: "/", Interval: time.Hour, Timeout: time.Second}, "unix://"+sock)))
	code, body := f.get(t, host, "/x")
	if code != http.StatusOK {
		t.Fatalf("status = %v %q", code, body)
	}
	if s := decodeSeen(t, body); s.Backend != "unix" || s.Path != "/x" || s.Host != host {
		t.Errorf("backend saw %+v, want /x for %s over the socket", s, host)
	}
	waitFor(t, "the socket was health-checked", func() bool {
		st := status(t, f.handler, "unix://"+sock)
		return st.Healthy && !st.LastCheck.IsZero()
	})
}

// connCounter counts the connections a backend accepts and closes.
type connCounter struct {
	mu             sync.Mutex
	opened, closed int
}

func (c *connCounter) track(_ net.Conn, s http.ConnState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch s {
	case http.StateNew:
		c.opened++
	case http.StateClosed, http.StateHijacked:
		c.closed++
	}
}

func (c *connCounter) get() (opened, closed int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.opened, c.closed
}

func TestKeepAlivePool(t *testing.T) {
	newBackend := func() (*holdBackend, *connCounter) {
		cc := new(connCounter)
		hb := newHoldBackend(t, "b", func(s *http.Server) { s.ConnState = cc.track })
		return hb, cc
	}
	t.Run("max_idle", func(t *testing.T) {
		hb, cc := newBackend()
		f := newFrontend(t, proxyConfig(config.Route{Path: "/", Upstreams: []string{hb.srv.URL},
			KeepAlive: &config.KeepAlive{MaxIdle: 1, IdleTimeout: time.Minute}}))
		var wg sync.WaitGroup
		c := f.client(host)
		for range 3 {
			req := f.request(t, http.MethodGet, host, "/hold", nil)
			wg.Go(func() {
				// Off the test goroutine: report, never t.Fatal.
				res, err := c.Do(req)
				if err != nil {
					t.Errorf("GET /hold: %v", err)
					return
				}
				res.Body.Close()
			})
		}
		for range 3 {
			<-hb.arrived
		}
		hb.free()
		wg.Wait()
		// Three connections were needed at once; only one stays idle.
		waitFor(t, "two of three connections closed", func() bool { o, c := cc.get(); return o == 3 && c == 2 })
		f.getRes(t, host, "/")
		if o, _ := cc.get(); o != 3 {
			t.Errorf("opened %d connections, want the idle one reused", o)
		}
	})
	t.Run("idle_timeout", func(t *testing.T) {
		hb, cc := newBackend()
		f := newFrontend(t, proxyConfig(config.Route{Path: "/", Upstreams: []string{hb.srv.URL},
			KeepAlive: &config.KeepAlive{MaxIdle: 4, IdleTimeout: 100 * time.Millisecond}}))
		f.getRes(t, host, "/")
		waitFor(t, "the idle connection closed", func() bool { _, c := cc.get(); return c == 1 })
	})
	t.Run("pool key", func(t *testing.T) {
		hb, _ := newBackend()
		cfg := proxyConfig(
			config.Route{Path: "/a", Upstreams: []string{hb.srv.URL}, KeepAlive: &config.KeepAlive{MaxIdle: 1}},
			config.Route{Path: "/b", Upstreams: []string{hb.srv.URL}, KeepAlive: &config.KeepAlive{MaxIdle: 2}},
			config.Route{Path: "/c", Upstreams: []string{hb.srv.URL}, KeepAlive: &config.KeepAlive{MaxIdle: 1}},
		)
		table := mustCompile(t, cfg)
		rt := func(path string) any {
			_, r := table.lookup(host, path)
			return r.handler.(*proxyRoute).balancer.upstreams[0].rt
		}
		if rt("/a") == rt("/b") || rt("/a") != rt("/c") {
			t.Error("routes with different keepalive share a pool, or equal ones do not")
		}
	})
}

func TestMaxResponseHeader(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Big", strings.Repeat("x", 8<<10))
	}))
	t.Cleanup(backend.Close)
	f := newFrontend(t, proxyConfig(
		config.Route{Path: "/small", Upstreams: []string{backend.URL}, MaxResponseHeader: 4 << 10},
		config.Route{Path: "/default", Upstreams: []string{backend.URL}},
	))
	if res, _ := f.getRes(t, host, "/small"); res.StatusCode != http.StatusBadGateway {
		t.Errorf("8KiB header over a 4KiB limit: %v, want 502", res.Status)
	}
	if res, _ := f.getRes(t, host, "/default"); res.StatusCode != http.StatusOK || len(res.Header.Get("X-Big")) != 8<<10 {
		t.Errorf("8KiB header under the 1MiB default: %v, want 200 with the header", res.Status)
	}
}
