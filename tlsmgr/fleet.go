package tlsmgr

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse-proxy/gatehouse/tlsmgr/etcdstore"
)

// With etcd storage, one instance of a fleet renews, replaces or revokes
// a Certificate and the others must serve the new one at once, not at
// their next maintenance pass (certmagic only looks at storage when its
// own copy is due). storageWatch watches the certificates in etcd and
// reloads the ones this instance holds in memory when they change.

const (
	// refreshQuiet is how long a changed name waits for more changes
	// before it is reloaded: certmagic writes a Certificate as three keys
	// (private key, chain, metadata), and reading between them would load
	// a mismatched pair.
	refreshQuiet = 150 * time.Millisecond
	// refreshRetry is the pause before a failed reload is tried again,
	// and refreshAttempts how many times it is.
	refreshRetry    = time.Second
	refreshAttempts = 3
)

// storageWatch reloads the Certificates a peer changed in etcd storage.
type storageWatch struct {
	logger *slog.Logger
	store  *etcdstore.Storage
	// reload replaces the in-memory Certificate of name by the stored one
	// if this instance holds one; it reports whether it had to and an
	// error if loading failed.
	reload func(ctx context.Context, name string) (bool, error)

	cancel context.CancelFunc
	wg     sync.WaitGroup

	// mu guards pending, the names changed and not reloaded yet, with the
	// attempts made on each.
	mu      sync.Mutex
	pending map[string]int
	// kick wakes the reloading goroutine.
	kick chan struct{}
}

// startStorageWatch starts watching the certificates of store.
func startStorageWatch(logger *slog.Logger, store *etcdstore.Storage, reload func(context.Context, string) (bool, error)) *storageWatch {
	w := &storageWatch{logger: logger, store: store, reload: reload, pending: map[string]int{}, kick: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	prefix := store.Prefix() + "storage/certificates/"
	w.wg.Go(func() {
		_ = etcdstore.Watch(ctx, store.Client(), prefix, func(u etcdstore.Update) {
			var names []string
			for _, it := range u.Items {
				// certificates/<issuer>/<name>/<file>; a deletion (a
				// revocation) is followed by the replacement, and until
				// then the old Certificate keeps serving.
				parts := strings.Split(strings.TrimPrefix(it.Key, prefix), "/")
				if len(parts) == 3 && !it.Deleted {
					names = append(names, strings.Replace(parts[1], "wildcard_", "*", 1))
				}
			}
			w.add(names)
		})
	})
	w.wg.Go(func() { w.run(ctx) })
	return w
}

// add queues names for a reload.
func (w *storageWatch) add(names []string) {
	if len(names) == 0 {
		return
	}
	w.mu.Lock()
	for _, n := range names {
		if _, ok := w.pending[n]; !ok {
			w.pending[n] = 0
		}
	}
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// run reloads the queued names once no change came for refreshQuiet,
// and those that failed again after refreshRetry.
func (w *storageWatch) run(ctx context.Context) {
	quiet := time.NewTimer(time.Hour)
	quiet.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer quiet.Stop()
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.kick:
			quiet.Reset(refreshQuiet)
			continue
		case <-quiet.C:
		case <-retry.C:
		}
		w.mu.Lock()
		batch := w.pending
		w.pending = map[string]int{}
		w.mu.Unlock()
		names := make([]string, 0, len(batch))
		for n := range batch {
			names = append(names, n)
		}
		slices.Sort(names)
		failed := map[string]int{}
		for _, name := range names {
			reloaded, err := w.reload(ctx, name)
			switch {
			case err != nil && ctx.Err() == nil:
				if batch[name]+1 < refreshAttempts {
					failed[name] = batch[name] + 1
					continue
				}
				w.logger.WarnContext(ctx, "loading a certificate changed by another instance; serving the one in memory", "host", name, "error", err)
			case reloaded:
				w.logger.InfoContext(ctx, "certificate changed by another instance loaded", "host", name)
			}
		}
		if len(failed) > 0 {
			w.mu.Lock()
			for n, attempt := range failed {
				w.pending[n] = max(w.pending[n], attempt)
			}
			w.mu.Unlock()
			retry.Reset(refreshRetry)
		}
	}
}

// stop ends the watch and waits for it.
func (w *storageWatch) stop() {
	w.cancel()
	w.wg.Wait()
}

// refresh reloads the Certificate of name from storage if the Cache holds
// one that differs, for the engine's hosts and the on-demand ones alike.
func (m *Manager) refresh(ctx context.Context, name string) (bool, error) {
	reloaded := false
	if e, ok := m.engine.(*certmagicEngine); ok {
		r, err := e.refresh(ctx, name)
		if err != nil {
			return false, err
		}
		reloaded = r
	}
	if o := m.onDemand.Load(); o != nil && o.holds(name) {
		o.reload(ctx, name)
	}
	return reloaded, nil
}

// refresh is recache for a name the Cache holds, when storage has another
// Certificate than the one in memory.
func (e *certmagicEngine) refresh(ctx context.Context, name string) (bool, error) {
	var cached []string
	for _, c := range e.cache.AllMatchingCertificates(name) {
		if slices.Contains(c.Names, name) {
			cached = append(cached, c.Hash())
		}
	}
	if len(cached) == 0 {
		return false, nil
	}
	before := len(cached)
	if err := e.recache(ctx, name); err != nil {
		return false, err
	}
	after := 0
	for _, c := range e.cache.AllMatchingCertificates(name) {
		if slices.Contains(c.Names, name) && slices.Contains(cached, c.Hash()) {
			after++
		}
	}
	return after < before, nil
}

// holds reports whether the on-demand Cache has a Certificate for name.
func (o *onDemand) holds(name string) bool {
	for _, c := range o.cache.AllMatchingCertificates(name) {
		if slices.Contains(c.Names, name) {
			return true
		}
	}
	return false
}
