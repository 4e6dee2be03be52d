package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// The tests in this file check what a user notices of gatehouse's
// connections to plain HTTP/1.1 Upstreams: reuse, recovery from a
// connection the Upstream closed, framing of bodiless and close-delimited
// answers, timeouts, and the Route's keepalive settings. They run real
// sockets end to end and look only at what the client and the origin see,
// so they hold whatever client sends the requests upstream. Origins that
// must misbehave speak HTTP/1.1 by hand on a TCP listener (rawOrigin).

// rawOrigin is an HTTP/1.1 origin served by hand, one serve call per
// accepted connection, for the answers net/http's server never sends.
type rawOrigin struct {
	ln net.Listener
	// url is the Upstream URL to configure.
	url string
	// accepted counts the connections gatehouse opened.
	accepted atomic.Int32
	// eof receives a connection's number when awaitEOF finds that
	// gatehouse closed it.
	eof chan int
	// done is closed when the test ends, to release serve calls waiting
	// for the test.
	done chan struct{}
	wg   sync.WaitGroup // counts the accept loop and the serve calls

	mu     sync.Mutex // guards conns and closed
	conns  []net.Conn
	closed bool
}

// rawConn is one connection of a rawOrigin.
type rawConn struct {
	origin *rawOrigin
	n      int // 1 for the first connection accepted
	nc     net.Conn
	br     *bufio.Reader
}

// newRawOrigin starts an origin on a loopback port running serve for each
// connection, which it closes when serve returns. Everything stops with
// the test.
func newRawOrigin(t *testing.T, serve func(c *rawConn)) *rawOrigin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening: %v", err)
	}
	o := &rawOrigin{ln: ln, url: "http://" + ln.Addr().String(), eof: make(chan int, 64), done: make(chan struct{})}
	o.wg.Go(func() { o.accept(serve) })
	t.Cleanup(o.close)
	return o
}

func (o *rawOrigin) accept(serve func(c *rawConn)) {
	for {
		nc, err := o.ln.Accept()
		if err != nil {
			return
		}
		o.mu.Lock()
		if o.closed {
			o.mu.Unlock()
			nc.Close()
			return
		}
		o.conns = append(o.conns, nc)
		o.mu.Unlock()
		c := &rawConn{origin: o, n: int(o.accepted.Add(1)), nc: nc, br: bufio.NewReader(nc)}
		o.wg.Go(func() {
			defer nc.Close()
			serve(c)
		})
	}
}

func (o *rawOrigin) close() {
	close(o.done)
	o.ln.Close()
	o.mu.Lock()
	o.closed = true
	for _, nc := range o.conns {
		nc.Close()
	}
	o.mu.Unlock()
	o.wg.Wait()
}

// next reads the next request on c and its body.
func (c *rawConn) next() (*http.Request, string, error) {
	req, err := http.ReadRequest(c.br)
	if err != nil {
		return nil, "", err
	}
	body, err := io.ReadAll(req.Body)
	return req, string(body), err
}

func (c *rawConn) write(s string) error {
	_, err := io.WriteString(c.nc, s)
	return err
}

// serveAll answers every request on c with respond, until gatehouse
// closes the connection.
func (c *rawConn) serveAll(respond func(req *http.Request, body string) string) {
	for {
		req, body, err := c.next()
		if err != nil || c.write(respond(req, body)) != nil {
			return
		}
	}
}

// answerOne answers the next request with ok and reports whether it could.
func (c *rawConn) answerOne() bool {
	req, body, err := c.next()
	return err == nil && c.write(c.ok(req, body)) == nil
}

// ok answers 200 naming the connection, in an X-Conn header and in the
// body ("conn 2"); to a HEAD it announces the body's length only.
func (c *rawConn) ok(req *http.Request, _ string) string {
	body := fmt.Sprintf("conn %d", c.n)
	head := fmt.Sprintf("HTTP/1.1 200 OK\r\nX-Conn: %d\r\nContent-Length: %d\r\n\r\n", c.n, len(body))
	if req.Method == http.MethodHead {
		return head
	}
	return head + body
}

// awaitEOF reads until gatehouse closes c, then sends c's number on the
// origin's eof channel. It returns the bytes that came meanwhile: requests
// gatehouse should not have sent on this connection.
func (c *rawConn) awaitEOF() int64 {
	n, _ := io.Copy(io.Discard, c.br)
	select {
	case <-c.origin.done: // the test's end closed it, not gatehouse
	case c.origin.eof <- c.n:
	}
	return n
}

// waitDone blocks until ch is closed or the test ends, and reports which.
func (c *rawConn) waitDone(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	case <-c.origin.done:
		return false
	}
}

// rawResponse is an HTTP/1.1 answer with a Content-Length body.
func rawResponse(code int, body string, headers ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\n", code, http.StatusText(code))
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(body), body)
	return b.String()
}

// onH1Written sets fn to run on every plain HTTP/1.1 Upstream connection
// of f once a request is written, before its answer is read. It must be
// called before f serves a request.
func (f *frontend) onH1Written(fn func(ctx context.Context, nc net.Conn)) {
	ts := f.opts.Transports
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for _, p := range ts.h1 {
		p.written = fn
	}
}

