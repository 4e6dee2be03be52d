package proxy

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"time"
)

// passiveHealth is a compiled passive_health: max_fails failures within
// fail_window eject an Upstream for fail_window.
type passiveHealth struct {
	maxFails int
	window   time.Duration
	status   statusSet
	latency  time.Duration // 0: latency never counts
}

// observe counts a failed attempt on u against the Route's passive health:
// an error other than the client leaving, an unhealthy status, or an
// answer slower than unhealthy_latency.
func (b *balancer) observe(u *upstream, req *http.Request, res *http.Response, err error, took time.Duration) {
	p := b.passive
	var reason string
	switch {
	case err != nil:
		if req.Context().Err() != nil {
			return
		}
		reason = "error: " + err.Error()
	case p.status.has(res.StatusCode):
		reason = "status " + strconv.Itoa(res.StatusCode)
	case p.latency > 0 && took > p.latency:
		reason = "latency " + took.Round(time.Millisecond).String()
	default:
		return
	}
	if u.state().passiveFail(p, b.now(), reason) {
		b.logger.LogAttrs(context.WithoutCancel(req.Context()), slog.LevelWarn, "upstream ejected",
			slog.String("upstream", u.name), slog.String("site", b.site), slog.String("route", b.route),
			slog.Bool("healthy", false), slog.String("reason", reason), slog.Duration("for", p.window))
	}
}

// passiveFail counts one failure at now and reports whether it ejected the
// Upstream.
func (s *upstreamState) passiveFail(p *passiveHealth, now time.Time, reason string) bool {
	s.failures.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(s.windowStart) > p.window {
		s.windowStart, s.windowFails = now, 0
	}
	s.windowFails++
	if s.windowFails < p.maxFails {
		return false
	}
	s.windowStart, s.windowFails = time.Time{}, 0
	s.reason = "ejected: " + reason
	s.ejectedUntil.Store(now.Add(p.window).UnixNano())
	return true
}
