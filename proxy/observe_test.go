package proxy

import (
	"cmp"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// observed is one call of Options.Observe.
type observed struct {
	site   string
	status int
}

// TestObserve checks that every finished request reaches Options.Observe
// with its Site and status, with the access log off, on both Listeners.
func TestObserve(t *testing.T) {
	var mu sync.Mutex // guards got
	var got []observed
	off := false
	cfg := &config.Config{Log: config.Log{Access: &off}, Sites: []config.Site{
		cfgSite([]string{"app.example.com", "alias.example.com"}, respond("/", "app")),
		cfgSite([]string{"other.example.com"}, config.Route{Path: "/", Respond: &config.Respond{Status: 503, Body: "down"}}),
	}}
	table, err := Compile(cfg, Options{Observe: func(site string, status int, d time.Duration) {
		if d < 0 {
			t.Errorf("negative duration %v", d)
		}
		mu.Lock()
		got = append(got, observed{site, status})
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	h := NewHandler(table, nil)
	srv := httptest.NewServer(h)
	defer srv.Close()
	redirect := httptest.NewServer(h.RedirectHandler())
	defer redirect.Close()

	for _, r := range []struct{ url, host string }{
		{srv.URL + "/", "alias.example.com"},
		{srv.URL + "/", "other.example.com"},
		{srv.URL + "/", "unknown.example.com"},
		{redirect.URL + "/x", "app.example.com"},
	} {
		req, _ := http.NewRequest("GET", r.url, nil)
		req.Host = r.host
		resp, err := (&http.Client{CheckRedirect: noRedirect}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	want := []observed{
		{"app.example.com", 200},
		{"other.example.com", 503},
		{"", 404},
		{"app.example.com", 308},
	}
	// The deferred observe runs after the response is written, so the
	// client may see it first.
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		done := len(got) >= len(want)
		cp := slices.Clone(got)
		mu.Unlock()
		if done {
			// Requests on different connections may finish out of order.
			byKey := func(a, b observed) int { return cmp.Or(cmp.Compare(a.site, b.site), cmp.Compare(a.status, b.status)) }
			slices.SortFunc(cp, byKey)
			slices.SortFunc(want, byKey)
			if !slices.Equal(cp, want) {
				t.Errorf("got %v, want %v", cp, want)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %v after 5s, want %v", cp, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
