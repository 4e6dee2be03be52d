package proxy

import (
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// shaping is the compiled request and response shaping and access control
// of one Route. Requests go through it in a fixed order:
//
//  1. response headers (security_headers preset, response_headers): the
//     outermost wrapper, so even a 401, 403 or 429 carries them (the
//     Handler applies them to its own 413 for the Route, and the proxy to
//     a WebSocket's 101, which no wrapper sees);
//  2. allow_ips / deny_ips (403);
//  3. rate_limit (429 with Retry-After), before any password is checked,
//     so it also bounds guessing;
//  4. basic_auth (401), then forward_auth;
//  5. compress, wrapping the Route's own handler;
//  6. for Upstreams, the request as sent: strip_prefix, add_prefix,
//     rewrite, then request_headers and X-Request-ID (see outbound).
type shaping struct {
	table *trust

	responseHeaders *headerOps
	allow, deny     []netip.Prefix
	rateLimit       *rateLimiter
	basicAuth       *basicAuth
	forwardAuth     *forwardAuth
	compress        bool

	// Request side, for Upstreams only.
	requestHeaders *headerOps
	addPrefix      string // without a trailing slash
	addPrefixRaw   string // addPrefix escaped
	rewrite        *regexp.Regexp
	rewriteTo      string
}

// shape compiles cr's shaping and access control and returns h wrapped in
// them, or h itself when the Route has none. It sets r.shape for
// [route.outbound] and appends the options to r.desc.
func (c *compiler) shape(s *site, r *route, cr *config.Route, h http.Handler) (http.Handler, error) {
	sh := &shaping{table: c.table.trust, compress: cr.Compress}
	var err error
	if sh.responseHeaders, err = compileHeaders(cr.ResponseHeaders, config.HeaderPlaceholders); err != nil {
		return nil, fmt.Errorf("compiling response_headers: %w", err)
	}
	if s.headers != nil {
		sh.responseHeaders = withSecurityDefaults(sh.responseHeaders)
	}
	if sh.requestHeaders, err = compileHeaders(cr.RequestHeaders, config.RequestHeaderPlaceholders); err != nil {
		return nil, fmt.Errorf("compiling request_headers: %w", err)
	}
	for i, p := range cr.AllowIPs {
		pr, err := parsePrefix(p)
		if err != nil {
			return nil, fmt.Errorf("parsing allow_ips[%d]: %w", i, err)
		}
		sh.allow = append(sh.allow, pr)
	}
	for i, p := range cr.DenyIPs {
		pr, err := parsePrefix(p)
		if err != nil {
			return nil, fmt.Errorf("parsing deny_ips[%d]: %w", i, err)
		}
		sh.deny = append(sh.deny, pr)
	}
	if cr.RateLimit != nil {
		if sh.rateLimit, err = newRateLimiter(c.table.trust, cr.RateLimit, c.table.clock.now); err != nil {
			return nil, fmt.Errorf("compiling rate_limit: %w", err)
		}
	}
	if cr.BasicAuth != nil {
		if sh.basicAuth, err = newBasicAuth(cr.BasicAuth, c.table.clock.now); err != nil {
			return nil, fmt.Errorf("compiling basic_auth: %w", err)
		}
	}
	if cr.ForwardAuth != nil {
		if sh.forwardAuth, err = newForwardAuth(c.table.trust, c.table.logger, cr.ForwardAuth); err != nil {
			return nil, fmt.Errorf("compiling forward_auth: %w", err)
		}
	}
	if p := strings.TrimSuffix(cr.AddPrefix, "/"); p != "" {
		sh.addPrefix = p
		sh.addPrefixRaw = (&url.URL{Path: p}).EscapedPath()
	}
	if rw := cr.Rewrite; rw != nil {
		if sh.rewrite, err = regexp.Compile(rw.Match); err != nil {
			return nil, fmt.Errorf("compiling rewrite.match: %w", err)
		}
		sh.rewriteTo = rw.To
	}
	r.shape = sh
	r.desc += sh.describe()

	if sh.compress {
		h = &compressHandler{next: h}
	}
	if fa := sh.forwardAuth; fa != nil {
		fa.next = h
		h = fa
	}
	if ba := sh.basicAuth; ba != nil {
		ba.next = h
		h = ba
	}
	if rl := sh.rateLimit; rl != nil {
		rl.next = h
		h = rl
	}
	if sh.allow != nil || sh.deny != nil {
		h = &ipFilter{table: c.table.trust, allow: sh.allow, deny: sh.deny, next: h}
	}
	if sh.responseHeaders != nil {
		h = &responseHeaders{ops: sh.responseHeaders, table: c.table.trust, next: h}
	}
	return h, nil
}

// describe renders the shaping options for Describe, each with a leading
// space.
func (sh *shaping) describe() string {
	var b strings.Builder
	if sh.requestHeaders != nil {
		b.WriteString(" request_headers")
	}
	if sh.responseHeaders != nil {
		b.WriteString(" response_headers")
		if sh.responseHeaders.defaults != nil {
			b.WriteString("+security")
		}
	}
	if sh.addPrefix != "" {
		b.WriteString(" add_prefix=" + sh.addPrefix)
	}
	if sh.rewrite != nil {
		fmt.Fprintf(&b, " rewrite=%q->%q", sh.rewrite.String(), sh.rewriteTo)
	}
	if sh.compress {
		b.WriteString(" compress")
	}
	for _, p := range sh.allow {
		b.WriteString(" allow=" + p.String())
	}
	for _, p := range sh.deny {
		b.WriteString(" deny=" + p.String())
	}
	if rl := sh.rateLimit; rl != nil {
		fmt.Fprintf(&b, " rate_limit=%s/%s burst=%d key=%s max_clients=%d", strconv.Itoa(rl.requests), rl.per, rl.burst, rl.keyName, rl.maxClients)
	}
	if ba := sh.basicAuth; ba != nil {
		fmt.Fprintf(&b, " basic_auth=%d users", len(ba.users))
	}
	if fa := sh.forwardAuth; fa != nil {
		fmt.Fprintf(&b, " forward_auth=%s", fa.url.Redacted())
	}
	return b.String()
}

// outbound shapes the request sent to an Upstream, after strip_prefix and
// the forwarding headers: add_prefix, rewrite, request_headers, and the
// X-Request-ID, which always reaches the Upstream.
func (r *route) outbound(in, out *http.Request) {
	x := exchangeFrom(in.Context())
	var id string
	if x != nil {
		id = x.requestID
	}
	if id != "" {
		out.Header[requestIDHeader] = x.requestIDValue[:]
	}
	sh := r.shape
	if sh == nil {
		return
	}
	if sh.addPrefix != "" {
		out.URL.Path = sh.addPrefix + out.URL.Path
		if out.URL.RawPath != "" {
			out.URL.RawPath = sh.addPrefixRaw + out.URL.RawPath
		}
	}
	if sh.rewrite != nil {
		p := sh.rewrite.ReplaceAllString(out.URL.Path, sh.rewriteTo)
		if !strings.HasPrefix(p, "/") {
			p = "/" + p
		}
		out.URL.Path, out.URL.RawPath = p, ""
	}
	if ops := sh.requestHeaders; ops != nil {
		v := vars{t: sh.table, r: in, requestID: id}
		if u, ok := in.Context().Value(userKey{}).(string); ok {
			v.user = u
		}
		ops.apply(out.Header, &v)
		if ops.host != nil {
			out.Host = ops.host.value(&v)[0]
		}
	}
}

// ipFilter answers 403 to clients deny_ips names or allow_ips does not.
// The client is the real one: the peer, or what trusted proxies say.
type ipFilter struct {
	table       *trust
	allow, deny []netip.Prefix
	next        http.Handler
}

func (f *ipFilter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !f.admits(f.table.clientIP(r)) {
		writeStatus(w, http.StatusForbidden)
		return
	}
	f.next.ServeHTTP(w, r)
}

// admits reports whether ip may pass. An invalid ip (no peer address)
// passes only when there is no allow list.
func (f *ipFilter) admits(ip netip.Addr) bool {
	for _, p := range f.deny {
		if p.Contains(ip) {
			return false
		}
	}
	if len(f.allow) == 0 {
		return true
	}
	for _, p := range f.allow {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// responseHeaders applies the security_headers preset and response_headers
// to every response of the Route, as its header is written.
type responseHeaders struct {
	ops   *headerOps
	table *trust
	next  http.Handler
}

func (rh *responseHeaders) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hw := &headerWriter{ResponseWriter: w, ops: rh.ops, table: rh.table, r: r}
	rh.next.ServeHTTP(hw, r)
}

// responseHeaders returns the response header shaping of r, nil when it
// has none.
func (r *route) responseHeaders() *headerOps {
	if r.shape == nil {
		return nil
	}
	return r.shape.responseHeaders
}

// writeShapedStatus is writeStatus for the answers the Handler gives on
// behalf of a Site or Route before any Route handler runs (400, 404, 413):
// ops, the response headers that Site or Route puts on every response, are
// applied as the Route's own wrapper would. Nil ops is plain writeStatus.
func writeShapedStatus(w http.ResponseWriter, r *http.Request, t *trust, ops *headerOps, code int) {
	if ops != nil {
		w = &headerWriter{ResponseWriter: w, ops: ops, table: t, r: r}
	}
	writeStatus(w, code)
}

// headerWriter changes the response header just before it is written.
type headerWriter struct {
	http.ResponseWriter
	ops   *headerOps
	table *trust
	r     *http.Request
	done  bool
}

func (w *headerWriter) apply() {
	if w.done {
		return
	}
	w.done = true
	v := vars{t: w.table, r: w.r}
	if x := exchangeOf(w.ResponseWriter); x != nil {
		v.requestID = x.requestID
	}
	w.ops.apply(w.Header(), &v)
}

func (w *headerWriter) WriteHeader(code int) {
	if code >= 200 {
		w.apply()
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *headerWriter) Write(p []byte) (int, error) {
	w.apply()
	return w.ResponseWriter.Write(p)
}

func (w *headerWriter) WriteString(s string) (int, error) {
	w.apply()
	return io.WriteString(w.ResponseWriter, s)
}

// ReadFrom keeps sendfile for static files.
func (w *headerWriter) ReadFrom(r io.Reader) (int64, error) {
	w.apply()
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{w.ResponseWriter}, r)
}

// FlushError writes the header, changed, before a flush sends it.
func (w *headerWriter) FlushError() error {
	w.apply()
	return http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *headerWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// inheritShaping hands per-client state a reload should not reset from old
// to t, before t serves: the rate-limit buckets and the remembered
// basic_auth logins of every Route whose Site, path and settings are
// unchanged. Otherwise a reload would give every client a fresh burst.
// Both Tables then share that state, which is safe: it has its own locks.
func (t *Table) inheritShaping(old *Table) {
	if old == nil || old == t {
		return
	}
	for _, s := range t.sites {
		// The Site old had under s's name; a Site taken over from old
		// (Options.Reuse) has its state already.
		o := old.configured(s.name)
		if o == s || o == nil || o.name != s.name {
			continue
		}
		for _, r := range s.routes {
			sh := r.shape
			if sh == nil {
				continue
			}
			var prev *shaping
			for _, or := range o.routes {
				if or.path == r.path {
					prev = or.shape
					break
				}
			}
			if prev == nil {
				continue
			}
			if a, b := sh.rateLimit, prev.rateLimit; a != nil && b != nil && a.sameSettings(b) {
				a.seed, a.shards = b.seed, b.shards
			}
			if a, b := sh.basicAuth, prev.basicAuth; a != nil && b != nil && a.sameUsers(b) {
				a.salt, a.logins = b.salt, b.logins
			}
		}
	}
}
