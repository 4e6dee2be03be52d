package gateway

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Conn is a raw HTTP/2 client connection to a Listener, for tests that
// send frames no well-behaved client sends.
type h2Conn struct {
	t    *testing.T
	conn *tls.Conn
	fr   *http2.Framer
	hbuf bytes.Buffer
	enc  *hpack.Encoder
}

// dialH2 opens a TLS connection for localhost to addr with ALPN h2 and
// sends the preface and an empty SETTINGS frame.
func dialH2(t *testing.T, addr string, roots *x509.CertPool) *h2Conn {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{ServerName: "localhost", RootCAs: roots, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatalf("dialing %s for HTTP/2: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("ALPN: got %q, want h2", p)
	}
	c := &h2Conn{t: t, conn: conn, fr: http2.NewFramer(conn, conn)}
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.enc = hpack.NewEncoder(&c.hbuf)
	if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	if err := c.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return c
}

// block HPACK-encodes a request for localhost, then the pairs of extra
// header names and values.
func (c *h2Conn) block(method, path string, extra ...string) []byte {
	return c.fields(append([]string{":method", method, ":scheme", "https", ":authority", "localhost", ":path", path}, extra...)...)
}

// fields HPACK-encodes pairs of header names and values.
func (c *h2Conn) fields(pairs ...string) []byte {
	c.hbuf.Reset()
	for i := 0; i+1 < len(pairs); i += 2 {
		c.enc.WriteField(hpack.HeaderField{Name: pairs[i], Value: pairs[i+1]})
	}
	return bytes.Clone(c.hbuf.Bytes())
}

// request sends a complete HEADERS frame on stream id.
func (c *h2Conn) request(id uint32, method, path string, endStream bool, extra ...string) {
	c.t.Helper()
	err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.block(method, path, extra...), EndStream: endStream, EndHeaders: true})
	if err != nil {
		c.t.Fatalf("writing HEADERS on stream %d: %v", id, err)
	}
}

// h2Outcome is how the server ended one stream.
type h2Outcome struct {
	status string        // the response's :status, "" if none came
	reset  http2.ErrCode // the RST_STREAM code, when the stream was reset
	wasRST bool
	goAway *http2.GoAwayFrame
}

// await reads frames until stream id has its response headers or is
// reset, or the connection is closed or goes away; it answers PINGs and
// SETTINGS on the way.
func (c *h2Conn) await(id uint32) h2Outcome {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer c.conn.SetReadDeadline(time.Time{})
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			c.t.Fatalf("reading frames for stream %d: %v", id, err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				c.fr.WriteSettingsAck()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				c.fr.WritePing(true, f.Data)
			}
		case *http2.GoAwayFrame:
			return h2Outcome{goAway: f}
		case *http2.RSTStreamFrame:
			if f.StreamID == id {
				return h2Outcome{reset: f.ErrCode, wasRST: true}
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID == id {
				return h2Outcome{status: f.PseudoValue("status")}
			}
		}
	}
}

// drainPing is the data of the PING that drain waits for.
var drainPing = [8]byte{'d', 'r', 'a', 'i', 'n'}

// drain reads and drops frames until the server closes the connection, or,
// with ping, acknowledges the PING carrying drainPing that the caller sent
// after its frames (so every frame before it was processed). It returns
// the GOAWAY seen, if any, and whether the connection was closed; it fails
// the test when neither happens within d.
func (c *h2Conn) drain(d time.Duration, ping bool) (goAway *http2.GoAwayFrame, closed bool) {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(d))
	defer c.conn.SetReadDeadline(time.Time{})
	for {
		f, err := c.fr.ReadFrame()
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			c.t.Fatalf("the server neither closed the connection nor answered within %v", d)
		case err != nil:
			return goAway, true
		}
		switch f := f.(type) {
		case *http2.GoAwayFrame:
			goAway = f
		case *http2.PingFrame:
			if ping && f.IsAck() && f.Data == drainPing {
				return goAway, false
			}
		}
	}
}
