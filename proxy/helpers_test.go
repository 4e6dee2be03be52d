package proxy

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/websocket"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// seen is what an echo backend reports about the request it received.
type seen struct {
	Backend    string
	Method     string
	Host       string
	Path       string
	RawPath    string
	Query      string
	ProtoMajor int
	Header     http.Header
	Body       string
}

// newEcho starts a backend that answers every request with a JSON [seen].
func newEcho(t *testing.T, name string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(echoHandler(name))
	t.Cleanup(srv.Close)
	return srv
}

func echoHandler(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(seen{
			Backend:    name,
			Method:     r.Method,
			Host:       r.Host,
			Path:       r.URL.Path,
			RawPath:    r.URL.RawPath,
			Query:      r.URL.RawQuery,
			ProtoMajor: r.ProtoMajor,
			Header:     r.Header,
			Body:       string(body),
		})
	})
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a logger.
// Each write is announced on written, for tests that wait for a line.
type syncBuffer struct {
	mu      sync.Mutex // guards buf
	buf     bytes.Buffer
	written chan struct{}
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{written: make(chan struct{}, 1)} }

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case b.written <- struct{}{}:
	default:
	}
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lines decodes the JSON log lines written so far.
func (b *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(b.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("decoding log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// frontend is a real TLS server (HTTP/2 enabled) running a Handler.
type frontend struct {
	srv     *httptest.Server
	handler *Handler
	log     *syncBuffer
	opts    Options
}

// newFrontend compiles cfg and serves it over TLS.
func newFrontend(t *testing.T, cfg *config.Config) *frontend {
	t.Helper()
	return newFrontendClock(t, cfg, nil)
}

// newFrontendClock is newFrontend whose Tables run on clock (cooldowns,
// ejections, latency and health check times); nil is the real one.
func newFrontendClock(t *testing.T, cfg *config.Config, clock *fakeClock) *frontend {
	t.Helper()
	log := newSyncBuffer()
	logger := slog.New(slog.NewJSONHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ts := NewTransports()
	t.Cleanup(ts.Close)
	opts := Options{Logger: logger, Transports: ts}
	if clock != nil {
		opts.clock = clock
	}
	table, err := Compile(cfg, opts)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	h := NewHandler(table, logger)
	srv := httptest.NewUnstartedServer(h)
	srv.EnableHTTP2 = true
	srv.Config.ErrorLog = slog.NewLogLogger(logger.Handler(), slog.LevelError)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return &frontend{srv: srv, handler: h, log: log, opts: opts}
}

// compile builds a Table with the frontend's options, for Swap.
func (f *frontend) compile(t *testing.T, cfg *config.Config) *Table {
	t.Helper()
	table, err := Compile(cfg, f.opts)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return table
}

// client returns a client for the frontend speaking HTTP/2 and sending sni
// as TLS server name ("" sends none, as for an IP address).
func (f *frontend) client(sni string) *http.Client {
	c := f.srv.Client()
	tr := c.Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.ServerName = sni
	return &http.Client{Transport: tr, CheckRedirect: noRedirect}
}

// client1 returns a client that speaks HTTP/1.1 only, which may send
// hop-by-hop and Upgrade headers.
func (f *frontend) client1() *http.Client {
	c := f.srv.Client()
	tr := c.Transport.(*http.Transport).Clone()
	tr.ForceAttemptHTTP2 = false
	tr.Protocols = new(http.Protocols)
	tr.Protocols.SetHTTP1(true)
	tr.TLSClientConfig.NextProtos = nil
	return &http.Client{Transport: tr, CheckRedirect: noRedirect}
}

func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// request builds a request to the frontend for host and a raw request
// target (kept verbatim, so "/a/../b" and "%2e%2e" reach the server).
func (f *frontend) request(t *testing.T, method, host, target string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, f.srv.URL+target, body)
	if err != nil {
		t.Fatalf("NewRequest: %v", err)
	}
	req.Host = host
	return req
}

// get sends a GET for host and target over HTTP/2, with host as TLS server
// name as a browser would, and returns the status and body.
func (f *frontend) get(t *testing.T, host, target string) (int, string) {
	t.Helper()
	res, body := f.getRes(t, host, target)
	return res.StatusCode, body
}

// getRes is get for tests that look at the headers too: it returns the
// response, its body read.
func (f *frontend) getRes(t *testing.T, host, target string) (*http.Response, string) {
	t.Helper()
	sni, _, err := net.SplitHostPort(host)
	if err != nil {
		sni = host
	}
	if _, err := netip.ParseAddr(sni); err == nil {
		sni = ""
	}
	return doRes(t, f.client(sni), f.request(t, http.MethodGet, host, target, nil))
}

// do sends req and returns the status and body.
func do(t *testing.T, c *http.Client, req *http.Request) (int, string) {
	t.Helper()
	res, body := doRes(t, c, req)
	return res.StatusCode, body
}

// doRes sends req and returns the response, its body read.
func doRes(t *testing.T, c *http.Client, req *http.Request) (*http.Response, string) {
	t.Helper()
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return res, string(body)
}

// decodeSeen decodes an echo backend's answer.
func decodeSeen(t *testing.T, body string) seen {
	t.Helper()
	var s seen
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatalf("decoding backend answer %q: %v", body, err)
	}
	return s
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening: %v", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// site is shorthand for a config.Site.
func cfgSite(hosts []string, routes ...config.Route) config.Site {
	return config.Site{Hosts: hosts, Routes: routes}
}

func respond(path, body string) config.Route {
	return config.Route{Path: path, Respond: &config.Respond{Status: 200, Body: body}}
}

func proxyTo(path string, upstreams ...string) config.Route {
	return config.Route{Path: path, Upstreams: upstreams}
}

// tlsConfigFor returns a TLS client config trusting the frontend, for
// clients that dial themselves (WebSocket).
func (f *frontend) tlsConfig() *tls.Config {
	c := f.srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	c.NextProtos = nil
	return c
}

// wsEcho sends msg on ws and checks that an echoing backend sends it back.
func wsEcho(t *testing.T, ws *websocket.Conn, msg string) {
	t.Helper()
	if err := websocket.Message.Send(ws, msg); err != nil {
		t.Fatalf("sending: %v", err)
	}
	var got string
	if err := websocket.Message.Receive(ws, &got); err != nil {
		t.Fatalf("receiving: %v", err)
	}
	if got != msg {
		t.Errorf("echo = %q, want %q", got, msg)
	}
}

// fakeClock is a clock a test moves by hand. It starts at the real time,
// so the instants it gives compare sensibly with the real clock's.
type fakeClock struct {
	mu sync.Mutex // guards t
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Now()} }

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
