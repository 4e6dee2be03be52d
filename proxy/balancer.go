package proxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Cooldown bounds for an Upstream whose dial failed: the first failure puts
// it aside for minCooldown, each further consecutive failure doubles that,
// up to maxCooldown. The cap stays short because, without active health
// checks, the end of a cooldown is the only way to notice a recovery.
const (
	minCooldown = 10 * time.Second
	maxCooldown = time.Minute
)

// tryInterval is the pause between two rounds over a Route's Upstreams
// while lb.try_duration lasts, so a restarting Upstream is not hammered.
const tryInterval = 250 * time.Millisecond

// upstreamKey identifies an Upstream across reloads: the same URL in the
// same Route of the same Site is the same Upstream, and keeps its health.
type upstreamKey struct {
	site, route, name string
}

// upstream is one backend of a proxied Route.
type upstream struct {
	name   string // as configured, for logs and Describe
	scheme string // scheme requests carry: "http" or "https"
	host   string // host[:port] requests are sent to
	rt     http.RoundTripper
	// upgrade is the HTTP/1.1 transport of an h2c:// Upstream, for
	// WebSocket upgrades; nil for other kinds (see transport).
	upgrade http.RoundTripper

	key  upstreamKey
	tkey transportKey
	// check is the Route's active health check, nil when it has none.
	check *healthCheck
	// st is the Upstream's health, shared with the Table this one
	// replaced when the Upstream was already there (see Table.activate).
	st atomic.Pointer[upstreamState]
}

// state returns u's health.
func (u *upstream) state() *upstreamState { return u.st.Load() }

// upstreamState is the health of an Upstream: dial cooldown, active check
// result, passive ejection and load. It outlives Tables: a reload hands it
// to the new Table's Upstream with the same key.
type upstreamState struct {
	// downUntil is when the cooldown after a dial failure ends, in Unix
	// nanoseconds; zero while healthy.
	downUntil atomic.Int64
	// fails counts consecutive dial failures.
	fails atomic.Int32
	// unhealthy is set while the active health check fails.
	unhealthy atomic.Bool
	// ejectedUntil is when a passive ejection ends, in Unix nanoseconds.
	ejectedUntil atomic.Int64
	// inFlight counts requests sent and not yet finished.
	inFlight atomic.Int64
	// failures counts every failed dial, failed check and passive failure.
	failures atomic.Uint64

	mu sync.Mutex // guards the fields below
	// windowStart and windowFails count passive failures in the current
	// fail_window.
	windowStart time.Time
	windowFails int
	// reason is why the Upstream last failed a check or was ejected.
	reason string
	// lastCheck is when the active check last ran.
	lastCheck time.Time
}

// markFailed starts or lengthens s's cooldown and returns its length.
func (s *upstreamState) markFailed(now time.Time) time.Duration {
	s.failures.Add(1)
	n := s.fails.Add(1)
	d := maxCooldown
	if n < 16 && minCooldown<<(n-1) < maxCooldown {
		d = minCooldown << (n - 1)
	}
	s.downUntil.Store(now.Add(d).UnixNano())
	return d
}

// markOK ends s's cooldown after a successful round trip.
func (s *upstreamState) markOK() {
	if s.fails.Load() != 0 {
		s.fails.Store(0)
		s.downUntil.Store(0)
	}
}

// Marks of a Upstream during one request's walk.
const (
	markCandidate uint8 = iota // may be tried now
	markCooldown               // in dial cooldown: tried once the candidates are used up
	markDown                   // failing its health check or ejected: never tried
	markTried                  // tried already by this request
)

// mark says whether s may take a request at now (Unix nanoseconds).
func (s *upstreamState) mark(now int64) uint8 {
	switch {
	case s.unhealthy.Load() || s.ejectedUntil.Load() > now:
		return markDown
	case s.downUntil.Load() > now:
		return markCooldown
	}
	return markCandidate
}

// balancer is the RoundTripper of a proxied Route. It picks an Upstream by
// the Route's policy, and moves on to another one when dialing failed
// (the request was never sent, so retrying is safe) or, for an idempotent
// request without a body, when the answer has one of lb.retry_status.
// Upstreams in a dial cooldown are tried last rather than never, so a
// Route whose Upstreams are all marked down still recovers as soon as one
// answers; Upstreams failing their health check or ejected are never
// tried, and when that leaves none the answer is 503 at once.
type balancer struct {
	upstreams []*upstream
	policy    policy
	// cookie is the sticky-session policy, nil unless lb.policy is cookie.
	cookie      *cookiePolicy
	tryDuration time.Duration
	retryStatus statusSet
	// passive is the Route's passive health, nil when off.
	passive *passiveHealth
	site    string
	route   string
	now     func() time.Time
	logger  *slog.Logger
}

