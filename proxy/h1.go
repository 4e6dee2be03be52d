package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"sync"
	"syscall"
	"time"
)

// h1Pool sends the bodiless, replayable requests that make up most proxied
// traffic (GET, HEAD, OPTIONS and TRACE without a body or an Upgrade) to
// one plain HTTP/1.1 Upstream, writing the request and reading the answer
// on the calling goroutine over its own pooled connections. http.Transport
// hands every request to a write goroutine and a read goroutine of its
// connection; for small answers those handoffs cost 10-30% of gatehouse's
// CPU per request (bench case 1). The request is written by
// net/http's own Request.Write and the answer parsed by http.ReadResponse;
// only the connection handling is ours. Every other request goes to the
// Transport, which keeps connections of its own.
//
// Because only replayable requests take this path, a pooled connection the
// Upstream closed while it sat idle is not an error: the request is sent
// again on another connection, as http.Transport does.
type h1Pool struct {
	fallback http.RoundTripper
	dial     func(ctx context.Context) (net.Conn, error)

	responseHeaderTimeout time.Duration
	maxResponseHeader     int64
	maxIdle               int
	idleTimeout           time.Duration
	// written, when set, runs on each request's connection once the
	// request is written and before its answer is read. Tests use it to
	// hold an exchange there.
	written func(ctx context.Context, nc net.Conn)

	mu sync.Mutex // guards the fields below
	// idle holds the idle connections, the longest idle first.
	idle []*h1Conn
	// reaper closes connections idle past idleTimeout; nil while none are
	// idle.
	reaper *time.Timer
}

// h1Conn is one pooled connection to the Upstream.
type h1Conn struct {
	pool *h1Pool
	nc   net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	// read counts bytes read from nc; limit, when above zero, is the count
	// reading may not pass (the end of the response header block).
	read, limit int64
	idleSince   time.Time
	// reused is set once the connection carried a request.
	reused bool

	// abort unblocks the connection at once (its request's client left):
	// made once, so each request's context.AfterFunc needs no closure.
	abort func()

	// raw, peekFn, peekBuf and peekErr serve quiet; raw is nil for a
	// connection that cannot be peeked at.
	raw     syscall.RawConn
	peekFn  func(fd uintptr) bool
	peekBuf [1]byte
	peekErr error
}

// h1BufferSize is the size of each connection's read and write buffers,
// http.Transport's default.
const h1BufferSize = 4 << 10

// max1xx bounds the informational answers before the final one.
const max1xx = 5

var (
	errH1HeaderTooLarge = errors.New("upstream response headers exceed the limit")
	errH1Unexpected101  = errors.New("upstream switched protocols without being asked")
	errH1Too1xx         = errors.New("upstream sent too many 1xx responses")
	// longAgo is a deadline in the past, which unblocks every read and
	// write on a connection at once.
	longAgo = time.Unix(1, 0)
)

// h1Eligible reports whether req may take the synchronous path: nothing to
// send after the header block, nothing to expect but one answer, and safe
// to send again when a pooled connection turns out closed.
func h1Eligible(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
	default:
		return false
	}
	return (req.Body == nil || req.Body == http.NoBody) &&
		req.Header["Upgrade"] == nil && req.Header["Expect"] == nil
}

// RoundTrip sends req on a pooled connection when h1Eligible allows, and
// through the Transport otherwise.
func (p *h1Pool) RoundTrip(req *http.Request) (*http.Response, error) {
	if !h1Eligible(req) {
		return p.fallback.RoundTrip(req)
	}
	ctx := req.Context()
	for {
		c, err := p.get(ctx)
		if err != nil {
			return nil, err
		}
		res, err := c.roundTrip(req)
		if err == nil {
			return res, nil
		}
		c.nc.Close()
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		if !c.reused || c.read != 0 || !closedByPeer(err) {
			return nil, err
		}
		// A pooled connection the Upstream had closed: nothing of an
		// answer came, so send the request again on the next one.
	}
}

