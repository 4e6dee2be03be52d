package framing

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"sync/atomic"
	"time"
)

// Conn checks the requests read from the connection it wraps with a
// [Checker]. At the first violation it answers 400 itself, unless part of
// an answer was written since the offending request began, shuts the
// connection's write side, and from then on reads end (io.EOF) and writes
// are dropped: net/http never sees the rest of the request, so a request
// whose header block is refused reaches no Upstream. A violation in body
// bytes that arrive after the request was handed on ends the body early
// instead: the Upstream's request is aborted before it is complete.
//
// After a request asking for a protocol upgrade (WebSocket) is answered
// 101, the bytes are the new protocol's and no longer checked.
type Conn struct {
	net.Conn
	check Checker
	// onRefuse, when set, learns of each violation.
	onRefuse func(net.Conn, error)

	// The fields below are shared by the reading and the writing
	// goroutine.
	writes   atomic.Int64 // Write calls so far
	watch    atomic.Bool  // an upgrade was asked for; look for the 101
	raw      atomic.Bool  // a 101 was written: no more checking
	refused  atomic.Bool  // a violation was answered; the connection is done
	atStart  int64        // writes when the request being read began; reader only
	upgrades int          // the Checker's count last seen; reader only
}

// NewConn wraps c; onRefuse, when not nil, is called once with the
// violation that refused the connection, before it is answered. A
// *tls.Conn is wrapped so that net/http still sets Request.TLS.
func NewConn(c net.Conn, onRefuse func(net.Conn, error)) net.Conn {
	if tc, ok := c.(*tls.Conn); ok {
		return &tlsConn{Conn{Conn: c, onRefuse: onRefuse}, tc}
	}
	return &Conn{Conn: c, onRefuse: onRefuse}
}

// refusal is the answer to a refused request. It closes the connection:
// where one request ends is unknown.
const refusal = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n" +
	"Connection: close\r\nContent-Length: 34\r\n\r\n400 Bad Request: malformed framing\n"

// refusalWriteTimeout bounds writing the 400 to a client that does not read.
const refusalWriteTimeout = 2 * time.Second

func (c *Conn) Read(p []byte) (int, error) {
	if c.refused.Load() {
		return 0, io.EOF
	}
	if c.check.st == sLineStart {
		c.atStart = c.writes.Load()
	}
	n, err := c.Conn.Read(p)
	if n == 0 || c.raw.Load() {
		return n, err
	}
	if verr := c.check.Feed(p[:n]); verr != nil {
		c.refuse(verr)
		return 0, io.EOF
	}
	if u := c.check.Upgrades(); u != c.upgrades {
		c.upgrades = u
		c.watch.Store(true)
	}
	return n, err
}

func (c *Conn) refuse(err error) {
	if c.onRefuse != nil {
		c.onRefuse(c.Conn, err)
	}
	c.refused.Store(true)
	if c.writes.Load() == c.atStart {
		c.Conn.SetWriteDeadline(time.Now().Add(refusalWriteTimeout))
		io.WriteString(c.Conn, refusal)
	}
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
}

var status101 = []byte("HTTP/1.1 101 ")

func (c *Conn) Write(p []byte) (int, error) {
	if c.refused.Load() {
		return len(p), nil
	}
	c.writes.Add(1)
	if c.watch.Load() {
		c.watch.Store(false)
		if bytes.HasPrefix(p, status101) {
			c.raw.Store(true)
		}
	}
	return c.Conn.Write(p)
}

// tlsConn is a Conn over TLS. net/http sets Request.TLS from the
// ConnectionState of a connection that is not a *tls.Conn itself.
type tlsConn struct {
	Conn
	tc *tls.Conn
}

func (c *tlsConn) ConnectionState() tls.ConnectionState { return c.tc.ConnectionState() }