// countedOrigin starts a net/http origin running h on ln (a loopback TCP
// port when nil) that counts the connections it accepts and sees closed.
func countedOrigin(t *testing.T, ln net.Listener, h http.Handler) (*httptest.Server, *connCounter) {
	t.Helper()
	cc := new(connCounter)
	srv := httptest.NewUnstartedServer(h)
	if ln != nil {
		srv.Listener.Close()
		srv.Listener = ln
	}
	srv.Config.ConnState = cc.track
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, cc
}

// listenUnix listens on a new unix socket, removed with the test, and
// returns the listener and the socket's path. The socket is not in
// t.TempDir: its path must stay under about 100 bytes.
func listenUnix(t *testing.T) (net.Listener, string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "gh-sock")
	if err != nil {
		t.Fatalf("creating the socket's directory: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "app.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatalf("listening: %v", err)
	}
	return ln, sock
}

// pathHandler answers 200 with the request's path.
var pathHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	_, _ = io.WriteString(w, r.URL.Path)
})

// barrier holds requests until n have arrived, so that they need n
// Upstream connections at once.
type barrier struct {
	n       int
	release chan struct{}

	mu      sync.Mutex // guards arrived
	arrived int
}

func newBarrier(n int) *barrier { return &barrier{n: n, release: make(chan struct{})} }

func (b *barrier) wait(ctx context.Context) {
	b.mu.Lock()
	b.arrived++
	if b.arrived == b.n {
		close(b.release)
	}
	b.mu.Unlock()
	select {
	case <-b.release:
	case <-ctx.Done():
	}
}

// heldRoute is a frontend proxying to a counted origin that holds each
// wave of requests until all of it arrived, so that a wave of n needs n
// Upstream connections at once.
type heldRoute struct {
	f       *frontend
	c       *http.Client
	cc      *connCounter
	current atomic.Pointer[barrier]
}

// newHeldRoute starts the origin and a frontend whose Route has keepalive
// ka (nil for the defaults).
func newHeldRoute(t *testing.T, ka *config.KeepAlive) *heldRoute {
	t.Helper()
	h := new(heldRoute)
	origin, cc := countedOrigin(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.current.Load().wait(r.Context())
		_, _ = io.WriteString(w, "ok")
	}))
	h.cc = cc
	h.f = newFrontend(t, proxyConfig(config.Route{Path: "/", Upstreams: []string{origin.URL}, KeepAlive: ka}))
	h.c = connClient(h.f)
	return h
}

// wave sends n GETs at once and returns the failures.
func (h *heldRoute) wave(t *testing.T, n int) error {
	t.Helper()
	h.current.Store(newBarrier(n))
	return getConcurrently(t, h.f, h.c, n, "/")
}

// connClient returns an HTTP/2 client of f that gives up after two
// seconds, so a proxy that hangs fails the test instead of stalling it.
func connClient(f *frontend) *http.Client {
	c := f.client(host)
	c.Timeout = 10 * time.Second
	return c
}

// through sends a bodiless request through f with c and returns the
// response, its body read.
func through(t *testing.T, f *frontend, c *http.Client, method, path string) (*http.Response, string) {
	t.Helper()
	return doRes(t, c, f.request(t, method, host, path, nil))
}

