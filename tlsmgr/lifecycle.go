package tlsmgr

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// Event types, as Event.Type names them.
const (
	EventObtained      = "obtained"
	EventRenewed       = "renewed"
	EventRenewalFailed = "renewal_failed"
	EventExpiring      = "expiring"
	EventRevoked       = "revoked"
	EventRetired       = "retired"

	// EventObtainFailed: obtaining a host's first Certificate failed (it
	// is retried with backoff); the metrics count issuance failures by it.
	EventObtainFailed = "obtain_failed"
)

// failureReminder is how long the webhook and the command hear nothing
// more of a Certificate whose renewal or first issuance keeps failing
// after they got its renewal_failed or obtain_failed event: the first
// failure of a streak is sent at once, then one reminder a day at most,
// however often the attempt is retried.
const failureReminder = 24 * time.Hour

// Event is something that happened to a Certificate. It is what
// [Manager.Subscribe] delivers and what the events webhook and command
// receive as JSON.
type Event struct {
	// Type is obtained, obtain_failed, renewed, renewal_failed,
	// expiring, revoked or retired.
	Type string `json:"type"`
	// Names are the hosts of the Certificate.
	Names []string `json:"names"`
	// Issuer is the ACME directory URL of the CA, "internal" for the
	// local CA, or the issuer's common name for a file Certificate.
	Issuer string `json:"issuer,omitempty"`
	// Error is why the renewal or the first issuance failed.
	Error string `json:"error,omitempty"`
	// Failures counts the failed attempts in a row, this one included,
	// for obtain_failed and renewal_failed: more than 1 is the daily
	// reminder of a streak still going on.
	Failures int       `json:"failures,omitempty"`
	Time     time.Time `json:"time"`
	// NotAfter is the end of the Certificate's validity, when known.
	NotAfter time.Time `json:"not_after,omitzero"`
	// Duration is how long the ACME attempt took, from certmagic's
	// cert_obtaining to its outcome, for obtained, obtain_failed, renewed
	// and renewal_failed from an ACME CA; zero when unknown. It feeds the
	// order duration histogram of the metrics.
	Duration time.Duration `json:"-"`

	// quiet keeps the event from the webhook and the command, which hear
	// of a failure streak once a day at most; subscribers (the metrics)
	// and the log still get it.
	quiet bool
}

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
	lc := newLifecycleCore(m.logger, m.frozen.storage, m.engine)
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
	done := make(chan struct{})
	close(done) // no watch loop yet
	lc := &lifecycle{
		logger: logger, inv: newInventory(storage), engine: engine, now: time.Now,
		subs: map[int]func(Event){}, retireAfter: config.DefaultRetireAfter,
		cancel: func() {}, done: done,
	}
	lc.sink = newEventSink(logger)
	lc.Subscribe(lc.sink.enqueue)
	return lc
}

// Subscribe calls f for every Event from now on, until cancel is called.
// f runs on the goroutine that caused the event (possibly an issuance), so
// it must return quickly: queue anything slow.
func (m *Manager) Subscribe(f func(Event)) (cancel func()) {
	if m.lc == nil {
		return func() {}
	}
	return m.lc.Subscribe(f)
}

// Subscribe is [Manager.Subscribe].
func (lc *lifecycle) Subscribe(f func(Event)) func() {
	lc.subMu.Lock()
	defer lc.subMu.Unlock()
	id := lc.nextSub
	lc.nextSub++
	lc.subs[id] = f
	return func() {
		lc.subMu.Lock()
		defer lc.subMu.Unlock()
		delete(lc.subs, id)
	}
}

