package proxy

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// switchBackend is an echo backend whose /healthz answers 200 "ok" or 500
// as its health says, and which counts the proxied requests it serves.
type switchBackend struct {
	srv     *httptest.Server
	healthy atomic.Bool
	served  atomic.Int64
	checks  atomic.Int64
	// hang makes /healthz answer only when the check gives up.
	hang atomic.Bool
}

func newSwitchBackend(t *testing.T, name string) *switchBackend {
	t.Helper()
	sb := &switchBackend{}
	sb.healthy.Store(true)
	echo := echoHandler(name)
	sb.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			sb.checks.Add(1)
			if sb.hang.Load() {
				<-r.Context().Done()
				return
			}
			if r.Header.Get("User-Agent") != "gatehouse-health-check" {
				t.Errorf("health check User-Agent = %q", r.Header.Get("User-Agent"))
			}
			if !sb.healthy.Load() {
				http.Error(w, "down", http.StatusInternalServerError)
				return
			}
			_, _ = w.Write([]byte("ok"))
			return
		}
		sb.served.Add(1)
		echo.ServeHTTP(w, r)
	}))
	t.Cleanup(sb.srv.Close)
	return sb
}

// newCheckedFrontend is newFrontend whose Handler's health checks stop
// with the test.
func newCheckedFrontend(t *testing.T, cfg *config.Config) *frontend {
	t.Helper()
	f := newFrontend(t, cfg)
	t.Cleanup(func() { _ = f.handler.Close() })
	return f
}

// waitFor polls cond until it holds or 5 seconds pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// status returns the UpstreamStatus of url.
func status(t *testing.T, h *Handler, url string) UpstreamStatus {
	t.Helper()
	for _, s := range h.Upstreams() {
		if s.URL == url {
			return s
		}
	}
	t.Fatalf("no status for %s in %+v", url, h.Upstreams())
	return UpstreamStatus{}
}

// logLine returns the first JSON log line with msg and upstream.
func logLine(t *testing.T, f *frontend, msg, upstream string) map[string]any {
	t.Helper()
	for _, l := range f.log.lines(t) {
		if l["msg"] == msg && l["upstream"] == upstream {
			return l
		}
	}
	return nil
}

func checkedRoute(health *config.HealthCheck, upstreams ...string) config.Route {
	return config.Route{Path: "/", Upstreams: upstreams, Health: health}
}

var fastHealth = &config.HealthCheck{Path: "/healthz", Interval: 30 * time.Millisecond, Timeout: time.Second, ExpectBody: "ok"}

func TestActiveHealthCheck(t *testing.T) {
	a, b := newSwitchBackend(t, "a"), newSwitchBackend(t, "b")
	f := newCheckedFrontend(t, proxyConfig(checkedRoute(fastHealth, a.srv.URL, b.srv.URL)))
	waitFor(t, "the first checks ran", func() bool {
		return !status(t, f.handler, a.srv.URL).LastCheck.IsZero() && !status(t, f.handler, b.srv.URL).LastCheck.IsZero()
	})
	if c := count(backendsOf(t, f, 4)); c["a"] != 2 || c["b"] != 2 {
		t.Fatalf("healthy distribution %v, want 2 and 2", c)
	}

	a.healthy.Store(false)
	waitFor(t, "a is marked unhealthy", func() bool { return !status(t, f.handler, a.srv.URL).Healthy })
	before := a.served.Load()
	if c := count(backendsOf(t, f, 6)); c["b"] != 6 {
		t.Errorf("with a unhealthy: %v, want all on b", c)
	}
	if a.served.Load() != before {
		t.Error("an unhealthy upstream still got requests")
	}
	st := status(t, f.handler, a.srv.URL)
	if st.Reason != "status 500" || st.Failures == 0 {
		t.Errorf("status = %+v, want reason %q and failures counted", st, "status 500")
	}
	l := logLine(t, f, "upstream unhealthy", a.srv.URL)
	if l == nil || l["healthy"] != false || l["reason"] != "status 500" || l["route"] != "/" || l["site"] != host {
		t.Errorf("unhealthy log line = %v, want healthy=false reason, route and site", l)
	}

	a.healthy.Store(true)
	waitFor(t, "a is back", func() bool { return status(t, f.handler, a.srv.URL).Healthy })
	if c := count(backendsOf(t, f, 4)); c["a"] != 2 {
		t.Errorf("after recovery: %v, want a back in rotation", c)
	}
	if l := logLine(t, f, "upstream healthy", a.srv.URL); l == nil || l["healthy"] != true {
		t.Errorf("healthy log line = %v", l)
	}
}

func TestHealthCheckExpectBody(t *testing.T) {
	degraded := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("degraded"))
	}))
	t.Cleanup(degraded.Close)
	b := newSwitchBackend(t, "b")
	f := newCheckedFrontend(t, proxyConfig(checkedRoute(fastHealth, degraded.URL, b.srv.URL)))
	waitFor(t, "the 200 without the body is unhealthy", func() bool { return !status(t, f.handler, degraded.URL).Healthy })
	if got := status(t, f.handler, degraded.URL).Reason; got != `body lacks "ok"` {
		t.Errorf("reason = %q", got)
	}
}

