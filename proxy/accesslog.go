package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// exchange wraps the ResponseWriter of one request to record what the
// access log reports: status, bytes and the Upstream that answered.
type exchange struct {
	http.ResponseWriter
	// req is the request as routed: its path is the cleaned one.
	req      *http.Request
	status   int
	bytes    int64
	upstream string
	site     *site
	route    *route
	// retries counts the Upstreams tried after the first one.
	retries int
	// requestID is the request's X-Request-ID, as received or generated.
	requestID string
	// requestIDValue holds requestID as the one-element header value that
	// both the response and the outbound request carry. It is shared and
	// never written in place (cap == len, so an Add copies).
	requestIDValue [1]string
	// body counts the request body bytes read, for bytes_in.
	body countingBody
	// writeTimeout is timeouts.write, or 0 once the connection is handed
	// over (a WebSocket keeps no deadline); extendedAt is when the write
	// deadline was last moved, in Unix nanoseconds (see extendWrite).
	// Both are kept small: the exchange is allocated per request.
	writeTimeout time.Duration
	extendedAt   int64
	// writeFailed is set once a write to the client failed: it left, or
	// stalled past the write deadline.
	writeFailed bool
	// proxy and forwarded are a proxied request's context and its
	// X-Forwarded-For and -Host values, kept here to save allocations.
	proxy     proxyCtx
	forwarded [2]string
}

// countingBody counts what is read from a request body. The count is
// atomic: an Upstream transport may still be reading the body on its own
// goroutine when the access line is written.
type countingBody struct {
	io.ReadCloser
	n atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// countBody makes x count the bytes read from its request's body. It
// changes the request in place, as http.MaxBytesReader users do; a request
// without a body keeps http.NoBody, which ReverseProxy relies on.
func (x *exchange) countBody() {
	r := x.req
	if r.Body == nil || r.Body == http.NoBody {
		return
	}
	x.body.ReadCloser = r.Body
	r.Body = &x.body
}

// exchangeKey is the context key under which proxied requests carry their
// exchange, for the balancer and the ErrorHandler.
type exchangeKey struct{}

// exchangeFrom returns the exchange carried by ctx, or nil.
func exchangeFrom(ctx context.Context) *exchange {
	x, _ := ctx.Value(exchangeKey{}).(*exchange)
	return x
}

// exchangeOf finds the exchange in a chain of wrapped ResponseWriters.
func exchangeOf(w http.ResponseWriter) *exchange {
	for {
		switch v := w.(type) {
		case *exchange:
			return v
		case interface{ Unwrap() http.ResponseWriter }:
			w = v.Unwrap()
		default:
			return nil
		}
	}
}

// writeDeadliner is the write deadline the servers' ResponseWriters
// offer: the connection's on HTTP/1.1, the stream's on HTTP/2 and HTTP/3.
type writeDeadliner interface{ SetWriteDeadline(time.Time) error }

// extendWrite moves the write deadline to timeouts.write from now, so a
// client that stops reading loses its response once that long passes
// without progress, while one that reads, however slowly, keeps it. It
// moves the deadline at most once per eighth of the timeout: on HTTP/2
// each move is a message to the connection's serve loop, and a stall is
// still cut off within 7/8 to 8/8 of the timeout.
func (x *exchange) extendWrite() {
	if x.writeTimeout <= 0 {
		return
	}
	now := time.Now()
	if now.UnixNano()-x.extendedAt < int64(x.writeTimeout/8) {
		return
	}
	if d, ok := x.ResponseWriter.(writeDeadliner); ok {
		_ = d.SetWriteDeadline(now.Add(x.writeTimeout))
		x.extendedAt = now.UnixNano()
	}
}

// bufferedBytes is what an HTTP/2 or HTTP/3 response may write before it
// arms a write deadline: the server buffers that much (HTTP/2's 4 KiB
// handler buffer; HTTP/3's stream windows are far larger), so such a
// write never blocks on a client that reads nothing. A deadline there
// costs a message to the connection's serve loop and a timer per stream,
// a fifth of the CPU of a small proxied HTTP/2 request (bench case 2).
const bufferedBytes = 4 << 10

// armWrite moves the write deadline before n more bytes of the response
// go out, unless all of them fit the server's buffer and none was armed
// yet. An HTTP/1.1 response has one from its start (its connection keeps
// the last one), so it always moves on.
func (x *exchange) armWrite(n int) {
	if x.extendedAt == 0 && x.bytes+int64(n) <= bufferedBytes {
		return
	}
	x.extendWrite()
}

// FlushError arms the write deadline before a flush, which sends what is
// buffered and so may block on the client.
func (x *exchange) FlushError() error {
	x.extendWrite()
	return http.NewResponseController(x.ResponseWriter).Flush()
}

// WriteHeader records the first final status. An informational answer
// (103 Early Hints) loses its hop-by-hop headers here: ReverseProxy copies
// an Upstream's 1xx header to the client as it came.
func (x *exchange) WriteHeader(code int) {
	if x.status == 0 && code >= 200 {
		x.status = code
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		removeHopHeaders(x.Header())
	}
	x.armWrite(0)
	x.ResponseWriter.WriteHeader(code)
}

func (x *exchange) Write(p []byte) (int, error) {
	if x.status == 0 {
		x.status = http.StatusOK
	}
	x.armWrite(len(p))
	n, err := x.ResponseWriter.Write(p)
	x.bytes += int64(n)
	x.writeFailed = x.writeFailed || err != nil
	return n, err
}

// WriteString spares fixed responses a copy to []byte.
func (x *exchange) WriteString(s string) (int, error) {
	if x.status == 0 {
		x.status = http.StatusOK
	}
	x.armWrite(len(s))
	n, err := io.WriteString(x.ResponseWriter, s)
	x.bytes += int64(n)
	x.writeFailed = x.writeFailed || err != nil
	return n, err
}

// readFromChunk is how much of a static file goes out per write deadline
// (timeouts.write): a client must read this much per timeout to keep its
// download.
const readFromChunk = 64 << 10

// ReadFrom keeps sendfile for static files (an io.LimitedReader of a file
// still qualifies), in chunks, each with its own write deadline.
func (x *exchange) ReadFrom(r io.Reader) (int64, error) {
	if x.status == 0 {
		x.status = http.StatusOK
	}
	rf, ok := x.ResponseWriter.(io.ReaderFrom)
	if !ok {
		rf = readerFrom{x.ResponseWriter}
	}
	var total int64
	lr := &io.LimitedReader{R: r}
	for {
		x.extendWrite()
		lr.N = readFromChunk
		n, err := rf.ReadFrom(lr)
		total += n
		x.bytes += n
		x.writeFailed = x.writeFailed || err != nil
		if err != nil || lr.N > 0 {
			// An error, or the reader ended before the chunk did.
			return total, err
		}
	}
}

// readerFrom copies into a ResponseWriter without io.ReaderFrom.
type readerFrom struct{ w io.Writer }

func (r readerFrom) ReadFrom(src io.Reader) (int64, error) {
	return io.Copy(struct{ io.Writer }{r.w}, src)
}

// Unwrap lets http.ResponseController reach Flush and deadlines.
func (x *exchange) Unwrap() http.ResponseWriter { return x.ResponseWriter }

// Hijack records a protocol switch (ReverseProxy writes the 101 itself on
// the hijacked connection).
func (x *exchange) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(x.ResponseWriter).Hijack()
	if err == nil {
		// A WebSocket may stay quiet for as long as its ends like.
		x.writeTimeout = 0
		_ = c.SetWriteDeadline(time.Time{})
	}
	if err == nil && x.status == 0 {
		x.status = http.StatusSwitchingProtocols
	}
	return c, brw, err
}

