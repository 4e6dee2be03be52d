package gateway

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// breakingUpstream is an HTTP/1.1 Upstream on a raw socket that breaks
// its answers off: /chunked sends one chunk ("hello") of a chunked answer,
// /length 5 of 100 bytes, then each resets the connection. /upload reads
// the request body and reports on uploads how the read ended.
type breakingUpstream struct {
	url     string
	arrived chan struct{} // an /upload request's headers came
	uploads chan error    // how reading an /upload body ended
}

func newBreakingUpstream(t *testing.T) *breakingUpstream {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	u := &breakingUpstream{url: "http://" + ln.Addr().String(), arrived: make(chan struct{}, 4), uploads: make(chan error, 4)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go u.serve(c.(*net.TCPConn))
		}
	}()
	return u
}

func (u *breakingUpstream) serve(c *net.TCPConn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		switch req.URL.Path {
		case "/chunked":
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
		case "/length":
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhello")
		case "/upload":
			u.arrived <- struct{}{}
			_, err := io.Copy(io.Discard, req.Body)
			u.uploads <- err
			return
		default:
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\napp")
			continue
		}
		// A reset, not a clean close: the Upstream crashed mid-answer.
		c.SetLinger(0)
		return
	}
}

// TestUpstreamCutsAnswerOff has an Upstream reset its connection
// mid-answer (issue 13, faults that lose nothing): an HTTP/1.1 client's
// connection is closed without the chunked answer's last chunk or short of
// its Content-Length, an HTTP/2 or HTTP/3 client's stream is reset, so no
// client takes the truncated body for a whole one; each is logged with the
// Upstream and the bytes sent.
func TestUpstreamCutsAnswerOff(t *testing.T) {
	up := newBreakingUpstream(t)
	in := startProxy(t, up.url, ", http3: true", "", "")
	roots := in.LocalRoots(t)
	cuts := 0

	for _, path := range []string{"/chunked", "/length"} {
		t.Run("HTTP/1.1 "+path, func(t *testing.T) {
			conn, err := tls.Dial("tcp", in.HTTPS, &tls.Config{ServerName: "localhost", RootCAs: roots, NextProtos: []string{"http/1.1"}})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n", path)
			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			raw, err := io.ReadAll(conn)
			if err != nil {
				t.Fatalf("reading until gatehouse closes the connection: %v (got %q)", err, raw)
			}
			res, err := http.ReadResponse(bufio.NewReader(strings.NewReader(string(raw))), nil)
			if err != nil {
				t.Fatalf("parsing %q: %v", raw, err)
			}
			body, err := io.ReadAll(res.Body)
			if err == nil || string(body) != "hello" {
				t.Errorf("body %q, %v; want hello, then an unexpected end: got %q", body, err, raw)
			}
			if strings.HasSuffix(string(raw), "0\r\n\r\n") {
				t.Errorf("the cut-off answer ends with the last chunk: %q", raw)
			}
			cuts++
		})
	}

	for proto, c := range map[string]*http.Client{"HTTP/2.0": in.Client(t), "HTTP/3.0": h3Client(t, in, roots)} {
		t.Run(proto, func(t *testing.T) {
			cuts++
			res, err := c.Get("https://localhost/chunked")
			if err != nil {
				// The reset overtook the answer's head (HTTP/3 discards
				// what it had not sent yet): a failure all the same.
				t.Logf("%s: %v", proto, err)
				return
			}
			body, err := io.ReadAll(res.Body)
			res.Body.Close()
			if res.Proto != proto || err == nil || !strings.HasPrefix("hello", string(body)) {
				t.Errorf("got %s %q, %v; want %s, then the stream reset", res.Proto, body, err, proto)
			}
		})
	}

	// Each cut-off answer is logged with its Upstream and the bytes sent.
	upstream := "upstream=" + up.url
	var lines []string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		lines = lines[:0]
		for line := range strings.SplitSeq(in.Stderr.String(), "\n") {
			if strings.Contains(line, `msg="upstream answer cut off"`) && strings.Contains(line, upstream+" ") && strings.Contains(line, "bytes_out=5") {
				lines = append(lines, line)
			}
		}
		if len(lines) >= cuts {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d cut-off answers logged with %s, want %d:\n%s", len(lines), upstream, cuts, in.Stderr)
		}
	}
}

