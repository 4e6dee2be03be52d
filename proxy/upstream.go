package proxy

import (
	"context"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
)

// statusClientClosedRequest is nginx's 499: the client went away before the
// response was ready. It is logged, never sent.
const statusClientClosedRequest = 499

// proxyRoute forwards a Route's requests to its Upstreams.
type proxyRoute struct {
	table    *trust
	route    *route
	balancer *balancer
	hsts     bool // the Site sends its own Strict-Transport-Security
	logger   *slog.Logger
	rp       *httputil.ReverseProxy
}

func newProxyRoute(t *Table, s *site, r *route, b *balancer, errorLog *log.Logger) *proxyRoute {
	p := &proxyRoute{table: t.trust, route: r, balancer: b, hsts: s.hsts != nil, logger: t.logger}
	p.rp = &httputil.ReverseProxy{
		Rewrite:      p.rewrite,
		Transport:    b,
		ErrorHandler: p.handleError,
		ErrorLog:     errorLog,
		BufferPool:   t.buffers,
		// Zero: ReverseProxy already flushes text/event-stream and
		// responses of unknown length at once; the rest is buffered.
		FlushInterval: 0,
	}
	p.rp.ModifyResponse = p.modifyResponse
	return p
}

// ServeHTTP proxies r. A proxyCtx rides in the context so the balancer
// can see the routed request, record which Upstream answered in the
// exchange, and leave that Upstream counted in flight until the response
// is copied.
func (p *proxyRoute) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var pc *proxyCtx
	if x := exchangeOf(w); x != nil {
		// The exchange lives as long as the request: no allocation of
		// its own for the proxyCtx.
		pc = &x.proxy
		*pc = proxyCtx{Context: r.Context(), x: x, in: r, body: flushingBody{w: w}}
	} else {
		pc = &proxyCtx{Context: r.Context(), in: r, body: flushingBody{w: w}}
	}
	defer p.finish(pc, r)
	p.rp.ServeHTTP(w, r.WithContext(pc))
}

// finish runs once ReverseProxy is done with r, also when it aborted an
// answer whose body broke off: panic(http.ErrAbortHandler), which the
// server turns into a connection closed without the last chunk (HTTP/1.1)
// or a reset stream (HTTP/2, HTTP/3), so the client never takes a
// truncated body for a whole one. The Upstream leaves the in-flight count
// either way, and an answer the Upstream cut off is logged with what had
// reached the client.
func (p *proxyRoute) finish(pc *proxyCtx, r *http.Request) {
	if pc.up != nil {
		pc.up.state().inFlight.Add(-1)
	}
	v := recover()
	if v == nil {
		return
	}
	if v == http.ErrAbortHandler {
		p.logCutOff(pc, r)
	}
	panic(v)
}

// logCutOff logs an answer abandoned mid-body: a warning when the Upstream
// broke it off, debug when the client had left or stopped reading
// (timeouts.write).
func (p *proxyRoute) logCutOff(pc *proxyCtx, r *http.Request) {
	attrs := []slog.Attr{slog.String("host", r.Host), slog.String("route", p.route.path)}
	clientSide := r.Context().Err() != nil
	if x := pc.x; x != nil {
		attrs = append(attrs, slog.String("upstream", x.upstream), slog.Int("status", x.status), slog.Int64("bytes_out", x.bytes))
		clientSide = clientSide || x.writeFailed
	}
	if clientSide {
		p.logger.LogAttrs(r.Context(), slog.LevelDebug, "client left mid-answer", attrs...)
		return
	}
	p.logger.LogAttrs(r.Context(), slog.LevelWarn, "upstream answer cut off", attrs...)
}

// proxyCtx is the context of a proxied request: one allocation carrying
// what the balancer and the ErrorHandler need.
type proxyCtx struct {
	context.Context
	x  *exchange     // nil when the ResponseWriter hides it
	in *http.Request // the routed request, for the real client IP
	up *upstream     // the Upstream whose answer is sent, set by the balancer
	// body is the answer's body as ReverseProxy reads it, when the answer
	// has a known length (see flushingBody).
	body flushingBody
}

// proxyCtxKey finds the proxyCtx through contexts derived from it.
type proxyCtxKey struct{}

func (c *proxyCtx) Value(key any) any {
	switch key.(type) {
	case exchangeKey:
		if c.x == nil {
			return nil
		}
		return c.x
	case proxyCtxKey:
		return c
	}
	return c.Context.Value(key)
}

// proxyCtxFrom returns the proxyCtx carried by ctx, or nil.
func proxyCtxFrom(ctx context.Context) *proxyCtx {
	pc, _ := ctx.Value(proxyCtxKey{}).(*proxyCtx)
	return pc
}

// rewrite builds the outbound request. ReverseProxy has already removed
// hop-by-hop headers (those named in Connection too) and every
// X-Forwarded-* and Forwarded header; the Upstream URL is filled in by the
// balancer. The Host header passes through unchanged.
func (p *proxyRoute) rewrite(pr *httputil.ProxyRequest) {
	in, out := pr.In, pr.Out
	if p.route.stripPrefix {
		out.URL.Path = p.route.strip(in.URL.Path)
		out.URL.RawPath = stripRawPath(in.URL.RawPath, p.route.prefix)
	}
	// ReverseProxy re-adds Upgrade for any protocol; only WebSocket may pass,
	// so an h2c or other upgrade never reaches an Upstream.
	if up := out.Header.Get("Upgrade"); up != "" && !strings.EqualFold(up, "websocket") {
		out.Header.Del("Upgrade")
		out.Header.Del("Connection")
	}
	var vals *[2]string
	if pc := proxyCtxFrom(in.Context()); pc != nil && pc.x != nil {
		vals = &pc.x.forwarded
	}
	p.table.setForwarded(in, out, vals)
	p.route.outbound(in, out)
}