// getConcurrently sends n GETs for path through f at once and returns the
// failures: errors and answers other than 200.
func getConcurrently(t *testing.T, f *frontend, c *http.Client, n int, path string) error {
	t.Helper()
	reqs := make([]*http.Request, n)
	for i := range reqs {
		reqs[i] = f.request(t, http.MethodGet, host, path, nil)
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, req := range reqs {
		wg.Go(func() {
			res, err := c.Do(req)
			if err != nil {
				errs[i] = err
				return
			}
			defer res.Body.Close()
			if _, err := io.Copy(io.Discard, res.Body); err != nil {
				errs[i] = err
			} else if res.StatusCode != http.StatusOK {
				errs[i] = fmt.Errorf("status %v", res.Status)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// wantConn checks that res is rawConn.ok's answer from connection n.
func wantConn(t *testing.T, res *http.Response, body string, n int) {
	t.Helper()
	want := fmt.Sprintf("conn %d", n)
	if res.Request.Method == http.MethodHead {
		want = ""
	}
	if res.StatusCode != http.StatusOK || res.Header.Get("X-Conn") != strconv.Itoa(n) || body != want {
		t.Errorf("%s: got %v from connection %q with body %q, want 200 from connection %d",
			res.Request.Method, res.Status, res.Header.Get("X-Conn"), body, n)
	}
}

// within waits up to d for ch to deliver.
func within[T any](t *testing.T, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
	}
	t.Fatalf("waited %v in vain until %s", d, what)
	var zero T
	return zero
}

// numberedLines returns at least n bytes of numbered lines, so a lost,
// doubled or shifted piece shows.
func numberedLines(n int) string {
	var b strings.Builder
	b.Grow(n + 8)
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "%07d\n", i)
	}
	return b.String()
}

// gatehouseStacks returns the stacks of the goroutines a proxied request
// may leave behind: those running gatehouse code outside tests, or
// started by it, and those of an http.Transport connection.
func gatehouseStacks() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		lines := strings.Split(g, "\n")
		// After the "goroutine N [state]:" line come pairs of a function
		// (or "created by" it) and its file.
		for i := 1; i+1 < len(lines); i += 2 {
			fn := strings.TrimPrefix(lines[i], "created by ")
			file := strings.TrimSpace(lines[i+1])
			if strings.HasPrefix(fn, "net/http.(*persistConn)") ||
				strings.HasPrefix(fn, "github.com/gatehouse-proxy/gatehouse/proxy.") && !strings.Contains(file, "_test.go:") {
				out = append(out, g)
				break
			}
		}
	}
	return out
}

// TestUpstreamKeepAliveReuse checks that requests share Upstream
// connections: sequential ones one connection, concurrent ones no more
// than they need at once.
func TestUpstreamKeepAliveReuse(t *testing.T) {
	t.Parallel()
	t.Run("sequential", func(t *testing.T) {
		t.Parallel()
		origin, cc := countedOrigin(t, nil, pathHandler)
		f := newFrontend(t, proxyConfig(proxyTo("/", origin.URL)))
		c := connClient(f)
		for i := range 50 {
			path := fmt.Sprintf("/%d", i)
			if res, body := through(t, f, c, http.MethodGet, path); res.StatusCode != http.StatusOK || body != path {
				t.Fatalf("GET %s: got %v %q, want 200 %q", path, res.Status, body, path)
			}
		}
		if opened, _ := cc.get(); opened != 1 {
			t.Errorf("50 sequential GETs opened %d Upstream connections, want 1", opened)
		}
	})
	t.Run("concurrent waves", func(t *testing.T) {
		t.Parallel()
		const waves, width = 20, 8
		// Each wave needs width connections at once; the next one finds
		// them idle.
		h := newHeldRoute(t, nil)
		for i := range waves {
			if err := h.wave(t, width); err != nil {
				t.Fatalf("wave %d: %v", i, err)
			}
		}
		if opened, _ := h.cc.get(); opened < width || opened > 2*width {
			t.Errorf("%d waves of %d concurrent GETs opened %d Upstream connections, want %d to %d",
				waves, width, opened, width, 2*width)
		}
	})
}

// TestUpstreamStaleConnection checks what happens when the Upstream closes
// a kept-alive connection: a GET or HEAD is sent again on a new connection
// and the client never knows, but a POST is never sent twice.
func TestUpstreamStaleConnection(t *testing.T) {
	t.Parallel()
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		// The origin closes the connection while it sits idle in
		// gatehouse's pool, as at the end of its keep-alive timeout.
		t.Run("closed while idle/"+method, func(t *testing.T) {
			t.Parallel()
			closeIdle, closed := make(chan struct{}), make(chan struct{})
			origin := newRawOrigin(t, func(c *rawConn) {
				if c.n > 1 {
					c.serveAll(c.ok)
					return
				}
				if !c.answerOne() || !c.waitDone(closeIdle) {
					return
				}
				c.nc.Close()
				close(closed)
			})
			f := newFrontend(t, proxyConfig(proxyTo("/", origin.url)))
			c := connClient(f)
			res, body := through(t, f, c, method, "/")
			wantConn(t, res, body, 1)
			close(closeIdle)
			within(t, closed, 5*time.Second, "the origin closed its idle connection")
			res, body = through(t, f, c, method, "/")
			wantConn(t, res, body, 2)
		})
		// The origin closes the connection upon reading the next request,
		// without answering: the keep-alive race, where the request was
		// already on its way when the origin gave up on the connection.
		t.Run("closed on the next request/"+method, func(t *testing.T) {
			t.Parallel()
			var dropped atomic.Int32
			origin := newRawOrigin(t, func(c *rawConn) {
				if !c.answerOne() {
					return
				}
				if _, _, err := c.next(); err == nil {
					dropped.Add(1)
				}
			})
			f := newFrontend(t, proxyConfig(proxyTo("/", origin.url)))
			c := connClient(f)
			res, body := through(t, f, c, method, "/")
			wantConn(t, res, body, 1)
			res, body = through(t, f, c, method, "/")
			wantConn(t, res, body, 2)
			if n := dropped.Load(); n != 1 {
				t.Errorf("the origin dropped %d requests, want 1 (the test is broken)", n)
			}
		})
	}
	t.Run("POST is not sent twice", func(t *testing.T) {
		t.Parallel()
		var mu sync.Mutex // guards received
		received := map[string]int{}
		origin := newRawOrigin(t, func(c *rawConn) {
			for i := 0; ; i++ {
				req, body, err := c.next()
				if err != nil {
					return
				}
				mu.Lock()
				received[req.Method+" "+body]++
				mu.Unlock()
				// Each connection answers its first request only.
				if i > 0 || c.write(c.ok(req, body)) != nil {
					return
				}
			}
		})
		f := newFrontend(t, proxyConfig(proxyTo("/", origin.url)))
		c := connClient(f)
		post := func(body string) *http.Response {
			res, _ := doRes(t, c, f.request(t, http.MethodPost, host, "/", strings.NewReader(body)))
			return res
		}
		if res := post("one"); res.StatusCode != http.StatusOK {
			t.Fatalf("first POST: got %v, want 200", res.Status)
		}
		// The second POST goes on the connection the first one left idle,
		// which the origin closes once it has read it.
		if res := post("two"); res.StatusCode != http.StatusBadGateway {
			t.Errorf("POST the origin read and dropped: got %v, want 502", res.Status)
		}
		mu.Lock()
		defer mu.Unlock()
		if n := received["POST two"]; n != 1 {
			t.Errorf("the origin received the dropped POST %d times, want once (received %v)", n, received)
		}
	})
}