func (lc *lifecycle) emit(ev Event) {
	if ev.Time.IsZero() {
		ev.Time = lc.now().UTC()
	}
	lc.subMu.Lock()
	ids := make([]int, 0, len(lc.subs))
	for id := range lc.subs {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	fs := make([]func(Event), len(ids))
	for i, id := range ids {
		fs[i] = lc.subs[id]
	}
	lc.subMu.Unlock()
	if ev.quiet {
		lc.logger.Info("certificate event", "event", ev.Type, "names", ev.Names, "issuer", ev.Issuer, "failures", ev.Failures,
			"note", "not sent to the webhook or command: they had this failure streak within the last day")
	} else {
		lc.logger.Info("certificate event", "event", ev.Type, "names", ev.Names, "issuer", ev.Issuer)
	}
	for _, f := range fs {
		f(ev)
	}
}

// apply takes the settings of cfg and the ACME hosts of t: hosts back in
// the config are no longer retired, and hosts gone from it are retired.
func (lc *lifecycle) apply(ctx context.Context, cfg *config.Config, t *table) []string {
	lc.mu.Lock()
	lc.retireAfter = cmp.Or(cfg.RetireAfter, config.DefaultRetireAfter)
	lc.acmeHosts = slices.Clone(t.acmeHosts)
	lc.onDemand = t.isOnDemand
	lc.table = t
	lc.mu.Unlock()
	lc.sink.configure(cfg.Events)
	retired, err := lc.retire(ctx, time.Now())
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

// defaultRecord returns the record a name starts with.
func (lc *lifecycle) defaultRecord(name string) func() record {
	return func() record {
		_, hosts, onDemand := lc.settings()
		src := SourceACME
		if !slices.Contains(hosts, name) && onDemand(name) {
			src = SourceOnDemand
		}
		return record{Names: []string{name}, Source: src}
	}
}

// attemptDuration is how long the attempt that r records as under way has
// taken at now, or zero when none is.
func attemptDuration(r *record, now time.Time) time.Duration {
	if !r.Attempting || r.LastAttempt.IsZero() || now.Before(r.LastAttempt) {
		return 0
	}
	return now.Sub(r.LastAttempt)
}

// certmagicEvent keeps the inventory up to date from certmagic's events
// and emits gatehouse's. It never fails: an error would abort issuance.
func (lc *lifecycle) certmagicEvent(ctx context.Context, event string, data map[string]any) {
	ctx = context.WithoutCancel(ctx)
	name, _ := data["identifier"].(string)
	if name == "" {
		return
	}
	renewal, _ := data["renewal"].(bool)
	now := lc.now().UTC()
	var err error
	switch event {
	case "cert_obtaining":
		_, err = lc.inv.update(ctx, name, lc.defaultRecord(name), func(r *record) {
			r.LastAttempt, r.Attempting = now, true
		})
	case "cert_obtained":
		key, _ := data["issuer"].(string)
		ca := key
		if le, ok := lc.engine.(lifecycleEngine); ok {
			ca = cmp.Or(le.caFor(name, key), key)
		}
		var took time.Duration
		_, err = lc.inv.update(ctx, name, lc.defaultRecord(name), func(r *record) {
			took = attemptDuration(r, now)
			r.Attempting, r.Failures, r.LastError = false, 0, ""
			r.FailureNotified = time.Time{} // the streak is over
			r.IssuerKey, r.CA = key, ca
			if _, hosts, onDemand := lc.settings(); slices.Contains(hosts, name) || onDemand(name) {
				r.RetiredAt = time.Time{} // back in use
			}
			if r.LastAttempt.IsZero() {
				r.LastAttempt = now
			}
		})
		ev := Event{Type: EventObtained, Names: []string{name}, Issuer: ca, Time: now, Duration: took}
		if renewal {
			ev.Type = EventRenewed
		}
		if f := lc.inv.loadACME(ctx, key, name); f != nil {
			ev.NotAfter = f.chain[0].NotAfter
		}
		lc.emit(ev)
	case "cert_failed":
		cause, _ := data["error"].(error)
		msg := "unknown error"
		if cause != nil {
			msg = cause.Error()
		}
		if errors.Is(cause, context.Canceled) {
			// Stopped (shutdown, host removed), not failed.
			_, err = lc.inv.update(ctx, name, lc.defaultRecord(name), func(r *record) { r.Attempting = false })
			break
		}
		var r record
		var took time.Duration
		quiet := false
		r, err = lc.inv.update(ctx, name, lc.defaultRecord(name), func(r *record) {
			took = attemptDuration(r, now)
			r.Attempting = false
			r.Failures++
			r.LastError = msg
			// In the record, so instances sharing the storage and
			// restarts keep to one event a day between them.
			if !r.FailureNotified.IsZero() && now.Sub(r.FailureNotified) < failureReminder {
				quiet = true
				return
			}
			r.FailureNotified = now
		})
		issuer := r.CA
		if issuer == "" {
			if keys, ok := data["issuers"].([]string); ok && len(keys) > 0 {
				issuer = keys[0]
				if le, ok := lc.engine.(lifecycleEngine); ok {
					issuer = cmp.Or(le.caFor(name, keys[0]), keys[0])
				}
			}
		}
		typ := EventRenewalFailed
		if !renewal {
			typ = EventObtainFailed
		}
		lc.emit(Event{Type: typ, Names: []string{name}, Issuer: issuer, Error: msg, Failures: r.Failures, Time: now, Duration: took, quiet: quiet})
	}
	if err != nil {
		lc.logger.Warn("updating the certificate inventory", "host", name, "event", event, "error", err)
	}
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

// check sends an expiring event, once per certificate, for every ACME
// Certificate past its renewal point and not renewed (failing renewals
// included, so they are reported well before expiry), and deletes
// retirements past retire_after.
func (lc *lifecycle) check(ctx context.Context, now time.Time) {
	recs, err := lc.inv.list(ctx)
	if err != nil {
		lc.logger.Warn("reading the certificate inventory", "error", err)
		return
	}
	for name, r := range recs {
		if !r.RetiredAt.IsZero() {
			continue
		}
		info := lc.inv.fromRecord(ctx, r, now)
		if info.Serial == "" || info.NextRenewal.IsZero() || !now.After(info.NextRenewal.Add(expiringGrace(info))) {
			continue
		}
		if r.ExpiringSerial == info.Serial {
			continue
		}
		_, err := lc.inv.update(ctx, name, nil, func(r *record) { r.ExpiringSerial = info.Serial })
		if err != nil {
			lc.logger.Warn("updating the certificate inventory", "host", name, "error", err)
			continue
		}
		lc.logger.Warn("certificate past its renewal point and not renewed", "host", name, "not_after", info.NotAfter, "status", info.Status, "last_error", info.LastError)
		lc.emit(Event{Type: EventExpiring, Names: info.Names, Issuer: info.CA, Error: info.LastError, Time: now.UTC(), NotAfter: info.NotAfter})
	}
	lc.checkFiles(now)
	if _, err := lc.retire(ctx, now); err != nil {
		lc.logger.Warn("retiring certificates", "error", err)
	}
}

// checkFiles sends an expiring event, once per certificate, for every
// file Certificate with a third of its lifetime (plus the grace) left:
// nobody but its owner renews it, so this is the reminder.
func (lc *lifecycle) checkFiles(now time.Time) {
	lc.mu.Lock()
	t := lc.table
	lc.mu.Unlock()
	if t == nil {
		return
	}
	for cert, hosts := range t.configured().static {
		info := CertificateInfo{Names: slices.Sorted(slices.Values(hosts)), Source: SourceFile}
		if cert.Leaf == nil {
			continue
		}
		fill(&info, []*x509.Certificate{cert.Leaf}, nil)
		if !now.After(info.NextRenewal.Add(expiringGrace(info))) {
			continue
		}
		lc.mu.Lock()
		sent := lc.fileExpiring[info.Serial]
		if lc.fileExpiring == nil {
			lc.fileExpiring = map[string]bool{}
		}
		lc.fileExpiring[info.Serial] = true
		lc.mu.Unlock()
		if sent {
			continue
		}
		lc.logger.Warn("certificate from files is near its end; replace the files and reload", "hosts", info.Names, "not_after", info.NotAfter)
		lc.emit(Event{Type: EventExpiring, Names: info.Names, Issuer: info.Issuer, Time: now.UTC(), NotAfter: info.NotAfter})
	}
}

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

// close stops the watch loop and delivers the events still queued, for a
// few seconds at most.
func (lc *lifecycle) close() {
	lc.cancel()
	<-lc.done
	lc.sink.close()
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
	var old []string
	for _, c := range e.cache.AllMatchingCertificates(name) {
		if slices.Contains(c.Names, name) {
			old = append(old, c.Hash())
		}
	}
	cur, err := e.configFor(name).CacheManagedCertificate(ctx, name)
	if err != nil {
		return fmt.Errorf("loading the new certificate: %w", err)
	}
	old = slices.DeleteFunc(old, func(h string) bool { return h == cur.Hash() })
	e.cache.Remove(old)
	return nil
}

// revoke implements lifecycleEngine.
func (e *certmagicEngine) revoke(ctx context.Context, name string, reason int, replace, serve bool) error {
	cfg := e.configFor(name)
	revoked := false
	for _, iss := range cfg.Issuers {
		key := iss.IssuerKey()
		certPEM, err := cfg.Storage.Load(ctx, certmagic.StorageKeys.SiteCert(key, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("loading certificate: %w", err)
		}
		keyPEM, err := cfg.Storage.Load(ctx, certmagic.StorageKeys.SitePrivateKey(key, name))
		if err != nil {
			return fmt.Errorf("loading private key: %w", err)
		}
		rev, ok := iss.(certmagic.Revoker)
		if !ok {
			return fmt.Errorf("issuer %s cannot revoke", key)
		}
		res := certmagic.CertificateResource{SANs: []string{name}, CertificatePEM: certPEM, PrivateKeyPEM: keyPEM}
		if err := rev.Revoke(ctx, res, reason); err != nil {
			return fmt.Errorf("revoking at %s: %w", e.caFor(name, key), err)
		}
		if err := cfg.Storage.Delete(ctx, certmagic.StorageKeys.CertsSitePrefix(key, name)); err != nil {
			return fmt.Errorf("revoked, but deleting it from storage: %w", err)
		}
		revoked = true
		break
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

// caFor implements lifecycleEngine.
func (e *certmagicEngine) caFor(name, issuerKey string) string {
	for _, cfg := range []*certmagic.Config{e.configFor(name), e.cfg} {
		for _, iss := range cfg.Issuers {
			if a, ok := iss.(*certmagic.ACMEIssuer); ok && a.IssuerKey() == issuerKey {
				return a.CA
			}
		}
	}
	return ""
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

// RetireOffline does what [Manager.Retire] does, on the storage of cfg and
// against its Sites, without a running gatehouse (one sharing the storage
// may run meanwhile). The events configured in cfg are delivered before
// it returns.
func RetireOffline(ctx context.Context, cfg *config.Config, logger *slog.Logger) ([]string, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	t, err := buildTable(cfg)
	if err != nil {
		return nil, fmt.Errorf("reading the configured certificates: %w", err)
	}
	lc := newLifecycleCore(logger, cfg.Storage, nil)
	defer lc.close()
	return lc.apply(ctx, cfg, t), nil
}

// RevokeOffline revokes the ACME Certificate of name at its CA, with the
// account in the storage of cfg, and deletes it from storage, without a
// running gatehouse: a host still configured gets its replacement when
// gatehouse next starts; a retired one leaves the inventory. The events
// configured in cfg are delivered before it returns.
func RevokeOffline(ctx context.Context, cfg *config.Config, name, reason string, logger *slog.Logger) error {
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
	e, err := newCertmagicEngine(s, defaultOptions(), logger)
	if err != nil {
		return err
	}
	defer e.close()
	lc := newLifecycleCore(logger, cfg.Storage, e)
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

// RenewOffline renews the ACME Certificate of name (only if due, unless
// force) without a running gatehouse, with the account and policies of cfg.
// The CA's challenges are answered on the config's Listener addresses,
// which certmagic binds for the moment; they must be free, so this fails
// while a gatehouse serves on them. The events configured in cfg are
// delivered before it returns.
func RenewOffline(ctx context.Context, cfg *config.Config, name string, force bool, logger *slog.Logger) error {
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
	s, err := newACMESettings(cfg)
	if err != nil {
		return err
	}
	e, err := newCertmagicEngine(s, defaultOptions(), logger)
	if err != nil {
		return err
	}
	defer e.close()
	if err := e.setPolicies(acmePolicies(cfg)); err != nil {
		return err
	}
	lc := newLifecycleCore(logger, cfg.Storage, e)
	defer lc.close()
	lc.mu.Lock()
	lc.retireAfter, lc.acmeHosts, lc.onDemand, lc.table = cmp.Or(cfg.RetireAfter, config.DefaultRetireAfter), t.acmeHosts, t.isOnDemand, t
	lc.mu.Unlock()
	lc.sink.configure(cfg.Events)
	e.notify = lc.certmagicEvent
	if err := e.renew(ctx, name, force, false); err != nil {
		return fmt.Errorf("renewing certificate of %s: %w", name, err)
	}
	return nil
}
