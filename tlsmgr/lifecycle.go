package tlsmgr

import (
	"cmp"
	"context"
	"log/slog"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// defaultLifecycleInterval is how often the inventory is checked for
// Certificates past their renewal point and for retirements to delete.
const defaultLifecycleInterval = time.Minute

// lifecycle keeps the inventory, turns certmagic's events into
// gatehouse's, checks for expiring Certificates, retires the Certificates
// of removed hosts and delivers events to subscribers.
type lifecycle struct {
	logger *slog.Logger
	inv    *inventory
	engine acmeEngine
	// now is the clock of events; time.Now but in tests.
	now func() time.Time

	// subMu guards subs and nextSub.
	subMu   sync.Mutex
	subs    map[int]func(Event)
	nextSub int

	// mu guards the fields set by apply.
	mu          sync.Mutex
	retireAfter time.Duration
	acmeHosts   []string
	// onDemand reports whether a name belongs to an on-demand Site:
	// such names are never listed in the config, so they are retired
	// only when no on-demand Site covers them any more.
	onDemand func(name string) bool
	// onDemandCfg and onDemandHosts are the on_demand policy and the
	// hosts of the on-demand Sites onDemand was made from.
	onDemandCfg   *config.OnDemand
	onDemandHosts []string
	// issuerKeys are the issuer directories the last full retire found.
	issuerKeys []string
	// table is the applied host table, for the file Certificates.
	table *table
	// fileExpiring holds the serials of file Certificates an expiring
	// event was sent for. Files are per instance, so this is memory only.
	fileExpiring map[string]bool

	sink   *eventSink
	cancel context.CancelFunc
	done   chan struct{}
}

// lifecycleEngine is what an ACME engine offers beyond acmeEngine for the
// lifecycle commands. certmagic has it; autocert has not.
type lifecycleEngine interface {
	// renew renews the Certificate of name now (only if due unless
	// force); with serve, it also loads the new one into the engine's
	// Cache (on-demand Certificates live in a Cache of their own, which
	// follows the renewed event).
	renew(ctx context.Context, name string, force, serve bool) error
	// revoke revokes the Certificate of name at its CA and deletes it
	// from storage; with replace, it obtains a new one, and with serve it
	// loads it into the engine's Cache.
	revoke(ctx context.Context, name string, reason int, replace, serve bool) error
	// purge deletes the Certificate of name from storage.
	purge(ctx context.Context, name string) error
	// caFor returns the ACME directory of the issuer with this key.
	caFor(name, issuerKey string) string
}

var _ lifecycleEngine = (*certmagicEngine)(nil)

func newLifecycle(m *Manager, interval time.Duration, now func() time.Time) *lifecycle {
	if interval <= 0 {
		interval = defaultLifecycleInterval
	}
	lc := newLifecycleOn(m.logger, m.store, m.engine)
	if now != nil {
		lc.now = now
	}
	if e, ok := m.engine.(*certmagicEngine); ok {
		e.notify = lc.certmagicEvent
	}
	ctx, cancel := context.WithCancel(context.Background())
	lc.cancel, lc.done = cancel, make(chan struct{})
	go lc.watch(ctx, interval)
	return lc
}

// newLifecycleCore returns a lifecycle without its watch loop, for the
// offline commands; engine may be nil.
func newLifecycleCore(logger *slog.Logger, storage string, engine acmeEngine) *lifecycle {
	return newLifecycleOn(logger, &certmagic.FileStorage{Path: storage}, engine)
}

// newLifecycleOn is newLifecycleCore on any certmagic Storage.
func newLifecycleOn(logger *slog.Logger, store certmagic.Storage, engine acmeEngine) *lifecycle {
	done := make(chan struct{})
	close(done) // no watch loop yet
	lc := &lifecycle{
		logger: logger, inv: &inventory{storage: store}, engine: engine, now: time.Now,
		subs: map[int]func(Event){}, retireAfter: config.DefaultRetireAfter,
		cancel: func() {}, done: done,
	}
	lc.sink = newEventSink(logger)
	lc.Subscribe(lc.sink.enqueue)
	return lc
}

// apply takes the settings of cfg and the ACME hosts of t: hosts back in
// the config are no longer retired, and hosts gone from it are retired.
func (lc *lifecycle) apply(ctx context.Context, cfg *config.Config, t *table) []string {
	lc.mu.Lock()
	var onDemandHosts []string
	for i := range cfg.Sites {
		if cfg.Sites[i].TLS.OnDemand {
			onDemandHosts = append(onDemandHosts, cfg.Sites[i].Hosts...)
		}
	}
	retireAfter := cmp.Or(cfg.RetireAfter, config.DefaultRetireAfter)
	prev, first, retireAfterChanged := lc.acmeHosts, lc.table == nil, retireAfter != lc.retireAfter
	onDemandChanged := !reflect.DeepEqual(lc.onDemandCfg, cfg.OnDemand) || !slices.Equal(lc.onDemandHosts, onDemandHosts) ||
		cfg.OnDemand != nil && cfg.OnDemand.AllowFile != ""
	lc.retireAfter = retireAfter
	lc.acmeHosts = slices.Clone(t.acmeHosts)
	lc.onDemand = t.isOnDemand
	lc.onDemandCfg, lc.onDemandHosts = cfg.OnDemand, onDemandHosts
	lc.table = t
	lc.mu.Unlock()
	lc.sink.configure(cfg.Events)
	var retired []string
	var err error
	if first || onDemandChanged || retireAfterChanged {
		// At start, when which stored names an on-demand Site covers may
		// have changed, or when retirements may be due for deletion,
		// every stored Certificate is looked at.
		retired, err = lc.retire(ctx, time.Now())
	} else {
		retired, err = lc.retireChanged(ctx, prev, time.Now())
	}
	if err != nil {
		lc.logger.Warn("retiring certificates", "error", err)
	}
	return retired
}

// settings returns what apply last set.
func (lc *lifecycle) settings() (retireAfter time.Duration, acmeHosts []string, onDemand func(string) bool) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	onDemand = lc.onDemand
	if onDemand == nil {
		onDemand = func(string) bool { return false }
	}
	return lc.retireAfter, lc.acmeHosts, onDemand
}

