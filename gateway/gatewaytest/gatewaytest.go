// Package gatewaytest runs a gatehouse in-process for tests, on real
// Listeners with a real config file: the harness of the gateway and
// cmd/gatehouse tests. How the gatehouse is started is the caller's (a
// Gateway directly, or the CLI), through a [RunFunc]; the package imports
// neither, so both may use it.
package gatewaytest

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
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/tlsmgr"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr/pebbletest"
)

// SyncBuffer is a log sink the test reads while gatehouse writes to it.
type SyncBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// FreePort returns a loopback port nothing listens on right now, from
// outside the ephemeral range, so nothing else is given it before
// gatehouse binds it (see [pebbletest.FreePort]).
func FreePort(t *testing.T) int {
	t.Helper()
	return pebbletest.FreePort(t)
}

// Ports are the Listener ports a test config uses.
type Ports struct{ HTTP, HTTPS, Admin int }

// NewPorts picks three free ports.
func NewPorts(t *testing.T) Ports {
	return Ports{HTTP: FreePort(t), HTTPS: FreePort(t), Admin: FreePort(t)}
}

// Env is what a [RunFunc] gives the gatehouse it runs.
type Env struct {
	Stdout, Stderr io.Writer
	// Reload delivers SIGHUP, Reopen SIGUSR1.
	Reload, Reopen <-chan os.Signal
}

// RunFunc runs a gatehouse on the config file at cfgPath until ctx is
// done, as `gatehouse run -config cfgPath` does.
type RunFunc func(ctx context.Context, cfgPath string, env Env) error

// Instance is a gatehouse started in-process by a test.
type Instance struct {
	T      *testing.T
	Stdout *SyncBuffer
	Stderr *SyncBuffer
	Reload chan os.Signal // SIGHUP
	Reopen chan os.Signal // SIGUSR1
	// HTTPS and HTTP are the host:port of the Listeners.
	HTTPS, HTTP string
	Storage     string
	CfgPath     string

	cancel   context.CancelFunc
	stopOnce sync.Once
	// exited is closed once run has returned and runErr holds its result.
	// The start-up wait and Stop both look at it: a result sent once on a
	// channel was taken by the start-up wait when gatehouse exited early,
	// and Stop then waited its full 30s for a second one.
	exited chan struct{}
	runErr error
}