func newBalancer(ups []*upstream, now func() time.Time, logger *slog.Logger) *balancer {
	return &balancer{upstreams: ups, policy: new(roundRobin), now: now, logger: logger}
}

// errUnavailable is the error of a request none of whose Upstreams may
// take it: all fail their health check or are ejected.
type errUnavailable struct {
	// retryAfter is when the first of them may be back.
	retryAfter time.Duration
}

func (e *errUnavailable) Error() string {
	return "every upstream is unhealthy or ejected"
}

// retryAfterValue is the Retry-After header value: whole seconds, at least 1.
func (e *errUnavailable) retryAfterValue() string {
	s := int64((e.retryAfter + time.Second - 1) / time.Second)
	return strconv.FormatInt(max(s, 1), 10)
}

// RoundTrip sends req to one Upstream, and to others as retries allow. It
// is only ever called by the Route's ReverseProxy, which owns and closes
// req.Body; so unlike a general RoundTripper, balancer leaves the body
// open for the next attempt.
func (b *balancer) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	pc := proxyCtxFrom(ctx)
	n := len(b.upstreams)
	start := b.now()
	var buf [16]uint8
	var marks []uint8
	if n <= len(buf) {
		marks = buf[:n]
	} else {
		marks = make([]uint8, n)
	}
	if !b.markAll(ctx, marks, start) {
		return nil, b.unavailable(start)
	}
	retryStatus := b.retryStatus.any() && isIdempotent(req.Method) && (req.Body == nil || req.Body == http.NoBody)
	deadline := start.Add(b.tryDuration)
	sticky := -1
	if b.cookie != nil {
		sticky = b.cookie.lookup(req)
	}

	var (
		res    *http.Response // the last answer, kept while looking for a better one
		resIdx int
		err    error
	)
	for attempt := 0; ; {
		idx := -1
		if attempt == 0 && sticky >= 0 && marks[sticky] == markCandidate {
			idx = sticky
		} else {
			idx = b.pick(pc, req, marks, attempt > 0)
		}
		if idx < 0 {
			if unlockCooldowns(marks) {
				continue
			}
			if b.tryDuration <= 0 || !b.pause(req, deadline) || !b.markAll(ctx, marks, b.now()) {
				break
			}
			continue
		}
		if res != nil {
			// A better answer may come; this one is dropped unread.
			discard(res)
			b.upstreams[resIdx].state().inFlight.Add(-1)
			res = nil
		}
		if attempt > 0 {
			if x := exchangeFrom(ctx); x != nil {
				x.retries++
			}
		}
		attempt++
		marks[idx] = markTried
		u := b.upstreams[idx]
		res, err = b.try(u, req)
		if err != nil {
			res = nil
			if !isDialError(err) || ctx.Err() != nil {
				return nil, err
			}
			d := u.state().markFailed(b.now())
			b.logger.LogAttrs(ctx, slog.LevelWarn, "upstream unreachable",
				slog.String("upstream", u.name), slog.String("route", b.route),
				slog.Duration("cooldown", d), slog.Any("error", err))
			continue
		}
		resIdx = idx
		if !retryStatus || !b.retryStatus.has(res.StatusCode) {
			break
		}
	}
	if res == nil {
		return nil, err
	}
	if b.cookie != nil && resIdx != sticky {
		// No cookie yet, a tampered one, or its Upstream is down: stick
		// to the one that answered from now on.
		res.Header.Add("Set-Cookie", b.cookie.setCookie[resIdx])
	}
	if up := b.upstreams[resIdx]; pc != nil {
		pc.up = up
	} else {
		up.state().inFlight.Add(-1)
	}
	return res, nil
}

// markAll marks every Upstream for a new round at now and reports whether
// any may be tried. The first request to find a passive ejection over logs
// the Upstream's return.
func (b *balancer) markAll(ctx context.Context, marks []uint8, now time.Time) bool {
	nowNano := now.UnixNano()
	ok := false
	for i, u := range b.upstreams {
		s := u.state()
		if until := s.ejectedUntil.Load(); until != 0 && until <= nowNano && s.ejectedUntil.CompareAndSwap(until, 0) {
			b.logger.LogAttrs(ctx, slog.LevelInfo, "upstream healthy",
				slog.String("upstream", u.name), slog.String("site", b.site), slog.String("route", b.route),
				slog.Bool("healthy", true), slog.String("reason", "ejection over"))
		}
		marks[i] = s.mark(nowNano)
		ok = ok || marks[i] != markDown
	}
	return ok
}