// watch checks the inventory every interval until ctx is done.
func (lc *lifecycle) watch(ctx context.Context, interval time.Duration) {
	defer close(lc.done)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			lc.check(ctx, time.Now())
		}
	}
}

// close stops the watch loop and delivers the events still queued, for a
// few seconds at most.
func (lc *lifecycle) close() {
	lc.cancel()
	<-lc.done
	lc.sink.close()
}

// RefusedError is the error of a Renew or Revoke that gatehouse refuses
// without asking any CA, because of what the Certificate is (from files,
// from the local CA, retired, none obtained yet) or because acme.engine
// cannot do it: asking again does not help until that changes. Check for
// it with errors.As; the admin endpoint answers it with 409 Conflict.
type RefusedError struct {
	// Op is "renewing" or "revoking".
	Op string
	// Name is the host asked for.
	Name string
	// Reason says why, and what to do instead.
	Reason string
}

func (e *RefusedError) Error() string {
	return e.Op + " certificate of " + e.Name + ": " + e.Reason
}

// Reasons of a RefusedError that more than one call gives.
const (
	refusedNoCertificate = "it has no certificate yet (status pending or failing): the first one is still being obtained, with retries"
	refusedFiles         = "it comes from files (tls.cert, tls.key)"
)

// refusedEngine is the RefusedError of an acme.engine without the
// lifecycle commands.
func refusedEngine(op, name, engine string) *RefusedError {
	return &RefusedError{Op: op, Name: name, Reason: "not supported by acme.engine " + engine + "; use certmagic, the default"}
}

// isStatic reports whether name is a host of a Site with a Certificate
// from files.
func (t *table) isStatic(name string) bool {
	src := t.lookup(name)
	return src != nil && src.kind == sourceStatic && src.name == name
}

// isOnDemand reports whether name belongs to an on-demand Site and has a
// Certificate in the inventory.
func (m *Manager) isOnDemand(ctx context.Context, name string) bool {
	if !m.table.Load().isOnDemand(name) {
		return false
	}
	r, err := m.inventory().load(ctx, name)
	return err == nil && r != nil && r.RetiredAt.IsZero()
}

// caFor implements lifecycleEngine.
func (e *certmagicEngine) caFor(name, issuerKey string) string {
	for _, cfg := range []*certmagic.Config{e.configFor(name), e.cfg} {
		for _, iss := range cfg.Issuers {
			if a := unwrapIssuer(iss); a != nil && a.IssuerKey() == issuerKey {
				return a.CA
			}
		}
	}
	return ""
}