// TestUpstreamBodilessAnswersKeepConnection interleaves answers that carry
// no body whatever their headers say (HEAD, 204, 304) with GETs and
// OPTIONS: all of them go over one Upstream connection.
func TestUpstreamBodilessAnswersKeepConnection(t *testing.T) {
	t.Parallel()
	origin := newRawOrigin(t, func(c *rawConn) {
		c.serveAll(func(req *http.Request, _ string) string {
			switch req.URL.Path {
			case "/head":
				// The length of the body a GET would get; none follows.
				return "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1234\r\n\r\n"
			case "/no-content":
				return "HTTP/1.1 204 No Content\r\n\r\n"
			case "/not-modified":
				// RFC 9110, section 8.6 allows the Content-Length of the
				// 200 this stands for; no body follows either.
				return "HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 1234\r\n\r\n"
			case "/options":
				return "HTTP/1.1 200 OK\r\nAllow: GET, HEAD, OPTIONS\r\nContent-Length: 0\r\n\r\n"
			}
			return rawResponse(http.StatusOK, "body of "+req.URL.Path)
		})
	})
	f := newFrontend(t, proxyConfig(proxyTo("/", origin.url)))
	// Over HTTP/1.1: Go's HTTP/2 client fails a 304 that announces a
	// length ("unexpected EOF"), whatever the Upstream connection does; a
	// plain httputil.ReverseProxy in front of this origin does the same.
	c := f.client1()
	c.Timeout = 10 * time.Second
	steps := []struct {
		method, path string
		code         int
		body         string
	}{
		{http.MethodHead, "/head", http.StatusOK, ""},
		{http.MethodGet, "/a", http.StatusOK, "body of /a"},
		{http.MethodGet, "/no-content", http.StatusNoContent, ""},
		{http.MethodGet, "/not-modified", http.StatusNotModified, ""},
		{http.MethodOptions, "/options", http.StatusOK, ""},
	}
	for i := range 20 {
		s := steps[i%len(steps)]
		req := f.request(t, s.method, host, s.path, nil)
		if s.code == http.StatusNotModified {
			req.Header.Set("If-None-Match", `"v1"`)
		}
		if res, body := doRes(t, c, req); res.StatusCode != s.code || body != s.body {
			t.Fatalf("request %d, %s %s: got %v %q, want %v %q", i, s.method, s.path, res.Status, body, s.code, s.body)
		}
	}
	if n := origin.accepted.Load(); n != 1 {
		t.Errorf("20 requests with bodiless answers opened %d Upstream connections, want 1", n)
	}
}

// TestUpstreamConnectionNotPersistent checks answers after which the
// Upstream connection may not carry another request: each request gets a
// complete answer on a connection of its own, and gatehouse closes the
// connections it may not reuse.
func TestUpstreamConnectionNotPersistent(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, head string }{
		{"Connection: close", "HTTP/1.1 200 OK\r\nConnection: close\r\n"},
		{"HTTP/1.0 without keep-alive", "HTTP/1.0 200 OK\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var extra atomic.Int64
			origin := newRawOrigin(t, func(c *rawConn) {
				if _, _, err := c.next(); err != nil {
					return
				}
				body := fmt.Sprintf("conn %d", c.n)
				if c.write(fmt.Sprintf("%sContent-Length: %d\r\n\r\n%s", tt.head, len(body), body)) != nil {
					return
				}
				// Left open: gatehouse must end the connection itself, and
				// whatever it sends on it is a request sent where the
				// origin said it would not read one.
				extra.Add(c.awaitEOF())
			})
			f := newFrontend(t, proxyConfig(proxyTo("/", origin.url)))
			c := connClient(f)
			for i := 1; i <= 3; i++ {
				if res, body := through(t, f, c, http.MethodGet, "/"); res.StatusCode != http.StatusOK || body != fmt.Sprintf("conn %d", i) {
					t.Fatalf("GET %d: got %v %q, want 200 \"conn %d\"", i, res.Status, body, i)
				}
			}
			for range 3 {
				within(t, origin.eof, 5*time.Second, "gatehouse closed every connection the origin would not reuse")
			}
			if n := extra.Load(); n != 0 {
				t.Errorf("gatehouse sent %d bytes on connections the origin declared closed, want none", n)
			}
		})
	}
	t.Run("body delimited by close", func(t *testing.T) {
		t.Parallel()
		want := numberedLines(256 << 10)
		origin := newRawOrigin(t, func(c *rawConn) {
			if _, _, err := c.next(); err == nil {
				// No Content-Length, no chunking: closing ends the body.
				_ = c.write("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + want)
			}
		})
		f := newFrontend(t, proxyConfig(proxyTo("/", origin.url)))
		c := connClient(f)
		for i := range 2 {
			if res, body := through(t, f, c, http.MethodGet, "/"); res.StatusCode != http.StatusOK || body != want {
				t.Fatalf("GET %d: got %v with %d bytes, want 200 with the %d bytes sent", i, res.Status, len(body), len(want))
			}
		}
		if n := origin.accepted.Load(); n != 2 {
			t.Errorf("2 close-delimited answers came over %d connections, want 2", n)
		}
	})
}

