package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/gatehouse-proxy/gatehouse/gateway/gatewaytest"
)

func site(source string, hosts []string, routes ...config.Route) config.Site {
	for i := range routes {
		routes[i].Source = source
	}
	return config.Site{Hosts: hosts, Routes: routes, Source: source}
}

func respond(path, body string) config.Route {
	return config.Route{Path: path, Respond: &config.Respond{Body: body}}
}

func TestMerge(t *testing.T) {
	file := &config.Config{Sites: []config.Site{
		site("", []string{"a.test", "b.test"}, respond("/", "file a+b")),
		site("", []string{"c.test"}, respond("/", "file c"), respond("/api", "file c api")),
	}}
	for _, tc := range []struct {
		name          string
		parts         []part
		wantSites     []config.Site
		wantConflicts []conflict
	}{{
		name:  "a new host joins as the Source's Site",
		parts: []part{{"docker", &config.Config{Sites: []config.Site{site("", []string{"new.test"}, respond("/", "docker new"))}}}},
		wantSites: append(append([]config.Site(nil), file.Sites...),
			site("docker", []string{"new.test"}, respond("/", "docker new"))),
	}, {
		name:  "a new path on a served host joins that host alone",
		parts: []part{{"docker", &config.Config{Sites: []config.Site{site("", []string{"b.test"}, respond("/metrics", "docker b metrics"))}}}},
		wantSites: []config.Site{
			site("", []string{"a.test"}, respond("/", "file a+b")),
			file.Sites[1],
			{Hosts: []string{"b.test"}, Routes: []config.Route{respond("/", "file a+b"), site("docker", nil, respond("/metrics", "docker b metrics")).Routes[0]}},
		},
	}, {
		name:      "a host and path the file serves stay with the file",
		parts:     []part{{"docker", &config.Config{Sites: []config.Site{site("", []string{"c.test"}, respond("/api", "docker c api"))}}}},
		wantSites: file.Sites,
		wantConflicts: []conflict{
			{Source: "docker", Host: "c.test", Path: "/api", Winner: "file"},
		},
	}, {
		name: "an earlier Source wins over a later one",
		parts: []part{
			{"fleet", &config.Config{Sites: []config.Site{site("", []string{"x.test"}, respond("", "fleet x"))}}},
			{"docker", &config.Config{Sites: []config.Site{site("", []string{"X.test", "y.test"}, respond("/", "docker x+y"))}}},
		},
		wantSites: append(append([]config.Site(nil), file.Sites...),
			site("fleet", []string{"x.test"}, respond("", "fleet x")),
			site("docker", []string{"y.test"}, respond("/", "docker x+y"))),
		wantConflicts: []conflict{{Source: "docker", Host: "X.test", Path: "/", Winner: "fleet"}},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			before := fmt.Sprint(file.Sites)
			got, conflicts := merge(file, tc.parts)
			if !reflect.DeepEqual(got.Sites, tc.wantSites) {
				t.Errorf("merged Sites:\ngot  %+v\nwant %+v", got.Sites, tc.wantSites)
			}
			if !reflect.DeepEqual(conflicts, tc.wantConflicts) {
				t.Errorf("conflicts:\ngot  %+v\nwant %+v", conflicts, tc.wantConflicts)
			}
			if after := fmt.Sprint(file.Sites); after != before {
				t.Errorf("merge changed the primary's Sites:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

// testSource is a secondary Source a test steers: Set changes what Load
// returns and tells the Gateway, as a container event or a fleet watch
// would.
type testSource struct {
	mu      sync.Mutex // guards version, err and changed
	version int
	err     error
	changed func(string)
	ready   chan struct{} // closed once Watch runs
	loads   atomic.Int32
}

func newTestSource() *testSource { return &testSource{ready: make(chan struct{})} }

func (s *testSource) Name() string { return "test" }

// Load gives svc.localhost answering "v<version>", a Route for
// localhost/extra (a path the file lacks) and one for localhost/shared
// (a path the file serves).
func (s *testSource) Load(context.Context) (*config.Config, error) {
	s.loads.Add(1)
	s.mu.Lock()
	v, err := s.version, s.err
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return config.Parse("test source", fmt.Appendf(nil, `sites:
  - hosts: [svc.localhost]
    routes: [{respond: {body: "v%d"}}]
  - hosts: [localhost]
    routes:
      - {path: /extra, respond: {body: "test extra"}}
      - {path: /shared, respond: {body: "test shared"}}
`, v))
}

func (s *testSource) Watch(ctx context.Context, _ *slog.Logger, changed func(string)) {
	s.mu.Lock()
	s.changed = changed
	s.mu.Unlock()
	close(s.ready)
	<-ctx.Done()
}

// set makes version current, or err when not nil, and reports a change.
func (s *testSource) set(version int, err error) {
	s.mu.Lock()
	s.version, s.err = version, err
	changed := s.changed
	s.mu.Unlock()
	changed("test change")
}

const twoSourcesConfig = `listen: {http: "127.0.0.1:{{HTTP}}", https: "127.0.0.1:{{HTTPS}}"}
admin: off
storage: {{STORAGE}}
sites:
  - hosts: [localhost]
    routes:
      - {path: /, respond: {body: "file %s"}}
      - {path: /shared, respond: {body: "file shared"}}
`

// TestTwoSources runs the file and a test Source together: the merge, the
// precedence on a shared host and path, the debounce of a burst, a failing
// Source keeping its last part, and swaps under load without one failed
// request.
func TestTwoSources(t *testing.T) {
	p := newPorts(t)
	src := newTestSource()
	in, g := startSources(t, p, fmt.Sprintf(twoSourcesConfig, "v0"), src)
	<-src.ready
	c := in.Client(t)
	body := func(url string) string {
		t.Helper()
		_, b := get(t, c, url)
		return b
	}
	// The secondary Sources join after start-up: until the test Source's
	// first part applies, svc.localhost is no served name (TLS refuses it).
	waitFor(t, 5*time.Second, func() bool {
		resp, err := c.Get("https://svc.localhost/")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b) == "v0"
	})
	for url, want := range map[string]string{
		"https://localhost/":       "file v0",
		"https://localhost/shared": "file shared", // the file keeps its path
		"https://localhost/extra":  "test extra",  // the Source adds one
	} {
		if got := body(url); got != want {
			t.Errorf("GET %s: got %q, want %q", url, got, want)
		}
	}

	// Load on both Sources' hosts for the rest of the test.
	load := gatewaytest.StartLoad(c, 1, "https://localhost/", "https://svc.localhost/", "https://localhost/extra")

	// A burst of 100 changes, 5 ms apart (as containers of one compose up
	// start), is debounced into a few swaps. The quiet time is widened for
	// the burst, so a loaded machine's scheduling gaps cannot end it.
	swaps := func() int { return strings.Count(in.Stderr.String(), `msg="config reloaded" trigger="test change"`) }
	before := swaps()
	g.sources.quiet.Store(int64(time.Second))
	g.sources.maxDelay.Store(int64(10 * time.Second))
	pace := time.NewTicker(5 * time.Millisecond)
	for v := 1; v <= 100; v++ {
		<-pace.C
		src.set(v, nil)
	}
	pace.Stop()
	waitFor(t, 15*time.Second, func() bool { return body("https://svc.localhost/") == "v100" })
	if n := swaps() - before; n < 1 || n > 3 {
		t.Errorf("a burst of 100 changes made %d swaps, want 1 to 3", n)
	}
	g.sources.quiet.Store(int64(sourceQuiet))
	g.sources.maxDelay.Store(int64(sourceMaxDelay))

	// 100 changes more, each applied before the next, under the same load.
	before = swaps()
	for v := 101; v <= 200; v++ {
		src.set(v, nil)
		want := fmt.Sprintf("v%d", v)
		waitFor(t, 5*time.Second, func() bool { return body("https://svc.localhost/") == want })
	}
	if n := swaps() - before; n != 100 {
		t.Errorf("100 spaced changes made %d swaps, want 100", n)
	}

	// A Source that fails keeps its last good part serving, logged once.
	src.set(201, errors.New("engine unreachable"))
	src.set(202, errors.New("engine unreachable"))
	waitFor(t, 5*time.Second, func() bool {
		return strings.Contains(in.Stderr.String(), "keeping its last good part")
	})
	// The file changes meanwhile and applies on the Source's last part.
	writeConfig(t, in.CfgPath, p, in.Storage, fmt.Sprintf(twoSourcesConfig, "v1"))
	waitFor(t, 5*time.Second, func() bool { return body("https://localhost/") == "file v1" })
	if got := body("https://svc.localhost/"); got != "v200" {
		t.Errorf("while the Source fails: got %q, want its last good v200", got)
	}
	if n := strings.Count(in.Stderr.String(), "keeping its last good part"); n != 1 {
		t.Errorf("the same Source failure was logged %d times, want once", n)
	}
	src.set(203, nil)
	waitFor(t, 5*time.Second, func() bool { return body("https://svc.localhost/") == "v203" })

	failures, total, first := load.Stop()
	if failures > 0 {
		t.Errorf("%d of %d requests failed during the changes; first: %v", failures, total, first)
	}
	if total < 100 {
		t.Errorf("only %d requests ran during the changes; the load did not overlap them", total)
	}
	// The conflict on localhost/shared lasted through every round: logged once.
	log := in.Stderr.String()
	if n := strings.Count(log, "the earlier one keeps it"); n != 1 {
		t.Errorf("the localhost/shared conflict was logged %d times, want once:\n%s", n, grepLines(log, "level=WARN"))
	}
	if !strings.Contains(log, `source=test host=localhost path=/shared served_by=file`) {
		t.Errorf("the conflict log line does not name the Source, host, path and winner:\n%s", grepLines(log, "level=WARN"))
	}
}

// TestApplyRefusesInvalid shows Apply's contract: a config that fails
// validation or compilation is returned as an error and the running one
// keeps serving.
func TestApplyRefusesInvalid(t *testing.T) {
	p := newPorts(t)
	in, g := startSources(t, p, fmt.Sprintf(twoSourcesConfig, "v0"), newTestSource())
	c := in.Client(t)
	bad, err := config.Load(in.CfgPath)
	if err != nil {
		t.Fatal(err)
	}
	bad.Sites = append(bad.Sites, config.Site{Hosts: []string{"localhost"}, Routes: []config.Route{respond("/", "dup")}})
	err = g.Apply(t.Context(), bad)
	var problems config.Problems
	if !errors.As(err, &problems) || !strings.Contains(err.Error(), "already served") {
		t.Fatalf("Apply of a config serving localhost twice: got %v, want the validation problem", err)
	}
	if _, got := get(t, c, "https://localhost/"); got != "file v0" {
		t.Errorf("after a refused Apply: got %q, want the running config's answer", got)
	}
}

// TestRestartOnlyKeptAndReported changes the HTTPS Listener's address in
// the file: the reload applies the rest, keeps the running Listener, and
// says so once, however often another Source changes afterwards.
func TestRestartOnlyKeptAndReported(t *testing.T) {
	p := newPorts(t)
	src := newTestSource()
	in, _ := startSources(t, p, fmt.Sprintf(twoSourcesConfig, "v0"), src)
	<-src.ready
	c := in.Client(t)
	moved := p
	moved.HTTPS = freePort(t)
	writeConfig(t, in.CfgPath, moved, in.Storage, fmt.Sprintf(twoSourcesConfig, "v1"))
	waitFor(t, 5*time.Second, func() bool { _, b := get(t, c, "https://localhost/"); return b == "file v1" })
	for v := 1; v <= 3; v++ {
		src.set(v, nil)
		want := fmt.Sprintf("v%d", v)
		waitFor(t, 5*time.Second, func() bool { _, b := get(t, c, "https://svc.localhost/"); return b == want })
	}
	log := in.Stderr.String()
	if n := strings.Count(log, `changes only on restart; keeping the running value" trigger="file change" key=listen`); n != 1 {
		t.Errorf("the kept listen setting was reported %d times, want once:\n%s", n, grepLines(log, "level=WARN"))
	}
	if n := strings.Count(log, "changes only on restart"); n != 1 {
		t.Errorf("restart-only warnings: %d, want 1:\n%s", n, grepLines(log, "level=WARN"))
	}
	if conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", moved.HTTPS)); err == nil {
		conn.Close()
		t.Errorf("the new listen.https address was bound by a reload; it must wait for a restart")
	}
}
