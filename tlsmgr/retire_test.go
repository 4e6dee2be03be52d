package tlsmgr

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// countingStorage is file storage that counts its reads, as an etcd
// round trip would cost each.
type countingStorage struct {
	*certmagic.FileStorage
	reads atomic.Int64
}

func (s *countingStorage) Load(ctx context.Context, key string) ([]byte, error) {
	s.reads.Add(1)
	return s.FileStorage.Load(ctx, key)
}

func (s *countingStorage) Exists(ctx context.Context, key string) bool {
	s.reads.Add(1)
	return s.FileStorage.Exists(ctx, key)
}

func (s *countingStorage) List(ctx context.Context, prefix string, recursive bool) ([]string, error) {
	s.reads.Add(1)
	return s.FileStorage.List(ctx, prefix, recursive)
}

// TestRetireOnApply changes the hosts of a config whose 200 Certificates
// are in storage: a removed host is retired and one back in the config is
// no longer, as the full scan at start decides; and a change reads the
// records of the hosts that changed, not every stored one (a Docker
// container's change must not cost a read of each Certificate).
func TestRetireOnApply(t *testing.T) {
	const n, key = 200, "ca.test-directory"
	store := &countingStorage{FileStorage: &certmagic.FileStorage{Path: t.TempDir()}}
	lc := newLifecycleOn(slog.New(slog.DiscardHandler), store, nil)
	defer lc.close()
	ctx := t.Context()
	var hosts []string
	for i := range n {
		name := fmt.Sprintf("app-%d.example.com", i)
		hosts = append(hosts, name)
		if err := store.Store(ctx, certmagic.StorageKeys.SiteCert(key, name), []byte("stored")); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 { // half have a record, as after an issuance
			if _, err := lc.inv.update(ctx, name, func() record {
				return record{Names: []string{name}, Source: SourceACME, IssuerKey: key}
			}, func(*record) {}); err != nil {
				t.Fatal(err)
			}
		}
	}
	onDemand := []config.Site{{Hosts: []string{"*.shops.example.com"}, TLS: config.SiteTLS{OnDemand: true}}}
	apply := func(hosts ...string) []string {
		t.Helper()
		cfg := &config.Config{Sites: append([]config.Site{{Hosts: hosts}}, onDemand...), OnDemand: &config.OnDemand{Allow: []string{"*.shops.example.com"}}}
		tbl, err := buildTable(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return lc.apply(ctx, cfg, tbl)
	}
	retiredAt := func(name string) time.Time {
		t.Helper()
		r, err := lc.inv.load(ctx, name)
		if err != nil || r == nil {
			t.Fatalf("record of %s: %v, %v", name, r, err)
		}
		return r.RetiredAt
	}

	// At start every stored Certificate is looked at: app-0 and app-1,
	// not in the config, are retired (one had a record, one had not).
	if got := apply(hosts[2:]...); !slices.Equal(got, []string{"app-0.example.com", "app-1.example.com"}) {
		t.Fatalf("first apply retired %v, want app-0 and app-1", got)
	}

	// app-2 (with a record) and app-3 (without) leave, app-0 comes back.
	before := store.reads.Load()
	got := apply(append([]string{hosts[0]}, hosts[4:]...)...)
	reads := store.reads.Load() - before
	if !slices.Equal(got, []string{"app-2.example.com", "app-3.example.com"}) {
		t.Errorf("retired %v, want app-2 and app-3", got)
	}
	for _, name := range []string{"app-1.example.com", "app-2.example.com", "app-3.example.com"} {
		if retiredAt(name).IsZero() {
			t.Errorf("%s is not retired", name)
		}
	}
	if !retiredAt("app-0.example.com").IsZero() {
		t.Error("app-0 is back in the config and still retired")
	}
	if reads > 20 {
		t.Errorf("a change of three hosts made %d storage reads with %d Certificates stored; want those hosts' only", reads, n)
	}

	// A change of Routes alone reads nothing.
	before = store.reads.Load()
	apply(append([]string{hosts[0]}, hosts[4:]...)...)
	if reads := store.reads.Load() - before; reads != 0 {
		t.Errorf("an apply with the same hosts made %d storage reads, want 0", reads)
	}

	// A Certificate obtained on demand is kept while an on-demand Site
	// covers its name, and retired at once when that Site leaves.
	if err := store.Store(ctx, certmagic.StorageKeys.SiteCert(key, "a.shops.example.com"), []byte("stored")); err != nil {
		t.Fatal(err)
	}
	if got := apply(hosts[4:]...); !slices.Equal(got, []string{"app-0.example.com"}) {
		t.Errorf("with the on-demand Site: retired %v, want app-0 alone", got)
	}
	onDemand = nil
	if got := apply(hosts[4:]...); !slices.Equal(got, []string{"a.shops.example.com"}) {
		t.Errorf("without the on-demand Site: retired %v, want its a.shops.example.com", got)
	}

	// The periodic check still looks at every one: a Certificate another
	// instance stored for a host not in the config is retired there.
	if err := store.Store(ctx, certmagic.StorageKeys.SiteCert(key, "elsewhere.example.com"), []byte("stored")); err != nil {
		t.Fatal(err)
	}
	if got, err := lc.retire(ctx, time.Now()); err != nil || !slices.Equal(got, []string{"elsewhere.example.com"}) {
		t.Errorf("periodic retire: %v, %v; want elsewhere.example.com", got, err)
	}
}

// BenchmarkRetireOnApply measures what retiring costs a change that
// replaces one host, with 10 and with 300 Certificates in storage, and
// reports the ratio (issue 12: a change with 300 containers costs at most
// 2x one with 10; before retireChanged, every apply read every record).
func BenchmarkRetireOnApply(b *testing.B) {
	const key = "ca.test-directory"
	type fixture struct {
		lc    *lifecycle
		hosts []string
	}
	setup := func(n int) fixture {
		store := &certmagic.FileStorage{Path: b.TempDir()}
		lc := newLifecycleOn(slog.New(slog.DiscardHandler), store, nil)
		b.Cleanup(lc.close)
		var hosts []string
		for i := range n {
			name := fmt.Sprintf("app-%d.example.com", i)
			hosts = append(hosts, name)
			if err := store.Store(b.Context(), certmagic.StorageKeys.SiteCert(key, name), []byte("stored")); err != nil {
				b.Fatal(err)
			}
			if _, err := lc.inv.update(b.Context(), name, func() record {
				return record{Names: []string{name}, Source: SourceACME, IssuerKey: key}
			}, func(*record) {}); err != nil {
				b.Fatal(err)
			}
		}
		return fixture{lc, hosts}
	}
	apply := func(f fixture, round int) time.Duration {
		// The last host alternates between two containers' names.
		hosts := slices.Clone(f.hosts)
		hosts[len(hosts)-1] += fmt.Sprint(round % 2)
		cfg := &config.Config{Sites: []config.Site{{Hosts: hosts}}}
		tbl, err := buildTable(cfg)
		if err != nil {
			b.Fatal(err)
		}
		began := time.Now()
		f.lc.apply(b.Context(), cfg, tbl)
		return time.Since(began)
	}
	few, many := setup(10), setup(300)
	apply(few, 1)
	apply(many, 1)
	var tFew, tMany time.Duration
	i := 0
	for ; b.Loop(); i++ {
		tFew += apply(few, i)
		tMany += apply(many, i)
	}
	b.ReportMetric(float64(tFew.Microseconds())/float64(i), "us/change-10")
	b.ReportMetric(float64(tMany.Microseconds())/float64(i), "us/change-300")
	b.ReportMetric(float64(tMany)/float64(tFew), "ratio-300/10")
}

// TestRetireOnceInFleet retires a host two instances sharing storage both
// dropped: the one whose scan read the record before the other retired it
// keeps the first retirement's time and sends no second retired event.
func TestRetireOnceInFleet(t *testing.T) {
	const key, name = "ca.test-directory", "gone.example.com"
	store := &certmagic.FileStorage{Path: t.TempDir()}
	ctx := t.Context()
	if err := store.Store(ctx, certmagic.StorageKeys.SiteCert(key, name), []byte("stored")); err != nil {
		t.Fatal(err)
	}
	var events atomic.Int32
	instance := func() *lifecycle {
		lc := newLifecycleOn(slog.New(slog.DiscardHandler), store, nil)
		t.Cleanup(lc.close)
		lc.Subscribe(func(ev Event) {
			if ev.Type == EventRetired {
				events.Add(1)
			}
		})
		return lc
	}
	a, b := instance(), instance()
	stale, err := a.inv.list(ctx) // a's periodic check reads the records
	if err != nil {
		t.Fatal(err)
	}
	if got, err := b.retire(ctx, time.Now()); err != nil || !slices.Equal(got, []string{name}) {
		t.Fatalf("b retired %v, %v; want %s", got, err, name)
	}
	first, err := b.inv.load(ctx, name)
	if err != nil || first == nil {
		t.Fatal(first, err)
	}
	if got, err := a.retireListed(ctx, time.Now().Add(time.Minute), stale); err != nil || len(got) != 0 {
		t.Errorf("a, on records read before, retired %v, %v; want nothing new", got, err)
	}
	if r, err := a.inv.load(ctx, name); err != nil || !r.RetiredAt.Equal(first.RetiredAt) {
		t.Errorf("retired at %v after a's scan, want b's %v (%v)", r.RetiredAt, first.RetiredAt, err)
	}
	if n := events.Load(); n != 1 {
		t.Errorf("%d retired events, want 1", n)
	}
}
