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

// Revocation reasons (RFC 5280 section 5.3.1) that `certs revoke --reason`
// accepts.
var revocationReasons = map[string]int{
	"unspecified":          0,
	"keyCompromise":        1,
	"affiliationChanged":   3,
	"superseded":           4,
	"cessationOfOperation": 5,
}

// RevocationReasons lists the reasons Revoke accepts.
func RevocationReasons() []string {
	out := make([]string, 0, len(revocationReasons))
	for r := range revocationReasons {
		out = append(out, r)
	}
	slices.Sort(out)
	return out
}

// ParseRevocationReason returns the RFC 5280 code of a reason name.
func ParseRevocationReason(reason string) (int, error) {
	if reason == "" {
		return 0, nil
	}
	code, ok := revocationReasons[reason]
	if !ok {
		return 0, fmt.Errorf("unknown revocation reason %q (want one of %s)", reason, strings.Join(RevocationReasons(), ", "))
	}
	return code, nil
}

// Revoke revokes the ACME Certificate of name at its CA with reason (an
// RFC 5280 reason name such as keyCompromise; "" is unspecified) and
// deletes it from storage. If the host is still configured, a replacement
// is obtained at once and served without a restart; a retired Certificate
// is just revoked and removed from the inventory. A Certificate from files
// or the local CA, one not obtained yet and any with acme.engine autocert
// are refused with a [RefusedError].
func (m *Manager) Revoke(ctx context.Context, name string, reason string) error {
	name = normalizeHost(name)
	code, err := ParseRevocationReason(reason)
	if err != nil {
		return fmt.Errorf("revoking certificate of %s: %w", name, err)
	}
	inv := m.inventory()
	r, err := inv.load(ctx, name)
	if err != nil {
		return err
	}
	t := m.table.Load()
	configured := slices.Contains(t.acmeHosts, name)
	if !configured && r == nil {
		switch {
		case slices.Contains(t.internalNames, name):
			return &RefusedError{Op: "revoking", Name: name, Reason: "it comes from the local CA, which keeps no revocation list; renew it for a new leaf"}
		case t.isStatic(name):
			return &RefusedError{Op: "revoking", Name: name, Reason: refusedFiles + "; revoke it with the CA that issued it"}
		}
		return fmt.Errorf("revoking certificate of %s: %w", name, ErrUnknownCertificate)
	}
	le, ok := m.engine.(lifecycleEngine)
	if !ok {
		return refusedEngine("revoking", name, m.frozen.acme.Engine)
	}
	var before *acmeFacts
	if r != nil {
		before = inv.loadACME(ctx, r.IssuerKey, name)
	} else {
		before = inv.loadACME(ctx, "", name)
	}
	if before == nil {
		return &RefusedError{Op: "revoking", Name: name, Reason: refusedNoCertificate}
	}
	replace := configured || m.isOnDemand(ctx, name)
	revokeErr := le.revoke(ctx, name, code, replace, configured)
	if errors.Is(revokeErr, errRevokedNotReplaced) || revokeErr == nil {
		ev := Event{Type: EventRevoked, Names: []string{name}, Time: time.Now().UTC(), NotAfter: before.chain[0].NotAfter}
		if r != nil {
			ev.Issuer = r.CA
		}
		if ev.Issuer == "" {
			ev.Issuer = le.caFor(name, before.issuerKey)
		}
		if m.lc != nil {
			m.lc.emit(ev)
		}
		if !replace {
			if err := inv.remove(ctx, name); err != nil {
				return err
			}
		}
	}
	if revokeErr != nil {
		return fmt.Errorf("revoking certificate of %s: %w", name, revokeErr)
	}
	return nil
}

// errRevokedNotReplaced says the revocation succeeded but obtaining the
// replacement did not (yet; renewal keeps trying).
var errRevokedNotReplaced = errors.New("revoked, but obtaining the replacement failed")

// revoke implements lifecycleEngine.
func (e *certmagicEngine) revoke(ctx context.Context, name string, reason int, replace, serve bool) error {
	cfg := e.configFor(name)
	revoked := false
	for _, iss := range cfg.Issuers {
		found, err := e.revokeStored(ctx, cfg.Storage, iss, name, reason)
		if err != nil {
			return err
		}
		if found {
			revoked = true
			break
		}
	}
	if !revoked {
		return fmt.Errorf("no configured issuer holds a certificate for %s", name)
	}
	if !replace {
		e.forget([]string{name})
		return nil
	}
	if err := cfg.ObtainCertSync(ctx, name); err != nil {
		return fmt.Errorf("%w: %w", errRevokedNotReplaced, err)
	}
	if !serve {
		return nil
	}
	if err := e.recache(ctx, name); err != nil {
		return fmt.Errorf("%w: %w", errRevokedNotReplaced, err)
	}
	return nil
}

