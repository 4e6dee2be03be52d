package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
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
}

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

// start runs `gatehouse run -config path` in-process and waits until the
// HTTPS Listener completes a handshake for localhost.
func start(t *testing.T, p ports, body string) *instance {
	t.Helper()
	dir := t.TempDir()
	storage := filepath.Join(dir, "storage")
	cfgPath := filepath.Join(dir, "gatehouse.yaml")
	writeConfig(t, cfgPath, p, storage, body)
	return startArgs(t, p, storage, cfgPath, []string{"run", "-config", cfgPath})
}

func startArgs(t *testing.T, p ports, storage, cfgPath string, args []string) *instance {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{
		t: t, stdout: &syncBuffer{}, stderr: &syncBuffer{}, reload: make(chan os.Signal, 1), reopen: make(chan os.Signal, 1),
		cancel: cancel, exited: make(chan struct{}),
		https:   fmt.Sprintf("127.0.0.1:%d", p.HTTPS),
		http:    fmt.Sprintf("127.0.0.1:%d", p.HTTP),
		storage: storage, cfgPath: cfgPath,
	}
	env := &environment{stdout: in.stdout, stderr: in.stderr, getenv: func(string) string { return "" }, reload: in.reload, reopen: in.reopen}
	go func() {
		defer close(in.exited)
		in.runErr = run(ctx, args, env)
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

// waitForCertificate waits until the HTTPS Listener serves a certificate for
// name that verifies against the CA's roots.
func waitForCertificate(t *testing.T, in *instance, ca *pebbletest.CA, name string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		conn, err := tls.Dial("tcp", in.https, &tls.Config{ServerName: name, RootCAs: ca.IssuerRoots()})
		if err == nil {
			conn.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no certificate for %s within %s: %v\n%s", name, timeout, err, in.stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// adminClient calls a running gatehouse's admin endpoint.
type adminClient struct {
	t    *testing.T
	base string
}

func (a adminClient) do(method, path, contentType, body string, header ...string) (int, string) {
	a.t.Helper()
	req, err := http.NewRequest(method, a.base+path, strings.NewReader(body))
	if err != nil {
		a.t.Fatal(err)
	}
	if body == "" {
		req.Body, req.ContentLength = nil, 0
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (a adminClient) certs() map[string]tlsmgr.CertificateInfo {
	a.t.Helper()
	status, body := a.do("GET", "/certs", "", "")
	if status != 200 {
		a.t.Fatalf("GET /certs: %d %s", status, body)
	}
	var list []tlsmgr.CertificateInfo
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		a.t.Fatalf("GET /certs: %v in %s", err, body)
	}
	byName := map[string]tlsmgr.CertificateInfo{}
	for _, c := range list {
		if len(c.Names) > 0 && c.Status != tlsmgr.StatusRetired {
			byName[c.Names[0]] = c
		}
	}
	return byName
}

// grepLines returns the lines of s starting with prefix.
func grepLines(s, prefix string) string {
	var out []string
	for line := range strings.SplitSeq(s, "\n") {
		if strings.HasPrefix(line, prefix) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
