package proxy

import (
	"crypto/hmac"
	cryptorand "crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
)

// Load-balancing policy names, as in lb.policy.
const (
	policyRoundRobin         = "round_robin"
	policyWeightedRoundRobin = "weighted_round_robin"
	policyLeastConn          = "least_conn"
	policyRandomTwo          = "random_two"
	policyIPHash             = "ip_hash"
	policyCookie             = "cookie"
)

// defaultCookie names the sticky-session cookie when lb.cookie is unset.
const defaultCookie = "gatehouse_upstream"

// policy chooses which Upstream a request tries next. marks[i] is
// markCandidate for each Upstream it may choose; pick returns -1 when
// there is none. retry is set after the request's first attempt, so a
// rotating policy does not spend another turn on it. pick must not
// allocate: it runs on every request.
type policy interface {
	pick(b *balancer, pc *proxyCtx, req *http.Request, marks []uint8, retry bool) int
}

// pick asks b's policy for the next Upstream. The type switch calls each
// policy directly, so marks, which lives on RoundTrip's stack, does not
// escape to the heap as it would through an interface call.
func (b *balancer) pick(pc *proxyCtx, req *http.Request, marks []uint8, retry bool) int {
	switch p := b.policy.(type) {
	case *roundRobin:
		return p.pick(b, pc, req, marks, retry)
	case *weightedRoundRobin:
		return p.pick(b, pc, req, marks, retry)
	case *leastConn:
		return p.pick(b, pc, req, marks, retry)
	case randomTwo:
		return p.pick(b, pc, req, marks, retry)
	case *ipHash:
		return p.pick(b, pc, req, marks, retry)
	}
	panic("proxy: policy without a case in balancer.pick")
}

// turn returns the position a rotating policy starts from: the next one
// for a new request, the current one for a retry (whose first attempt
// took the turn before it).
func turn(next *atomic.Uint64, retry bool) uint64 {
	if retry {
		return next.Load()
	}
	return next.Add(1) - 1
}

// roundRobin starts each request one Upstream further than the last.
type roundRobin struct{ next atomic.Uint64 }

func (p *roundRobin) pick(_ *balancer, _ *proxyCtx, _ *http.Request, marks []uint8, retry bool) int {
	n := uint64(len(marks))
	start := turn(&p.next, retry)
	for i := range n {
		if idx := int((start + i) % n); marks[idx] == markCandidate {
			return idx
		}
	}
	return -1
}

// weightedRoundRobin walks a precomputed smooth schedule in which each
// Upstream appears as often as its weight, spread out (nginx's smooth
// weighted round robin), so weights 3 and 1 give a a b a, not a a a b.
type weightedRoundRobin struct {
	schedule []int
	next     atomic.Uint64
}

func newWeightedRoundRobin(weights []int) *weightedRoundRobin {
	total := 0
	for _, w := range weights {
		total += w
	}
	current := make([]int, len(weights))
	schedule := make([]int, 0, total)
	for range total {
		best := 0
		for i, w := range weights {
			current[i] += w
			if current[i] > current[best] {
				best = i
			}
		}
		current[best] -= total
		schedule = append(schedule, best)
	}
	return &weightedRoundRobin{schedule: schedule}
}

func (p *weightedRoundRobin) pick(_ *balancer, _ *proxyCtx, _ *http.Request, marks []uint8, retry bool) int {
	n := uint64(len(p.schedule))
	start := turn(&p.next, retry)
	for i := range n {
		if idx := p.schedule[(start+i)%n]; marks[idx] == markCandidate {
			return idx
		}
	}
	return -1
}

// leastConn picks the Upstream with the fewest requests in flight; ties go
// round robin so idle Upstreams share the load.
type leastConn struct{ next atomic.Uint64 }

func (p *leastConn) pick(b *balancer, _ *proxyCtx, _ *http.Request, marks []uint8, retry bool) int {
	n := uint64(len(marks))
	start := turn(&p.next, retry)
	best, bestLoad := -1, int64(0)
	for i := range n {
		idx := int((start + i) % n)
		if marks[idx] != markCandidate {
			continue
		}
		if load := b.upstreams[idx].state().inFlight.Load(); best < 0 || load < bestLoad {
			best, bestLoad = idx, load
		}
	}
	return best
}

