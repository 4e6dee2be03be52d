package proxy

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeUpstream answers round trips in memory, or fails them as a refused
// dial while down is set.
type fakeUpstream struct {
	mu    sync.Mutex // guards down and calls
	down  bool
	calls int
}

func (f *fakeUpstream) RoundTrip(r *http.Request) (*http.Response, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.down {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	}
	return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader("")), Request: r}, nil
}

func (f *fakeUpstream) set(down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = down
}

func (f *fakeUpstream) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// testUpstream is an Upstream named and reached as name over rt.
func testUpstream(name string, rt http.RoundTripper) *upstream {
	u := &upstream{name: name, scheme: "http", host: name, rt: rt}
	u.st.Store(new(upstreamState))
	return u
}

func TestBalancerCooldown(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	a, b := new(fakeUpstream), new(fakeUpstream)
	upA := testUpstream("a", a)
	bal := newBalancer([]*upstream{upA, testUpstream("b", b)},
		func() time.Time { return now }, slog.New(slog.DiscardHandler))
	send := func() {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://app.example.com/", nil)
		res, err := bal.RoundTrip(req)
		if err != nil {
			t.Fatalf("RoundTrip: %v", err)
		}
		res.Body.Close()
	}

	a.set(true)
	for range 4 {
		send()
	}
	if got := a.count(); got != 1 {
		t.Errorf("calls to the down upstream = %v, want 1 (then skipped during cooldown)", got)
	}

	now = now.Add(minCooldown)
	send() // a's turn: out of cooldown, fails again, cooldown doubles
	send()
	if got := a.count(); got != 2 {
		t.Errorf("calls after the cooldown = %v, want 2", got)
	}
	now = now.Add(minCooldown)
	send()
	send()
	if got := a.count(); got != 2 {
		t.Errorf("calls within the doubled cooldown = %v, want 2", got)
	}

	a.set(false)
	now = now.Add(minCooldown)
	send()
	send()
	if got := a.count(); got != 3 {
		t.Errorf("calls after recovery = %v, want 3", got)
	}
	if got := upA.state().fails.Load(); got != 0 {
		t.Errorf("fails after recovery = %v, want 0", got)
	}
}

func TestBalancerAllDown(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	a, b := new(fakeUpstream), new(fakeUpstream)
	a.set(true)
	b.set(true)
	bal := newBalancer([]*upstream{testUpstream("a", a), testUpstream("b", b)}, func() time.Time { return now }, slog.New(slog.DiscardHandler))
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://app.example.com/", nil)
	if _, err := bal.RoundTrip(req); !isDialError(err) {
		t.Fatalf("RoundTrip error = %v, want a dial error", err)
	}
	// Both are cooling down; one coming back is found at once anyway.
	b.set(false)
	res, err := bal.RoundTrip(req)
	if err != nil {
		t.Fatalf("RoundTrip with every upstream in cooldown: %v", err)
	}
	res.Body.Close()
}

func TestMarkFailedCaps(t *testing.T) {
	var u upstreamState
	now := time.Unix(0, 0)
	var got []time.Duration
	for range 8 {
		got = append(got, u.markFailed(now))
	}
	want := []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second, time.Minute,
		time.Minute, time.Minute, time.Minute, time.Minute}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("cooldown %d = %v, want %v", i, got[i], want[i])
		}
	}
}