// closedByPeer reports whether err is how a connection the other end
// closed fails: end of stream, or a reset.
func closedByPeer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// get returns the most recently used idle connection that is still open
// and quiet, or dials one.
func (p *h1Pool) get(ctx context.Context) (*h1Conn, error) {
	for {
		p.mu.Lock()
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			break
		}
		c := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		if c.quiet() {
			return c, nil
		}
		c.nc.Close()
	}
	nc, err := p.dial(ctx)
	if err != nil {
		return nil, err
	}
	c := &h1Conn{pool: p, nc: nc}
	c.abort = func() { c.nc.SetDeadline(longAgo) }
	c.br = bufio.NewReaderSize(c, h1BufferSize)
	c.bw = bufio.NewWriterSize(nc, h1BufferSize)
	if sc, ok := nc.(syscall.Conn); ok && canPeek {
		if c.raw, err = sc.SyscallConn(); err != nil {
			nc.Close()
			return nil, fmt.Errorf("preparing the upstream connection: %w", err)
		}
		c.peekFn = c.peek
	}
	return c, nil
}

// quiet reports whether the idle connection c has nothing to read: no end
// of stream (the Upstream closed it) and no bytes. An Upstream may answer
// a request that never came before it closes an idle connection (a 408);
// read as the answer to the next request, that would reach its client.
// http.Transport keeps a read pending on idle connections to notice; a
// non-blocking peek when taking one out costs less than that goroutine.
func (c *h1Conn) quiet() bool {
	if c.raw == nil {
		return true
	}
	c.peekErr = nil
	if err := c.raw.Read(c.peekFn); err != nil {
		return false
	}
	return c.peekErr == syscall.EAGAIN
}

// peek is c.raw's read function for quiet: one peek at a byte that does
// not wait (see peekByte). Only the error matters: a byte or the end of
// the stream both come without one, and both mean not quiet.
func (c *h1Conn) peek(fd uintptr) bool {
	_, c.peekErr = peekByte(fd, c.peekBuf[:])
	return true
}

// put returns c to the idle pool, or closes it when the pool is full.
func (p *h1Pool) put(c *h1Conn) {
	c.reused = true
	c.idleSince = time.Now()
	p.mu.Lock()
	if len(p.idle) >= p.maxIdle {
		p.mu.Unlock()
		c.nc.Close()
		return
	}
	p.idle = append(p.idle, c)
	if p.reaper == nil {
		p.reaper = time.AfterFunc(p.idleTimeout, p.reap)
	}
	p.mu.Unlock()
}

// reap closes the connections idle for idleTimeout or longer, and comes
// back when the next one will be.
func (p *h1Pool) reap() {
	cutoff := time.Now().Add(-p.idleTimeout)
	p.mu.Lock()
	n := 0
	for n < len(p.idle) && !p.idle[n].idleSince.After(cutoff) {
		n++
	}
	expired := make([]*h1Conn, n)
	copy(expired, p.idle[:n])
	p.idle = append(p.idle[:0], p.idle[n:]...)
	clear(p.idle[len(p.idle):cap(p.idle)])
	if len(p.idle) > 0 {
		p.reaper.Reset(time.Until(p.idle[0].idleSince.Add(p.idleTimeout)))
	} else {
		p.reaper = nil
	}
	p.mu.Unlock()
	for _, c := range expired {
		c.nc.Close()
	}
}

// closeIdle closes every idle connection.
func (p *h1Pool) closeIdle() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	if p.reaper != nil {
		p.reaper.Stop()
		p.reaper = nil
	}
	p.mu.Unlock()
	for _, c := range idle {
		c.nc.Close()
	}
}

// Read counts what comes from the connection and stops at the header limit.
func (c *h1Conn) Read(b []byte) (int, error) {
	if c.limit > 0 {
		if c.read >= c.limit {
			return 0, errH1HeaderTooLarge
		}
		b = b[:min(int64(len(b)), c.limit-c.read)]
	}
	n, err := c.nc.Read(b)
	c.read += int64(n)
	return n, err
}

