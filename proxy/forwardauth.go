package proxy

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// forwardAuth asks an external service about each request, as Traefik's
// forwardAuth and Caddy's forward_auth do for SSO portals: a GET to the
// service carrying the request's headers and, in X-Forwarded-Method,
// -Proto, -Host, -Uri and -For, what was asked and by whom. A 2xx lets the
// request through with copy_headers taken from that answer; any other
// answer (a 302 to a login page, a 401) goes back to the client as it is.
// When the service cannot be asked the request fails closed: 502, or 504
// after the timeout.
type forwardAuth struct {
	table   *trust
	url     *url.URL
	copy    []string // canonical
	timeout time.Duration
	client  *http.Client
	logger  *slog.Logger
	next    http.Handler
}

func newForwardAuth(t *trust, logger *slog.Logger, cr *config.ForwardAuth) (*forwardAuth, error) {
	u, err := url.Parse(cr.URL)
	if err != nil {
		return nil, fmt.Errorf("parsing url: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("checking url %q: not an absolute http:// or https:// URL", cr.URL)
	}
	fa := &forwardAuth{
		table:   t,
		url:     u,
		timeout: cr.Timeout,
		logger:  logger,
	}
	if fa.timeout <= 0 {
		fa.timeout = config.DefaultForwardAuthTimeout
	}
	for _, name := range cr.CopyHeaders {
		fa.copy = append(fa.copy, http.CanonicalHeaderKey(name))
	}
	// A transport per compiled Route: a reload drops it, and its idle
	// connections close after IdleConnTimeout.
	tr := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: fa.timeout}).DialContext,
		TLSHandshakeTimeout:   fa.timeout,
		MaxIdleConnsPerHost:   32,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: fa.timeout,
		ForceAttemptHTTP2:     true,
	}
	fa.client = &http.Client{
		Transport: tr,
		// The service's redirects (to a login page) are for the client.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return fa, nil
}

func (fa *forwardAuth) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), fa.timeout)
	defer cancel()
	u := *fa.url
	h := r.Header.Clone()
	removeHopHeaders(h)
	for _, name := range []string{"Content-Length", "Content-Type", "Content-Encoding", "Forwarded", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-Method", "X-Forwarded-Uri"} {
		delete(h, name)
	}
	proto := "http"
	if r.TLS != nil {
		proto = "https"
	}
	h.Set("X-Forwarded-Method", r.Method)
	h.Set("X-Forwarded-Proto", proto)
	h.Set("X-Forwarded-Host", r.Host)
	h.Set("X-Forwarded-Uri", r.URL.RequestURI())
	if ip := fa.table.clientIP(r); ip.IsValid() {
		h.Set("X-Forwarded-For", ip.String())
	}
	if x := exchangeOf(w); x != nil && x.requestID != "" {
		h[requestIDHeader] = []string{x.requestID}
	}
	req := (&http.Request{
		Method:     http.MethodGet,
		URL:        &u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     h,
		Host:       u.Host,
	}).WithContext(ctx)

	res, err := fa.client.Do(req)
	if err != nil {
		code := errorStatus(r.Context(), err)
		fa.logger.LogAttrs(r.Context(), slog.LevelWarn, "asking forward_auth",
			slog.String("host", r.Host), slog.String("url", fa.url.Redacted()),
			slog.Int("status", code), slog.Any("error", err))
		if code == statusClientClosedRequest {
			if x := exchangeOf(w); x != nil {
				x.status = code
			}
			return
		}
		writeStatus(w, code)
		return
	}
	defer res.Body.Close()

	if res.StatusCode < 200 || res.StatusCode > 299 {
		removeHopHeaders(res.Header)
		dst := w.Header()
		for k, v := range res.Header {
			dst[k] = v
		}
		w.WriteHeader(res.StatusCode)
		if r.Method != http.MethodHead {
			_, _ = io.Copy(w, res.Body)
		}
		return
	}
	// Drain a little so the connection can be reused.
	_, _ = io.CopyN(io.Discard, res.Body, 4<<10)
	if len(fa.copy) == 0 {
		fa.next.ServeHTTP(w, r)
		return
	}
	r2 := new(http.Request)
	*r2 = *r
	r2.Header = r.Header.Clone()
	for _, name := range fa.copy {
		// Never let a client's own copy through: only the service's counts.
		delete(r2.Header, name)
		if v := res.Header[name]; len(v) > 0 {
			r2.Header[name] = v
		}
	}
	fa.next.ServeHTTP(w, r2)
}
