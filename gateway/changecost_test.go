package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr/pebbletest"
)

// changeSource is a secondary Source of n container-like Sites, as the
// Docker Source gives them: one host each, one Route to one Upstream.
// bump changes one Site's Upstream, the change whose cost is measured.
type changeSource struct {
	mu    sync.Mutex // guards sites
	sites []config.Site
}

func newChangeSource(n int) *changeSource {
	s := &changeSource{}
	for i := range n {
		s.sites = append(s.sites, config.Site{
			Hosts:  []string{fmt.Sprintf("c-%d.localhost", i)},
			Source: "docker",
			Routes: []config.Route{{
				Upstreams: []string{fmt.Sprintf("http://10.88.%d.%d:8080", i/250, i%250+2)},
				Source:    fmt.Sprintf("docker: c-%d (%012x)", i, i),
			}},
		})
	}
	// The defaults a Source's Sites have (CheckSites gives them).
	if ps := (&config.Config{}).CheckSites(s.sites); len(ps) > 0 {
		panic(ps)
	}
	return s
}

func (s *changeSource) Name() string { return "docker" }

func (s *changeSource) Load(context.Context) (*config.Config, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// The unchanged Sites' values again, as the Docker Source gives them
	// from its cache of each container.
	return &config.Config{Sites: slices.Clone(s.sites)}, nil
}

func (s *changeSource) Watch(context.Context, *slog.Logger, func(string)) {}

// bump moves Site i's Upstream to another port: a new value for that
// Site alone, as a restarted container gives.
func (s *changeSource) bump(i, round int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := &s.sites[i]
	st.Routes = slices.Clone(st.Routes)
	st.Routes[0].Upstreams = []string{fmt.Sprintf("http://10.88.0.%d:%d", i%250+2, 9000+round%2)}
}

// changeGateway runs a Gateway with src as its secondary Source and
// returns it once its first round applied.
func changeGateway(tb testing.TB, src Source) *Gateway {
	tb.Helper()
	cfg, err := config.Parse("changecost.yaml", fmt.Appendf(nil, `listen: {http: "off", https: "127.0.0.1:%d"}
admin: "off"
storage: %s
log: {access: false, level: warn}
sites:
  - hosts: [localhost]
    routes: [{respond: {body: file}}]
`, pebbletest.FreePort(tb), tb.TempDir()))
	if err != nil {
		tb.Fatal(err)
	}
	g, err := New(Options{Config: cfg, Sources: []Source{Static(cfg), src}})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		<-done
	})
	select {
	case <-g.Started():
	case err := <-done:
		tb.Fatalf("running the gateway: %v", err)
	}
	// Run's first round loads the secondary; one more makes sure it has.
	if err := g.sources.round(ctx, "start", []bool{false, true}); err != nil {
		tb.Fatal(err)
	}
	return g
}

// BenchmarkChangeCost measures what one changed Site costs from the
// Sources' loads to the swap (as the "config reloaded" line's duration_ms
// counts it) with 300 Sites against 10, and reports the ratio (issue 12:
// at most 2x; the rebuild must not grow with the unchanged Routes).
func BenchmarkChangeCost(b *testing.B) {
	const few, many = 10, 300
	srcFew, srcMany := newChangeSource(few), newChangeSource(many)
	gFew, gMany := changeGateway(b, srcFew), changeGateway(b, srcMany)
	load := []bool{false, true}
	ctx := context.Background()
	var tFew, tMany time.Duration
	round := func(g *Gateway, src *changeSource, i int) time.Duration {
		src.bump(i%len(src.sites), i)
		began := time.Now()
		if err := g.sources.round(ctx, "bench", load); err != nil {
			b.Fatal(err)
		}
		return time.Since(began)
	}
	i := 0
	for ; b.Loop(); i++ {
		// Interleaved, so both see the same machine.
		tFew += round(gFew, srcFew, i)
		tMany += round(gMany, srcMany, i)
	}
	n := float64(i)
	b.ReportMetric(float64(tFew.Microseconds())/n, "us/change-10")
	b.ReportMetric(float64(tMany.Microseconds())/n, "us/change-300")
	b.ReportMetric(float64(tMany)/float64(tFew), "ratio-300/10")
}
