package proxy

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/gatehouse-proxy/gatehouse/config"
)

func bcryptHash(t *testing.T, pass string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func TestBasicAuth(t *testing.T) {
	backend := newEcho(t, "b")
	r := proxyTo("/", backend.URL)
	r.BasicAuth = &config.BasicAuth{Realm: "staff", Users: map[string]string{
		"alice": bcryptHash(t, "wonderland"),
		"bob":   bcryptHash(t, "builder"),
	}}
	r.RequestHeaders = &config.Headers{Set: map[string]string{"X-Remote-User": "{user}"}}
	f := newFrontend(t, proxyConfig(r))
	tests := []struct {
		name, user, pass string
		noAuth           bool
		code             int
	}{
		{name: "no credentials", noAuth: true, code: 401},
		{name: "wrong password", user: "alice", pass: "builder", code: 401},
		{name: "unknown user", user: "mallory", pass: "wonderland", code: 401},
		{name: "empty password", user: "bob", pass: "", code: 401},
		{name: "alice", user: "alice", pass: "wonderland", code: 200},
		{name: "alice again, from the cache", user: "alice", pass: "wonderland", code: 200},
		{name: "bob", user: "bob", pass: "builder", code: 200},
		{name: "cached user, other password", user: "alice", pass: "wonderland!", code: 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := f.request(t, http.MethodGet, host, "/", nil)
			if !tt.noAuth {
				req.SetBasicAuth(tt.user, tt.pass)
			}
			req.Header.Set("X-Remote-User", "root") // never believed
			res, body := doRes(t, f.client(host), req)
			if res.StatusCode != tt.code {
				t.Fatalf("status %d, want %d", res.StatusCode, tt.code)
			}
			if tt.code == 401 {
				if got := res.Header.Get("WWW-Authenticate"); got != `Basic realm="staff", charset="UTF-8"` {
					t.Errorf("WWW-Authenticate = %q", got)
				}
				return
			}
			s := decodeSeen(t, body)
			if got := s.Header.Get("Authorization"); got != "" {
				t.Errorf("Upstream received the credentials: Authorization %q", got)
			}
			if got := s.Header.Values("X-Remote-User"); len(got) != 1 || got[0] != tt.user {
				t.Errorf("Upstream saw X-Remote-User %q, want [%q]", got, tt.user)
			}
		})
	}
	ba := f.handler.Table().sites[0].routes[0].shape.basicAuth
	if cached := ba.logins.size(); cached != 2 {
		t.Errorf("%d verified credentials cached, want 2 (alice and bob)", cached)
	}
}

func TestBasicAuthCacheBounded(t *testing.T) {
	ba, err := newBasicAuth(&config.BasicAuth{Users: map[string]string{"u": bcryptHash(t, "p")}}, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	// Fill the cache with entries as a long-running process would.
	for i := range authCacheSize {
		ba.logins.verified[[32]byte{byte(i), byte(i >> 8), 1}] = time.Now().Add(time.Minute)
	}
	if !ba.check(t.Context(), "u", "p") {
		t.Fatal("right password refused")
	}
	if n := ba.logins.size(); n > authCacheSize {
		t.Errorf("cache grew to %d entries, bound is %d", n, authCacheSize)
	}
	if ba.check(t.Context(), "u", "q") {
		t.Fatal("wrong password accepted")
	}
}

func TestIPFilter(t *testing.T) {
	backend := newEcho(t, "b")
	route := func(path string, allow, deny []string) config.Route {
		r := proxyTo(path, backend.URL)
		r.AllowIPs, r.DenyIPs = allow, deny
		return r
	}
	cfg := proxyConfig(
		route("/lan/", []string{"10.0.0.0/8", "192.168.0.0/16"}, nil),
		route("/local/", []string{"127.0.0.1", "::1"}, nil),
		route("/nolocal/", nil, []string{"127.0.0.0/8"}),
		route("/mixed/", []string{"10.0.0.0/8"}, []string{"10.6.6.0/24"}),
	)
	cfg.TrustedProxies = []string{"127.0.0.1"}
	f := newFrontend(t, cfg)

	untrusted := proxyConfig(route("/lan/", []string{"10.0.0.0/8"}, nil))
	g := newFrontend(t, untrusted)

	tests := []struct {
		name string
		f    *frontend
		path string
		xff  string
		code int
	}{
		{"peer outside allow", f, "/lan/", "", 403},
		{"peer inside allow", f, "/local/", "", 200},
		{"peer denied", f, "/nolocal/", "", 403},
		{"client behind trusted proxy allowed", f, "/lan/", "10.1.2.3", 200},
		{"client behind trusted proxy not allowed", f, "/lan/", "203.0.113.9", 403},
		{"client behind trusted proxy denied", f, "/mixed/", "10.6.6.6", 403},
		{"deny is narrower than allow", f, "/mixed/", "10.6.7.1", 200},
		{"proxy's own address is not the client", f, "/local/", "203.0.113.9", 403},
		{"spoofed X-Forwarded-For from an untrusted peer", g, "/lan/", "10.1.2.3", 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := tt.f.request(t, http.MethodGet, host, tt.path, nil)
			if tt.xff != "" {
				req.Header.Set("X-Forwarded-For", tt.xff)
			}
			code, _ := do(t, tt.f.client(host), req)
			if code != tt.code {
				t.Errorf("status %d, want %d", code, tt.code)
			}
		})
	}
}

