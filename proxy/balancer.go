package proxy

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
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

// upstream is one backend of a proxied Route, with its passive health.
type upstream struct {
	name   string // as configured, for logs and Describe
	scheme string // scheme requests carry: "http" or "https"
	host   string // host[:port] requests are sent to
	rt     http.RoundTripper

	// downUntil is when the cooldown after a dial failure ends, in Unix
	// nanoseconds; zero while healthy.
	downUntil atomic.Int64
	// fails counts consecutive dial failures.
	fails atomic.Int32
}

// available reports whether u is out of cooldown at now (Unix nanoseconds).
func (u *upstream) available(now int64) bool { return u.downUntil.Load() <= now }

// markFailed starts or lengthens u's cooldown and returns its length.
func (u *upstream) markFailed(now time.Time) time.Duration {
	n := u.fails.Add(1)
	d := maxCooldown
	if n < 16 && minCooldown<<(n-1) < maxCooldown {
		d = minCooldown << (n - 1)
	}
	u.downUntil.Store(now.Add(d).UnixNano())
	return d
}

// markOK ends u's cooldown after a successful round trip.
func (u *upstream) markOK() {
	if u.fails.Load() != 0 {
		u.fails.Store(0)
		u.downUntil.Store(0)
	}
}

// policy chooses where a request's walk over a Route's Upstreams starts.
// It is the seam for load-balancing policies; the balancer walks on from
// there, skipping Upstreams in cooldown and moving on after a dial failure.
type policy interface {
	first(r *http.Request, n int) int
}

// roundRobin starts each request one Upstream further than the last.
type roundRobin struct{ next atomic.Uint64 }

func (p *roundRobin) first(_ *http.Request, n int) int {
	return int((p.next.Add(1) - 1) % uint64(n))
}

// balancer is the RoundTripper of a proxied Route. It picks an Upstream,
// and when dialing it fails, which means the request was never sent and
// retrying is safe, puts it in cooldown and tries the next one. Upstreams
// in cooldown are tried last rather than never, so a Route whose Upstreams
// are all marked down still recovers as soon as one answers.
type balancer struct {
	upstreams []*upstream
	policy    policy
	now       func() time.Time
	logger    *slog.Logger
}

func newBalancer(ups []*upstream, now func() time.Time, logger *slog.Logger) *balancer {
	return &balancer{upstreams: ups, policy: new(roundRobin), now: now, logger: logger}
}

// RoundTrip sends req to one Upstream. It is only ever called by the
// Route's ReverseProxy, which owns and closes req.Body; so unlike a general
// RoundTripper, balancer leaves the body open for the next attempt.
func (b *balancer) RoundTrip(req *http.Request) (*http.Response, error) {
	n := len(b.upstreams)
	start := b.policy.first(req, n)
	now := b.now()
	nowNano := now.UnixNano()
	var buf [16]bool
	skipped := buf[:0]
	if n <= len(buf) {
		skipped = buf[:n]
	} else {
		skipped = make([]bool, n)
	}
	var err error
	for pass := range 2 {
		for i := range n {
			idx := (start + i) % n
			u := b.upstreams[idx]
			if pass == 0 && !u.available(nowNano) {
				skipped[idx] = true
				continue
			}
			if pass == 1 && !skipped[idx] {
				continue
			}
			var res *http.Response
			res, err = b.try(u, req)
			if err == nil {
				return res, nil
			}
			if !isDialError(err) || req.Context().Err() != nil {
				return nil, err
			}
			d := u.markFailed(now)
			b.logger.LogAttrs(req.Context(), slog.LevelWarn, "upstream unreachable",
				slog.String("upstream", u.name), slog.Duration("cooldown", d), slog.Any("error", err))
		}
	}
	return nil, err
}

// try sends req to u. The request is copied, never modified, and its body
// is shielded from the transport's Close so a later attempt can still send it.
func (b *balancer) try(u *upstream, req *http.Request) (*http.Response, error) {
	out := new(http.Request)
	*out = *req
	target := *req.URL
	target.Scheme, target.Host = u.scheme, u.host
	out.URL = &target
	if req.Body != nil {
		out.Body = keepOpenBody{req.Body}
	}
	if x := exchangeFrom(req.Context()); x != nil {
		x.upstream = u.name
	}
	res, err := u.rt.RoundTrip(out)
	if err == nil {
		u.markOK()
	}
	return res, err
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