func TestAllUpstreamsDown(t *testing.T) {
	a, b := newSwitchBackend(t, "a"), newSwitchBackend(t, "b")
	a.healthy.Store(false)
	b.healthy.Store(false)
	health := *fastHealth
	health.Interval = 20 * time.Second // Retry-After follows the next check
	// The clock stands still: the checks and the request happen at the
	// same instant, 20 s before the next check.
	clock := newFakeClock()
	f := newFrontendClock(t, proxyConfig(checkedRoute(&health, a.srv.URL, b.srv.URL)), clock)
	t.Cleanup(func() { _ = f.handler.Close() })
	waitFor(t, "both are unhealthy", func() bool {
		return !status(t, f.handler, a.srv.URL).Healthy && !status(t, f.handler, b.srv.URL).Healthy
	})
	res, _ := f.getRes(t, host, "/")
	if res.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("status = %v, want 503", res.StatusCode)
	}
	if ra := res.Header.Get("Retry-After"); ra != "20" {
		t.Errorf("Retry-After = %q, want 20 (the next check)", ra)
	}
	// At once: no Upstream was tried, not even dialed.
	if n := a.served.Load() + b.served.Load(); n != 0 {
		t.Errorf("backends served %d requests, want 0", n)
	}
	if strings.Contains(f.log.String(), "upstream unreachable") {
		t.Errorf("an unhealthy upstream was dialed:\n%s", f.log.String())
	}
}

// TestHealthAcrossReloads checks that a reload keeps what is known about
// unchanged Upstreams, hands over their running checks, and stops the
// checks of removed ones; Close stops the rest.
func TestHealthAcrossReloads(t *testing.T) {
	base := runningCheckers.Load()
	a, b := newSwitchBackend(t, "a"), newSwitchBackend(t, "b")
	health := *fastHealth
	health.Interval = time.Hour // one check at start, none after: state can only be carried over
	cfg := func(routes ...config.Route) *config.Config { return proxyConfig(routes...) }
	both := cfg(checkedRoute(&health, a.srv.URL, b.srv.URL))
	a.healthy.Store(false)
	f := newFrontend(t, both)
	waitFor(t, "a is unhealthy", func() bool { return !status(t, f.handler, a.srv.URL).Healthy })
	if n := runningCheckers.Load() - base; n != 2 {
		t.Fatalf("checkers = %d, want 2", n)
	}

	checks := a.checks.Load()
	for range 3 {
		f.handler.Swap(f.compile(t, both))
	}
	if n := runningCheckers.Load() - base; n != 2 {
		t.Errorf("checkers after 3 reloads = %d, want still 2", n)
	}
	if n := a.checks.Load(); n != checks {
		t.Errorf("a was checked %d times across reloads, want %d: unchanged checks keep running", n, checks)
	}
	if status(t, f.handler, a.srv.URL).Healthy {
		t.Error("a reload forgot that a is unhealthy")
	}
	if c := count(backendsOf(t, f, 4)); c["b"] != 4 {
		t.Errorf("after reload: %v, want all on b", c)
	}

	// A changed check restarts, and until it has an answer (a's health
	// endpoint now hangs) what was known stays.
	a.hang.Store(true)
	changed := health
	changed.Timeout = 2 * time.Second
	f.handler.Swap(f.compile(t, cfg(checkedRoute(&changed, a.srv.URL, b.srv.URL))))
	waitFor(t, "the changed check started", func() bool { return a.checks.Load() > checks })
	if status(t, f.handler, a.srv.URL).Healthy {
		t.Error("a reload that changed the check forgot that a is unhealthy")
	}
	if c := count(backendsOf(t, f, 4)); c["b"] != 4 {
		t.Errorf("after reload with a changed check: %v, want all on b", c)
	}
	// A removed Upstream's check stops, even in the middle of a check.
	f.handler.Swap(f.compile(t, cfg(checkedRoute(&changed, b.srv.URL))))
	waitFor(t, "a's checker stopped", func() bool { return runningCheckers.Load()-base == 1 })
	// No checks at all.
	f.handler.Swap(f.compile(t, cfg(proxyTo("/", b.srv.URL))))
	waitFor(t, "every checker stopped", func() bool { return runningCheckers.Load() == base })

	f.handler.Swap(f.compile(t, both))
	waitFor(t, "checks started again", func() bool { return runningCheckers.Load()-base == 2 })
	_ = f.handler.Close()
	if n := runningCheckers.Load() - base; n != 0 {
		t.Errorf("checkers after Close = %d, want 0", n)
	}
}