// unlockCooldowns makes the Upstreams in a dial cooldown candidates, once
// every other one was tried, and reports whether there were any.
func unlockCooldowns(marks []uint8) bool {
	found := false
	for i, m := range marks {
		if m == markCooldown {
			marks[i] = markCandidate
			found = true
		}
	}
	return found
}

// pause waits tryInterval before another round, and reports false when the
// round would start past deadline or the client left.
func (b *balancer) pause(req *http.Request, deadline time.Time) bool {
	now := b.now()
	if !now.Add(tryInterval).Before(deadline) {
		return false
	}
	t := time.NewTimer(tryInterval)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-req.Context().Done():
		return false
	}
}

// unavailable builds the error for a request no Upstream may take, with
// the time until the first one may be back.
func (b *balancer) unavailable(now time.Time) error {
	nowNano := now.UnixNano()
	var wait time.Duration = -1
	for _, u := range b.upstreams {
		s := u.state()
		var d time.Duration
		if until := s.ejectedUntil.Load(); until > nowNano {
			d = time.Duration(until - nowNano)
		}
		if s.unhealthy.Load() && u.check != nil {
			s.mu.Lock()
			next := s.lastCheck.Add(u.check.interval)
			s.mu.Unlock()
			d = max(d, next.Sub(now))
		}
		if wait < 0 || d < wait {
			wait = d
		}
	}
	return &errUnavailable{retryAfter: max(wait, 0)}
}

// onlyOnce reports whether a request gets exactly one attempt: one
// Upstream and no try_duration, so nothing can send it again.
func (b *balancer) onlyOnce() bool {
	return len(b.upstreams) == 1 && b.tryDuration <= 0
}

// try sends req to u. When another attempt may follow, the request is
// copied, never modified, and its body is shielded from the transport's
// Close so a later attempt can still send it. The only attempt is sent as
// req itself: it is ReverseProxy's own copy of the inbound request, URL
// included, and nothing reads it again while the transport may. u counts
// the request in flight until the caller says it is done.
func (b *balancer) try(u *upstream, req *http.Request) (*http.Response, error) {
	out := req
	if b.onlyOnce() {
		req.URL.Scheme, req.URL.Host = u.scheme, u.host
	} else {
		out = new(http.Request)
		*out = *req
		target := *req.URL
		target.Scheme, target.Host = u.scheme, u.host
		out.URL = &target
		if req.Body != nil {
			out.Body = keepOpenBody{req.Body}
		}
	}
	if x := exchangeFrom(req.Context()); x != nil {
		x.upstream = u.name
	}
	s := u.state()
	s.inFlight.Add(1)
	var start time.Time
	if b.passive != nil {
		start = b.now()
	}
	res, err := u.transport(out).RoundTrip(out)
	if err != nil {
		s.inFlight.Add(-1)
	} else {
		s.markOK()
	}
	if b.passive != nil {
		b.observe(u, req, res, err, b.now().Sub(start))
	}
	return res, err
}

// transport returns the RoundTripper req goes through: u's own, except
// for a WebSocket upgrade to an h2c:// Upstream. HTTP/2 has no Upgrade
// (RFC 9113, section 8.6), so that goes over HTTP/1.1, which
// prior-knowledge h2c servers (Go's among them) speak on the same port.
// Rewrite has dropped every Upgrade but WebSocket's by now.
func (u *upstream) transport(req *http.Request) http.RoundTripper {
	if u.upgrade != nil && len(req.Header["Upgrade"]) > 0 {
		return u.upgrade
	}
	return u.rt
}

// discard drops an answer that will not be sent to the client, reading a
// little of its body so the connection can be reused.
func discard(res *http.Response) {
	_, _ = io.CopyN(io.Discard, res.Body, 64<<10)
	res.Body.Close()
}

// keepOpenBody ignores Close, which http.Transport calls even when it fails
// before sending anything.
type keepOpenBody struct{ io.ReadCloser }

func (keepOpenBody) Close() error { return nil }

// isDialError reports whether err means no connection could be opened, so
// the request never left gatehouse.
func isDialError(err error) bool {
	op, ok := errors.AsType[*net.OpError](err)
	return ok && op.Op == "dial"
}

// isIdempotent reports whether a request with method may be sent twice
// (RFC 9110, section 9.2.2).
func isIdempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// statusSet is a set of HTTP status codes, one bit each.
type statusSet [10]uint64

func (s *statusSet) add(code int) {
	if code >= 0 && code < 640 {
		s[code/64] |= 1 << (code % 64)
	}
}

func (s *statusSet) has(code int) bool {
	return code >= 0 && code < 640 && s[code/64]&(1<<(code%64)) != 0
}

func (s *statusSet) any() bool { return *s != statusSet{} }