// revokeStored revokes the certificate of name that iss obtained, as
// storage holds it, and deletes it from storage. It reports false, and
// does nothing, when storage holds none of iss for name.
func (e *certmagicEngine) revokeStored(ctx context.Context, storage certmagic.Storage, iss certmagic.Issuer, name string, reason int) (bool, error) {
	key := iss.IssuerKey()
	certPEM, err := storage.Load(ctx, certmagic.StorageKeys.SiteCert(key, name))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("loading certificate: %w", err)
	}
	keyPEM, err := storage.Load(ctx, certmagic.StorageKeys.SitePrivateKey(key, name))
	if err != nil {
		return false, fmt.Errorf("loading private key: %w", err)
	}
	rev, ok := iss.(certmagic.Revoker)
	if !ok {
		return false, fmt.Errorf("issuer %s cannot revoke", key)
	}
	// certmagic's ACMEIssuer picks its account's email in PreCheck,
	// which only an order runs: an instance that never ordered (a
	// fleet peer, gatehouse certs revoke offline) would otherwise
	// revoke with an email-less account of its own, which the CA
	// refuses as not the certificate's.
	if pc, ok := iss.(certmagic.PreChecker); ok {
		if err := pc.PreCheck(ctx, []string{name}, false); err != nil {
			return false, fmt.Errorf("preparing the ACME account: %w", err)
		}
	}
	res := certmagic.CertificateResource{SANs: []string{name}, CertificatePEM: certPEM, PrivateKeyPEM: keyPEM}
	if err := rev.Revoke(ctx, res, reason); err != nil {
		return false, fmt.Errorf("revoking at %s: %w", e.caFor(name, key), err)
	}
	if err := storage.Delete(ctx, certmagic.StorageKeys.CertsSitePrefix(key, name)); err != nil {
		return true, fmt.Errorf("revoked, but deleting it from storage: %w", err)
	}
	return true, nil
}

// revokeOffline revokes the ACME Certificate of name at its CA, with the
// account in the storage of cfg, and deletes it from storage, without a
// running gatehouse: a host still configured gets its replacement when
// gatehouse next starts; a retired one leaves the inventory. The events
// configured in cfg are delivered before it returns.
func revokeOffline(ctx context.Context, cfg *config.Config, name, reason string, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	name = normalizeHost(name)
	code, err := ParseRevocationReason(reason)
	if err != nil {
		return fmt.Errorf("revoking certificate of %s: %w", name, err)
	}
	if cfg.ACME.Engine == config.EngineAutocert {
		return refusedEngine("revoking", name, cfg.ACME.Engine)
	}
	t, err := buildTable(cfg)
	if err != nil {
		return fmt.Errorf("reading the configured certificates: %w", err)
	}
	s, err := newACMESettings(cfg)
	if err != nil {
		return err
	}
	store, closeStore, err := openStorage(cfg, logger)
	if err != nil {
		return err
	}
	defer closeStore()
	s.store = store
	e, err := newCertmagicEngine(s, defaultOptions(), logger)
	if err != nil {
		return err
	}
	defer e.close()
	lc := newLifecycleOn(logger, store, e)
	defer lc.close()
	lc.sink.configure(cfg.Events)

	r, err := lc.inv.load(ctx, name)
	if err != nil {
		return err
	}
	key := ""
	if r != nil {
		key = r.IssuerKey
	}
	before := lc.inv.loadACME(ctx, key, name)
	if before == nil {
		return fmt.Errorf("revoking certificate of %s: %w", name, ErrUnknownCertificate)
	}
	if err := e.revoke(ctx, name, code, false, false); err != nil {
		return fmt.Errorf("revoking certificate of %s: %w", name, err)
	}
	ev := Event{Type: EventRevoked, Names: []string{name}, Time: time.Now().UTC(), NotAfter: before.chain[0].NotAfter, Issuer: e.caFor(name, before.issuerKey)}
	if r != nil && r.CA != "" {
		ev.Issuer = r.CA
	}
	lc.emit(ev)
	if !slices.Contains(t.acmeHosts, name) {
		return lc.inv.remove(ctx, name)
	}
	return nil
}