func TestRateLimit(t *testing.T) {
	backend := newEcho(t, "b")
	byIP := proxyTo("/ip/", backend.URL)
	byIP.RateLimit = &config.RateLimit{Requests: 2, Per: time.Minute, Key: "ip"}
	byKey := proxyTo("/key/", backend.URL)
	byKey.RateLimit = &config.RateLimit{Requests: 1, Per: time.Hour, Burst: 2, Key: "header:X-Api-Key"}
	f := newFrontend(t, proxyConfig(byIP, byKey))

	send := func(t *testing.T, path, key string) *http.Response {
		t.Helper()
		req := f.request(t, http.MethodGet, host, path, nil)
		if key != "" {
			req.Header.Set("X-Api-Key", key)
		}
		res, _ := doRes(t, f.client(host), req)
		return res
	}
	for i, want := range []int{200, 200, 429, 429} {
		if res := send(t, "/ip/", ""); res.StatusCode != want {
			t.Fatalf("request %d by IP: status %d, want %d", i+1, res.StatusCode, want)
		}
	}
	res := send(t, "/ip/", "")
	// 2 per minute: the next token is due in 30s at most.
	if ra, err := strconv.Atoi(res.Header.Get("Retry-After")); err != nil || ra < 1 || ra > 30 {
		t.Errorf("Retry-After = %q, want 1 to 30 seconds", res.Header.Get("Retry-After"))
	}

	for i, want := range []int{200, 200, 429} {
		if res := send(t, "/key/", "k1"); res.StatusCode != want {
			t.Fatalf("request %d with key k1: status %d, want %d", i+1, res.StatusCode, want)
		}
	}
	if res := send(t, "/key/", "k2"); res.StatusCode != 200 {
		t.Errorf("another key: status %d, want 200 (its own bucket)", res.StatusCode)
	}
	// Without the header the client is keyed by IP, in a bucket of its own.
	if res := send(t, "/key/", ""); res.StatusCode != 200 {
		t.Errorf("no key: status %d, want 200", res.StatusCode)
	}
}

func TestRateLimitBounded(t *testing.T) {
	backend := newEcho(t, "b")
	r := proxyTo("/", backend.URL)
	const maxClients = 40
	r.RateLimit = &config.RateLimit{Requests: 1, Per: time.Hour, Key: "header:X-Client", MaxClients: maxClients}
	f := newFrontend(t, proxyConfig(r))
	c := f.client(host)
	send := func(client string) int {
		req := f.request(t, http.MethodGet, host, "/", nil)
		req.Header.Set("X-Client", client)
		code, _ := do(t, c, req)
		return code
	}
	for i := range 10 * maxClients {
		if code := send(fmt.Sprint("client-", i)); code != 200 {
			t.Fatalf("client %d: status %d on its first request", i, code)
		}
	}
	rl := f.handler.Table().sites[0].routes[0].shape.rateLimit
	if n := rl.clients(); n > maxClients || n < maxClients/2 {
		t.Errorf("tracking %d clients after %d distinct ones, want at most max_clients %d (and not far below)", n, 10*maxClients, maxClients)
	}
	// The most recent client is remembered (its bucket is empty); the
	// first, long forgotten, starts afresh.
	if code := send(fmt.Sprint("client-", 10*maxClients-1)); code != 429 {
		t.Errorf("most recent client: status %d, want 429", code)
	}
	if code := send("client-0"); code != 200 {
		t.Errorf("forgotten client: status %d, want 200", code)
	}
}

