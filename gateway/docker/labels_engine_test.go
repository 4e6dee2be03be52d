package docker_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/gateway/dockertest"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr/pebbletest"
)

// testCA is a CA of the test's own, issuing into PEM files.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	dir  string
	file string // the CA certificate's PEM file
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{cert: cert, key: key, dir: t.TempDir()}
	ca.file = ca.write(t, name+"-ca.pem", "CERTIFICATE", der)
	return ca
}

func (ca *testCA) write(t *testing.T, name, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(ca.dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// issue returns the PEM files of a certificate for 127.0.0.1 and
// dnsNames with usage (server or client authentication) and its key.
func (ca *testCA) issue(t *testing.T, name string, usage x509.ExtKeyUsage, dnsNames ...string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     dnsNames,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return ca.write(t, name+".pem", "CERTIFICATE", der), ca.write(t, name+"-key.pem", "EC PRIVATE KEY", kder)
}

// tlsEngine serves the engine's API on tcp:// with mutual TLS, as dockerd
// with --tlsverify does: podman's service has no TLS of its own, so this
// terminates TLS and passes the bytes to the recorder's socket in front
// of the real engine.
type tlsEngine struct {
	addr      string
	refused   atomic.Int32 // handshakes that failed
	forwarded atomic.Int32 // connections of a verified client passed on
}

func startTLSEngine(t *testing.T, e *env, ca *testCA) *tlsEngine {
	t.Helper()
	certFile, keyFile := ca.issue(t, "engine", x509.ExtKeyUsageServerAuth)
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	clients := x509.NewCertPool()
	clients.AddCert(ca.cert)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{pair},
		ClientCAs:    clients,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	})
	if err != nil {
		t.Fatal(err)
	}
	te := &tlsEngine{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	var mu sync.Mutex // guards conns
	conns := map[net.Conn]bool{}
	track := func(c net.Conn, on bool) {
		mu.Lock()
		defer mu.Unlock()
		if on {
			conns[c] = true
		} else {
			delete(conns, c)
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			track(c, true)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer track(c, false)
				defer c.Close()
				te.forward(c.(*tls.Conn), e.rec.socket)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return te
}

func (te *tlsEngine) forward(c *tls.Conn, socket string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	err := c.HandshakeContext(ctx)
	cancel()
	if err != nil {
		te.refused.Add(1)
		return
	}
	up, err := net.Dial("unix", socket)
	if err != nil {
		return
	}
	defer up.Close()
	te.forwarded.Add(1)
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(up, c)
		up.(*net.UnixConn).CloseWrite()
		close(done)
	}()
	_, _ = io.Copy(c, up)
	c.Close()
	<-done
}

// TestEngineTLS reaches the engine at a tcp:// endpoint with docker.tls
// (mutual TLS): the containers' routes are served. With a CA that did not
// sign the engine's certificate, the failure is logged, saying why, and
// the file's Sites keep serving.
func TestEngineTLS(t *testing.T) {
	e := newEnv(t)
	ca := newTestCA(t, "engine-ca")
	te := startTLSEngine(t, e, ca)
	clientCert, clientKey := ca.issue(t, "gatehouse", x509.ExtKeyUsageClientAuth)
	host := e.host("tls")
	dockertest.Run(t, e.name("tls"), labels(host), "-e", "BACKEND_NAME=tls")

	dockerTLS := func(caFile string) string {
		return fmt.Sprintf("  tls: {ca: %s, cert: %s, key: %s}", caFile, clientCert, clientKey)
	}
	in := startGatehouse(t, e, options{endpoint: "tcp://" + te.addr, dockerExtra: dockerTLS(ca.file)})
	waitStatus(t, in.client(t), "https://"+host+"/", 200, "tls /", engineWait)
	if te.forwarded.Load() == 0 {
		t.Errorf("no connection reached the engine through the TLS endpoint")
	}

	// The same client certificate, but a CA that did not sign the
	// engine's certificate: gatehouse must refuse the engine.
	wrong := newTestCA(t, "other-ca")
	bad := startGatehouse(t, e, options{endpoint: "tcp://" + te.addr, dockerExtra: dockerTLS(wrong.file)})
	c := bad.client(t)
	waitFor(t, engineWait, "the engine refused and logged", func() bool {
		return strings.Contains(bad.log.String(), "docker engine unreachable")
	}, func() string { return bad.log.String() })
	line := grepLines(bad.log.String(), "docker engine unreachable")
	if !strings.Contains(line, "endpoint=tcp://"+te.addr) || !strings.Contains(line, "certificate signed by unknown authority") {
		t.Errorf("the refusal should name the endpoint and the unknown authority; got:\n%s", line)
	}
	if code, body, _, err := fetch(c, "https://localhost/"); err != nil || code != 200 || body != "file" {
		t.Errorf("the file's Site with the engine refused: got %d %q %v, want 200 \"file\"", code, body, err)
	}
	if code, _, _, err := fetch(c, "https://"+host+"/"); err == nil && code != 404 {
		t.Errorf("a container's host without the engine: got %d, want 404 or no certificate", code)
	}
	// Retried, and logged once while it lasts.
	n := te.refused.Load()
	waitFor(t, engineWait, "a retry of the engine", func() bool { return te.refused.Load() > n })
	if got := strings.Count(bad.log.String(), "docker engine unreachable"); got != 1 {
		t.Errorf("the refusal was logged %d times; want once:\n%s", got, grepLines(bad.log.String(), "docker engine"))
	}
}

// backendGet is one GET through c, returning the status, body and how the
// backend said the request reached it (X-Backend-Proto, X-Backend-TLS).
func backendGet(c *http.Client, url string) (code int, body, proto, tls string, err error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", "", "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header.Get("X-Backend-Proto"), resp.Header.Get("X-Backend-TLS"), err
}

// TestSchemeLabel routes with gatehouse.scheme: the default reaches its
// container over HTTP/1.1, h2c over HTTP/2 without TLS, and https over
// TLS, verified as docker.upstream_tls says: against its CA and server
// name, or not at all for a self-signed certificate. Without it, the
// container's certificate (for no address gatehouse dials) fails
// verification: 502, and the log says why.
func TestSchemeLabel(t *testing.T) {
	e := newEnv(t)
	ca := newTestCA(t, "backend-ca")
	ca.issue(t, "backend", x509.ExtKeyUsageServerAuth, "backend.test")
	plain, h2c, secure, self := e.host("plain"), e.host("h2c"), e.host("secure"), e.host("self")
	dockertest.Run(t, e.name("plain"), labels(plain), "-e", "BACKEND_NAME=plain")
	dockertest.Run(t, e.name("h2c"), labels(h2c, "gatehouse.scheme", "h2c"), "-e", "BACKEND_NAME=h2c", "-e", "H2C=1")
	dockertest.Run(t, e.name("secure"), labels(secure, "gatehouse.scheme", "https"), "-e", "BACKEND_NAME=secure",
		"-v", ca.dir+":/certs:ro", "-e", "TLS_CERT=/certs/backend.pem", "-e", "TLS_KEY=/certs/backend-key.pem")
	dockertest.Run(t, e.name("self"), labels(self, "gatehouse.scheme", "https"), "-e", "BACKEND_NAME=self", "-e", "TLS=1")

	// reach waits until GET https://host/x through in answers status,
	// and returns how the container saw the request.
	reach := func(in *instance, c *http.Client, host string, status int) (proto, tls string) {
		t.Helper()
		url := "https://" + host + "/x"
		var last string
		waitFor(t, engineWait, fmt.Sprintf("GET %s answering %d", url, status), func() bool {
			code, body, p, s, err := backendGet(c, url)
			last = fmt.Sprintf("%d %q proto=%q tls=%q %v", code, body, p, s, err)
			proto, tls = p, s
			return err == nil && code == status && (status != 200 || strings.HasSuffix(body, " /x"))
		}, func() string {
			return "last answer: " + last + "\n" + grepLines(in.log.String(), `msg="proxying request"`)
		})
		return proto, tls
	}

	def := startGatehouse(t, e, options{})
	c := def.client(t)
	if proto, tls := reach(def, c, plain, 200); proto != "HTTP/1.1" || tls != "false" {
		t.Errorf("%s: the container saw %s tls=%s; want HTTP/1.1 without TLS", plain, proto, tls)
	}
	if proto, tls := reach(def, c, h2c, 200); proto != "HTTP/2.0" || tls != "false" {
		t.Errorf("%s: the container saw %s tls=%s; want HTTP/2.0 without TLS (h2c)", h2c, proto, tls)
	}
	reach(def, c, secure, 502)
	if log := grepLines(def.log.String(), "host="+secure); !strings.Contains(log, "failed to verify certificate") {
		t.Errorf("the 502 of an unverified container should be logged with its reason; got:\n%s", log)
	}

	verified := startGatehouse(t, e, options{dockerExtra: fmt.Sprintf("  upstream_tls: {ca: %s, server_name: backend.test}", ca.file)})
	if _, tls := reach(verified, verified.client(t), secure, 200); tls != "true" {
		t.Errorf("%s with docker.upstream_tls: the container saw tls=%s; want TLS", secure, tls)
	}
	reach(verified, verified.client(t), self, 502)

	unverified := startGatehouse(t, e, options{dockerExtra: "  upstream_tls: {insecure_skip_verify: true}"})
	if _, tls := reach(unverified, unverified.client(t), self, 200); tls != "true" {
		t.Errorf("%s with insecure_skip_verify: the container saw tls=%s; want TLS", self, tls)
	}
	if !strings.Contains(grepLines(unverified.log.String(), "site="+self), "upstream certificates are not verified") {
		t.Errorf("no warning that %s's certificate is not verified:\n%s", self, grepLines(unverified.log.String(), "level=WARN"))
	}
}

// TestHealthPathLabel checks gatehouse.health.path: a container whose
// health path answers 500, or whose port refuses connections while it
// runs, leaves the pool, its healthy peer serves every request, and none
// fails meanwhile.
func TestHealthPathLabel(t *testing.T) {
	e := newEnv(t)
	in := startGatehouse(t, e, options{})
	c := in.client(t)
	host := e.host("hp")
	url := "https://" + host + "/"
	for _, n := range []string{"a", "b"} {
		dockertest.Run(t, e.name(n), labels(host, "gatehouse.health.path", "/healthz"), "-e", "BACKEND_NAME="+n)
	}
	waitFor(t, engineWait, "a and b in the pool", func() bool { n := served(t, c, url, 10); return n["a"] > 0 && n["b"] > 0 })

	load := startLoad(c, 5*time.Millisecond, url, url)
	alone := func(name string) func() bool {
		return func() bool { return served(t, c, url, 20)[name] == 20 }
	}

	// b's health path answers 500 (its other paths still answer).
	dockertest.Podman(t, "exec", e.name("b"), "/app", "sick")
	waitFor(t, engineWait, "b out of the pool once /healthz answers 500", alone("a"))
	if log := grepLines(in.log.String(), "upstream unhealthy"); !strings.Contains(log, "500") {
		t.Errorf("b's failing check should be logged with its status; got:\n%s", log)
	}
	dockertest.Podman(t, "exec", e.name("b"), "/app", "well")
	waitFor(t, engineWait, "b back once /healthz answers 200", func() bool { return served(t, c, url, 10)["b"] > 0 })

	// a's port closes while a keeps running: no event says so, only the
	// check does (and, until it runs, the failed dials, which move each
	// request to b).
	dockertest.Podman(t, "exec", e.name("a"), "/app", "deaf")
	waitFor(t, engineWait, "a's failing check logged", func() bool {
		return strings.Count(in.log.String(), `msg="upstream unhealthy"`) >= 2
	}, func() string {
		return grepLines(in.log.String(), "healthy") + "\n" + grepLines(in.log.String(), "unreachable")
	})
	if r := routeOf(t, in, host); len(r.Upstreams) != 2 {
		t.Errorf("a left the Route rather than failing its check: %+v", r)
	}
	if n := served(t, c, url, 20); n["b"] != 20 {
		t.Errorf("20 requests once a's check failed: got %v, want b alone", n)
	}
	load.stop(t, "while a container was unhealthy")
}

// TestTLSIssuerLabel checks gatehouse.tls.issuer: with an ACME CA
// configured, a label host with issuer internal gets its certificate from
// the local CA and orders nothing, while a host without the label gets
// the ACME CA's.
func TestTLSIssuerLabel(t *testing.T) {
	e := newEnv(t)
	port := pebbletest.FreePort(t)
	ca := pebbletest.Start(t, pebbletest.Options{TLSPort: port})
	in := startGatehouse(t, e, options{
		httpsPort:    port,
		allowedExtra: `, "*.example.com"`,
		acme:         fmt.Sprintf("acme: {ca: %s, ca_root: %s, challenges: [tls-alpn-01]}", ca.DirectoryURL(), ca.ClientRootFile()),
	})
	internal, public := "int-"+e.id+".example.com", "pub-"+e.id+".example.com"
	dockertest.Run(t, e.name("int"), labels(internal, "gatehouse.tls.issuer", "internal"), "-e", "BACKEND_NAME=int")
	dockertest.Run(t, e.name("pub"), labels(public), "-e", "BACKEND_NAME=pub")

	// in.client trusts the local CA alone.
	local := in.client(t)
	waitStatus(t, local, "https://"+internal+"/", 200, "int /", engineWait)
	acme := clientTrusting(in, ca.IssuerRoots())
	waitStatus(t, acme, "https://"+public+"/", 200, "pub /", engineWait)

	localRoot, _, err := tlsmgr.LocalRoot(t.Context(), in.storage)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(localRoot)
	root, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		host  string
		roots *x509.CertPool
		want  string
	}{
		{internal, poolOf(root), "the local CA"},
		{public, ca.IssuerRoots(), "Pebble"},
	} {
		chain := servedChain(t, in, tc.host)
		if _, err := chain[0].Verify(x509.VerifyOptions{DNSName: tc.host, Roots: tc.roots, Intermediates: poolOf(chain[1:]...)}); err != nil {
			t.Errorf("%s: the served certificate (issuer %q) does not chain to %s: %v", tc.host, chain[0].Issuer, tc.want, err)
		}
	}
	if n := ca.Orders(); n != 1 {
		t.Errorf("Pebble received %d orders; want 1, for %s alone", n, public)
	}
}

// clientTrusting is in.client with roots in place of the local CA.
func clientTrusting(in *instance, roots *x509.CertPool) *http.Client {
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, in.https)
		},
	}}
}