func TestPassiveHealth(t *testing.T) {
	var badServed atomic.Int64
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		badServed.Add(1)
		http.Error(w, "broken", http.StatusBadGateway)
	}))
	t.Cleanup(bad.Close)
	good := newEcho(t, "good")
	window := time.Second
	clock := newFakeClock()
	f := newFrontendClock(t, proxyConfig(config.Route{
		Path: "/", Upstreams: []string{bad.URL, good.URL},
		PassiveHealth: &config.PassiveHealth{MaxFails: 2, FailWindow: window, UnhealthyStatus: []int{502}},
	}), clock)
	var codes []int
	for range 8 {
		code, _ := f.get(t, host, "/")
		codes = append(codes, code)
	}
	if n := badServed.Load(); n != 2 {
		t.Errorf("bad upstream served %d requests, want 2 (then ejected); statuses %v", n, codes)
	}
	st := status(t, f.handler, bad.URL)
	if st.Healthy || st.Reason != "ejected: status 502" {
		t.Errorf("status = %+v, want ejected for status 502", st)
	}
	if l := logLine(t, f, "upstream ejected", bad.URL); l == nil || l["healthy"] != false || l["reason"] != "status 502" {
		t.Errorf("ejection log line = %v", l)
	}
	// The ejection lasts fail_window, then the upstream gets traffic again.
	clock.advance(window - time.Nanosecond)
	if status(t, f.handler, bad.URL).Healthy {
		t.Errorf("ejection ended before fail_window (%v)", window)
	}
	clock.advance(time.Nanosecond)
	if st := status(t, f.handler, bad.URL); !st.Healthy {
		t.Errorf("status after fail_window = %+v, want healthy", st)
	}
	backendsOfAny(t, f, 2)
	if l := logLine(t, f, "upstream healthy", bad.URL); l == nil || l["reason"] != "ejection over" {
		t.Errorf("return log line = %v, want reason %q", l, "ejection over")
	}
	if n := badServed.Load(); n != 3 {
		t.Errorf("bad upstream served %d requests after the window, want 3", n)
	}
}

// backendsOfAny sends n GETs whatever their status.
func backendsOfAny(t *testing.T, f *frontend, n int) {
	t.Helper()
	for range n {
		f.get(t, host, "/")
	}
}

func TestPassiveHealthLatency(t *testing.T) {
	clock := newFakeClock()
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		clock.advance(150 * time.Millisecond) // the answer takes 150 ms
		_, _ = w.Write([]byte("slow"))
	}))
	t.Cleanup(slow.Close)
	f := newFrontendClock(t, proxyConfig(config.Route{
		Path: "/", Upstreams: []string{slow.URL},
		PassiveHealth: &config.PassiveHealth{MaxFails: 1, FailWindow: time.Minute, UnhealthyLatency: 50 * time.Millisecond},
	}), clock)
	if code, body := f.get(t, host, "/"); code != http.StatusOK || body != "slow" {
		t.Fatalf("first request: %v %q, want the slow answer", code, body)
	}
	if st := status(t, f.handler, slow.URL); st.Healthy || !strings.HasPrefix(st.Reason, "ejected: latency") {
		t.Errorf("status = %+v, want ejected for latency", st)
	}
	res, _ := f.getRes(t, host, "/")
	if res.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("with the only upstream ejected: status %v, want 503", res.Status)
	}
	if ra := res.Header.Get("Retry-After"); ra != "60" {
		t.Errorf("Retry-After = %q, want 60 (the rest of the ejection)", ra)
	}
}

// TestPassiveHealthDefaultStatus checks the documented default of
// unhealthy_status, [500, 502, 503]: a Route that sets only max_fails and
// fail_window ejects an Upstream answering 503, and the healthy one serves.
func TestPassiveHealthDefaultStatus(t *testing.T) {
	var badServed atomic.Int64
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		badServed.Add(1)
		http.Error(w, "overloaded", http.StatusServiceUnavailable)
	}))
	t.Cleanup(bad.Close)
	good := newEcho(t, "good")
	f := newFrontend(t, proxyConfig(config.Route{
		Path: "/", Upstreams: []string{bad.URL, good.URL},
		PassiveHealth: &config.PassiveHealth{MaxFails: 2, FailWindow: time.Minute},
	}))
	for range 4 {
		f.get(t, host, "/")
	}
	if n := badServed.Load(); n != 2 {
		t.Errorf("the 503 upstream served %d requests, want 2 (then ejected)", n)
	}
	if st := status(t, f.handler, bad.URL); st.Healthy || st.Reason != "ejected: status 503" {
		t.Errorf("status = %+v, want ejected for status 503", st)
	}
	for range 4 {
		code, body := f.get(t, host, "/")
		if s := decodeSeen(t, body); code != http.StatusOK || s.Backend != "good" {
			t.Fatalf("after the ejection: %v from %q, want 200 from the healthy upstream", code, s.Backend)
		}
	}
	if n := badServed.Load(); n != 2 {
		t.Errorf("the ejected upstream served %d requests, want still 2", n)
	}
}
