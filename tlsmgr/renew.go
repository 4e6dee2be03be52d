package tlsmgr

import (
	"cmp"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"slices"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// Renew renews the Certificate of name now and serves the new one without
// a restart: an ACME Certificate through its CA (only if it is due, unless
// force), a local CA one by issuing a new leaf. A Certificate from files,
// a retired one, one not obtained yet and any with acme.engine autocert
// are refused with a [RefusedError]. An unknown name is
// ErrUnknownCertificate.
func (m *Manager) Renew(ctx context.Context, name string, force bool) error {
	name = normalizeHost(name)
	t := m.table.Load()
	switch {
	case slices.Contains(t.acmeHosts, name) || m.isOnDemand(ctx, name):
		le, ok := m.engine.(lifecycleEngine)
		if !ok {
			return refusedEngine("renewing", name, m.frozen.acme.Engine)
		}
		if m.inventory().loadACME(ctx, "", name) == nil {
			return &RefusedError{Op: "renewing", Name: name, Reason: refusedNoCertificate}
		}
		if err := le.renew(ctx, name, force, slices.Contains(t.acmeHosts, name)); err != nil {
			return fmt.Errorf("renewing certificate of %s: %w", name, err)
		}
		return nil
	case slices.Contains(t.internalNames, name):
		cert, err := m.ca.reissue(name)
		if err != nil {
			return fmt.Errorf("renewing certificate of %s: %w", name, err)
		}
		if m.lc != nil {
			m.lc.emit(Event{Type: EventRenewed, Names: []string{name}, Issuer: SourceInternal, NotAfter: cert.Leaf.NotAfter})
		}
		return nil
	}
	if t.isStatic(name) {
		return &RefusedError{Op: "renewing", Name: name, Reason: refusedFiles + "; replace them and reload"}
	}
	if r, err := m.inventory().load(ctx, name); err == nil && r != nil && !r.RetiredAt.IsZero() {
		return &RefusedError{Op: "renewing", Name: name, Reason: "it is retired (its host left the config) and retired certificates are not renewed; put the host back in the config to renew it"}
	}
	return fmt.Errorf("renewing certificate of %s: %w", name, ErrUnknownCertificate)
}

// renew implements lifecycleEngine.
func (e *certmagicEngine) renew(ctx context.Context, name string, force, serve bool) error {
	if err := e.configFor(name).RenewCertSync(ctx, name, force); err != nil {
		return err
	}
	if !serve {
		return nil
	}
	return e.recache(ctx, name)
}

// recache loads the Certificate of name from storage into the Cache and
// drops the ones it replaces, so handshakes get the new one at once.
func (e *certmagicEngine) recache(ctx context.Context, name string) error {
	return e.serveFrom(ctx, e.configFor(name), name)
}

// reissue issues a new leaf for name now, replacing the current one.
func (ca *localCA) reissue(name string) (*tls.Certificate, error) {
	slot := ca.slot(name)
	slot.mu.Lock()
	defer slot.mu.Unlock()
	now := ca.now()
	cert, err := ca.issueLeaf(name, now)
	if err != nil {
		return nil, err
	}
	slot.cert = cert
	slot.renewAt = now.Add(ca.leafLifetime * 2 / 3)
	return cert, nil
}

// openOffline starts a certmagic engine on the storage of cfg, with the
// issuance policies of cfg and a lifecycle that records its events in the
// inventory and delivers the configured ones: what a command working
// without a running gatehouse needs. t is the table of cfg. closeAll
// delivers the events, then stops the engine and closes the storage.
func openOffline(cfg *config.Config, t *table, logger *slog.Logger) (e *certmagicEngine, lc *lifecycle, closeAll func(), err error) {
	s, err := newACMESettings(cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	store, closeStore, err := openStorage(cfg, logger)
	if err != nil {
		return nil, nil, nil, err
	}
	s.store = store
	if e, err = newCertmagicEngine(s, defaultOptions(), logger); err != nil {
		closeStore()
		return nil, nil, nil, err
	}
	if err := e.setPolicies(acmePolicies(cfg)); err != nil {
		e.close()
		closeStore()
		return nil, nil, nil, err
	}
	lc = newLifecycleOn(logger, store, e)
	lc.mu.Lock()
	lc.retireAfter, lc.acmeHosts, lc.onDemand, lc.table = cmp.Or(cfg.RetireAfter, config.DefaultRetireAfter), t.acmeHosts, t.isOnDemand, t
	lc.mu.Unlock()
	lc.sink.configure(cfg.Events)
	e.notify = lc.certmagicEvent
	return e, lc, func() {
		lc.close()
		e.close()
		closeStore()
	}, nil
}

// renewOffline renews the ACME Certificate of name (only if due, unless
// force) without a running gatehouse, with the account and policies of cfg.
// The CA's challenges are answered on the config's Listener addresses,
// which certmagic binds for the moment; they must be free, so this fails
// while a gatehouse serves on them. The events configured in cfg are
// delivered before it returns.
func renewOffline(ctx context.Context, cfg *config.Config, name string, force bool, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	name = normalizeHost(name)
	if cfg.ACME.Engine == config.EngineAutocert {
		return refusedEngine("renewing", name, cfg.ACME.Engine)
	}
	t, err := buildTable(cfg)
	if err != nil {
		return fmt.Errorf("reading the configured certificates: %w", err)
	}
	if !slices.Contains(t.acmeHosts, name) {
		return fmt.Errorf("renewing certificate of %s: %w (only ACME hosts of the config renew offline)", name, ErrUnknownCertificate)
	}
	e, _, closeAll, err := openOffline(cfg, t, logger)
	if err != nil {
		return err
	}
	defer closeAll()
	if err := e.renew(ctx, name, force, false); err != nil {
		return fmt.Errorf("renewing certificate of %s: %w", name, err)
	}
	return nil
}