// stripRawPath removes prefix from an escaped path, or returns "" (let the
// URL encode Path) when the escaped form does not start with it literally.
func stripRawPath(raw, prefix string) string {
	if raw == "" || !strings.HasPrefix(raw, prefix) {
		return ""
	}
	rest := raw[len(prefix):]
	if rest == "" || rest[0] != '/' {
		return ""
	}
	return rest
}

// modifyResponse drops an Upstream's Strict-Transport-Security when the
// Site sends its own, and its X-Request-ID, so clients see exactly one of
// each. A 101 Switching Protocols loses its hop-by-hop headers and gets
// the Route's response headers here:
// ReverseProxy writes it on the hijacked connection, past the wrapper
// that shapes every other response.
func (p *proxyRoute) modifyResponse(res *http.Response) error {
	if p.hsts {
		res.Header.Del("Strict-Transport-Security")
	}
	// The client gets gatehouse's X-Request-ID (set by the Handler), once.
	delete(res.Header, requestIDHeader)
	if res.StatusCode == http.StatusSwitchingProtocols {
		// ReverseProxy copies a 101's header as it came.
		removeUpgradeHopHeaders(res.Header)
		if ops := p.route.responseHeaders(); ops != nil {
			p.shapeUpgrade(res, ops)
		}
		return nil
	}
	// ReverseProxy flushes after every write only when the length is
	// unknown; a known length gets flushingBody.
	if res.ContentLength > 0 && res.Body != http.NoBody {
		if pc := proxyCtxFrom(res.Request.Context()); pc != nil && pc.body.w != nil {
			pc.body.ReadCloser = res.Body
			pc.body.left = -res.ContentLength
			res.Body = &pc.body
		}
	}
	return nil
}

// flushingBody is an Upstream's answer of known length as ReverseProxy
// copies it to the client. Before each read after the first, while bytes
// are due, it flushes the client's ResponseWriter: that read may wait for
// an Upstream that stalls, and what was copied before must reach the
// client meanwhile, not sit in the writer's buffer (issue 16). An answer
// read whole in one read, as most are, is never flushed.
type flushingBody struct {
	io.ReadCloser
	// w is what ReverseProxy writes the answer to.
	w http.ResponseWriter
	// left counts the announced bytes not yet read, negated until the
	// first read (one field rather than two: it rides in every exchange).
	left int64
}

func (b *flushingBody) Read(p []byte) (int, error) {
	if b.left > 0 {
		// A client that left fails the next write, which ends the copy;
		// the flush's error adds nothing.
		_ = http.NewResponseController(b.w).Flush()
	} else if b.left < 0 {
		b.left = -b.left
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	return n, err
}

// shapeUpgrade applies ops to the 101 answering a WebSocket upgrade.
func (p *proxyRoute) shapeUpgrade(res *http.Response, ops *headerOps) {
	v := vars{t: p.table, r: res.Request}
	var sent http.Header
	if pc := proxyCtxFrom(res.Request.Context()); pc != nil {
		v.r = pc.in
		if pc.x != nil {
			v.requestID = pc.x.requestID
			sent = pc.x.Header()
		}
	}
	ops.applyUpgrade(sent, res.Header, &v)
}

// handleError answers a failed proxy attempt: 413 for a body over max_body,
// nothing (499 in the log) when the client left, 502 when no Upstream could
// be reached or one broke the connection, 503 with Retry-After when every
// Upstream is unhealthy or ejected, 504 when one was too slow.
func (p *proxyRoute) handleError(w http.ResponseWriter, r *http.Request, err error) {
	code := errorStatus(r.Context(), err)
	x := exchangeFrom(r.Context())
	attrs := []slog.Attr{
		slog.String("host", r.Host),
		slog.String("route", p.route.path),
		slog.Int("status", code),
		slog.Any("error", err),
	}
	if x != nil && x.upstream != "" {
		attrs = append(attrs, slog.String("upstream", x.upstream))
	}
	level := slog.LevelWarn
	if code == statusClientClosedRequest || code == http.StatusRequestEntityTooLarge || code == http.StatusServiceUnavailable {
		// The client's doing, or (503) every Upstream is known to be down,
		// which their health changes already logged.
		level = slog.LevelDebug
	}
	p.logger.LogAttrs(r.Context(), level, "proxying request", attrs...)
	if code == statusClientClosedRequest {
		if x != nil {
			x.status = code
		}
		return
	}
	if ue, ok := errors.AsType[*errUnavailable](err); ok {
		w.Header().Set("Retry-After", ue.retryAfterValue())
	}
	writeStatus(w, code)
}

// errorStatus maps a ReverseProxy error to the status the client gets.
func errorStatus(ctx context.Context, err error) int {
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return http.StatusRequestEntityTooLarge
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		return statusClientClosedRequest
	}
	if _, ok := errors.AsType[*errUnavailable](err); ok {
		return http.StatusServiceUnavailable
	}
	if isDialError(err) {
		return http.StatusBadGateway
	}
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return http.StatusGatewayTimeout
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return http.StatusGatewayTimeout
	}
	return http.StatusBadGateway
}