// WriteConfig writes a config to path, substituting {{HTTP}}, {{HTTPS}},
// {{ADMIN}} and {{STORAGE}}.
func WriteConfig(t *testing.T, path string, p Ports, storage, body string) {
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

// Start writes body as the config of a fresh directory and runs gatehouse
// on it with run; see [StartFile].
func Start(t *testing.T, p Ports, body string, run RunFunc) *Instance {
	t.Helper()
	dir := t.TempDir()
	storage := filepath.Join(dir, "storage")
	cfgPath := filepath.Join(dir, "gatehouse.yaml")
	WriteConfig(t, cfgPath, p, storage, body)
	return StartFile(t, p, storage, cfgPath, run)
}

// StartFile runs gatehouse on the config at cfgPath with run and waits
// until the HTTPS Listener completes a handshake for localhost. The test's
// end stops it.
func StartFile(t *testing.T, p Ports, storage, cfgPath string, run RunFunc) *Instance {
	t.Helper()
	return StartFileOn(t, "127.0.0.1", p, storage, cfgPath, run)
}

// StartFileOn is [StartFile] for a config whose Listeners are on the
// loopback address host rather than 127.0.0.1, so several instances of a
// fleet each have their own address and the same ports, as on separate
// machines.
func StartFileOn(t *testing.T, host string, p Ports, storage, cfgPath string, run RunFunc) *Instance {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	in := &Instance{
		T: t, Stdout: &SyncBuffer{}, Stderr: &SyncBuffer{}, Reload: make(chan os.Signal, 1), Reopen: make(chan os.Signal, 1),
		cancel: cancel, exited: make(chan struct{}),
		HTTPS:   net.JoinHostPort(host, fmt.Sprint(p.HTTPS)),
		HTTP:    net.JoinHostPort(host, fmt.Sprint(p.HTTP)),
		Storage: storage, CfgPath: cfgPath,
	}
	env := Env{Stdout: in.Stdout, Stderr: in.Stderr, Reload: in.Reload, Reopen: in.Reopen}
	go func() {
		defer close(in.exited)
		in.runErr = run(ctx, cfgPath, env)
	}()
	t.Cleanup(func() { in.Stop() })
	// The probe is bounded: when gatehouse could not bind its port, what
	// holds the port may accept and never answer, and the loop must get
	// back to noticing the early exit.
	probe := &net.Dialer{Timeout: 2 * time.Second}
	WaitFor(t, 10*time.Second, func() bool {
		select {
		case <-in.exited:
			t.Fatalf("gatehouse exited early: %v\n%s", in.runErr, in.Stderr)
		default:
		}
		// A handshake, not just a connect: the Listener is bound before
		// the local CA exists, and the test reads that CA's root next.
		c, err := tls.DialWithDialer(probe, "tcp", in.HTTPS, &tls.Config{ServerName: "localhost", InsecureSkipVerify: true})
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return in
}

// StartStuckOrder starts a Pebble that validates against a port that
// accepts and never answers, then gatehouse on the config format fills in
// with the CA's directory URL and root file, then args. It returns once
// Pebble has begun validating gatehouse's order, which then stays pending
// until Pebble's 15s validation timeout; the CA tells a test whether it
// still is.
func StartStuckOrder(t *testing.T, p Ports, run RunFunc, format string, args ...any) (*Instance, *pebbletest.CA) {
	t.Helper()
	silent, validating := pebbletest.SilentPort(t)
	ca := pebbletest.Start(t, pebbletest.Options{HTTPPort: silent, TLSPort: silent})
	in := Start(t, p, fmt.Sprintf(format, append([]any{ca.DirectoryURL(), ca.ClientRootFile()}, args...)...), run)
	select {
	case <-validating:
	case <-time.After(20 * time.Second):
		t.Fatalf("Pebble never began validating the order\n%s", in.Stderr)
	}
	return in, ca
}

// Stop cancels the instance's context, as SIGTERM does, and returns what
// run returned.
func (in *Instance) Stop() error {
	var err error
	in.stopOnce.Do(func() {
		in.cancel()
		select {
		case <-in.exited:
			err = in.runErr
		case <-time.After(30 * time.Second):
			in.T.Errorf("gatehouse did not stop within 30s\n%s", in.Stderr)
		}
	})
	return err
}

// Client trusts the instance's local CA and dials every name to its HTTPS
// Listener.
func (in *Instance) Client(t *testing.T) *http.Client {
	t.Helper()
	return ClientFor(in.HTTPS, in.LocalRoots(t))
}

// LocalRoots returns a pool holding the instance's local CA root.
func (in *Instance) LocalRoots(t *testing.T) *x509.CertPool {
	t.Helper()
	pemBytes, _, err := tlsmgr.LocalRoot(t.Context(), in.Storage)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pemBytes) {
		t.Fatal("local root: no certificate in PEM")
	}
	return roots
}

// ClientFor trusts roots and dials every name to addr; it does not follow
// redirects.
func ClientFor(addr string, roots *x509.CertPool) *http.Client {
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

// Get fetches url and returns status and body.
func Get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// NewAppUpstream starts an Upstream that answers "app saw <Host>", so a
// test sees which name its request reached gatehouse by.
func NewAppUpstream(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "app saw %s", r.Host)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// WaitFor polls cond until it holds or the timeout passes.
func WaitFor(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WaitForCertificate waits until the HTTPS Listener serves a certificate
// for name that verifies against the CA's roots.
func WaitForCertificate(t *testing.T, in *Instance, ca *pebbletest.CA, name string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		conn, err := tls.Dial("tcp", in.HTTPS, &tls.Config{ServerName: name, RootCAs: ca.IssuerRoots()})
		if err == nil {
			conn.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no certificate for %s within %s: %v\n%s", name, timeout, err, in.Stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// AdminACMEConfig has the admin endpoint on, a local CA Site for localhost
// and an ACME Site answering "app" for the hosts of its third verb. The
// first two are the CA's directory URL and root file.
const AdminACMEConfig = `listen: {http: "127.0.0.1:{{HTTP}}", https: "127.0.0.1:{{HTTPS}}"}
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

// TwoCAConfig is a config with the admin endpoint on, a local CA Site for
// localhost and an ACME Site answering "app" for hosts (comma-separated),
// whose issuers are a, then b: the config of a migration from a to b.
// Both CAs validate on the HTTP and HTTPS ports of p.
func TwoCAConfig(t *testing.T, p Ports, hosts string) (config string, a, b *pebbletest.CA) {
	t.Helper()
	a = pebbletest.Start(t, pebbletest.Options{HTTPPort: p.HTTP, TLSPort: p.HTTPS})
	b = pebbletest.Start(t, pebbletest.Options{HTTPPort: p.HTTP, TLSPort: p.HTTPS})
	return fmt.Sprintf(`listen: {http: "127.0.0.1:{{HTTP}}", https: "127.0.0.1:{{HTTPS}}"}
admin: "127.0.0.1:{{ADMIN}}"
storage: {{STORAGE}}
acme:
  issuers:
    # the CA in trouble
    - ca: %s
      ca_root: %s
    - ca: %s
      ca_root: %s
      limits: {orders_per_3_hours: 1800} # a default migration pace of 5/min
sites:
  - hosts: [localhost]
    routes: [{respond: {body: local}}]
  - hosts: [%s]
    routes: [{respond: {body: app}}]
`, a.DirectoryURL(), a.ClientRootFile(), b.DirectoryURL(), b.ClientRootFile(), hosts), a, b
}

// AdminClient talks to an instance's admin endpoint over plain HTTP, the
// wire format as a script would see it.
type AdminClient struct {
	T    *testing.T
	Base string // http://127.0.0.1:PORT
}

// Do sends a request with an optional body and header pairs and returns
// the status and body.
func (a AdminClient) Do(method, path, contentType, body string, header ...string) (int, string) {
	a.T.Helper()
	req, err := http.NewRequest(method, a.Base+path, strings.NewReader(body))
	if err != nil {
		a.T.Fatal(err)
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
		a.T.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Certs returns the inventory by first name, retired Certificates left
// out.
func (a AdminClient) Certs() map[string]tlsmgr.CertificateInfo {
	a.T.Helper()
	status, body := a.Do("GET", "/certs", "", "")
	if status != 200 {
		a.T.Fatalf("GET /certs: %d %s", status, body)
	}
	var list []tlsmgr.CertificateInfo
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		a.T.Fatalf("GET /certs: %v in %s", err, body)
	}
	byName := map[string]tlsmgr.CertificateInfo{}
	for _, c := range list {
		if len(c.Names) > 0 && c.Status != tlsmgr.StatusRetired {
			byName[c.Names[0]] = c
		}
	}
	return byName
}

// GrepLines returns the lines of s starting with prefix.
func GrepLines(s, prefix string) string {
	var out []string
	for line := range strings.SplitSeq(s, "\n") {
		if strings.HasPrefix(line, prefix) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// Load is requests sent without pause by several clients until Stop, each
// answer expected to be 200: the traffic a reload must not disturb.
type Load struct {
	stop           chan struct{}
	wg             sync.WaitGroup
	failures, runs atomic.Int64
	first          atomic.Value // the first failure, as text
}

// StartLoad sends GET requests to urls with c: workers goroutines for each.
func StartLoad(c *http.Client, workers int, urls ...string) *Load {
	l := &Load{stop: make(chan struct{})}
	for _, url := range urls {
		for range workers {
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				for {
					select {
					case <-l.stop:
						return
					default:
					}
					l.runs.Add(1)
					resp, err := c.Get(url)
					if err != nil {
						l.failures.Add(1)
						l.first.CompareAndSwap(nil, err.Error())
						continue
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						l.failures.Add(1)
						l.first.CompareAndSwap(nil, url+": "+resp.Status)
					}
				}
			}()
		}
	}
	return l
}

// Stop ends the load and reports the failed requests, all requests, and
// the first failure ("" when none).
func (l *Load) Stop() (failures, total int64, first string) {
	close(l.stop)
	l.wg.Wait()
	first, _ = l.first.Load().(string)
	return l.failures.Load(), l.runs.Load(), first
}

// Balancer is a TCP load balancer in front of a fleet, as a CA or a
// client sees it: it takes the connections to 127.0.0.1 on its ports and
// hands each to the next host in turn, on the same port. The three
// validations Pebble makes of each challenge (all of which must pass)
// thus reach instances other than the one that ordered.
type Balancer struct {
	// served counts the connections handed to each host.
	served []atomic.Int64
	next   atomic.Int64
}

// StartBalancer listens on 127.0.0.1 at each of ports and forwards to
// hosts; the test's end stops it.
func StartBalancer(t testing.TB, ports []int, hosts []string) *Balancer {
	t.Helper()
	b := &Balancer{served: make([]atomic.Int64, len(hosts))}
	var wg sync.WaitGroup
	var lns []net.Listener
	t.Cleanup(func() {
		for _, ln := range lns {
			ln.Close()
		}
		wg.Wait()
	})
	for _, port := range ports {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		wg.Go(func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				i := int(b.next.Add(1)-1) % len(hosts)
				b.served[i].Add(1)
				wg.Go(func() { Pipe(c, net.JoinHostPort(hosts[i], fmt.Sprint(port))) })
			}
		})
	}
	return b
}

// Served returns how many connections went to host i.
func (b *Balancer) Served(i int) int64 { return b.served[i].Load() }

// Pipe copies between c and a new connection to addr until either ends,
// then closes both.
func Pipe(c net.Conn, addr string) {
	defer c.Close()
	up, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done
	_ = c.SetDeadline(time.Now())
	_ = up.SetDeadline(time.Now())
	<-done
}