func TestForwardAuth(t *testing.T) {
	var asked atomic.Pointer[http.Request]
	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	auth := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Store(r)
		switch {
		case r.Header.Get("X-Forwarded-Uri") == "/slow":
			select {
			case <-block:
			case <-r.Context().Done():
			}
		case r.Header.Get("Cookie") == "session=alice":
			w.Header().Set("Remote-User", "alice")
			w.Header().Set("Remote-Groups", "admins")
			w.Header().Set("X-Not-Copied", "1")
			w.WriteHeader(http.StatusNoContent)
		case r.Header.Get("Cookie") == "session=anon":
			// Authenticated, but the service sends no Remote-User.
			w.WriteHeader(http.StatusOK)
		case strings.HasPrefix(r.Header.Get("X-Forwarded-Uri"), "/api/"):
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":"login required"}`)
		default:
			w.Header().Set("Location", "https://login.example.com/?rd="+r.Header.Get("X-Forwarded-Proto")+"://"+r.Header.Get("X-Forwarded-Host")+r.Header.Get("X-Forwarded-Uri"))
			w.Header().Set("Set-Cookie", "csrf=1")
			w.WriteHeader(http.StatusFound)
			fmt.Fprint(w, "go log in")
		}
	}))
	backend := newEcho(t, "b")
	protected := proxyTo("/", backend.URL)
	protected.ForwardAuth = &config.ForwardAuth{URL: auth.URL + "/verify", CopyHeaders: []string{"Remote-User", "remote-groups"}, Timeout: 300 * time.Millisecond}
	down := proxyTo("/down/", backend.URL)
	down.ForwardAuth = &config.ForwardAuth{URL: "http://" + closedAddr(t) + "/verify"}
	f := newFrontend(t, proxyConfig(protected, down))

	send := func(t *testing.T, method, target, cookie string) (*http.Response, string) {
		t.Helper()
		req := f.request(t, method, host, target, nil)
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		req.Header.Set("Remote-User", "mallory") // never believed
		req.Header.Set("X-Forwarded-Uri", "/spoofed")
		return doRes(t, f.client(host), req)
	}

	t.Run("authorized", func(t *testing.T) {
		res, body := send(t, http.MethodPost, "/app/page?x=1", "session=alice")
		if res.StatusCode != 200 {
			t.Fatalf("status %d: %s", res.StatusCode, body)
		}
		s := decodeSeen(t, body)
		if s.Method != "POST" || s.Path != "/app/page" {
			t.Errorf("Upstream got %s %s", s.Method, s.Path)
		}
		for name, want := range map[string]string{"Remote-User": "alice", "Remote-Groups": "admins", "X-Not-Copied": ""} {
			if got := s.Header.Get(name); got != want {
				t.Errorf("Upstream saw %s %q, want %q", name, got, want)
			}
		}
		a := asked.Load()
		for name, want := range map[string]string{
			"X-Forwarded-Method": "POST",
			"X-Forwarded-Proto":  "https",
			"X-Forwarded-Host":   host,
			"X-Forwarded-Uri":    "/app/page?x=1",
			"X-Forwarded-For":    "127.0.0.1",
			"Cookie":             "session=alice",
			"X-Request-Id":       res.Header.Get("X-Request-Id"),
		} {
			if got := a.Header.Get(name); got != want {
				t.Errorf("auth service saw %s %q, want %q", name, got, want)
			}
		}
		if a.Method != "GET" || a.URL.Path != "/verify" {
			t.Errorf("auth service asked with %s %s, want GET /verify", a.Method, a.URL.Path)
		}
	})
	t.Run("authorized without the header", func(t *testing.T) {
		res, body := send(t, http.MethodGet, "/", "session=anon")
		if res.StatusCode != 200 {
			t.Fatalf("status %d", res.StatusCode)
		}
		if got := decodeSeen(t, body).Header.Get("Remote-User"); got != "" {
			t.Errorf("Upstream saw the client's own Remote-User %q", got)
		}
	})
	t.Run("redirect to login goes back as it is", func(t *testing.T) {
		res, body := send(t, http.MethodGet, "/app/", "")
		if res.StatusCode != 302 || body != "go log in" ||
			res.Header.Get("Location") != "https://login.example.com/?rd=https://"+host+"/app/" ||
			res.Header.Get("Set-Cookie") != "csrf=1" {
			t.Errorf("got %d %q Location %q Set-Cookie %q", res.StatusCode, body, res.Header.Get("Location"), res.Header.Get("Set-Cookie"))
		}
	})
	t.Run("401 goes back as it is", func(t *testing.T) {
		res, body := send(t, http.MethodGet, "/api/x", "")
		if res.StatusCode != 401 || body != `{"error":"login required"}` || res.Header.Get("Content-Type") != "application/json" {
			t.Errorf("got %d %q %q", res.StatusCode, body, res.Header.Get("Content-Type"))
		}
	})
	t.Run("service unreachable fails closed", func(t *testing.T) {
		if res, _ := send(t, http.MethodGet, "/down/x", "session=alice"); res.StatusCode != 502 {
			t.Errorf("status %d, want 502", res.StatusCode)
		}
	})
	t.Run("service too slow fails closed", func(t *testing.T) {
		start := time.Now()
		res, _ := send(t, http.MethodGet, "/slow", "session=alice")
		if res.StatusCode != 504 {
			t.Errorf("status %d, want 504", res.StatusCode)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("took %v; the timeout is 300ms", d)
		}
	})
}

