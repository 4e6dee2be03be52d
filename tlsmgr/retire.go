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
// longer than retire_after. It returns the names newly retired.
func (lc *lifecycle) retire(ctx context.Context, now time.Time) ([]string, error) {
	retireAfter, hosts, onDemand := lc.settings()
	recs, err := lc.inv.list(ctx)
	if err != nil {
		return nil, err
	}
	candidates := map[string]string{} // name → issuer key
	for name, key := range lc.inv.storedACMENames(ctx) {
		candidates[unsafeName(name)] = key
	}
	for name, r := range recs {
		candidates[name] = r.IssuerKey
	}
	var retired []string
	for name, key := range candidates {
		if slices.Contains(hosts, name) || onDemand(name) {
			if r, ok := recs[name]; ok && !r.RetiredAt.IsZero() {
				// Back in the config: served and renewed again.
				src := SourceACME
				if !slices.Contains(hosts, name) {
					src = SourceOnDemand
				}
				r, err := lc.inv.update(ctx, name, nil, func(r *record) { r.RetiredAt, r.Source = time.Time{}, src })
				if err != nil {
					return retired, err
				}
				recs[name] = r
				lc.logger.Info("retired certificate back in use", "host", name)
			}
			continue
		}
		if r, ok := recs[name]; ok && !r.RetiredAt.IsZero() {
			continue
		}
		r, err := lc.inv.update(ctx, name, func() record {
			return record{Names: []string{name}, Source: SourceACME, IssuerKey: key}
		}, func(r *record) { r.RetiredAt, r.Attempting = now.UTC(), false })
		if err != nil {
			return retired, err
		}
		recs[name] = r
		retired = append(retired, name)
		ev := Event{Type: EventRetired, Names: []string{name}, Issuer: r.CA, Time: now.UTC()}
		if f := lc.inv.loadACME(ctx, r.IssuerKey, name); f != nil {
			ev.NotAfter = f.chain[0].NotAfter
		}
		lc.emit(ev)
	}
	slices.Sort(retired)
	if len(retired) > 0 {
		lc.logger.Info("certificates retired: no longer renewed, kept until retire_after", "hosts", retired, "retire_after", retireAfter)
	}

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
// the names newly retired. Apply does the same after every reload.
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
