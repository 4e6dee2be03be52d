package proxy

import (
	"errors"
	"hash/maphash"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// maxRateShards bounds how many independently locked parts a rate
// limiter's client table is split into.
const maxRateShards = 16

// rateLimiter is a token bucket per client: the real client IP (an IPv6
// client by its /64, which one host usually holds whole) or the value of a
// header. Clients are kept in sharded LRU tables whose total size never
// passes max_clients; a forgotten client comes back with a full bucket,
// which is what an idle client would have anyway.
type rateLimiter struct {
	table      *trust
	limit      rate.Limit
	burst      int
	requests   int           // as configured, for Describe
	per        time.Duration // as configured, for Describe
	header     string        // canonical header name; "" keys by IP
	keyName    string        // as configured, for Describe
	maxClients int
	seed       maphash.Seed
	shards     []rateShard
	now        func() time.Time
	next       http.Handler
}

// rateShard is one part of a rateLimiter's client table, an LRU list.
type rateShard struct {
	mu      sync.Mutex // guards the fields below
	clients map[uint64]*rateClient
	// head is the most recently seen client, tail the least; the list is
	// circular through a sentinel so neither end needs a nil check.
	sentinel rateClient
	max      int
}

type rateClient struct {
	key        uint64
	lim        *rate.Limiter
	prev, next *rateClient
}

func newRateLimiter(t *trust, cr *config.RateLimit, now func() time.Time) (*rateLimiter, error) {
	if cr.Requests <= 0 || cr.Per <= 0 {
		return nil, errors.New("checking requests and per: must be positive")
	}
	rl := &rateLimiter{
		table:      t,
		limit:      rate.Limit(float64(cr.Requests) / cr.Per.Seconds()),
		burst:      cr.Burst,
		requests:   cr.Requests,
		per:        cr.Per,
		keyName:    cr.Key,
		maxClients: cr.MaxClients,
		seed:       maphash.MakeSeed(),
		now:        now,
	}
	if rl.burst <= 0 {
		rl.burst = cr.Requests
	}
	if rl.keyName == "" {
		rl.keyName = config.RateLimitKeyIP
	}
	if name, ok := strings.CutPrefix(rl.keyName, config.RateLimitKeyHeaderPrefix); ok {
		rl.header = http.CanonicalHeaderKey(name)
	}
	if rl.maxClients <= 0 {
		rl.maxClients = config.DefaultMaxClients
	}
	n := min(maxRateShards, rl.maxClients)
	rl.shards = make([]rateShard, n)
	for i := range rl.shards {
		s := &rl.shards[i]
		s.clients = make(map[uint64]*rateClient)
		s.sentinel.prev, s.sentinel.next = &s.sentinel, &s.sentinel
		// Floor, so the total never passes maxClients.
		s.max = rl.maxClients / n
	}
	return rl, nil
}

func (rl *rateLimiter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if wait := rl.take(rl.key(r)); wait > 0 {
		secs := int64(math.Ceil(wait.Seconds()))
		w.Header().Set("Retry-After", strconv.FormatInt(max(secs, 1), 10))
		writeStatus(w, http.StatusTooManyRequests)
		return
	}
	rl.next.ServeHTTP(w, r)
}

// key hashes what identifies r's client. A request without the keyed
// header is keyed by its IP, so clients without one do not share a bucket.
func (rl *rateLimiter) key(r *http.Request) uint64 {
	if rl.header != "" {
		if v := r.Header[rl.header]; len(v) > 0 && v[0] != "" {
			return maphash.String(rl.seed, v[0])
		}
	}
	ip := rl.table.clientIP(r)
	if ip.Is6() {
		if p, err := ip.Prefix(64); err == nil {
			ip = p.Addr()
		}
	}
	return maphash.Comparable(rl.seed, ip)
}

// take spends a token of the client's bucket and returns zero, or, when
// the bucket is empty, spends nothing and returns how long until a token
// is there.
func (rl *rateLimiter) take(key uint64) time.Duration {
	now := rl.now()
	s := &rl.shards[key%uint64(len(rl.shards))]
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.clients[key]
	switch {
	case c != nil:
		s.unlink(c)
	case len(s.clients) >= s.max:
		// Forget the least recently seen client and reuse its entry.
		c = s.sentinel.prev
		s.unlink(c)
		delete(s.clients, c.key)
		c.key = key
		c.lim = rate.NewLimiter(rl.limit, rl.burst)
		s.clients[key] = c
	default:
		c = &rateClient{key: key, lim: rate.NewLimiter(rl.limit, rl.burst)}
		s.clients[key] = c
	}
	s.pushFront(c)
	res := c.lim.ReserveN(now, 1)
	if !res.OK() {
		return rl.per
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return d
	}
	return 0
}

func (s *rateShard) unlink(c *rateClient) {
	c.prev.next, c.next.prev = c.next, c.prev
}

func (s *rateShard) pushFront(c *rateClient) {
	c.prev, c.next = &s.sentinel, s.sentinel.next
	s.sentinel.next.prev = c
	s.sentinel.next = c
}

// clients returns how many clients rl tracks.
func (rl *rateLimiter) clients() int {
	n := 0
	for i := range rl.shards {
		s := &rl.shards[i]
		s.mu.Lock()
		n += len(s.clients)
		s.mu.Unlock()
	}
	return n
}

// sameSettings reports whether o counts clients exactly as rl does, so
// their buckets mean the same.
func (rl *rateLimiter) sameSettings(o *rateLimiter) bool {
	return rl.limit == o.limit && rl.burst == o.burst && rl.header == o.header &&
		rl.maxClients == o.maxClients && len(rl.shards) == len(o.shards)
}
