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
	x.ResponseWriter.WriteHeader(code)
}

func (x *exchange) Write(p []byte) (int, error) {
	if x.status == 0 {
		x.status = http.StatusOK
	}
	n, err := x.ResponseWriter.Write(p)
	x.bytes += int64(n)
	return n, err
}

// WriteString spares fixed responses a copy to []byte.
func (x *exchange) WriteString(s string) (int, error) {
	if x.status == 0 {
		x.status = http.StatusOK
	}
	n, err := io.WriteString(x.ResponseWriter, s)
	x.bytes += int64(n)
	return n, err
}

// ReadFrom keeps sendfile for static files.
func (x *exchange) ReadFrom(r io.Reader) (int64, error) {
	if x.status == 0 {
		x.status = http.StatusOK
	}
	var n int64
	var err error
	if rf, ok := x.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(struct{ io.Writer }{x.ResponseWriter}, r)
	}
	x.bytes += n
	return n, err
}

// Unwrap lets http.ResponseController reach Flush and deadlines.
func (x *exchange) Unwrap() http.ResponseWriter { return x.ResponseWriter }

// Hijack records a protocol switch (ReverseProxy writes the 101 itself on
// the hijacked connection).
func (x *exchange) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(x.ResponseWriter).Hijack()
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
