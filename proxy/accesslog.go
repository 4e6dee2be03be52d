package proxy

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
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

// WriteHeader records the first final status.
func (x *exchange) WriteHeader(code int) {
	if x.status == 0 && code >= 200 {
		x.status = code
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

// logAccess writes one access line for a finished request. The query
// string and credentials headers are never logged: they may hold secrets.
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
	attrs := make([]slog.Attr, 0, 12)
	attrs = append(attrs,
		slog.String("method", r.Method),
		slog.String("host", r.Host),
		slog.String("path", r.URL.Path),
		slog.String("proto", r.Proto),
		slog.Int("status", status),
		slog.Int64("bytes", x.bytes),
		slog.Float64("duration_ms", float64(h.now().Sub(start).Microseconds())/1000),
	)
	if ip := t.clientIP(r); ip.IsValid() {
		attrs = append(attrs, slog.String("client_ip", ip.String()))
	}
	if x.site != nil {
		attrs = append(attrs, slog.String("site", x.site.name))
	}
	if x.route != nil {
		attrs = append(attrs, slog.String("route", x.route.path))
	}
	if x.upstream != "" {
		attrs = append(attrs, slog.String("upstream", x.upstream))
	}
	h.logger.LogAttrs(ctx, slog.LevelInfo, "request", attrs...)
}