// TestBasicAuthUnknownUser checks that a name that does not exist costs a
// bcrypt comparison as dear as the dearest known one, so timing does not
// reveal which names exist (issue 16). It looks at the cost of the hash
// each check compares rather than at the clock: bcrypt's work doubles with
// each cost step, and a wall-clock bound loose enough not to flake let a
// decoy 4x cheaper through.
func TestBasicAuthUnknownUser(t *testing.T) {
	hash := func(pass string, cost int) string {
		h, err := bcrypt.GenerateFromPassword([]byte(pass), cost)
		if err != nil {
			t.Fatal(err)
		}
		return string(h)
	}
	// The cheapest hash belongs to the name that sorts first, and the
	// dearest one is not the last, so neither order gives the answer.
	users := map[string]string{
		"alice": hash("a", bcrypt.MinCost),
		"bob":   hash("b", bcrypt.MinCost+2),
		"carol": hash("c", bcrypt.MinCost+1),
	}
	const dearest = bcrypt.MinCost + 2
	ba, err := newBasicAuth(&config.BasicAuth{Users: users}, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	var compared []int // cost of each hash compared, in order
	ba.compare = func(hash, pass []byte) error {
		cost, err := bcrypt.Cost(hash)
		if err != nil {
			t.Errorf("compared a hash that is not bcrypt: %v", err)
		}
		compared = append(compared, cost)
		return bcrypt.CompareHashAndPassword(hash, pass)
	}
	costOf := func(user, pass string) int {
		t.Helper()
		compared = nil
		if ba.check(t.Context(), user, pass) {
			t.Fatalf("%s/%s accepted", user, pass)
		}
		if len(compared) != 1 {
			t.Fatalf("%s: %d bcrypt comparisons, want 1", user, len(compared))
		}
		return compared[0]
	}
	if got := costOf("bob", "wrong"); got != dearest {
		t.Fatalf("known user bob: compared at cost %d, want %d", got, dearest)
	}
	for _, tt := range []struct{ user, pass string }{
		{"mallory", "wrong"},
		{"mallory", "b"}, // another user's password gets nobody in
		{"", ""},
	} {
		if got := costOf(tt.user, tt.pass); got != dearest {
			t.Errorf("unknown user %q: compared at cost %d, want %d as for the dearest known user: the name's absence shows", tt.user, got, dearest)
		}
	}
}

// TestBasicAuthConcurrencyCap floods a basic_auth Route with wrong
// passwords while the bcrypt comparisons already running are held: no more
// than half the CPUs compare at once (README, basic_auth), a request beyond
// that waits for a slot without running bcrypt, gives up (401) when its
// client does, and is served once a slot frees.
func TestBasicAuthConcurrencyCap(t *testing.T) {
	want := max(1, runtime.GOMAXPROCS(0)/2)
	backend := newEcho(t, "b")
	r := proxyTo("/", backend.URL)
	r.BasicAuth = &config.BasicAuth{Users: map[string]string{"alice": bcryptHash(t, "pw")}}
	cfg := proxyConfig(r)
	f := newFrontend(t, cfg)

	// The first want comparisons block until release; later ones run at
	// once, so a missing cap shows as more in flight, not as a hang.
	var started, inFlight, peak atomic.Int32
	entered := make(chan struct{}, 64)
	release := make(chan struct{})
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	var guesses sync.WaitGroup
	t.Cleanup(guesses.Wait) // after unblock: cleanups run last first
	t.Cleanup(unblock)
	table := f.compile(t, cfg)
	ba := table.sites[0].routes[0].shape.basicAuth
	ba.compare = func(hash, pass []byte) error {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		if started.Add(1) <= int32(want) {
			entered <- struct{}{}
			<-release
		}
		return bcrypt.CompareHashAndPassword(hash, pass)
	}
	f.handler.Swap(table) // publishes the wrapped compare to the serving goroutines

	// guess sends a wrong password from its own goroutine, so it reports
	// with t.Errorf and answers 0 when the request fails.
	codes := make(chan int, want+1)
	guess := func() {
		req := f.request(t, http.MethodGet, host, "/", nil)
		req.SetBasicAuth("alice", "guess")
		c := f.client(host)
		guesses.Go(func() {
			res, err := c.Do(req)
			if err != nil {
				if t.Context().Err() == nil { // not a test already failed and ending
					t.Errorf("guess: %v", err)
				}
				codes <- 0
				return
			}
			res.Body.Close()
			codes <- res.StatusCode
		})
	}
	for range want {
		guess()
	}
	hang := time.NewTimer(10 * time.Second)
	defer hang.Stop()
	for i := range want {
		select {
		case <-entered:
		case <-hang.C:
			t.Fatalf("%d of %d comparisons started: the cap is below half the CPUs (%d)", i, want, runtime.GOMAXPROCS(0))
		}
	}

	// Every slot is taken. A guess whose client has already gone finds
	// no slot free and must give up without running bcrypt. (With a slot
	// free, select picks it or the ended context at random: 20 guesses
	// make a cap set too high slip through once in a million runs.)
	gone, cancel := context.WithCancel(t.Context())
	cancel()
	for i := range 20 {
		req := httptest.NewRequest(http.MethodGet, "https://"+host+"/", nil).WithContext(gone)
		req.SetBasicAuth("alice", fmt.Sprint("guess", i))
		rec := httptest.NewRecorder()
		f.handler.ServeHTTP(rec, req)
		if rec.Code != http.StatusUnauthorized {
			t.Errorf("guess %d beyond the cap, client gone: status %d, want 401", i, rec.Code)
		}
	}
	if n := started.Load(); n != int32(want) {
		t.Errorf("%d bcrypt comparisons started with %d slots taken, want %d: the cap does not hold", n, want, want)
	}
	if p := peak.Load(); p > int32(want) {
		t.Errorf("%d bcrypt comparisons ran at once, cap is %d", p, want)
	}

	// One more guess with a live client is answered once the held
	// comparisons finish.
	guess()
	unblock()
	for range want + 1 {
		if code := <-codes; code != http.StatusUnauthorized {
			t.Errorf("wrong password: status %d, want 401", code)
		}
	}
	if p := peak.Load(); p > int32(want) {
		t.Errorf("%d bcrypt comparisons ran at once, cap is %d", p, want)
	}
}

func TestRateLimitKey(t *testing.T) {
	rl, err := newRateLimiter(&trust{}, &config.RateLimit{Requests: 1, Per: time.Second, Key: "header:X-Api-Key"}, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	key := func(remote, apiKey string) uint64 {
		r, _ := http.NewRequest("GET", "https://h.example/", nil)
		r.RemoteAddr = remote
		if apiKey != "" {
			r.Header.Set("X-Api-Key", apiKey)
		}
		return rl.key(r)
	}
	same := [][2]uint64{
		{key("[2001:db8:1:2::1]:1000", ""), key("[2001:db8:1:2:ffff::9]:2000", "")}, // one /64
		{key("192.0.2.1:1000", ""), key("192.0.2.1:2000", "")},                      // ports differ
		{key("192.0.2.1:1000", "k"), key("192.0.2.9:1000", "k")},                    // the header decides
		{key("[::ffff:192.0.2.1]:1", ""), key("192.0.2.1:1", "")},                   // v4-mapped
	}
	for i, p := range same {
		if p[0] != p[1] {
			t.Errorf("pair %d: keys differ, want one bucket", i)
		}
	}
	differ := [][2]uint64{
		{key("[2001:db8:1:2::1]:1", ""), key("[2001:db8:1:3::1]:1", "")},
		{key("192.0.2.1:1", ""), key("192.0.2.2:1", "")},
		{key("192.0.2.1:1", "a"), key("192.0.2.1:1", "b")},
		{key("192.0.2.1:1", "a"), key("192.0.2.1:1", "")},
	}
	for i, p := range differ {
		if p[0] == p[1] {
			t.Errorf("pair %d: same key, want separate buckets", i)
		}
	}
}

// TestRateLimitConcurrent hammers one limiter from many goroutines (run
// with -race): the table stays bounded, its LRU lists match its maps, and
// every client gets at least its burst.
func TestRateLimitConcurrent(t *testing.T) {
	const maxClients, burst = 64, 3
	rl, err := newRateLimiter(&trust{}, &config.RateLimit{Requests: burst, Per: time.Hour, MaxClients: maxClients}, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	var admitted [maxClients / 2]atomic.Int32
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				c := (g*7 + i) % len(admitted)
				if rl.take(uint64(c)*0x9e3779b97f4a7c15) == 0 {
					admitted[c].Add(1)
				}
				// Churn through other clients too.
				rl.take(uint64(1000 + g*100000 + i))
			}
		})
	}
	wg.Wait()
	if n := rl.clients(); n > maxClients {
		t.Errorf("tracking %d clients, bound is %d", n, maxClients)
	}
	for c := range admitted {
		// A client forgotten under churn may come back with a full bucket,
		// so more than burst is possible; but never unbounded.
		if n := admitted[c].Load(); n < burst {
			t.Errorf("client %d admitted %d times, want at least its burst %d", c, n, burst)
		}
	}
	for i := range rl.shards {
		s := &rl.shards[i]
		n := 0
		for c := s.sentinel.next; c != &s.sentinel; c = c.next {
			if s.clients[c.key] != c {
				t.Fatalf("shard %d: list entry %d not in the map", i, c.key)
			}
			n++
		}
		if n != len(s.clients) {
			t.Errorf("shard %d: list has %d entries, map %d", i, n, len(s.clients))
		}
	}
}