// TestUpstreamChunkedTrailers checks that a chunked answer reaches the
// client whole, trailers included, and leaves the connection reusable.
func TestUpstreamChunkedTrailers(t *testing.T) {
	t.Parallel()
	const answer = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n" +
		"5\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: abc\r\nX-Unannounced: late\r\n\r\n"
	for _, proto := range []string{"HTTP/1.1", "HTTP/2"} {
		t.Run(proto, func(t *testing.T) {
			t.Parallel()
			origin := newRawOrigin(t, func(c *rawConn) {
				c.serveAll(func(*http.Request, string) string { return answer })
			})
			f := newFrontend(t, proxyConfig(proxyTo("/", origin.url)))
			c := connClient(f)
			if proto == "HTTP/1.1" {
				c = f.client1()
				c.Timeout = 10 * time.Second
			}
			for i := range 2 {
				res, body := through(t, f, c, http.MethodGet, "/")
				if res.StatusCode != http.StatusOK || body != "hello world" {
					t.Fatalf("GET %d: got %v %q, want 200 \"hello world\"", i, res.Status, body)
				}
				for k, want := range map[string]string{"X-Checksum": "abc", "X-Unannounced": "late"} {
					if got := res.Trailer.Get(k); got != want {
						t.Errorf("GET %d: trailer %s = %q, want %q (trailers %v)", i, k, got, want, res.Trailer)
					}
				}
			}
			if n := origin.accepted.Load(); n != 1 {
				t.Errorf("2 chunked answers came over %d connections, want 1", n)
			}
		})
	}
}

// TestUpstreamResponseHeaderTimeout checks timeouts.response_header: an
// Upstream that never answers gets the client a 504 after about that long,
// and its connection is closed.
func TestUpstreamResponseHeaderTimeout(t *testing.T) {
	t.Parallel()
	const timeout = 250 * time.Millisecond
	origin := newRawOrigin(t, func(c *rawConn) {
		if _, _, err := c.next(); err == nil {
			c.awaitEOF()
		}
	})
	cfg := proxyConfig(proxyTo("/", origin.url))
	cfg.Timeouts.ResponseHeader = timeout
	f := newFrontend(t, cfg)
	start := time.Now()
	// The 504 itself shows the configured timeout at work: the default
	// (60 s) is past the client's patience (connClient).
	res, _ := through(t, f, connClient(f), http.MethodGet, "/")
	elapsed := time.Since(start)
	if res.StatusCode != http.StatusGatewayTimeout {
		t.Errorf("got %v, want 504", res.Status)
	}
	// A deadline never fires early.
	if elapsed < timeout {
		t.Errorf("the answer came after %v, before the timeout of %v", elapsed, timeout)
	}
	within(t, origin.eof, 5*time.Second, "gatehouse closed the connection it gave up on")
}

