package proxy

import (
	"net/http"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// recompile builds cfg with the frontend's options, reusing the served
// Table's unchanged Sites (Options.Reuse), as the gateway does.
func (f *frontend) recompile(t *testing.T, cfg *config.Config) *Table {
	t.Helper()
	opts := f.opts
	opts.Reuse = f.handler.Table()
	table, err := Compile(cfg, opts)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return table
}

// Issue 12: a reload takes over the compiled Sites whose config did not
// change, with their Upstreams and running health checks, and compiles
// the rest; what is served is what a full compile serves.
func TestCompileReusesUnchangedSites(t *testing.T) {
	base := runningCheckers.Load()
	a, b := newSwitchBackend(t, "a"), newSwitchBackend(t, "b")
	health := *fastHealth
	health.Interval = time.Hour // one check at start: a restarted check shows as a second
	root := t.TempDir()
	sites := func(bBody string) *config.Config {
		return &config.Config{Sites: []config.Site{
			cfgSite([]string{"a.example.com"}, checkedRoute(&health, a.srv.URL)),
			cfgSite([]string{"b.example.com", "c.example.com"}, respond("/", bBody), proxyTo("/api", b.srv.URL)),
			// Names a file: compiled again every time, so a replaced
			// root is seen (as on SIGHUP).
			cfgSite([]string{"static.example.com"}, config.Route{Path: "/", Root: root}),
		}}
	}
	f := newFrontend(t, sites("b1"))
	waitFor(t, "a's first check", func() bool { return a.checks.Load() == 1 })
	old := f.handler.Table()

	next := f.recompile(t, sites("b2"))
	if next.exact["a.example.com"] != old.exact["a.example.com"] {
		t.Error("the unchanged Site a.example.com was compiled again")
	}
	if next.exact["b.example.com"] == old.exact["b.example.com"] || next.exact["c.example.com"] != next.exact["b.example.com"] {
		t.Error("the changed Site b.example.com was not compiled again, or not for both its hosts")
	}
	if next.exact["static.example.com"] == old.exact["static.example.com"] {
		t.Error("a Site naming a root directory was taken over rather than compiled again")
	}
	f.handler.Swap(next)
	if n := runningCheckers.Load() - base; n != 1 {
		t.Errorf("checkers = %d, want 1", n)
	}
	for _, tc := range []struct{ host, path, want string }{
		{"a.example.com", "/", "a"}, {"b.example.com", "/", "b2"}, {"c.example.com", "/", "b2"}, {"b.example.com", "/api", "b"},
	} {
		code, body := f.get(t, tc.host, tc.path)
		if code != http.StatusOK {
			t.Fatalf("GET %s%s: status %d", tc.host, tc.path, code)
		}
		if tc.want == "a" || tc.want == "b" {
			body = decodeSeen(t, body).Backend
		}
		if body != tc.want {
			t.Errorf("GET %s%s: got %q, want %q", tc.host, tc.path, body, tc.want)
		}
	}
	if n := a.checks.Load(); n != 1 {
		t.Errorf("a was checked %d times, want once: the reused Site's check must keep running, not restart", n)
	}

	// The reused Upstream's health is the served one: a failing check is
	// seen through the new Table.
	a.healthy.Store(false)
	f.handler.Swap(f.recompile(t, sites("b3")))
	if st := status(t, f.handler, a.srv.URL); !st.Healthy || st.Failures != 0 {
		t.Errorf("a before its next check: %+v, want healthy", st)
	}

	// Other trusted_proxies: nothing is taken over, the check still is.
	cfg := sites("b3")
	cfg.TrustedProxies = []string{"10.0.0.0/8"}
	other := f.recompile(t, cfg)
	if other.exact["a.example.com"] == f.handler.Table().exact["a.example.com"] {
		t.Error("a Site was taken over by a Table with other trusted_proxies")
	}
	f.handler.Swap(other)
	if n := a.checks.Load(); n != 1 {
		t.Errorf("a was checked %d times after a full compile, want once: the unchanged check is handed over", n)
	}

	// A changed Route of a: compiled again, its check restarts.
	changed := health
	changed.Timeout = 2 * time.Second
	cfg = sites("b3")
	cfg.Sites[0].Routes[0].Health = &changed
	f.handler.Swap(f.recompile(t, cfg))
	waitFor(t, "a's changed check ran", func() bool { return a.checks.Load() == 2 })
	_ = f.handler.Close()
	if n := runningCheckers.Load() - base; n != 0 {
		t.Errorf("checkers after Close = %d, want 0", n)
	}
}

// A reused Site's hosts still clash with a later Site's: the clash is an
// error, as in a full compile.
func TestCompileReuseStillFindsDuplicateHosts(t *testing.T) {
	f := newFrontend(t, &config.Config{Sites: []config.Site{cfgSite([]string{"a.example.com"}, respond("/", "a"))}})
	cfg := &config.Config{Sites: []config.Site{
		cfgSite([]string{"a.example.com"}, respond("/", "a")),
		cfgSite([]string{"A.example.com"}, respond("/", "again")),
	}}
	opts := f.opts
	opts.Reuse = f.handler.Table()
	if _, err := Compile(cfg, opts); err == nil {
		t.Fatal("Compile took a host served twice")
	}
	// The clash found in the other order too: the changed Site first.
	cfg.Sites[0], cfg.Sites[1] = cfg.Sites[1], cfg.Sites[0]
	if _, err := Compile(cfg, opts); err == nil {
		t.Fatal("Compile took a host served twice")
	}
}

// A Table on another clock compiles every Site again: a taken-over Site
// would keep counting cooldowns and ejections on the old one. Two clocks
// of one type are two clocks.
func TestCompileReuseNeedsTheSameClock(t *testing.T) {
	a := newSwitchBackend(t, "a")
	cfg := &config.Config{Sites: []config.Site{cfgSite([]string{"a.example.com"}, proxyTo("/", a.srv.URL))}}
	first := newFakeClock()
	f := newFrontendClock(t, cfg, first)
	old := f.handler.Table()
	for _, tc := range []struct {
		name  string
		clock *fakeClock
		reuse bool
	}{{"the same clock", first, true}, {"another clock", newFakeClock(), false}} {
		opts := f.opts
		opts.Reuse, opts.clock = old, tc.clock
		next, err := Compile(cfg, opts)
		if err != nil {
			t.Fatal(err)
		}
		if reused := next.exact["a.example.com"] == old.exact["a.example.com"]; reused != tc.reuse {
			t.Errorf("%s: the Site was taken over: %v, want %v", tc.name, reused, tc.reuse)
		}
	}
}