// randomTwo picks two candidates at random and takes the one with fewer
// requests in flight ("power of two choices"): nearly as even as
// least_conn, without every request piling onto the same idle Upstream.
type randomTwo struct{}

func (randomTwo) pick(b *balancer, _ *proxyCtx, _ *http.Request, marks []uint8, retry bool) int {
	count := 0
	for _, m := range marks {
		if m == markCandidate {
			count++
		}
	}
	switch count {
	case 0:
		return -1
	case 1:
		return nthCandidate(marks, 0)
	}
	i := rand.IntN(count)
	j := rand.IntN(count - 1)
	if j >= i {
		j++
	}
	a, c := nthCandidate(marks, i), nthCandidate(marks, j)
	if b.upstreams[c].state().inFlight.Load() < b.upstreams[a].state().inFlight.Load() {
		return c
	}
	return a
}

func nthCandidate(marks []uint8, n int) int {
	for i, m := range marks {
		if m == markCandidate {
			if n == 0 {
				return i
			}
			n--
		}
	}
	return -1
}

// ipHash sends each client IP (the real one, from trusted_proxies) to the
// same Upstream. It uses rendezvous hashing: an Upstream going down moves
// only its own clients, and coming back takes back only those.
type ipHash struct {
	table *trust
	// seeds are the hashes of the Upstream URLs, so every gatehouse
	// instance maps a client to the same Upstream.
	seeds []uint64
}

func newIPHash(t *trust, ups []*upstream) *ipHash {
	p := &ipHash{table: t, seeds: make([]uint64, len(ups))}
	for i, u := range ups {
		p.seeds[i] = fnv64(fnvOffset, []byte(u.name))
	}
	return p
}

func (p *ipHash) pick(_ *balancer, pc *proxyCtx, req *http.Request, marks []uint8, retry bool) int {
	in := req
	if pc != nil && pc.in != nil {
		in = pc.in
	}
	ip := p.table.clientIP(in).As16()
	h := fnv64(fnvOffset, ip[:])
	best, bestScore := -1, uint64(0)
	for i, m := range marks {
		if m != markCandidate {
			continue
		}
		if s := mix64(h ^ p.seeds[i]); best < 0 || s > bestScore {
			best, bestScore = i, s
		}
	}
	return best
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func fnv64(h uint64, b []byte) uint64 {
	for _, c := range b {
		h ^= uint64(c)
		h *= fnvPrime
	}
	return h
}

// mix64 is the splitmix64 finalizer: it spreads the bits of x so that
// nearby inputs give unrelated scores.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// cookiePolicy keeps a client on one Upstream with a cookie naming it. The
// value is an HMAC of the Upstream URL under the secret, so the URL is not
// revealed and a tampered or foreign value matches no Upstream and is
// ignored. Requests without a valid cookie go round robin and get one.
type cookiePolicy struct {
	name string
	// values maps a cookie value to its Upstream's index.
	values map[string]int
	// setCookie is the Set-Cookie header value per Upstream.
	setCookie []string
}

func newCookiePolicy(name, secret, path string, ups []*upstream) *cookiePolicy {
	key := []byte(secret)
	if secret == "" {
		key = processSecret()
	}
	p := &cookiePolicy{name: name, values: make(map[string]int, len(ups)), setCookie: make([]string, len(ups))}
	for i, u := range ups {
		mac := hmac.New(sha256.New, key)
		mac.Write([]byte("gatehouse upstream\x00" + u.name))
		v := base64.RawURLEncoding.EncodeToString(mac.Sum(nil)[:18])
		if _, dup := p.values[v]; !dup {
			p.values[v] = i
		}
		p.setCookie[i] = (&http.Cookie{
			Name: name, Value: v, Path: path,
			HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode,
		}).String()
	}
	return p
}

// lookup returns the index of the Upstream req's cookie names, or -1.
func (p *cookiePolicy) lookup(req *http.Request) int {
	for _, c := range req.CookiesNamed(p.name) {
		if i, ok := p.values[c.Value]; ok {
			return i
		}
	}
	return -1
}

// processSecret signs sticky cookies when lb.cookie_secret is unset. It is
// made once per process, so reloads keep clients where they are.
var processSecret = sync.OnceValue(func() []byte {
	b := make([]byte, 32)
	_, _ = cryptorand.Read(b)
	return b
})
