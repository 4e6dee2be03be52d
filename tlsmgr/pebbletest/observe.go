package pebbletest

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Validation is a challenge a client asked the CA to validate (RFC 8555
// §7.5.1), as the CA's database holds it now.
type Validation struct {
	// Name is the authorization's identifier; "*.example.test" for the
	// authorization of a wildcard.
	Name string
	// Type is the challenge type: "http-01", "tls-alpn-01" or "dns-01".
	Type string
	// Status is "processing" while Pebble validates, then "valid" or
	// "invalid".
	Status string
}

// Validations returns every challenge clients asked the CA to validate, in
// the order they asked, with its status now. Challenges offered but never
// asked for are not listed, so a test sees which challenge type a client
// chose, and whether it tried another first.
func (c *CA) Validations() []Validation {
	c.mu.Lock()
	ids := slices.Clone(c.challenges)
	c.mu.Unlock()
	var out []Validation
	for _, id := range ids {
		ch := c.db.GetChallengeByID(id)
		if ch == nil {
			continue
		}
		ch.RLock()
		v := Validation{Type: ch.Type, Status: ch.Status}
		authz := ch.Authz
		ch.RUnlock()
		if authz != nil {
			authz.RLock()
			v.Name = authz.Identifier.Value
			authz.RUnlock()
		}
		out = append(out, v)
	}
	return out
}

// noteChallenge records that a client POSTed to challenge id. Polls
// (POST-as-GET) of a challenge already asked for change nothing; a poll
// of one never asked for is dropped by Validations while it is pending.
func (c *CA) noteChallenge(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !slices.Contains(c.challenges, id) {
		c.challenges = append(c.challenges, id)
	}
}

// BadNonces reports how many requests the CA rejected with a badNonce
// problem: with [Options.BadNonces], the good nonces it refused on
// purpose, each of which a correct client retries.
func (c *CA) BadNonces() int { return int(c.badNonces.Load()) }

// RenewalInfoRequests reports how many times clients fetched a renewal
// window from the CA's ACME Renewal Information endpoint (RFC 9773), so a
// test can wait until a client has seen the window [CA.SetRenewalWindow]
// set, or the default one, a number of times.
func (c *CA) RenewalInfoRequests() int { return int(c.ariRequests.Load()) }

// RateLimitOrders makes the CA refuse the next n new-order requests as
// rate limited until retryAfter, the way Let's Encrypt's Boulder does: HTTP
// 429, a Retry-After header and a urn:ietf:params:acme:error:rateLimited
// problem whose detail ends "retry after 2006-01-02 15:04:05 UTC: see
// ...". Pebble itself enforces no rate limits ("Pebble does not enforce
// any rate limits", its README), so this stands in front of it; the
// refused requests never reach Pebble and are not counted by
// [CA.Orders].
func (c *CA) RateLimitOrders(n int, retryAfter time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.limitOrders, c.limitUntil = n, retryAfter
}

// refuseOrder answers a new-order request as rate limited if
// RateLimitOrders says so, and reports whether it did.
func (c *CA) refuseOrder(rw http.ResponseWriter, h http.Handler) bool {
	c.mu.Lock()
	if c.limitOrders <= 0 {
		c.mu.Unlock()
		return false
	}
	c.limitOrders--
	until := c.limitUntil.UTC().Truncate(time.Second)
	c.mu.Unlock()

	// Every ACME response carries a fresh nonce (RFC 8555 §6.5); take one
	// from Pebble, whose nonces the client's next request must use.
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodHead, "https://127.0.0.1"+c.noncePath, nil)
	req.Header.Set("User-Agent", "pebbletest")
	h.ServeHTTP(rec, req)
	rw.Header().Set("Replay-Nonce", rec.Header().Get("Replay-Nonce"))
	rw.Header().Set("Content-Type", "application/problem+json")
	rw.Header().Set("Retry-After", strconv.Itoa(int(max(1, time.Until(until).Round(time.Second)/time.Second))))
	rw.WriteHeader(http.StatusTooManyRequests)
	fmt.Fprintf(rw, `{"type": "urn:ietf:params:acme:error:rateLimited", "status": 429, "detail": "too many new orders (1) from this account in the last 3h0m0s, retry after %s: see https://letsencrypt.org/docs/rate-limits/#new-orders-per-account"}`,
		until.Format("2006-01-02 15:04:05 UTC"))
	return true
}

// DownAtFinalize makes the CA go down at the next finalize request, the
// step after a client's order and its challenges have succeeded, when the
// certificate is asked for: that request and every one after it, to any
// resource, get no response (the connection is closed), as when the CA's
// process is gone, until [CA.Up]. The order already placed counts in
// [CA.Orders]; the refused requests never reach Pebble and are counted
// by [CA.Refused].
func (c *CA) DownAtFinalize() { c.downAtFinalize.Store(true) }

// Up ends what [CA.DownAtFinalize] began, or disarms it: requests reach
// Pebble again.
func (c *CA) Up() {
	c.downAtFinalize.Store(false)
	c.down.Store(false)
}

// IsDown reports whether the CA is down since [CA.DownAtFinalize] took it
// down, until [CA.Up].
func (c *CA) IsDown() bool { return c.down.Load() }

// Refused reports how many requests the CA dropped while down.
func (c *CA) Refused() int { return int(c.refused.Load()) }

// HoldFinalize makes the CA hold the next finalize request, the step
// after a client's order and its challenges have succeeded, when the
// certificate is asked for: held is closed when the request arrives, and
// it goes on to Pebble once release is called (or the client gives up).
// A test breaks something at that moment (the client's storage, the CA
// with [CA.DownAtFinalize]) to see a failure in the middle of an order.
func (c *CA) HoldFinalize() (held <-chan struct{}, release func()) {
	return c.hold(holdFinalize)
}

// HoldRenewalInfo is [CA.HoldFinalize] for the next request for a
// renewal window (ACME Renewal Information, RFC 9773): a client that
// asks for one before it decides to renew is held at that moment.
func (c *CA) HoldRenewalInfo() (held <-chan struct{}, release func()) {
	return c.hold(holdARI)
}

// The kinds of request a hold applies to.
const (
	holdFinalize = "finalize"
	holdARI      = "renewal info"
)

// hold is an armed HoldFinalize or HoldRenewalInfo: held is closed when
// the request arrives, release by the test to let it go on.
type hold struct{ held, release chan struct{} }

func (c *CA) hold(kind string) (<-chan struct{}, func()) {
	h := hold{held: make(chan struct{}), release: make(chan struct{})}
	c.mu.Lock()
	if c.holds == nil {
		c.holds = map[string]hold{}
	}
	c.holds[kind] = h
	c.mu.Unlock()
	var once sync.Once
	return h.held, func() { once.Do(func() { close(h.release) }) }
}

// holdRequest holds r if a hold of its kind is armed, and disarms it.
func (c *CA) holdRequest(kind string, r *http.Request) {
	c.mu.Lock()
	h, ok := c.holds[kind]
	delete(c.holds, kind)
	c.mu.Unlock()
	if !ok {
		return
	}
	close(h.held)
	select {
	case <-h.release:
	case <-r.Context().Done():
	}
}