// TestClientAbortsUpload has a client leave in the middle of a request
// body (issue 13): the request to the Upstream is cancelled, so the
// Upstream's read ends with an error instead of waiting for the rest.
func TestClientAbortsUpload(t *testing.T) {
	up := newBreakingUpstream(t)
	in := startProxy(t, up.url, "", "", "")
	roots := in.LocalRoots(t)
	awaitCancelled := func(t *testing.T) {
		t.Helper()
		select {
		case err := <-up.uploads:
			if err == nil {
				t.Error("the Upstream read the whole body, want an error")
			}
		case <-time.After(10 * time.Second):
			t.Error("the Upstream still waits for the rest of the body")
		}
	}
	chunk := strings.Repeat("u", 1000)

	t.Run("HTTP/1.1", func(t *testing.T) {
		conn, err := tls.Dial("tcp", in.HTTPS, &tls.Config{ServerName: "localhost", RootCAs: roots, NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000000\r\n\r\n%s", chunk)
		select {
		case <-up.arrived:
		case <-time.After(10 * time.Second):
			t.Fatal("the upload never reached the Upstream")
		}
		conn.Close()
		awaitCancelled(t)
	})
	t.Run("HTTP/2", func(t *testing.T) {
		c := dialH2(t, in.HTTPS, roots)
		c.request(1, "POST", "/upload", false, "content-length", "1000000")
		if err := c.fr.WriteData(1, false, []byte(chunk)); err != nil {
			t.Fatal(err)
		}
		select {
		case <-up.arrived:
		case <-time.After(10 * time.Second):
			t.Fatal("the upload never reached the Upstream")
		}
		// The stream is cancelled; the connection stays.
		if err := c.fr.WriteRSTStream(1, http2.ErrCodeCancel); err != nil {
			t.Fatal(err)
		}
		awaitCancelled(t)
		c.request(3, "GET", "/", true)
		if got := c.await(3); got.status != "200" {
			t.Errorf("next request on the connection: got %+v, want 200", got)
		}
	})
}

// TestSlowReaderBoundedByWriteTimeout has clients ask for an endless
// answer (one large body, or a stream of small flushed events) and then
// read nothing (issue 13): after timeouts.write without
// progress gatehouse gives the response up (HTTP/1.1: the connection
// closes; HTTP/2: the stream is reset), which lets go of the Upstream, and
// other clients are served meanwhile.
func TestSlowReaderBoundedByWriteTimeout(t *testing.T) {
	released := make(chan time.Duration, 4)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		switch r.URL.Path {
		case "/endless":
			chunk := []byte(strings.Repeat("e", 32<<10))
			for {
				if _, err := w.Write(chunk); err != nil {
					break
				}
			}
		case "/events":
			// Server-sent events, each small and flushed (ReverseProxy
			// flushes every write of a text/event-stream).
			w.Header().Set("Content-Type", "text/event-stream")
			event := []byte("data: " + strings.Repeat("e", 200) + "\n\n")
			for {
				if _, err := w.Write(event); err != nil {
					break
				}
				if err := http.NewResponseController(w).Flush(); err != nil {
					break
				}
			}
		default:
			fmt.Fprint(w, "app")
			return
		}
		released <- time.Since(start)
	}))
	defer up.Close()
	in := startProxy(t, up.URL, "", "timeouts: {write: 1s}", "")
	roots := in.LocalRoots(t)
	awaitReleased := func(t *testing.T) {
		t.Helper()
		select {
		case d := <-released:
			t.Logf("the Upstream was let go after %v", d.Round(time.Millisecond))
		case <-time.After(15 * time.Second):
			t.Fatal("the Upstream is still held by a client that reads nothing")
		}
	}

	t.Run("HTTP/1.1", func(t *testing.T) {
		meanwhile(t, in, func() {
			conn, err := tls.Dial("tcp", in.HTTPS, &tls.Config{ServerName: "localhost", RootCAs: roots, NextProtos: []string{"http/1.1"}})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			io.WriteString(conn, "GET /endless HTTP/1.1\r\nHost: localhost\r\n\r\n")
			awaitReleased(t)
		})
	})
	t.Run("HTTP/2", func(t *testing.T) {
		meanwhile(t, in, func() {
			c := dialH2(t, in.HTTPS, roots)
			c.request(1, "GET", "/endless", true)
			awaitReleased(t)
		})
	})
	t.Run("HTTP/2 events", func(t *testing.T) {
		meanwhile(t, in, func() {
			c := dialH2(t, in.HTTPS, roots)
			c.request(1, "GET", "/events", true)
			awaitReleased(t)
		})
	})
}
