package proxy

import (
	"io"
	"log/slog"
	"net/http"
	"path"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Handler serves requests from the current Table. Swap replaces the Table
// atomically: a request keeps the Table it started with, and hijacked
// connections (WebSockets) are never touched by a swap.
type Handler struct {
	table  atomic.Pointer[Table]
	logger *slog.Logger
	now    func() time.Time
	// swapMu serializes Swap and Close, which hand Upstream health checks
	// from one Table to the next.
	swapMu sync.Mutex
}

// NewHandler returns a Handler serving t. Access lines go to logger at Info
// when the Table's config turns them on; nil means discard.
func NewHandler(t *Table, logger *slog.Logger) *Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h := &Handler{logger: logger, now: time.Now}
	stopCheckers(t.activate(nil))
	h.table.Store(t)
	return h
}

// Swap makes t the Table for every request that starts from now on.
// Compile t completely before calling Swap; a failed reload simply never
// calls it and the old Table keeps serving. Upstream health (checks,
// ejections, in-flight counts) carries over to t for Upstreams it keeps;
// the old Table's other health checks stop.
func (h *Handler) Swap(t *Table) {
	h.swapMu.Lock()
	defer h.swapMu.Unlock()
	stale := t.activate(h.table.Load())
	t.inheritShaping(h.table.Load())
	h.table.Store(t)
	stopCheckers(stale)
}

// Table returns the Table currently served.
func (h *Handler) Table() *Table { return h.table.Load() }

// ServeHTTP serves the HTTPS Listener: it routes r by Host and path and
// hands it to the Route's handler. An unknown Host or path gets 404, a Host
// belonging to another Site than the TLS server name 421.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t := h.table.Load()
	start := h.now()
	x := &exchange{ResponseWriter: w, req: r, writeTimeout: t.writeTimeout}
	if r.ProtoMajor == 1 {
		// An HTTP/1.1 connection keeps the last request's deadline, which
		// may have passed while it sat idle; what the server writes before
		// any Write here (a 100 Continue) needs a fresh one.
		x.extendWrite()
	}
	// Deferred so that a request aborted by panic(http.ErrAbortHandler),
	// as ReverseProxy does when an Upstream breaks mid-body, is logged too.
	defer h.logAccess(t, x, start)
	x.requestID = requestIDFor(r)
	x.requestIDValue[0] = x.requestID
	x.Header()[requestIDHeader] = x.requestIDValue[:]
	x.countBody()
	if code := t.limits.refuse(r); code != 0 {
		writeStatus(x, code)
		return
	}

	s := t.site(r.Host)
	if s == nil {
		writeStatus(x, http.StatusNotFound)
		return
	}
	x.site = s
	if r.TLS != nil && r.TLS.ServerName != "" && t.site(r.TLS.ServerName) != s {
		// The connection was set up for another Site (HTTP/2 connection
		// reuse, or a client lying); 421 makes the client open a new one.
		writeStatus(x, http.StatusMisdirectedRequest)
		return
	}
	if s.hsts != nil && r.TLS != nil {
		// The slice is shared and never written in place; Add copies it.
		x.Header()["Strict-Transport-Security"] = s.hsts
	}
	p := r.URL.Path
	if p == "" || p[0] != '/' {
		// CONNECT and "OPTIONS *": no path to route.
		writeShapedStatus(x, r, t.trust, s.headers, http.StatusBadRequest)
		return
	}
	if c := cleanPath(p); c != p {
		r = withPath(r, c)
		x.req = r
	}
	rt := s.route(r.URL.Path)
	if rt == nil {
		// The Site's own 404 carries its security headers, as Caddy and
		// Traefik put their header middleware on it.
		writeShapedStatus(x, r, t.trust, s.headers, http.StatusNotFound)
		return
	}
	x.route = rt
	if rt.maxBody > 0 {
		if r.ContentLength > rt.maxBody {
			// Answered before the Route's handler, so its response
			// headers are applied here.
			writeShapedStatus(x, r, t.trust, rt.responseHeaders(), http.StatusRequestEntityTooLarge)
			return
		}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = http.MaxBytesReader(w, r.Body, rt.maxBody)
		}
	}
	rt.handler.ServeHTTP(x, r)
}

// RedirectHandler returns the handler for the HTTP Listener: a 308 to the
// same host, path and query over HTTPS for every host a Site serves, 404
// for any other. It follows Swap like ServeHTTP does.
func (h *Handler) RedirectHandler() http.Handler {
	return http.HandlerFunc(h.redirect)
}

func (h *Handler) redirect(w http.ResponseWriter, r *http.Request) {
	t := h.table.Load()
	start := h.now()
	x := &exchange{ResponseWriter: w, req: r}
	defer h.logAccess(t, x, start)

	var buf [maxHostLen]byte
	host := normalizeHost(buf[:0], r.Host)
	s := t.site(r.Host)
	if s == nil || host == nil {
		writeStatus(x, http.StatusNotFound)
		return
	}
	x.site = s
	x.Header().Set("Location", "https://"+hostPort(string(host), t.redirectPort)+r.URL.RequestURI())
	x.WriteHeader(http.StatusPermanentRedirect)
}

// cleanPath resolves ".", ".." and empty segments of an absolute path the
// way path.Clean does, but keeps a trailing slash. An already clean path
// is returned as is, without allocating.
func cleanPath(p string) string {
	if isClean(p) {
		return p
	}
	c := path.Clean(p)
	if p[len(p)-1] == '/' && c != "/" {
		c += "/"
	}
	return c
}

// isClean reports whether the absolute path p has no empty, "." or ".."
// segment (a trailing slash is fine).
func isClean(p string) bool {
	for i := 0; i < len(p); i++ {
		if p[i] != '/' {
			continue
		}
		rest := p[i+1:]
		switch {
		case rest == "":
			return true
		case rest[0] == '/':
			return false
		case rest[0] == '.':
			if len(rest) == 1 || rest[1] == '/' {
				return false
			}
			if rest[1] == '.' && (len(rest) == 2 || rest[2] == '/') {
				return false
			}
		}
	}
	return true
}

// withPath returns a shallow copy of r whose URL has the cleaned path c.
// RawPath is dropped: cleaning changed the decoded path, so the old
// escaping no longer describes it, and the URL re-encodes c itself. What
// the Upstream receives is therefore exactly what was routed.
func withPath(r *http.Request, c string) *http.Request {
	r2 := new(http.Request)
	*r2 = *r
	u := *r.URL
	u.Path, u.RawPath = c, ""
	r2.URL = &u
	return r2
}

// writeStatus writes a short plain-text response such as "404 Not Found".
func writeStatus(w http.ResponseWriter, code int) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Del("Content-Length")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, strconv.Itoa(code)+" "+http.StatusText(code)+"\n")
}