// TestUpstreamClientGoneClosesConnection checks that a client leaving
// while the Upstream thinks closes the Upstream connection at once, and
// that the request leaves nothing behind. It is not parallel: it counts
// the process's goroutines.
func TestUpstreamClientGoneClosesConnection(t *testing.T) {
	before := len(gatehouseStacks())
	arrived := make(chan struct{})
	origin := newRawOrigin(t, func(c *rawConn) {
		if _, _, err := c.next(); err != nil {
			return
		}
		if c.n == 1 {
			close(arrived)
		}
		c.awaitEOF()
	})
	f := newFrontend(t, proxyConfig(proxyTo("/", origin.url)))
	c := connClient(f)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req := f.request(t, http.MethodGet, host, "/", nil).WithContext(ctx)
	errc := make(chan error, 1)
	go func() {
		res, err := c.Do(req)
		if err == nil {
			res.Body.Close()
		}
		errc <- err
	}()
	within(t, arrived, 10*time.Second, "the request reached the origin")
	cancel()
	if err := within(t, errc, 10*time.Second, "the client gave up"); !errors.Is(err, context.Canceled) {
		t.Errorf("client error = %v, want context.Canceled", err)
	}
	if n := within(t, origin.eof, 5*time.Second, "gatehouse closed the Upstream connection"); n != 1 {
		t.Errorf("gatehouse closed connection %d, want 1", n)
	}
	waitFor(t, "no request counted in flight", func() bool { return status(t, f.handler, origin.url).InFlight == 0 })
	c.CloseIdleConnections()
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := gatehouseStacks()
		if len(left) <= before {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines of gatehouse before the request, %d a second after it ended:\n\n%s",
				before, len(left), strings.Join(left, "\n\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestUpstreamClientGoneAfterRequestWritten holds the exchange where a
// client that leaves used to be missed (issue 16): the request written,
// the client's leaving already applied to the connection, its answer not
// yet read. The Upstream connection must close at once, not after
// timeouts.response_header, and the access line must say 499.
func TestUpstreamClientGoneAfterRequestWritten(t *testing.T) {
	t.Parallel()
	origin := newRawOrigin(t, func(c *rawConn) {
		if _, _, err := c.next(); err == nil {
			c.awaitEOF()
		}
	})
	cfg := proxyConfig(proxyTo("/", origin.url))
	// A connection held until this timeout fails the wait below by far.
	cfg.Timeouts.ResponseHeader = time.Hour
	f := newFrontend(t, cfg)
	written := make(chan struct{})
	f.onH1Written(func(ctx context.Context, nc net.Conn) {
		close(written)
		select {
		case <-ctx.Done():
		case <-origin.done:
			return
		}
		// The client's leaving reaches the connection on a goroutine of
		// its own. The origin sends nothing, so this read returns once
		// that has happened, with the deadline it set.
		if _, err := nc.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("reading the connection of a client that left: %v, want %v", err, os.ErrDeadlineExceeded)
		}
	})
	c := connClient(f)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req := f.request(t, http.MethodGet, host, "/", nil).WithContext(ctx)
	errc := make(chan error, 1)
	go func() {
		res, err := c.Do(req)
		if err == nil {
			res.Body.Close()
		}
		errc <- err
	}()
	within(t, written, 10*time.Second, "gatehouse wrote the request")
	cancel()
	if err := within(t, errc, 10*time.Second, "the client gave up"); !errors.Is(err, context.Canceled) {
		t.Errorf("client error = %v, want context.Canceled", err)
	}
	if n := within(t, origin.eof, 10*time.Second, "gatehouse closed the Upstream connection"); n != 1 {
		t.Errorf("gatehouse closed connection %d, want 1", n)
	}
	for {
		if lines := accessLines(t, f); len(lines) > 0 {
			if lines[0]["status"] != float64(statusClientClosedRequest) {
				t.Errorf("access line status = %v, want 499", lines[0]["status"])
			}
			return
		}
		within(t, f.log.written, 10*time.Second, "the access line was written")
	}
}

// TestUpstreamOversizedResponseHeaders checks that an Upstream header
// block over the limit (max_response_header, 1 MiB by default) gets the
// client a 502 at once and costs the Upstream its connection, and that the
// Upstream's next, sane answer goes through.
func TestUpstreamOversizedResponseHeaders(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		limit config.ByteSize
		// oversized writes the first connection's answer.
		oversized func(c *rawConn)
	}{
		{"over max_response_header", 4 << 10, func(c *rawConn) {
			_ = c.write(rawResponse(http.StatusOK, "big", "X-Big: "+strings.Repeat("x", 8<<10)))
		}},
		{"over the default", 0, func(c *rawConn) {
			_ = c.write(rawResponse(http.StatusOK, "big", "X-Big: "+strings.Repeat("x", 1<<20+16<<10)))
		}},
		{"header block without end", 4 << 10, func(c *rawConn) {
			line := ": " + strings.Repeat("x", 100) + "\r\n"
			if c.write("HTTP/1.1 200 OK\r\n") != nil {
				return
			}
			for i := 0; c.write("X-Pad-"+strconv.Itoa(i)+line) == nil; i++ {
				select {
				case <-c.origin.done:
					return
				default:
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			origin := newRawOrigin(t, func(c *rawConn) {
				if c.n > 1 {
					c.serveAll(c.ok)
					return
				}
				if _, _, err := c.next(); err == nil {
					tt.oversized(c)
					c.awaitEOF()
				}
			})
			f := newFrontend(t, proxyConfig(config.Route{Path: "/", Upstreams: []string{origin.url}, MaxResponseHeader: tt.limit}))
			c := connClient(f)
			if res, _ := through(t, f, c, http.MethodGet, "/"); res.StatusCode != http.StatusBadGateway {
				t.Errorf("oversized header block: got %v, want 502", res.Status)
			}
			within(t, origin.eof, 5*time.Second, "gatehouse closed the connection of the oversized header block")
			res, body := through(t, f, c, http.MethodGet, "/")
			wantConn(t, res, body, 2)
		})
	}
}

// TestUpstreamEarlyHints checks that a 103 Early Hints reaches the client
// while the Upstream is still working on the final answer: the origin
// sends the 200 only once the client has the 103.
func TestUpstreamEarlyHints(t *testing.T) {
	t.Parallel()
	const link = "</app.css>; rel=preload; as=style"
	for _, proto := range []string{"HTTP/1.1", "HTTP/2"} {
		t.Run(proto, func(t *testing.T) {
			t.Parallel()
			hinted := make(chan struct{})
			var hintFirst atomic.Bool
			origin := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Link", link)
				w.WriteHeader(http.StatusEarlyHints)
				w.Header().Del("Link")
				timer := time.NewTimer(5 * time.Second)
				defer timer.Stop()
				select {
				case <-hinted:
					hintFirst.Store(true)
				case <-timer.C:
				case <-r.Context().Done():
					return
				}
				_, _ = io.WriteString(w, "final")
			}))
			f := newFrontend(t, proxyConfig(proxyTo("/", origin.URL)))
			c := connClient(f)
			if proto == "HTTP/1.1" {
				c = f.client1()
				c.Timeout = 10 * time.Second
			}
			var (
				once  sync.Once
				codes []int
				links []string
			)
			trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
				codes = append(codes, code)
				links = append(links, h.Values("Link")...)
				once.Do(func() { close(hinted) })
				return nil
			}}
			req := f.request(t, http.MethodGet, host, "/", nil)
			req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
			res, body := doRes(t, c, req)
			if res.StatusCode != http.StatusOK || body != "final" {
				t.Errorf("final answer: got %v %q, want 200 \"final\"", res.Status, body)
			}
			if !slices.Equal(codes, []int{http.StatusEarlyHints}) || !slices.Equal(links, []string{link}) {
				t.Errorf("informational answers %v with Link %q, want [103] with %q", codes, links, link)
			}
			if !hintFirst.Load() {
				t.Error("the client did not have the 103 before the Upstream sent its final answer")
			}
		})
	}
}

