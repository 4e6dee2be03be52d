package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// rawUpstream is an HTTP/1.1 server written by hand, so a test can make
// it misbehave on an idle connection. It answers every request with 200
// "ok" (keep-alive). After the first answer on its first connection it
// waits for misbehave to be closed, then runs idle on that connection and
// closes done.
type rawUpstream struct {
	ln        net.Listener
	accepted  atomic.Int32
	idle      func(c net.Conn)
	misbehave chan struct{}
	done      chan struct{}
	stopped   chan struct{} // closed when the test ends
}

func newRawUpstream(t *testing.T, idle func(c net.Conn)) *rawUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &rawUpstream{ln: ln, idle: idle, misbehave: make(chan struct{}), done: make(chan struct{}), stopped: make(chan struct{})}
	t.Cleanup(func() {
		close(u.stopped)
		ln.Close()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go u.serve(c, u.accepted.Add(1) == 1)
		}
	}()
	return u
}

func (u *rawUpstream) serve(c net.Conn, first bool) {
	defer c.Close()
	br := bufio.NewReader(c)
	for n := 0; ; n++ {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		req.Body.Close()
		if _, err := c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")); err != nil {
			return
		}
		if n == 0 && first {
			select {
			case <-u.misbehave:
			case <-u.stopped:
				return
			}
			u.idle(c)
			close(u.done)
		}
	}
}

func (u *rawUpstream) url() string { return "http://" + u.ln.Addr().String() }

// idleConnReadable reports whether an idle pooled connection of f has
// something to read: bytes, or the end of the stream.
func idleConnReadable(f *frontend) bool {
	ts := f.opts.Transports
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for _, p := range ts.h1 {
		p.mu.Lock()
		idle := slices.Clone(p.idle)
		p.mu.Unlock()
		for _, c := range idle {
			if !c.quiet() {
				return true
			}
		}
	}
	return false
}

// An Upstream that answers a request nobody sent on an idle connection
// (as servers do with a 408 before closing it) must not have that answer
// reach the next client: the connection is dropped and the request goes
// out on a new one.
func TestH1UnaskedAnswerOnIdleConnection(t *testing.T) {
	cases := map[string]func(c net.Conn){
		"408 then close": func(c net.Conn) {
			c.Write([]byte("HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"))
			c.(*net.TCPConn).CloseWrite()
		},
		"stray bytes, connection left open": func(c net.Conn) {
			c.Write([]byte("HTTP/1.1 500 Stray\r\nContent-Length: 0\r\n\r\n"))
		},
		"silent close": func(c net.Conn) {
			c.(*net.TCPConn).CloseWrite()
		},
	}
	for name, idle := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			up := newRawUpstream(t, idle)
			f := newFrontend(t, proxyConfig(proxyTo("/", up.url())))
			for i := range 3 {
				if i == 1 {
					// The first connection is idle in gatehouse's pool now:
					// its answer was read to the end before it was sent on.
					close(up.misbehave)
					select {
					case <-up.done:
					case <-time.After(5 * time.Second):
						t.Fatal("the upstream did not misbehave")
					}
					// The bytes or the FIN must have reached gatehouse's
					// socket, or there is nothing to notice yet.
					if canPeek {
						waitFor(t, "the idle connection has something to read", func() bool { return idleConnReadable(f) })
					}
				}
				code, body := f.get(t, host, "/")
				if code != http.StatusOK || body != "ok" {
					t.Fatalf("request %d: %d %q, want 200 \"ok\"", i+1, code, body)
				}
			}
			if n := up.accepted.Load(); n != 2 {
				t.Errorf("upstream accepted %d connections, want 2 (the spoiled one replaced once)", n)
			}
		})
	}
}

// An answer dropped half read (a retry_status answer is discarded after
// 64 KiB) leaves its connection mid-body: the connection is closed, never
// pooled, or the next request to that Upstream would read the rest of the
// old body as its answer.
func TestH1HalfReadAnswerIsNotPooled(t *testing.T) {
	big := strings.Repeat("x", 256<<10)
	var busyConns atomic.Int32
	busy := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(big)))
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, big)
	}))
	busy.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			busyConns.Add(1)
		}
	}
	busy.Start()
	t.Cleanup(busy.Close)
	good := newEcho(t, "good")
	f := newFrontend(t, proxyConfig(withLB(&config.LB{RetryStatus: []int{503}}, busy.URL, good.URL)))
	for i := range 6 {
		code, body := f.get(t, host, "/")
		if code != http.StatusOK || decodeSeen(t, body).Backend != "good" {
			t.Fatalf("request %d: %v %.60q, want 200 from good", i+1, code, body)
		}
	}
	// Round robin sends requests 1, 3 and 5 to busy first.
	if n := busyConns.Load(); n != 3 {
		t.Errorf("busy upstream accepted %d connections, want 3 (one per discarded answer)", n)
	}
}
