package gateway

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
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
	"github.com/gatehouse-proxy/gatehouse/tlsmgr"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr/pebbletest"
)

// syncBuffer is a log sink the test reads while gatehouse writes to it.
type syncBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// freePort returns a loopback port nothing listens on right now, from
// outside the ephemeral range, so nothing else is given it before
// gatehouse binds it (see [pebbletest.FreePort]).
func freePort(t *testing.T) int {
	t.Helper()
	return pebbletest.FreePort(t)
}

// instance is a gatehouse started in-process by a test.
type instance struct {
	t        *testing.T
	stdout   *syncBuffer
	stderr   *syncBuffer
	reload   chan os.Signal
	reopen   chan os.Signal // SIGUSR1
	cancel   context.CancelFunc
	https    string // host:port of the HTTPS Listener
	http     string // host:port of the HTTP Listener
	storage  string
	cfgPath  string
	stopOnce sync.Once
	// exited is closed once run has returned and runErr holds its result.
	// The start-up wait and stop both look at it: a result sent once on a
	// channel was taken by the start-up wait when gatehouse exited early,
	// and stop then waited its full 30s for a second one.
	exited chan struct{}
	runErr error
	g      *Gateway
}

// gateway returns the running Gateway.
func (in *instance) gateway() *Gateway { return in.g }

// ports are the Listener ports a test config uses.
type ports struct{ HTTP, HTTPS, Admin int }

func newPorts(t *testing.T) ports {
	return ports{HTTP: freePort(t), HTTPS: freePort(t), Admin: freePort(t)}
}

// adminACMEConfig has the admin endpoint on, a local CA Site for localhost
// and an ACME Site answering "app" for the hosts of its third verb. The
// first two are the CA's directory URL and root file.
const adminACMEConfig = `listen: {http: "127.0.0.1:{{HTTP}}", https: "127.0.0.1:{{HTTPS}}"}
admin: "127.0.0.1:{{ADMIN}}"
storage: {{STORAGE}}
acme:
  ca: %s
  ca_root: %s
sites:
  - hosts: [localhost]
    routes: [{respond: {body: local}}]
  - hosts: [%s]
    routes: [{respond: {body: app}}]
`

// writeConfig writes a config into dir, substituting {{HTTP}}, {{HTTPS}},
// {{ADMIN}} and {{STORAGE}}.
func writeConfig(t *testing.T, path string, p ports, storage, body string) {
	t.Helper()
	r := strings.NewReplacer(
		"{{HTTP}}", fmt.Sprint(p.HTTP),
		"{{HTTPS}}", fmt.Sprint(p.HTTPS),
		"{{ADMIN}}", fmt.Sprint(p.Admin),
		"{{STORAGE}}", storage,
	)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(r.Replace(body)), 0o644); err != nil {
		t.Fatal(err)
	}
	// Rename, as editors and config management do, so a reader never sees
	// half a file.
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// start runs a Gateway on a config file, as `gatehouse run -config path`
// does, and waits until the
// HTTPS Listener completes a handshake for localhost.
func start(t *testing.T, p ports, body string) *instance {
	t.Helper()
	dir := t.TempDir()
	storage := filepath.Join(dir, "storage")
	cfgPath := filepath.Join(dir, "gatehouse.yaml")
	writeConfig(t, cfgPath, p, storage, body)
	return startArgs(t, p, storage, cfgPath)
}

// startSources is start with further Sources after the file.
func startSources(t *testing.T, p ports, body string, extra ...Source) *instance {
	t.Helper()
	dir := t.TempDir()
	storage := filepath.Join(dir, "storage")
	cfgPath := filepath.Join(dir, "gatehouse.yaml")
	writeConfig(t, cfgPath, p, storage, body)
	return startArgs(t, p, storage, cfgPath, extra...)
}

func startArgs(t *testing.T, p ports, storage, cfgPath string, extra ...Source) *instance {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{
		t: t, stdout: &syncBuffer{}, stderr: &syncBuffer{}, reload: make(chan os.Signal, 1), reopen: make(chan os.Signal, 1),
		cancel: cancel, exited: make(chan struct{}),
		https:   fmt.Sprintf("127.0.0.1:%d", p.HTTPS),
		http:    fmt.Sprintf("127.0.0.1:%d", p.HTTP),
		storage: storage, cfgPath: cfgPath,
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	sources := append([]Source{&File{Path: cfgPath, Signals: in.reload}}, extra...)
	in.g, err = New(Options{Config: cfg, Sources: sources, Log: in.stderr, Reopen: in.reopen})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(in.exited)
		in.runErr = in.g.Run(ctx)
	}()
	t.Cleanup(func() { in.stop() })
	// The probe is bounded: when gatehouse could not bind its port, what
	// holds the port may accept and never answer, and the loop must get
	// back to noticing the early exit.
	probe := &net.Dialer{Timeout: 2 * time.Second}
	waitFor(t, 10*time.Second, func() bool {
		select {
		case <-in.exited:
			t.Fatalf("gatehouse exited early: %v\n%s", in.runErr, in.stderr)
		default:
		}
		// A handshake, not just a connect: the Listener is bound before
		// the local CA exists, and the test reads that CA's root next.
		c, err := tls.DialWithDialer(probe, "tcp", in.https, &tls.Config{ServerName: "localhost", InsecureSkipVerify: true})
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return in
}

// startStuckOrder starts a Pebble that validates against a port that
// accepts and never answers, then gatehouse on the config format fills in
// with the CA's directory URL and root file, then args. It returns once
// Pebble has begun validating gatehouse's order, which then stays pending
// until Pebble's 15s validation timeout.
func startStuckOrder(t *testing.T, p ports, format string, args ...any) *instance {
	t.Helper()
	silent, validating := pebbletest.SilentPort(t)
	ca := pebbletest.Start(t, pebbletest.Options{HTTPPort: silent, TLSPort: silent})
	in := start(t, p, fmt.Sprintf(format, append([]any{ca.DirectoryURL(), ca.ClientRootFile()}, args...)...))
	select {
	case <-validating:
	case <-time.After(20 * time.Second):
		t.Fatalf("Pebble never began validating the order\n%s", in.stderr)
	}
	return in
}

// stop cancels the instance's context, as SIGTERM does, and returns run's
// error.
func (in *instance) stop() error {
	var err error
	in.stopOnce.Do(func() {
		in.cancel()
		select {
		case <-in.exited:
			err = in.runErr
		case <-time.After(30 * time.Second):
			in.t.Errorf("gatehouse did not stop within 30s\n%s", in.stderr)
		}
	})
	return err
}

// client trusts the instance's local CA and dials every name to its HTTPS
// Listener.
func (in *instance) client(t *testing.T) *http.Client {
	t.Helper()
	return clientFor(in.https, in.localRoots(t))
}

// localRoots returns a pool holding the instance's local CA root.
func (in *instance) localRoots(t *testing.T) *x509.CertPool {
	t.Helper()
	pemBytes, _, err := tlsmgr.LocalRoot(t.Context(), in.storage)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pemBytes) {
		t.Fatal("local root: no certificate in PEM")
	}
	return roots
}

func clientFor(addr string, roots *x509.CertPool) *http.Client {
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: roots},
		ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, addr)
		},
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// get fetches url and returns status and body.
func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// newAppUpstream starts an Upstream that answers "app saw <Host>", so a
// test sees which name its request reached gatehouse by.
func newAppUpstream(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "app saw %s", r.Host)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
