package proxy

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// withLB is a proxied Route at / with an lb block.
func withLB(lb *config.LB, upstreams ...string) config.Route {
	return config.Route{Path: "/", Upstreams: upstreams, LB: lb}
}

// backendsOf sends n GETs and returns which backend answered each.
func backendsOf(t *testing.T, f *frontend, n int) []string {
	t.Helper()
	out := make([]string, 0, n)
	for range n {
		code, body := f.get(t, host, "/")
		if code != http.StatusOK {
			t.Fatalf("status = %v %q, want 200", code, body)
		}
		out = append(out, decodeSeen(t, body).Backend)
	}
	return out
}

func count(names []string) map[string]int {
	m := make(map[string]int)
	for _, n := range names {
		m[n]++
	}
	return m
}

func TestWeightedRoundRobin(t *testing.T) {
	a, b := newEcho(t, "a"), newEcho(t, "b")
	f := newFrontend(t, proxyConfig(withLB(&config.LB{Policy: "weighted_round_robin", Weights: []int{3, 1}}, a.URL, b.URL)))
	got := backendsOf(t, f, 40)
	if c := count(got); c["a"] != 30 || c["b"] != 10 {
		t.Errorf("a=%d b=%d, want 30 and 10 (weights 3:1)", c["a"], c["b"])
	}
	// Smooth: b comes every fourth request, never after a run of a's.
	if s := strings.Join(got, ""); strings.Contains(s, "aaaa") || strings.Contains(s, "bb") {
		t.Errorf("sequence %s is not spread out", s)
	}
}

// holdBackend answers /hold only when released, and everything else at
// once, as an echo.
type holdBackend struct {
	srv     *httptest.Server
	arrived chan struct{}
	release chan struct{}
	once    sync.Once
}

// free lets held requests finish.
func (hb *holdBackend) free() { hb.once.Do(func() { close(hb.release) }) }

func newHoldBackend(t *testing.T, name string, configure ...func(*http.Server)) *holdBackend {
	t.Helper()
	hb := &holdBackend{arrived: make(chan struct{}, 16), release: make(chan struct{})}
	echo := echoHandler(name)
	hb.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			hb.arrived <- struct{}{}
			select {
			case <-hb.release:
			case <-r.Context().Done():
			}
		}
		echo.ServeHTTP(w, r)
	}))
	for _, c := range configure {
		c(hb.srv.Config)
	}
	hb.srv.Start()
	t.Cleanup(hb.srv.Close)
	t.Cleanup(hb.free)
	return hb
}

// TestLoadAwarePolicies holds one request on one backend; least_conn and
// random_two must then send every other request to the idle one.
func TestLoadAwarePolicies(t *testing.T) {
	for _, policy := range []string{"least_conn", "random_two"} {
		t.Run(policy, func(t *testing.T) {
			a, b := newHoldBackend(t, "a"), newHoldBackend(t, "b")
			f := newFrontend(t, proxyConfig(withLB(&config.LB{Policy: policy}, a.srv.URL, b.srv.URL)))
			// Idle, both take a share.
			if c := count(backendsOf(t, f, 40)); c["a"] == 0 || c["b"] == 0 {
				t.Errorf("idle distribution a=%d b=%d, want both used", c["a"], c["b"])
			}
			done := make(chan string, 1)
			go func() {
				res, err := f.client(host).Do(f.request(t, http.MethodGet, host, "/hold", nil))
				if err != nil {
					done <- err.Error()
					return
				}
				res.Body.Close()
				done <- res.Status
			}()
			var busy, idle string
			select {
			case <-a.arrived:
				busy, idle = "a", "b"
				defer a.free()
			case <-b.arrived:
				busy, idle = "b", "a"
				defer b.free()
			case <-time.After(5 * time.Second):
				t.Fatal("held request never arrived")
			}
			if c := count(backendsOf(t, f, 10)); c[idle] != 10 {
				t.Errorf("with %s busy: %v, want all 10 on %s", busy, c, idle)
			}
		})
	}
}

func TestIPHash(t *testing.T) {
	a, b := newEcho(t, "a"), newEcho(t, "b")
	cfg := proxyConfig(withLB(&config.LB{Policy: "ip_hash"}, a.URL, b.URL))
	// The frontend's peer is 127.0.0.1: trusting it makes X-Forwarded-For
	// the real client IP, as behind a load balancer.
	cfg.TrustedProxies = []string{"127.0.0.1"}
	f := newFrontend(t, cfg)
	from := func(ip string) string {
		req := f.request(t, http.MethodGet, host, "/", nil)
		req.Header.Set("X-Forwarded-For", ip)
		code, body := do(t, f.client(host), req)
		if code != http.StatusOK {
			t.Fatalf("status = %v", code)
		}
		return decodeSeen(t, body).Backend
	}
	used := make(map[string]int)
	for i := range 20 {
		ip := "203.0.113." + string(rune('1'+i%9)) + string(rune('0'+i/9))
		first := from(ip)
		used[first]++
		for range 4 {
			if got := from(ip); got != first {
				t.Fatalf("client %s went to %s, then %s; want the same backend every time", ip, first, got)
			}
		}
	}
	if used["a"] == 0 || used["b"] == 0 {
		t.Errorf("20 clients all on one backend: %v", used)
	}
}

