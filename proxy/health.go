package proxy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// maxCheckBody bounds how much of a health check answer is read when
// looking for expect_body.
const maxCheckBody = 64 << 10

// healthCheck is a compiled health: block. It is comparable, so a reload
// that keeps it keeps the running checker.
type healthCheck struct {
	path         string
	interval     time.Duration
	timeout      time.Duration
	expectStatus int // 0: any 2xx
	expectBody   string
}

// checkerKey identifies a running checker: the same Upstream checked the
// same way over the same transport.
type checkerKey struct {
	up    upstreamKey
	check healthCheck
	tkey  transportKey
}

// checker runs one Upstream's active health check until stopped.
type checker struct {
	key    checkerKey
	st     *upstreamState
	check  healthCheck
	rt     http.RoundTripper
	url    string
	host   string
	name   string // the Upstream, for logs
	site   string
	route  string
	logger *slog.Logger
	now    func() time.Time // the Table's clock, for lastCheck
	cancel context.CancelFunc
	done   chan struct{}
}

// runningCheckers counts checker goroutines in the process, so tests can
// prove reloads and Close leave none behind.
var runningCheckers atomic.Int64

// upstreamSet is every Upstream of a Table, with the checkers the Table
// owns while it is served.
type upstreamSet struct {
	all []*upstream // config order
	// own marks, by index in all, the Upstreams compiled for this Table;
	// the others were taken over from an earlier one (Options.Reuse).
	own []bool
	// states dedupes an Upstream listed twice in one Route at compile.
	states map[upstreamKey]*upstreamState

	mu sync.Mutex // guards checkers
	// checkers holds the running checks by the state of the Upstream
	// checked: one state is one Upstream of one Route (a pointer, cheap
	// to hash at every swap, where a checkerKey is not).
	checkers map[*upstreamState]*checker
}

// add registers u, sharing the state of an Upstream with the same key.
func (s *upstreamSet) add(u *upstream) {
	if s.states == nil {
		s.states = make(map[upstreamKey]*upstreamState)
	}
	st, ok := s.states[u.key]
	if !ok {
		st = new(upstreamState)
		s.states[u.key] = st
	}
	u.st.Store(st)
	s.all = append(s.all, u)
	s.own = append(s.own, true)
}

// adopt registers u, compiled for an earlier Table, with the state it
// has: the earlier Table may be serving it still.
func (s *upstreamSet) adopt(u *upstream) {
	if s.states == nil {
		s.states = make(map[upstreamKey]*upstreamState)
	}
	if _, ok := s.states[u.key]; !ok {
		s.states[u.key] = u.state()
	}
	s.all = append(s.all, u)
	s.own = append(s.own, false)
}

// activate makes t the served Table's health owner: each Upstream that
// old also had takes over its state (health, cooldown, in-flight count),
// checkers whose Upstream and check are unchanged move over still running,
// and new ones start. It returns old's checkers nobody took over, to be
// stopped once t is served. old may be nil.
func (t *Table) activate(old *Table) []*checker {
	ups := &t.ups
	ups.mu.Lock()
	defer ups.mu.Unlock()
	if ups.checkers == nil {
		ups.checkers = make(map[*upstreamState]*checker, len(ups.all))
	}
	var oldCheckers map[*upstreamState]*checker
	if old != nil && old != t {
		prev := old.ups.states
		for i, u := range ups.all {
			if !ups.own[i] {
				continue // taken over from old: its state is old's already
			}
			s, ok := prev[u.key]
			if !ok || s == u.state() {
				continue
			}
			if u.check == nil {
				// No active check any more: nothing would clear it.
				s.unhealthy.Store(false)
			}
			u.st.Store(s)
			ups.states[u.key] = s
		}
		old.ups.mu.Lock()
		oldCheckers, old.ups.checkers = old.ups.checkers, nil
		old.ups.mu.Unlock()
	}
	for i, u := range ups.all {
		if u.check == nil {
			continue
		}
		st := u.state()
		if _, ok := ups.checkers[st]; ok {
			continue
		}
		// A checker of an Upstream taken over with its Site checks it as
		// it is; another's must check the same way to carry on.
		if c, ok := oldCheckers[st]; ok && (!ups.own[i] || c.key == (checkerKey{up: u.key, check: *u.check, tkey: u.tkey})) {
			delete(oldCheckers, st)
			ups.checkers[st] = c
			continue
		}
		ups.checkers[st] = t.startChecker(u)
	}
	stale := make([]*checker, 0, len(oldCheckers))
	for _, c := range oldCheckers {
		stale = append(stale, c)
	}
	return stale
}

// deactivate stops every checker t owns.
func (t *Table) deactivate() {
	t.ups.mu.Lock()
	cs := t.ups.checkers
	t.ups.checkers = nil
	t.ups.mu.Unlock()
	stale := make([]*checker, 0, len(cs))
	for _, c := range cs {
		stale = append(stale, c)
	}
	stopCheckers(stale)
}

// stopCheckers stops cs and waits until their goroutines have returned.
func stopCheckers(cs []*checker) {
	for _, c := range cs {
		c.cancel()
	}
	for _, c := range cs {
		<-c.done
	}
}

