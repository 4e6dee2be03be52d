package gateway

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/gateway/framing"
)

// countingListener counts the bytes read from its connections: what an
// Upstream was sent.
type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{c, l.n}, nil
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// TestFramingRefused sends each request-smuggling framing net/http would
// accept (issue 13, defect 2) as raw bytes to the HTTPS Listener (TLS,
// HTTP/1.1) and to the HTTP Listener (TCP): each is answered 400, the
// connection closed, and the Upstream is sent not one byte. A valid
// request on each Listener afterwards is served, so the checks are not
// refusing everything.
func TestFramingRefused(t *testing.T) {
	var upBytes atomic.Int64
	var proto atomic.Value
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		proto.Store(r.Header.Get("X-Forwarded-Proto"))
		fmt.Fprint(w, "app")
	}))
	up.Listener = countingListener{up.Listener, &upBytes}
	up.Start()
	defer up.Close()
	in := startProxy(t, up.URL, "", "", "")
	roots := in.LocalRoots(t)
	dials := map[string]func() (net.Conn, error){
		"TLS": func() (net.Conn, error) {
			return tls.Dial("tcp", in.HTTPS, &tls.Config{ServerName: "localhost", RootCAs: roots, NextProtos: []string{"http/1.1"}})
		},
		"TCP": func() (net.Conn, error) { return net.Dial("tcp", in.HTTP) },
	}
	for _, via := range []string{"TLS", "TCP"} {
		for _, v := range framing.Vectors {
			t.Run(via+"/"+v.Name, func(t *testing.T) {
				before := upBytes.Load()
				status, rest := exchange(t, dials[via], v.Request)
				if status != "HTTP/1.1 400 Bad Request" || !strings.Contains(rest, "malformed framing") {
					t.Errorf("got %q %q, want gatehouse's 400 for malformed framing", status, rest)
				}
				if n := upBytes.Load() - before; n != 0 {
					t.Errorf("the Upstream was sent %d bytes, want none", n)
				}
			})
		}
	}
	// The same Listeners serve a valid request, chunked: the Upstream gets it.
	const ok = "POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
	if status, rest := exchange(t, dials["TLS"], ok); status != "HTTP/1.1 200 OK" || !strings.HasSuffix(rest, "app") {
		t.Errorf("valid request over TLS: got %q %q, want 200 app", status, rest)
	}
	if upBytes.Load() == 0 {
		t.Error("the valid request sent the Upstream nothing")
	}
	// net/http serves the checked connection as plain; Request.TLS still
	// comes through from the wrapper.
	if got, _ := proto.Load().(string); got != "https" {
		t.Errorf("X-Forwarded-Proto of the HTTP/1.1 request over TLS: got %q, want https", got)
	}
	if status, _ := exchange(t, dials["TCP"], ok); status != "HTTP/1.1 308 Permanent Redirect" {
		t.Errorf("valid request over TCP: got %q, want the redirect", status)
	}
}

// exchange sends req on a new connection and returns the status line and
// the rest of what came back until the connection closed, failing if it
// stays open.
func exchange(t *testing.T, dial func() (net.Conn, error), req string) (status, rest string) {
	t.Helper()
	c, err := dial()
	if err != nil {
		t.Fatalf("dialing: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatalf("writing the request: %v", err)
	}
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	b, err := io.ReadAll(br)
	if err != nil {
		t.Fatalf("the connection was not closed after the answer: %v", err)
	}
	return strings.TrimSuffix(line, "\r\n"), string(b)
}

// TestFramingUpgradePassesThrough checks that once an Upgrade is answered
// 101, the bytes on the connection belong to the new protocol and are not
// checked as HTTP: raw bytes with bare LFs cross both ways.
func TestFramingUpgradePassesThrough(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" {
			http.Error(w, "want Upgrade: websocket", http.StatusBadRequest)
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijacking: %v", err)
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		io.Copy(c, brw)
	}))
	defer up.Close()
	in := startProxy(t, up.URL, "", "", "")
	c, err := tls.Dial("tcp", in.HTTPS, &tls.Config{ServerName: "localhost", RootCAs: in.LocalRoots(t), NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil || res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("got %v %v, want 101", res, err)
	}
	const frame = "not HTTP\nat all\r\n x\n"
	io.WriteString(c, frame)
	got := make([]byte, len(frame))
	if _, err := io.ReadFull(br, got); err != nil || string(got) != frame {
		t.Fatalf("echo: got %q %v, want %q", got, err, frame)
	}
}

// TestHTTPSListenerHandshakeEdges: plain HTTP sent to the HTTPS Listener
// gets a 400 saying so, and a client that never sends its ClientHello is
// let go after timeouts.read_header, as Go's own ServeTLS does.
func TestHTTPSListenerHandshakeEdges(t *testing.T) {
	in := startProxy(t, "http://127.0.0.1:1", "", "timeouts: {read_header: 1s}", "")
	c, err := net.Dial("tcp", in.HTTPS)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
	got, _ := io.ReadAll(c)
	if !strings.HasPrefix(string(got), "HTTP/1.0 400 ") || !strings.Contains(string(got), "HTTP request to an HTTPS server") {
		t.Errorf("plain HTTP to the HTTPS Listener: got %q, want a 400 saying so", got)
	}

	silent, err := net.Dial("tcp", in.HTTPS)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	silent.SetDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	if n, err := silent.Read(make([]byte, 1)); n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("a client that sends nothing: read %d bytes, %v after %v; want the connection closed by gatehouse", n, err, time.Since(start))
	}
}