func TestCookieStickiness(t *testing.T) {
	a, b := newEcho(t, "a"), newEcho(t, "b")
	const secret = "0123456789abcdef0123456789abcdef"
	f := newFrontend(t, proxyConfig(withLB(&config.LB{Policy: "cookie", Cookie: "sticky", CookieSecret: secret}, a.URL, b.URL)))
	get := func(cookie string) (backend, setCookie string) {
		req := f.request(t, http.MethodGet, host, "/", nil)
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		res, body := doRes(t, f.client(host), req)
		return decodeSeen(t, body).Backend, res.Header.Get("Set-Cookie")
	}
	first, set := get("")
	if !strings.HasPrefix(set, "sticky=") || !strings.Contains(set, "HttpOnly") || !strings.Contains(set, "Secure") {
		t.Fatalf("Set-Cookie = %q, want a sticky=, HttpOnly, Secure cookie", set)
	}
	cookie, _, _ := strings.Cut(set, ";")
	for i := range 6 {
		got, again := get(cookie)
		if got != first {
			t.Fatalf("request %d with the cookie went to %s, want %s", i, got, first)
		}
		if again != "" {
			t.Errorf("request %d with a valid cookie got a new one: %q", i, again)
		}
	}
	t.Run("tampered cookie ignored", func(t *testing.T) {
		name, value, _ := strings.Cut(cookie, "=")
		flipped := []byte(value)
		flipped[0] ^= 1
		seen := make(map[string]int)
		for range 6 {
			got, again := get(name + "=" + string(flipped))
			seen[got]++
			if again == "" {
				t.Fatal("a tampered cookie was accepted: no new Set-Cookie")
			}
		}
		if seen["a"] == 0 || seen["b"] == 0 {
			t.Errorf("tampered cookie still pinned the client: %v", seen)
		}
	})
	t.Run("cookie signed with another secret ignored", func(t *testing.T) {
		other := newCookiePolicy("sticky", "another secret, 32 bytes long!!", "/", []*upstream{{name: a.URL}, {name: b.URL}})
		forged, _, _ := strings.Cut(other.setCookie[0], ";")
		if _, again := get(forged); again == "" {
			t.Error("a cookie signed with another secret was accepted")
		}
	})
}

// TestIPHashMovesOnlyTheLostClients marks one of three Upstreams down:
// only the clients it had move, and they come back when it does.
func TestIPHashMovesOnlyTheLostClients(t *testing.T) {
	table := mustCompile(t, proxyConfig(withLB(&config.LB{Policy: "ip_hash"},
		"http://10.0.0.1:80", "http://10.0.0.2:80", "http://10.0.0.3:80")))
	_, r := table.lookup(host, "/")
	b := r.handler.(*proxyRoute).balancer
	pickFor := func(ip string, marks []uint8) int {
		req := httptest.NewRequest(http.MethodGet, "https://"+host+"/", nil)
		req.RemoteAddr = ip + ":1234"
		return b.pick(&proxyCtx{Context: req.Context(), in: req}, req, marks, false)
	}
	all := []uint8{markCandidate, markCandidate, markCandidate}
	oneDown := []uint8{markCandidate, markDown, markCandidate}
	before := make(map[string]int)
	perUpstream := make([]int, 3)
	for i := range 300 {
		ip := "198.51." + strconv.Itoa(i/250) + "." + strconv.Itoa(i%250)
		before[ip] = pickFor(ip, all)
		perUpstream[before[ip]]++
	}
	for i, n := range perUpstream {
		if n < 50 {
			t.Errorf("upstream %d got %d of 300 clients, want a fair share", i, n)
		}
	}
	for ip, was := range before {
		now := pickFor(ip, oneDown)
		if now == 1 {
			t.Fatalf("client %s sent to the down upstream", ip)
		}
		if was != 1 && now != was {
			t.Errorf("client %s moved from %d to %d though its upstream stayed up", ip, was, now)
		}
		if again := pickFor(ip, all); again != was {
			t.Errorf("client %s did not return to %d once all were up (got %d)", ip, was, again)
		}
	}
}
