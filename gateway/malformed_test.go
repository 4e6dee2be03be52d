package gateway

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/qpack"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/quic-go/quic-go/quicvarint"
)

// malformedHeaders are the connection-specific fields that make an HTTP/2
// or HTTP/3 request malformed (RFC 9113 §8.2.2, RFC 9114 §4.2), and a TE
// other than "trailers" (h2spec 8.1.2.2/1 and /2).
var malformedHeaders = [][2]string{
	{"connection", "x-secret"},
	{"keep-alive", "timeout=5"},
	{"proxy-connection", "keep-alive"},
	{"transfer-encoding", "chunked"},
	{"upgrade", "websocket"},
	{"te", "gzip"},
	{"te", "trailers, gzip"},
}

// TestMalformedHTTP2And3NeverProxied sends requests carrying a
// connection-specific header or a TE other than trailers over raw HTTP/2
// and HTTP/3 streams (issue 13, defect 5): each is refused (HTTP/2: 400 or
// a PROTOCOL_ERROR reset; HTTP/3: an H3_MESSAGE_ERROR reset) and none
// reaches the Upstream, while a clean request on the same connection is
// proxied.
func TestMalformedHTTP2And3NeverProxied(t *testing.T) {
	var seen atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Add(1)
		fmt.Fprint(w, "app")
	}))
	defer up.Close()
	in := startProxy(t, up.URL, ", http3: true", "", "")
	roots := in.LocalRoots(t)

	t.Run("HTTP/2", func(t *testing.T) {
		c := dialH2(t, in.HTTPS, roots)
		id := uint32(1)
		for _, h := range malformedHeaders {
			c.request(id, "GET", "/", true, h[0], h[1])
			got := c.await(id)
			switch {
			case got.goAway != nil:
				t.Fatalf("%s: %s: GOAWAY %v, want the stream refused and the connection kept", h[0], h[1], got.goAway.ErrCode)
			case got.wasRST && got.reset != 0x1: // PROTOCOL_ERROR
				t.Errorf("%s: %s: reset %v, want PROTOCOL_ERROR", h[0], h[1], got.reset)
			case !got.wasRST && got.status != "400":
				t.Errorf("%s: %s: answered %s, want 400 or a reset", h[0], h[1], got.status)
			}
			id += 2
		}
		c.request(id, "GET", "/", true, "te", "trailers")
		if got := c.await(id); got.status != "200" {
			t.Errorf("clean request (te: trailers) on the same connection: got %+v, want 200", got)
		}
		if n := seen.Load(); n != 1 {
			t.Errorf("the Upstream saw %d requests, want only the clean one", n)
		}
	})

	t.Run("HTTP/3", func(t *testing.T) {
		seen.Store(0)
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		conn, err := quic.DialAddr(ctx, in.HTTPS, &tls.Config{ServerName: "localhost", RootCAs: roots, NextProtos: []string{http3.NextProtoH3}}, nil)
		if err != nil {
			t.Fatalf("dialing QUIC: %v", err)
		}
		defer conn.CloseWithError(0, "")
		for _, h := range malformedHeaders {
			str, err := conn.OpenStreamSync(ctx)
			if err != nil {
				t.Fatal(err)
			}
			str.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := str.Write(h3Headers("GET", "/", h[0], h[1])); err != nil {
				t.Fatal(err)
			}
			str.Close()
			_, err = io.ReadAll(str)
			var se *quic.StreamError
			if !errors.As(err, &se) || se.ErrorCode != quic.StreamErrorCode(http3.ErrCodeMessageError) {
				t.Errorf("%s: %s: read %v, want the stream reset with H3_MESSAGE_ERROR", h[0], h[1], err)
			}
		}
		// The connection still serves a clean request.
		tr := &http3.Transport{TLSClientConfig: &tls.Config{RootCAs: roots},
			Dial: func(context.Context, string, *tls.Config, *quic.Config) (*quic.Conn, error) { return conn, nil }}
		defer tr.Close()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://localhost/", nil)
		res, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatalf("clean request on the same connection: %v", err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || string(body) != "app" {
			t.Errorf("clean request: got %d %q, want 200 app", res.StatusCode, body)
		}
		if n := seen.Load(); n != 1 {
			t.Errorf("the Upstream saw %d requests, want only the clean one", n)
		}
	})
}

// h3Headers is an HTTP/3 HEADERS frame of a request for localhost with the
// pairs of extra header names and values, QPACK-encoded without the
// dynamic table.
func h3Headers(method, path string, extra ...string) []byte {
	var block bytes.Buffer
	enc := qpack.NewEncoder(&block)
	fields := append([]string{":method", method, ":scheme", "https", ":authority", "localhost", ":path", path}, extra...)
	for i := 0; i+1 < len(fields); i += 2 {
		enc.WriteField(qpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	enc.Close()
	frame := quicvarint.Append(nil, 0x1) // HEADERS
	frame = quicvarint.Append(frame, uint64(block.Len()))
	return append(frame, block.Bytes()...)
}