// TestReloadKeepsShapingState swaps in freshly compiled Tables: an
// unchanged Route keeps its clients' buckets and remembered logins, a
// changed one starts afresh.
func TestReloadKeepsShapingState(t *testing.T) {
	backend := newEcho(t, "b")
	alice := bcryptHash(t, "pw")
	cfg := func(requests int, users map[string]string) *config.Config {
		limited := proxyTo("/limited", backend.URL)
		limited.RateLimit = &config.RateLimit{Requests: requests, Per: time.Hour}
		private := proxyTo("/private", backend.URL)
		private.BasicAuth = &config.BasicAuth{Users: users}
		return proxyConfig(limited, private)
	}
	f := newFrontend(t, cfg(1, map[string]string{"alice": alice}))
	send := func(path string) int {
		req := f.request(t, http.MethodGet, host, path, nil)
		req.SetBasicAuth("alice", "pw")
		code, _ := do(t, f.client(host), req)
		return code
	}
	logins := func() int {
		for _, r := range f.handler.Table().sites[0].routes {
			if r.shape.basicAuth != nil {
				return r.shape.basicAuth.logins.size()
			}
		}
		t.Fatal("no basic_auth route")
		return 0
	}
	if send("/limited") != 200 || send("/limited") != 429 || send("/private") != 200 || logins() != 1 {
		t.Fatal("setup: want the bucket empty and alice remembered")
	}

	f.handler.Swap(f.compile(t, cfg(1, map[string]string{"alice": alice})))
	if code := send("/limited"); code != 429 {
		t.Errorf("after a reload that kept the route: status %d, want 429 (the bucket is still empty)", code)
	}
	if n := logins(); n != 1 {
		t.Errorf("after a reload that kept the users: %d logins remembered, want 1", n)
	}

	f.handler.Swap(f.compile(t, cfg(2, map[string]string{"alice": alice, "bob": bcryptHash(t, "x")})))
	if code := send("/limited"); code != 200 {
		t.Errorf("after a reload that changed the limit: status %d, want 200 (a new bucket)", code)
	}
	if n := logins(); n != 0 {
		t.Errorf("after a reload that changed the users: %d logins remembered, want 0", n)
	}
}
