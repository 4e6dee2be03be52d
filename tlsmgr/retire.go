package tlsmgr

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// retire marks as retired every ACME Certificate in storage whose host is
// no longer configured, emits retired for each, and deletes those retired
// longer than retire_after. It returns the names newly retired. It reads
// every record and certificate directory in storage: the periodic check
// and the first apply run it; later applies run retireChanged.
func (lc *lifecycle) retire(ctx context.Context, now time.Time) ([]string, error) {
	recs, err := lc.inv.list(ctx)
	if err != nil {
		return nil, err
	}
	return lc.retireListed(ctx, now, recs)
}

// retireListed is retire on the records recs, just read (and changed in
// place), for a caller that has read them already.
func (lc *lifecycle) retireListed(ctx context.Context, now time.Time, recs map[string]record) ([]string, error) {
	retireAfter, hosts, onDemand := lc.settings()
	keys := lc.inv.issuerKeys(ctx)
	lc.mu.Lock()
	lc.issuerKeys = keys
	lc.mu.Unlock()
	candidates := map[string]string{} // name → issuer key
	for name, key := range lc.inv.storedACMENames(ctx, keys) {
		candidates[unsafeName(name)] = key
	}
	for name, r := range recs {
		candidates[name] = r.IssuerKey
	}
	configured := make(map[string]bool, len(hosts))
	for _, h := range hosts {
		configured[h] = true
	}
	var retired []string
	for name, key := range candidates {
		var rec *record
		if r, ok := recs[name]; ok {
			rec = &r
		}
		r, newly, err := lc.settle(ctx, name, key, rec, configured[name], onDemand(name), now)
		if err != nil {
			return retired, err
		}
		if r != nil {
			recs[name] = *r
		}
		if newly {
			retired = append(retired, name)
		}
	}
	lc.logRetired(retired, retireAfter)

	// Delete what has been retired long enough.
	for name, r := range recs {
		if r.RetiredAt.IsZero() || now.Sub(r.RetiredAt) < retireAfter {
			continue
		}
		if err := lc.purge(ctx, name); err != nil {
			return retired, err
		}
		lc.logger.Info("retired certificate deleted", "host", name, "retired_at", r.RetiredAt)
	}
	return retired, nil
}

// retireChanged does what retire does for the hosts that joined or left
// the config since the ACME hosts prev, reading only their records and
// certificates: with hundreds of Certificates in storage (or in etcd), a
// Docker container's change must not cost a read of every one. A host
// without a record is looked for under the issuer keys the last full scan
// found; a Certificate under a newer one, and retired Certificates past
// retire_after, wait for the periodic check.
func (lc *lifecycle) retireChanged(ctx context.Context, prev []string, now time.Time) ([]string, error) {
	retireAfter, hosts, onDemand := lc.settings()
	// Both lists are sorted (table.acmeHosts): one walk finds the hosts
	// that left and joined.
	var left, joined []string
	for i, j := 0, 0; i < len(prev) || j < len(hosts); {
		switch {
		case j == len(hosts) || i < len(prev) && prev[i] < hosts[j]:
			left = append(left, prev[i])
			i++
		case i == len(prev) || hosts[j] < prev[i]:
			joined = append(joined, hosts[j])
			j++
		default:
			i, j = i+1, j+1
		}
	}
	lc.mu.Lock()
	issuerKeys := lc.issuerKeys // as the last full scan found them
	lc.mu.Unlock()
	var retired []string
	for _, name := range left {
		rec, err := lc.inv.load(ctx, name)
		if err != nil {
			return retired, err
		}
		key := ""
		if rec != nil {
			key = rec.IssuerKey
		} else {
			for _, k := range issuerKeys {
				if lc.inv.storage.Exists(ctx, certmagic.StorageKeys.SiteCert(k, name)) {
					key = k
					break
				}
			}
			if key == "" {
				continue // never obtained: nothing to retire
			}
		}
		_, newly, err := lc.settle(ctx, name, key, rec, false, onDemand(name), now)
		if err != nil {
			return retired, err
		}
		if newly {
			retired = append(retired, name)
		}
	}
	for _, name := range joined {
		rec, err := lc.inv.load(ctx, name)
		if err != nil {
			return retired, err
		}
		if rec != nil && !rec.RetiredAt.IsZero() {
			if _, _, err := lc.settle(ctx, name, rec.IssuerKey, rec, true, onDemand(name), now); err != nil {
				return retired, err
			}
		}
	}
	lc.logRetired(retired, retireAfter)
	return retired, nil
}