func poolOf(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

// servedChain is the certificate chain the HTTPS Listener serves for host.
func servedChain(t *testing.T, in *instance, host string) []*x509.Certificate {
	t.Helper()
	conn, err := tls.Dial("tcp", in.https, &tls.Config{ServerName: host, InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("handshake for %s: %v", host, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates
}

// TestPausedContainer checks that a paused container leaves its pool, its
// peer serving every request, and rejoins once unpaused.
func TestPausedContainer(t *testing.T) {
	e := newEnv(t)
	in := startGatehouse(t, e, options{})
	c := in.client(t)
	host := e.host("pause")
	url := "https://" + host + "/"
	for _, n := range []string{"a", "b"} {
		dockertest.Run(t, e.name(n), labels(host), "-e", "BACKEND_NAME="+n)
	}
	waitFor(t, engineWait, "a and b in the pool", func() bool { n := served(t, c, url, 10); return n["a"] > 0 && n["b"] > 0 })

	// Requests run throughout; none may fail. The engine freezes b and
	// then reports it, so a request gatehouse sent b in between waits
	// for the unpause (the client waits long enough): counted, not
	// failed.
	patient := *c
	patient.Timeout = 2 * engineWait
	load := startLoad(&patient, 5*time.Millisecond, url, url)

	dockertest.Podman(t, "pause", e.name("b"))
	// Once gatehouse has seen the event, every request goes to a and
	// none waits.
	waitFor(t, engineWait, "b out of the pool once paused", func() bool {
		r := routeOf(t, in, host)
		return len(r.Upstreams) == 1
	}, func() string { return fmt.Sprintf("%+v", routeOf(t, in, host)) })
	quick := *c
	quick.Timeout = 5 * time.Second
	for i := range 20 {
		code, body, _, err := fetch(&quick, url)
		if err != nil || code != 200 || !strings.HasPrefix(body, "a ") {
			t.Fatalf("request %d with b paused: got %d %q %v, want a's 200", i, code, body, err)
		}
	}

	dockertest.Podman(t, "unpause", e.name("b"))
	waitFor(t, engineWait, "b back in the pool once unpaused", func() bool { return served(t, c, url, 10)["b"] > 0 })
	if n := served(t, c, url, 20); n["a"] < 5 || n["b"] < 5 {
		t.Errorf("20 requests after the unpause: got %v, want about 10 each", n)
	}
	load.stop(t, "across the pause")
	t.Logf("%d requests took over a second (those sent to b frozen, before gatehouse saw the pause, wait for the unpause)", load.slow.Load())
}