// TestUpstreamUnsolicitedBytes checks an Upstream that sends more than the
// answer asked for, with it or later while the connection is idle: the
// next request gets its own answer on a new connection, never the extra
// bytes read as its answer.
func TestUpstreamUnsolicitedBytes(t *testing.T) {
	t.Parallel()
	const smuggled = "HTTP/1.1 200 OK\r\nX-Conn: 1\r\nContent-Length: 8\r\n\r\nsmuggled"
	tests := []struct {
		name, extra string
		later       bool // sent while the connection is idle
	}{
		{"answer behind the answer", smuggled, false},
		{"junk behind the answer", "junk\r\n\r\n", false},
		{"answer while idle", smuggled, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sendExtra, sent := make(chan struct{}), make(chan struct{})
			origin := newRawOrigin(t, func(c *rawConn) {
				if c.n > 1 {
					c.serveAll(c.ok)
					return
				}
				req, body, err := c.next()
				if err != nil {
					return
				}
				if !tt.later {
					_ = c.write(c.ok(req, body) + tt.extra)
				} else if c.write(c.ok(req, body)) != nil || !c.waitDone(sendExtra) || c.write(tt.extra) != nil {
					return
				}
				close(sent)
				c.awaitEOF()
			})
			f := newFrontend(t, proxyConfig(proxyTo("/", origin.url)))
			c := connClient(f)
			res, body := through(t, f, c, http.MethodGet, "/")
			wantConn(t, res, body, 1)
			if tt.later {
				close(sendExtra)
			}
			within(t, sent, 5*time.Second, "the origin sent the extra bytes")
			// Until the bytes reach gatehouse there is nothing to notice.
			// A pool that watches its idle connections closes this one
			// then; gatehouse's finds the bytes when it takes the
			// connection, and they are readable on it before that.
			waitFor(t, "the extra bytes reached gatehouse", func() bool {
				select {
				case <-origin.eof:
					return true
				default:
				}
				return !canPeek || idleConnReadable(f)
			})
			res, body = through(t, f, c, http.MethodGet, "/")
			wantConn(t, res, body, 2)
		})
	}
}

// TestUpstreamClientAbortsBody checks a client that reads the first part
// of an answer of known length and leaves, while the Upstream stalls
// before the rest: the client gets every byte the Upstream sent, not only
// those past the proxy's write buffer (issue 16); the Upstream connection,
// mid-answer, is closed rather than reused; and the next request gets a
// complete, correct answer. The answer comes over plain HTTP/1.1 (a GET)
// and through net/http's Transport (a POST), to a client of either
// protocol; the first part is a whole buffer's worth or a few bytes that
// fill none.
func TestUpstreamClientAbortsBody(t *testing.T) {
	t.Parallel()
	want := numberedLines(1 << 20)
	head := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", len(want))
	tests := []struct {
		name, proto, method string
		first               int // bytes sent before the stall
	}{
		{"half/HTTP/2/GET", "HTTP/2", http.MethodGet, len(want) / 2},
		{"half/HTTP/1.1/GET", "HTTP/1.1", http.MethodGet, len(want) / 2},
		{"half/HTTP/2/POST", "HTTP/2", http.MethodPost, len(want) / 2},
		{"100 bytes/HTTP/2/GET", "HTTP/2", http.MethodGet, 100},
		{"100 bytes/HTTP/1.1/GET", "HTTP/1.1", http.MethodGet, 100},
		{"100 bytes/HTTP/2/POST", "HTTP/2", http.MethodPost, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			origin := newRawOrigin(t, func(c *rawConn) {
				if c.n > 1 {
					c.serveAll(func(*http.Request, string) string { return head + want })
					return
				}
				if _, _, err := c.next(); err != nil {
					return
				}
				// The rest never comes: only the client's leaving may end
				// this answer.
				if c.write(head+want[:tt.first]) == nil {
					c.awaitEOF()
				}
			})
			f := newFrontend(t, proxyConfig(proxyTo("/", origin.url)))
			c := connClient(f)
			if tt.proto == "HTTP/1.1" {
				c = f.client1()
				c.Timeout = 10 * time.Second
			}
			var body io.Reader
			if tt.method == http.MethodPost {
				body = strings.NewReader("payload")
			}
			res, err := c.Do(f.request(t, tt.method, host, "/", body))
			if err != nil {
				t.Fatalf("%s: %v", tt.method, err)
			}
			got := make([]byte, tt.first)
			_, err = io.ReadFull(res.Body, got)
			res.Body.Close()
			if err != nil || string(got) != want[:tt.first] {
				t.Fatalf("the %d bytes sent before the stall: %v, or not those bytes", tt.first, err)
			}
			if n := within(t, origin.eof, 5*time.Second, "gatehouse closed the connection of the dropped answer"); n != 1 {
				t.Errorf("gatehouse closed connection %d, want 1", n)
			}
			if res, body := through(t, f, c, http.MethodGet, "/"); res.StatusCode != http.StatusOK || body != want {
				t.Errorf("next GET: got %v with %d bytes, want 200 with the %d bytes sent", res.Status, len(body), len(want))
			}
			if n := origin.accepted.Load(); n != 2 {
				t.Errorf("opened %d Upstream connections, want 2 (a fresh one after the dropped answer)", n)
			}
		})
	}
}

