package docker_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/gatehouse-proxy/gatehouse/gateway"
	"github.com/gatehouse-proxy/gatehouse/gateway/docker"
	"github.com/gatehouse-proxy/gatehouse/gateway/dockertest"
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

// recorder is a reverse proxy between gatehouse and the engine's socket
// that records every request's method and path, as a socket proxy would
// see them.
type recorder struct {
	socket string
	mu     sync.Mutex // guards seen and api
	seen   []string   // "GET /v1.41/events"
	api    string     // the Api-Version the engine announced on /_ping
}

func newRecorder(t *testing.T, engine string) *recorder {
	t.Helper()
	dir, err := os.MkdirTemp("", "recorder")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	r := &recorder{socket: filepath.Join(dir, "proxy.sock")}
	ln, err := net.Listen("unix", r.socket)
	if err != nil {
		t.Fatal(err)
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(&url.URL{Scheme: "http", Host: "engine"}) },
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", engine)
		}},
		ModifyResponse: func(resp *http.Response) error {
			if v := resp.Header.Get("Api-Version"); v != "" && resp.Request.URL.Path == "/_ping" {
				r.mu.Lock()
				r.api = v
				r.mu.Unlock()
			}
			return nil
		},
		FlushInterval: -1, // the event stream
		ErrorHandler:  func(w http.ResponseWriter, _ *http.Request, _ error) { w.WriteHeader(http.StatusBadGateway) },
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.seen = append(r.seen, req.Method+" "+req.URL.Path)
		r.mu.Unlock()
		rp.ServeHTTP(w, req)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return r
}

func (r *recorder) endpoint() string { return "unix://" + r.socket }

// requests returns every request seen so far.
func (r *recorder) requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.seen...)
}

// checkReadOnly fails t unless every request to the engine was a GET and
// the ones discovery needs were made.
func (r *recorder) checkReadOnly(t *testing.T) {
	t.Helper()
	seen := r.requests()
	for _, s := range seen {
		if !strings.HasPrefix(s, "GET ") {
			t.Errorf("gatehouse sent %s to the engine; it must only ever GET", s)
		}
	}
	r.mu.Lock()
	api := r.api
	r.mu.Unlock()
	// The API version is the engine's, never one pinned in gatehouse.
	for _, s := range seen {
		if path := strings.TrimPrefix(s, "GET "); path != "/_ping" && !strings.HasPrefix(path, "/v"+api+"/") {
			t.Errorf("gatehouse sent %s; want the version the engine announced (%s) as its prefix", s, api)
		}
	}
	all := strings.Join(seen, "\n")
	for _, want := range []string{"GET /_ping", "/containers/json", "/events"} {
		if !strings.Contains(all, want) {
			t.Errorf("no %s among the engine requests:\n%s", want, all)
		}
	}
}

// env is one test's engine, recorder and names.
type env struct {
	engine *dockertest.Engine
	rec    *recorder
	id     string // a random suffix, so hosts and names never meet another run's
}

func newEnv(t *testing.T) *env {
	t.Helper()
	// Each test has its own engine socket, names and hosts; most of their
	// time is spent waiting on podman, so they run side by side.
	t.Parallel()
	e := dockertest.Start(t)
	dockertest.Image(t)
	b := make([]byte, 4)
	rand.Read(b)
	en := &env{engine: e, rec: newRecorder(t, e.Socket()), id: hex.EncodeToString(b)}
	t.Cleanup(func() { en.rec.checkReadOnly(t) })
	return en
}

// name returns a container name, and host a host, unique to this run.
func (e *env) name(s string) string { return "gh-" + e.id + "-" + s }
func (e *env) host(s string) string { return s + "-" + e.id + ".localhost" }