// roundTrip writes req and reads the answer's header block. The answer's
// body returns c to the pool once read to its end.
func (c *h1Conn) roundTrip(req *http.Request) (*http.Response, error) {
	c.read = 0
	ctx := req.Context()
	// The response header timeout is set before the hook below: set after,
	// it would overwrite the hook's deadline of a client that left
	// meanwhile, and the connection would wait for an answer nobody takes.
	// It so counts the request's writing too, a header block at most.
	if timeout := c.pool.responseHeaderTimeout; timeout > 0 {
		c.nc.SetReadDeadline(time.Now().Add(timeout))
	}
	// A client that leaves, or a request deadline, unblocks the connection
	// at once; the connection is then closed, never reused.
	stop := context.AfterFunc(ctx, c.abort)
	res, err := c.exchange(ctx, req)
	if err != nil {
		stop()
		return nil, err
	}
	reuse := !res.Close && !req.Close
	if res.Body == http.NoBody {
		c.release(stop, reuse)
		return res, nil
	}
	res.Body = &h1Body{conn: c, body: res.Body, stop: stop, reuse: reuse}
	return res, nil
}

// exchange sends req and reads answers up to the final one.
func (c *h1Conn) exchange(ctx context.Context, req *http.Request) (*http.Response, error) {
	if err := req.Write(c.bw); err != nil {
		return nil, fmt.Errorf("writing the request: %w", err)
	}
	if err := c.bw.Flush(); err != nil {
		return nil, fmt.Errorf("writing the request: %w", err)
	}
	if h := c.pool.written; h != nil {
		h(ctx, c.nc)
	}
	timeout := c.pool.responseHeaderTimeout
	c.limit = c.pool.maxResponseHeader
	var trace *httptrace.ClientTrace
	for n := 0; ; n++ {
		res, err := http.ReadResponse(c.br, req)
		if err != nil {
			return nil, err
		}
		code := res.StatusCode
		if code >= 200 || code < 100 {
			c.limit = 0
			if timeout > 0 {
				c.nc.SetReadDeadline(time.Time{})
				if ctx.Err() != nil {
					// The deadline just cleared may have been the
					// client's leaving; set it again.
					c.nc.SetDeadline(longAgo)
				}
			}
			return res, nil
		}
		if code == http.StatusSwitchingProtocols {
			return nil, errH1Unexpected101
		}
		if n == max1xx {
			return nil, errH1Too1xx
		}
		// An informational answer (103 Early Hints): ReverseProxy passes
		// it on to the client through the trace it installed.
		if trace == nil {
			trace = httptrace.ContextClientTrace(ctx)
		}
		if trace != nil && trace.Got1xxResponse != nil {
			if err := trace.Got1xxResponse(code, textproto.MIMEHeader(res.Header)); err != nil {
				return nil, err
			}
		}
	}
}

// release ends c's request: back to the pool when reuse says the
// connection may carry another one and the client did not leave meanwhile,
// closed otherwise.
func (c *h1Conn) release(stop func() bool, reuse bool) {
	if stop() && reuse && c.br.Buffered() == 0 {
		c.pool.put(c)
		return
	}
	// Bytes past the answer are not ours to read: the next request
	// would take them for its own answer.
	c.nc.Close()
}

// h1Body is the body of an answer on a pooled connection.
type h1Body struct {
	conn  *h1Conn
	body  io.ReadCloser
	stop  func() bool
	reuse bool
	done  bool
}

func (b *h1Body) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.body.Read(p)
	if err != nil {
		b.done = true
		b.conn.release(b.stop, b.reuse && err == io.EOF)
	}
	return n, err
}

// Close ends the body. Unread, it leaves the connection mid-answer, so the
// connection is closed rather than pooled.
func (b *h1Body) Close() error {
	if !b.done {
		b.done = true
		b.conn.release(b.stop, false)
	}
	return nil
}