// TestUpstreamKeepAliveSettings checks a Route's keepalive: idle_timeout
// closes idle connections after that long, and max_idle keeps that many
// idle after a burst and closes the others.
func TestUpstreamKeepAliveSettings(t *testing.T) {
	t.Parallel()
	t.Run("idle_timeout", func(t *testing.T) {
		t.Parallel()
		const idle = 200 * time.Millisecond
		origin, cc := countedOrigin(t, nil, pathHandler)
		f := newFrontend(t, proxyConfig(config.Route{Path: "/", Upstreams: []string{origin.URL},
			KeepAlive: &config.KeepAlive{IdleTimeout: idle}}))
		c := connClient(f)
		var last time.Time // before the connection went idle for the last time
		for range 2 {
			last = time.Now()
			if res, _ := through(t, f, c, http.MethodGet, "/"); res.StatusCode != http.StatusOK {
				t.Fatalf("GET: got %v, want 200", res.Status)
			}
		}
		if opened, _ := cc.get(); opened != 1 {
			t.Fatalf("2 quick GETs opened %d Upstream connections, want 1", opened)
		}
		// Closed within waitFor's patience, the connection did not wait
		// for the default (90 s); and a timer never fires early.
		waitFor(t, "the idle connection closed", func() bool { _, closed := cc.get(); return closed == 1 })
		if d := time.Since(last); d < idle {
			t.Errorf("the idle connection closed %v after it went idle, before idle_timeout (%v)", d, idle)
		}
		if res, _ := through(t, f, c, http.MethodGet, "/"); res.StatusCode != http.StatusOK {
			t.Errorf("GET after the idle timeout: got %v, want 200", res.Status)
		}
		if opened, _ := cc.get(); opened != 2 {
			t.Errorf("opened %d Upstream connections, want 2", opened)
		}
	})
	t.Run("max_idle", func(t *testing.T) {
		t.Parallel()
		const burst, maxIdle = 6, 2
		h := newHeldRoute(t, &config.KeepAlive{MaxIdle: maxIdle})
		if err := h.wave(t, burst); err != nil {
			t.Fatalf("burst: %v", err)
		}
		waitFor(t, fmt.Sprintf("%d of %d connections left open", maxIdle, burst), func() bool {
			opened, closed := h.cc.get()
			return opened == burst && opened-closed == maxIdle
		})
		if err := h.wave(t, maxIdle); err != nil {
			t.Fatalf("after the burst: %v", err)
		}
		if opened, closed := h.cc.get(); opened != burst || closed != burst-maxIdle {
			t.Errorf("after %d more GETs: %d connections opened, %d closed; want the %d idle ones reused",
				maxIdle, opened, closed, maxIdle)
		}
	})
}

// TestUnixSocketUpstreamReuse checks that requests to a unix:// Upstream
// share one connection.
func TestUnixSocketUpstreamReuse(t *testing.T) {
	t.Parallel()
	ln, sock := listenUnix(t)
	_, cc := countedOrigin(t, ln, pathHandler)
	f := newFrontend(t, proxyConfig(proxyTo("/", "unix://"+sock)))
	c := connClient(f)
	for i := range 20 {
		method, path, want := http.MethodGet, fmt.Sprintf("/%d", i), fmt.Sprintf("/%d", i)
		if i%4 == 3 {
			method, want = http.MethodHead, ""
		}
		if res, body := through(t, f, c, method, path); res.StatusCode != http.StatusOK || body != want {
			t.Fatalf("%s %s: got %v %q, want 200 %q", method, path, res.Status, body, want)
		}
	}
	if opened, _ := cc.get(); opened != 1 {
		t.Errorf("20 requests opened %d connections to the socket, want 1", opened)
	}
}