// labels returns gatehouse labels routing host.
func labels(host string, kv ...string) map[string]string {
	m := map[string]string{"gatehouse.enable": "true", "gatehouse.host": host}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// instance is a gatehouse run in-process with the Docker Source.
type instance struct {
	g       *gateway.Gateway
	src     *docker.Source
	log     *syncBuffer
	https   string
	admin   string
	storage string
	cancel  context.CancelFunc
	done    chan struct{}
}

// gwConfig is the test config: a file Site for localhost, the admin
// endpoint, and docker pointed at the recorder. extra is more YAML.
const gwConfig = `listen: {http: "off", https: "127.0.0.1:%d"}
admin: "127.0.0.1:%d"
storage: %s
%s
docker:
  endpoint: %s
  allowed_hosts: ["*.localhost"%s]
%s
sites:
  - hosts: [localhost]
    routes:
      - {path: /, respond: {body: file}}
`

type options struct {
	storage      string // "" for a fresh one
	acme         string // YAML for the acme block, or ""
	allowedExtra string // more allowed_hosts entries, as `, "a.test"`
	endpoint     string // docker.endpoint; "" for the recorder's socket
	dockerExtra  string // more keys of the docker block, indented two spaces
	httpsPort    int    // the HTTPS Listener's port on 127.0.0.1; 0 for a free one
}

func startGatehouse(t *testing.T, e *env, o options) *instance {
	t.Helper()
	if o.storage == "" {
		o.storage = filepath.Join(t.TempDir(), "storage")
	}
	if o.endpoint == "" {
		o.endpoint = e.rec.endpoint()
	}
	if o.httpsPort == 0 {
		o.httpsPort = pebbletest.FreePort(t)
	}
	httpsPort, adminPort := o.httpsPort, pebbletest.FreePort(t)
	cfg, err := config.Parse("test.yaml", fmt.Appendf(nil, gwConfig, httpsPort, adminPort, o.storage, o.acme, o.endpoint, o.allowedExtra, o.dockerExtra))
	if err != nil {
		t.Fatal(err)
	}
	src, err := docker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	src.Linger = 400 * time.Millisecond
	in := &instance{src: src, log: &syncBuffer{}, https: fmt.Sprintf("127.0.0.1:%d", httpsPort), admin: fmt.Sprintf("127.0.0.1:%d", adminPort), storage: o.storage, done: make(chan struct{})}
	in.g, err = gateway.New(gateway.Options{Config: cfg, Sources: []gateway.Source{gateway.Static(cfg), src}, Log: in.log})
	if err != nil {
		t.Fatal(err)
	}
	src.Refused = func(string) { in.g.RefusedHost(src.Name()) }
	ctx, cancel := context.WithCancel(context.Background())
	in.cancel = cancel
	go func() {
		defer close(in.done)
		if err := in.g.Run(ctx); err != nil {
			t.Errorf("gateway: %v", err)
		}
	}()
	select {
	case <-in.g.Started():
	case <-in.done:
		t.Fatalf("gatehouse did not start\n%s", in.log)
	case <-time.After(20 * time.Second):
		t.Fatalf("gatehouse did not start within 20s\n%s", in.log)
	}
	t.Cleanup(in.stop)
	return in
}

func (in *instance) stop() {
	in.cancel()
	<-in.done
}

// client trusts the local CA and dials every name to the HTTPS Listener.
func (in *instance) client(t *testing.T) *http.Client {
	t.Helper()
	// The local CA exists once a first handshake made it.
	var pemBytes []byte
	waitFor(t, engineWait, "the local CA", func() bool {
		c, err := tls.Dial("tcp", in.https, &tls.Config{ServerName: "localhost", InsecureSkipVerify: true})
		if err != nil {
			return false
		}
		c.Close()
		pemBytes, _, err = tlsmgr.LocalRoot(t.Context(), in.storage)
		return err == nil
	})
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pemBytes)
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, in.https)
		},
	}}
}

// fetch is one GET through gatehouse: status, body and Retry-After.
func fetch(c *http.Client, url string) (int, string, string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), resp.Header.Get("Retry-After"), err
}

// waitStatus waits until GET url answers status with a body starting
// with prefix, and returns how long that took.
func waitStatus(t *testing.T, c *http.Client, url string, status int, prefix string, within time.Duration) {
	t.Helper()
	var last string
	waitFor(t, within, fmt.Sprintf("GET %s answering %d %q", url, status, prefix), func() bool {
		code, body, _, err := fetch(c, url)
		last = fmt.Sprintf("%d %q %v", code, body, err)
		return err == nil && code == status && strings.HasPrefix(body, prefix)
	}, func() string { return "last answer: " + last })
}

// waitGone waits until url is not routed: 404, or no certificate for its
// host.
func waitGone(t *testing.T, c *http.Client, url string, within time.Duration) {
	t.Helper()
	var last string
	waitFor(t, within, "GET "+url+" not routed", func() bool {
		code, body, _, err := fetch(c, url)
		last = fmt.Sprintf("%d %q %v", code, body, err)
		return err != nil && strings.Contains(err.Error(), "tls") || code == 404
	}, func() string { return "last answer: " + last })
}

// waitFor polls cond every 10ms until it holds, failing t after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool, more ...func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			msg := ""
			for _, m := range more {
				msg += "\n" + m()
			}
			t.Fatalf("waited %s for %s%s", timeout, what, msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// engineWait bounds each wait on a change that passes through the engine
// (a container run, an event, a restart). It is generous because CI runs
// these beside image builds on two cores; how fast a change is served is
// measured, as a ratio, in bench/dockerbench, never here.
const engineWait = 30 * time.Second

// load sends requests through c until stopped, one goroutine per URL it
// was given (a URL given twice gets two), each waiting gap between its
// requests, and counts those that fail (no answer, or not 200) and those
// that took over a second. Hold keeps new requests from starting, so a
// test's own count is not shared with the load.
type load struct {
	Hold           sync.RWMutex
	failures, slow atomic.Int32
	cancel         context.CancelFunc
	wg             sync.WaitGroup
	mu             sync.Mutex // guards first
	first          string
}

func startLoad(c *http.Client, gap time.Duration, urls ...string) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{cancel: cancel}
	for _, u := range urls {
		l.wg.Go(func() {
			for ctx.Err() == nil {
				l.Hold.RLock()
				start := time.Now()
				code, body, _, err := fetch(c, u)
				l.Hold.RUnlock()
				if err != nil || code != 200 {
					if l.failures.Add(1) == 1 {
						l.mu.Lock()
						l.first = fmt.Sprintf("%s: %d %q %v", u, code, body, err)
						l.mu.Unlock()
					}
				}
				if time.Since(start) > time.Second {
					l.slow.Add(1)
				}
				time.Sleep(gap)
			}
		})
	}
	return l
}

// stop ends the load and reports its failed requests, if any, as what
// describes the load's time ("while the pool changed").
func (l *load) stop(t *testing.T, what string) {
	t.Helper()
	l.cancel()
	l.wg.Wait()
	if n := l.failures.Load(); n > 0 {
		l.mu.Lock()
		defer l.mu.Unlock()
		t.Errorf("%d requests failed %s; first: %s", n, what, l.first)
	}
}