func (t *Table) startChecker(u *upstream) *checker {
	ctx, cancel := context.WithCancel(context.Background())
	host := u.host
	c := &checker{
		key:    checkerKey{up: u.key, check: *u.check, tkey: u.tkey},
		st:     u.state(),
		check:  *u.check,
		rt:     u.rt,
		url:    u.scheme + "://" + host + u.check.path,
		host:   host,
		name:   u.name,
		site:   u.key.site,
		route:  u.key.route,
		logger: t.logger,
		now:    t.clock.now,
		cancel: cancel,
		done:   make(chan struct{}),
	}
	runningCheckers.Add(1)
	go c.run(ctx)
	return c
}

// run checks at once, then every interval, until ctx is done.
func (c *checker) run(ctx context.Context) {
	// done closes last, so a caller that waited on it sees the count
	// already lowered.
	defer close(c.done)
	defer runningCheckers.Add(-1)
	tick := time.NewTicker(c.check.interval)
	defer tick.Stop()
	for {
		c.probe(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// probe runs one check and records a change of health.
func (c *checker) probe(ctx context.Context) {
	reason := c.do(ctx)
	if ctx.Err() != nil {
		return // stopped mid-check: the answer says nothing
	}
	s := c.st
	now := c.now()
	s.mu.Lock()
	s.lastCheck = now
	if reason != "" {
		s.reason = reason
	}
	s.mu.Unlock()
	healthy := reason == ""
	if healthy == !s.unhealthy.Load() {
		return
	}
	s.unhealthy.Store(!healthy)
	level, msg := slog.LevelInfo, "upstream healthy"
	if !healthy {
		s.failures.Add(1)
		level, msg = slog.LevelWarn, "upstream unhealthy"
	} else {
		reason = "check passed"
	}
	c.logger.LogAttrs(ctx, level, msg,
		slog.String("upstream", c.name), slog.String("site", c.site), slog.String("route", c.route),
		slog.Bool("healthy", healthy), slog.String("reason", reason))
}

// do sends the check request and returns why it failed, or "".
func (c *checker) do(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, c.check.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return "building check request: " + err.Error()
	}
	req.Host = c.host
	req.Header.Set("User-Agent", "gatehouse-health-check")
	res, err := c.rt.RoundTrip(req)
	if err != nil {
		return "error: " + err.Error()
	}
	defer res.Body.Close()
	if want := c.check.expectStatus; want != 0 && res.StatusCode != want || want == 0 && (res.StatusCode < 200 || res.StatusCode > 299) {
		_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, maxCheckBody))
		return "status " + strconv.Itoa(res.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, maxCheckBody))
	if err != nil {
		return "reading body: " + err.Error()
	}
	if c.check.expectBody != "" && !bytes.Contains(body, []byte(c.check.expectBody)) {
		return fmt.Sprintf("body lacks %q", c.check.expectBody)
	}
	return ""
}

// UpstreamStatus is the health and load of one Upstream of the served
// Table, for the admin API and metrics.
type UpstreamStatus struct {
	// Site is the Site's first host, Route the Route's path, URL the
	// Upstream as configured.
	Site  string
	Route string
	URL   string
	// Healthy reports whether the Upstream takes new requests: it is not
	// failing its health check, not ejected by passive health and not in
	// the cooldown after a failed dial.
	Healthy bool
	// Reason says why it is not healthy, or what last went wrong.
	Reason string
	// InFlight counts requests sent to it and not finished.
	InFlight int64
	// Failures counts failed dials, failed health checks and passive
	// failures since the Upstream first appeared; it survives reloads.
	Failures uint64
	// LastCheck is when the active health check last ran; zero without one.
	LastCheck time.Time
}

// Upstreams reports every Upstream of the served Table, in config order.
// It is safe to call at any time, from any goroutine.
func (h *Handler) Upstreams() []UpstreamStatus {
	t := h.table.Load()
	now := t.clock.now()
	nowNano := now.UnixNano()
	out := make([]UpstreamStatus, 0, len(t.ups.all))
	for _, u := range t.ups.all {
		s := u.state()
		s.mu.Lock()
		reason, last := s.reason, s.lastCheck
		s.mu.Unlock()
		st := UpstreamStatus{
			Site: u.key.site, Route: u.key.route, URL: u.name,
			InFlight:  s.inFlight.Load(),
			Failures:  s.failures.Load(),
			LastCheck: last,
			Reason:    reason,
		}
		switch {
		case s.unhealthy.Load():
		case s.ejectedUntil.Load() > nowNano:
		case s.downUntil.Load() > nowNano:
			st.Reason = "unreachable: in cooldown after a failed dial"
		default:
			st.Healthy = true
		}
		out = append(out, st)
	}
	return out
}

// Close stops the active health checks of the served Table. Call it once
// the servers are shut down; the Handler still serves, without checks.
func (h *Handler) Close() error {
	h.swapMu.Lock()
	defer h.swapMu.Unlock()
	h.table.Load().deactivate()
	return nil
}