// settle makes the record of name, a Certificate in storage under the
// issuer key (rec its record, nil when it has none), agree with the
// config: one back in it (configured, or covered by an on-demand Site) is
// no longer retired, one gone from it is retired and the retired event
// sent. It returns the record as stored, nil when unchanged, and whether
// it was newly retired.
func (lc *lifecycle) settle(ctx context.Context, name, key string, rec *record, configured, onDemand bool, now time.Time) (*record, bool, error) {
	if configured || onDemand {
		if rec == nil || rec.RetiredAt.IsZero() {
			return nil, false, nil
		}
		// Back in the config: served and renewed again.
		src := SourceACME
		if !configured {
			src = SourceOnDemand
		}
		was := false // still retired when updated, not meanwhile back in use
		r, err := lc.inv.update(ctx, name, nil, func(r *record) {
			was = !r.RetiredAt.IsZero()
			r.RetiredAt, r.Source = time.Time{}, src
		})
		if err != nil {
			return nil, false, err
		}
		if was {
			lc.logger.Info("retired certificate back in use", "host", name)
		}
		return &r, false, nil
	}
	if rec != nil && !rec.RetiredAt.IsZero() {
		return nil, false, nil
	}
	// rec was read a while ago: retired since (by another instance of a
	// fleet), it keeps its time and no second event goes out.
	already := false
	r, err := lc.inv.update(ctx, name, func() record {
		return record{Names: []string{name}, Source: SourceACME, IssuerKey: key}
	}, func(r *record) {
		if already = !r.RetiredAt.IsZero(); !already {
			r.RetiredAt, r.Attempting = now.UTC(), false
		}
	})
	if err != nil || already {
		return nil, false, err
	}
	ev := Event{Type: EventRetired, Names: []string{name}, Issuer: r.CA, Time: now.UTC()}
	if f := lc.inv.loadACME(ctx, r.IssuerKey, name); f != nil {
		ev.NotAfter = f.chain[0].NotAfter
	}
	lc.emit(ev)
	return &r, true, nil
}

func (lc *lifecycle) logRetired(retired []string, retireAfter time.Duration) {
	if len(retired) > 0 {
		slices.Sort(retired)
		lc.logger.Info("certificates retired: no longer renewed, kept until retire_after", "hosts", retired, "retire_after", retireAfter)
	}
}

// purge deletes the Certificate of name from storage, and its record.
func (lc *lifecycle) purge(ctx context.Context, name string) error {
	if le, ok := lc.engine.(lifecycleEngine); ok {
		if err := le.purge(ctx, name); err != nil {
			return err
		}
	} else {
		inv := lc.inv
		for _, key := range inv.issuerKeys(ctx) {
			err := inv.storage.Delete(ctx, certmagic.StorageKeys.CertsSitePrefix(key, name))
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("deleting certificate of %s: %w", name, err)
			}
		}
	}
	return lc.inv.remove(ctx, name)
}

// unsafeName turns a storage directory name back into a host:
// certmagic stores "*.example.com" as "wildcard_.example.com".
func unsafeName(dir string) string {
	if rest, ok := strings.CutPrefix(dir, "wildcard_."); ok {
		return "*." + rest
	}
	return dir
}

// Retire retires the Certificates of hosts no longer in the config (they
// stop renewing and are kept, status retired, for retire_after, then
// deleted) and deletes retirements older than retire_after. It returns
// the names newly retired. Apply does the same for the hosts a reload
// changed, and the periodic check for all.
func (m *Manager) Retire(ctx context.Context) ([]string, error) {
	if m.lc == nil {
		return nil, errors.New("retiring certificates: no inventory")
	}
	return m.lc.retire(ctx, time.Now())
}

// purge implements lifecycleEngine.
func (e *certmagicEngine) purge(ctx context.Context, name string) error {
	keys := []string{}
	for _, iss := range e.configFor(name).Issuers {
		keys = append(keys, iss.IssuerKey())
	}
	keys = append(keys, (&inventory{storage: e.cfg.Storage}).issuerKeys(ctx)...)
	for _, key := range keys {
		err := e.cfg.Storage.Delete(ctx, certmagic.StorageKeys.CertsSitePrefix(key, name))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("deleting certificate of %s: %w", name, err)
		}
	}
	return nil
}

// retireOffline does what [Manager.Retire] does, on the storage of cfg and
// against its Sites, without a running gatehouse (one sharing the storage
// may run meanwhile). The events configured in cfg are delivered before
// it returns.
func retireOffline(ctx context.Context, cfg *config.Config, logger *slog.Logger) ([]string, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	t, err := buildTable(cfg)
	if err != nil {
		return nil, fmt.Errorf("reading the configured certificates: %w", err)
	}
	store, closeStore, err := openStorage(cfg, logger)
	if err != nil {
		return nil, err
	}
	defer closeStore()
	lc := newLifecycleOn(logger, store, nil)
	defer lc.close()
	return lc.apply(ctx, cfg, t), nil
}