// logAccess writes one access line for a finished request: time,
// client_ip, method, host, path, proto, status, bytes_in, bytes_out,
// duration_ms, tls_version, then site, route, upstream, retries and
// request_id when they apply. The query string and every header
// (Authorization, Cookie) are left out: they may hold secrets.
func (h *Handler) logAccess(t *Table, x *exchange, start time.Time) {
	r := x.req
	ctx := r.Context()
	status := x.status
	if status == 0 {
		status = http.StatusOK
	}
	if t.observe != nil {
		var name string
		if x.site != nil {
			name = x.site.name
		}
		t.observe(name, status, h.now().Sub(start))
	}
	if !t.accessLog || !h.logger.Enabled(ctx, slog.LevelInfo) {
		return
	}
	var client string
	if ip := t.clientIP(r); ip.IsValid() {
		client = ip.String()
	}
	attrs := make([]slog.Attr, 0, 16)
	attrs = append(attrs,
		slog.String("client_ip", client),
		slog.String("method", r.Method),
		slog.String("host", r.Host),
		slog.String("path", r.URL.Path),
		slog.String("proto", r.Proto),
		slog.Int("status", status),
		slog.Int64("bytes_in", x.body.n.Load()),
		slog.Int64("bytes_out", x.bytes),
		slog.Float64("duration_ms", float64(h.now().Sub(start).Microseconds())/1000),
	)
	if v := tlsVersion(r.TLS); v != "" {
		attrs = append(attrs, slog.String("tls_version", v))
	}
	if x.site != nil {
		attrs = append(attrs, slog.String("site", x.site.name))
	}
	if x.route != nil {
		attrs = append(attrs, slog.String("route", x.route.path))
	}
	if x.upstream != "" {
		attrs = append(attrs, slog.String("upstream", x.upstream), slog.Int("retries", x.retries))
	}
	if x.requestID != "" {
		attrs = append(attrs, slog.String("request_id", x.requestID))
	}
	h.logger.LogAttrs(ctx, slog.LevelInfo, "request", attrs...)
}

// tlsVersion names the TLS version of a connection as "1.3", or returns ""
// for plain HTTP.
func tlsVersion(cs *tls.ConnectionState) string {
	if cs == nil {
		return ""
	}
	switch cs.Version {
	case tls.VersionTLS13:
		return "1.3"
	case tls.VersionTLS12:
		return "1.2"
	case tls.VersionTLS11:
		return "1.1"
	case tls.VersionTLS10:
		return "1.0"
	}
	return "unknown"
}
