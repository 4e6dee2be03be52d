// Package tlsmgr provides gatehouse's certificates: the *tls.Config of the
// HTTPS Listener and the HTTP-01 challenge handler of the HTTP Listener. A
// Site's certificate comes from files (static), from a local CA (internal
// names) or from an ACME CA through certmagic (default) or autocert.
// tlsmgr knows hosts, never Routes.
package tlsmgr

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr/etcdstore"
)

// Manager serves the certificates of the configured Sites and keeps the
// ACME ones obtained and renewed. It is safe for concurrent use. Create it
// with New after the Listeners are bound, and Close it after they are shut
// down.
type Manager struct {
	logger *slog.Logger
	ca     *localCA
	engine acmeEngine
	// store is the certmagic Storage of certificates, keys and records
	// (files or etcd); closeStore releases it at Close.
	store      certmagic.Storage
	closeStore func() error
	// frozen is the part of the Config that New used and Apply cannot
	// change: storage, acme and listen.
	frozen frozen
	// http01 and tlsALPN say which challenges the engine answers.
	http01, tlsALPN bool

	// table is the current host→source map, swapped whole by Apply.
	table atomic.Pointer[table]
	// onDemand serves on-demand Sites; nil until an Apply has one.
	onDemand atomic.Pointer[onDemand]

	// applyMu serialises Apply, so two reloads never interleave their swap
	// and their engine update; it guards applied.
	applyMu sync.Mutex
	// applied is the config of the last successful Apply.
	applied *config.Config
	// closeOnce makes Close idempotent.
	closeOnce sync.Once
	closeErr  error

	// lc keeps the Certificate inventory, events and retirements; nil in
	// tests that build a Manager by hand.
	lc *lifecycle
	// handshakes counts and logs failed handshakes; nil (nothing
	// recorded) in tests that build a Manager by hand.
	handshakes *handshakeLog
	// listAlso, when set, lists Certificates the inventory adds to the
	// Manager's own (ListAlso).
	listAlso atomic.Pointer[func() ([]CertificateInfo, error)]
	// watch reloads the Certificates other instances change in etcd
	// storage; nil with file storage.
	watch *storageWatch
}

// frozen is what a restart is needed to change.
type frozen struct {
	storage string
	etcd    *config.EtcdStorage
	acme    config.ACME
	listen  config.Listen
}

// options are the knobs tests turn; New uses defaultOptions.
type options struct {
	// leafLifetime is the validity of local CA leaves.
	leafLifetime time.Duration
	// backoffBase and backoffMax bound the retry delays of obtaining.
	backoffBase, backoffMax time.Duration
	// renewCheckInterval is how often certmagic checks for renewals; zero
	// means certmagic's default.
	renewCheckInterval time.Duration
	// lifecycleInterval is how often the inventory is checked for
	// expiring and retired Certificates; zero means a minute.
	lifecycleInterval time.Duration
	// now is the clock of lifecycle events; nil means time.Now.
	now func() time.Time
	// caNow is the clock of the local CA; nil means time.Now.
	caNow func() time.Time
	// zeroSSLAPI is where eab.api_key is exchanged for a binding; ""
	// means ZeroSSL's API.
	zeroSSLAPI string
}

func defaultOptions() options {
	return options{leafLifetime: defaultLeafLifetime, backoffBase: defaultBackoffBase, backoffMax: defaultBackoffMax}
}

// New creates the storage directory (mode 0700), opens etcd storage when
// cfg.StorageEtcd is set (without waiting for etcd, which may be down:
// what the directory caches is served meanwhile), loads or creates the
// local CA, starts the ACME engine named by cfg.ACME.Engine and applies cfg.
// ACME certificates are obtained in the background, so New does not wait
// for a CA (which may be down). cfg must be validated and defaulted. The
// HTTP and HTTPS Listeners should already be bound: the engine finds their
// ports busy and relies on them to answer challenges. A nil logger
// discards.
func New(ctx context.Context, cfg *config.Config, logger *slog.Logger) (*Manager, error) {
	return newManager(ctx, cfg, logger, defaultOptions())
}

func newManager(ctx context.Context, cfg *config.Config, logger *slog.Logger, opts options) (*Manager, error) {
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Storage == "" {
		return nil, errors.New("creating certificate manager: storage is empty")
	}
	if err := mkdirPrivate(cfg.Storage); err != nil {
		return nil, fmt.Errorf("creating storage directory: %w", err)
	}
	caNow := opts.caNow
	if caNow == nil {
		caNow = time.Now
	}
	if cfg.StorageEtcd != nil && cfg.ACME.Engine == config.EngineAutocert {
		return nil, errors.New("creating certificate manager: storage.etcd needs acme.engine certmagic (autocert keeps its cache in files)")
	}
	store, closeStore, err := openStorage(cfg, logger)
	if err != nil {
		return nil, err
	}
	started := false
	defer func() {
		if !started {
			closeStore()
		}
	}()
	// The local CA lives in the certificate storage: with etcd, every
	// instance of the fleet serves leaves of the same root.
	ca, err := openLocalCAOn(ctx, store, caNow)
	if err != nil {
		return nil, err
	}
	ca.leafLifetime = opts.leafLifetime
	ca.logger = logger

	s, err := newACMESettings(cfg)
	if err != nil {
		ca.close()
		return nil, err
	}
	s.store = store
	s.zeroSSLAPI = opts.zeroSSLAPI
	m := &Manager{
		logger:     logger,
		ca:         ca,
		store:      store,
		closeStore: closeStore,
		frozen:     frozen{storage: cfg.Storage, etcd: cfg.StorageEtcd, acme: cfg.ACME, listen: cfg.Listen},
		http01:     s.http01,
		tlsALPN:    s.tlsALPN01,

		handshakes: newHandshakeLog(logger, nil),
	}
	switch cfg.ACME.Engine {
	case config.EngineCertmagic, "":
		m.engine, err = newCertmagicEngine(s, opts, logger)
	case config.EngineAutocert:
		m.engine, err = newAutocertEngine(s, opts, logger)
	default:
		err = fmt.Errorf("creating ACME engine: unknown acme.engine %q", cfg.ACME.Engine)
	}
	if err != nil {
		ca.close()
		return nil, err
	}
	m.table.Store(&table{exact: map[string]*source{}, wild: map[string]*source{}})
	m.lc = newLifecycle(m, opts.lifecycleInterval, opts.now)
	if err := m.Apply(ctx, cfg); err != nil {
		_ = m.engine.close()
		m.lc.close()
		ca.close()
		return nil, err
	}
	if es, ok := store.(*etcdstore.Storage); ok && m.engine != nil {
		m.watch = startStorageWatch(logger, es, m.refresh)
	}
	started = true
	return m, nil
}

// Apply makes cfg the served configuration, all or nothing: it loads every
// static certificate and builds the new host map first, and on any error
// returns it and changes nothing. Then it swaps the map in and starts
// obtaining certificates for new ACME hosts in the background; hosts no
// longer configured are no longer renewed (their files are kept). Static
// files are read again on every Apply, so calling it on SIGHUP reloads
// them. Changing storage, acme or listen needs a restart and is an error.
// cfg is kept, not copied (a later Apply compares against it): the
// caller must not modify it afterwards, but pass a new Config.
func (m *Manager) Apply(ctx context.Context, cfg *config.Config) error {
	m.applyMu.Lock()
	defer m.applyMu.Unlock()
	if err := m.checkFrozen(cfg); err != nil {
		return err
	}
	if m.applied != nil && sameCertificates(m.applied, cfg) {
		// The hosts and how each gets its Certificate are unchanged (only
		// Routes changed): the running table, policies and obtain loops
		// stay as they are.
		if m.lc != nil {
			m.lc.apply(ctx, cfg, m.table.Load())
		}
		m.applied = cfg
		return nil
	}
	t, err := buildTable(cfg)
	if err != nil {
		return fmt.Errorf("applying TLS config: %w", err)
	}
	policies := acmePolicies(cfg)
	if needsListenerChallenge(policies) && !m.http01 && !m.tlsALPN {
		return errors.New("applying TLS config: ACME hosts configured but no challenge is usable (enable http-01 with listen.http or tls-alpn-01 with listen.https, or DNS-01 with tls.dns)")
	}
	for _, site := range cfg.Sites {
		if site.TLS.Key != "" && looseKeyMode(site.TLS.Key) {
			m.logger.WarnContext(ctx, "private key file is readable by group or others", "file", site.TLS.Key)
		}
	}
	if err := m.prepareOnDemand(t); err != nil {
		return fmt.Errorf("applying TLS config: %w", err)
	}
	if ps, ok := m.engine.(policySetter); ok {
		if err := ps.setPolicies(policies); err != nil {
			return fmt.Errorf("applying TLS config: %w", err)
		}
	}
	if e, ok := m.engine.(*certmagicEngine); ok {
		if b, _ := e.policies.budgetState(); b != nil {
			b.setShare(config.BudgetShareOf(cfg.OnDemand))
		}
	}
	m.table.Store(t)
	m.ca.retain(t.internalNames)
	m.engine.manage(t.acmeHosts)
	if m.lc != nil {
		m.lc.apply(ctx, cfg, t)
	}
	m.logger.DebugContext(ctx, "TLS config applied", "acme_hosts", t.acmeHosts, "internal_hosts", t.internalNames)
	m.applied = cfg
	return nil
}

// sameCertificates reports whether b asks for the Certificates a does, the
// same way: the same Sites' hosts and TLS in the same order, the same
// acme, on_demand, events and retire_after, and no file to read again
// (a Site's tls.cert, on_demand.allow_file), which every Apply rereads.
// It costs a few compares per Site, where building the table costs a
// host's normalisation, issuer and map entries.
func sameCertificates(a, b *config.Config) bool {
	if len(a.Sites) != len(b.Sites) || a.RetireAfter != b.RetireAfter ||
		b.OnDemand != nil && b.OnDemand.AllowFile != "" ||
		!reflect.DeepEqual(a.OnDemand, b.OnDemand) || !reflect.DeepEqual(a.ACME, b.ACME) || !reflect.DeepEqual(a.Events, b.Events) {
		return false
	}
	for i := range b.Sites {
		x, y := &a.Sites[i], &b.Sites[i]
		if y.TLS.Cert != "" || !slices.Equal(x.Hosts, y.Hosts) || !x.TLS.Equal(&y.TLS) {
			return false
		}
	}
	return true
}

// checkFrozen reports an error if cfg changes what only a restart can.
func (m *Manager) checkFrozen(cfg *config.Config) error {
	var changed []string
	if cfg.Storage != m.frozen.storage || !reflect.DeepEqual(cfg.StorageEtcd, m.frozen.etcd) {
		changed = append(changed, "storage")
	}
	if cfg.ACME.Engine != m.frozen.acme.Engine {
		changed = append(changed, "acme.engine")
	}
	if !cfg.ACME.SameButIssuerOrder(m.frozen.acme) && len(changed) == 0 {
		changed = append(changed, "acme")
	}
	if cfg.Listen != m.frozen.listen {
		changed = append(changed, "listen")
	}
	if len(changed) > 0 {
		return fmt.Errorf("applying TLS config: changing %s needs a restart", strings.Join(changed, ", "))
	}
	return nil
}

// TLSConfig returns the configuration of the HTTPS Listener: TLS 1.2 or
// later, ALPN h2, http/1.1 and acme-tls/1 (TLS-ALPN-01), and a
// GetCertificate that picks the certificate by SNI. A handshake for a host
// no Site lists, or whose SNI is not a host name, fails with the
// unrecognized_name alert; it never gets another Site's certificate and
// never starts issuance. Each failure is counted (CountHandshakeFailures).
// Each call returns a new *tls.Config.
func (m *Manager) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"h2", "http/1.1", acmeTLS1},
		GetCertificate: m.serveCertificate,
	}
}

// HTTPHandler returns the handler of the HTTP Listener: it answers ACME
// HTTP-01 challenges under /.well-known/acme-challenge/ and passes every
// other request to fallback. A nil fallback redirects GET and HEAD to
// HTTPS and answers anything else with 400, like autocert.
func (m *Manager) HTTPHandler(fallback http.Handler) http.Handler {
	if fallback == nil {
		fallback = http.HandlerFunc(m.redirectHTTPS)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if m.http01 && strings.HasPrefix(r.URL.Path, "/.well-known/acme-challenge/") && m.engine.handleHTTP(w, r) {
			return
		}
		fallback.ServeHTTP(w, r)
	})
}

// redirectHTTPS sends GET and HEAD to the same URL over HTTPS, on the
// port clients reach the HTTPS Listener on.
func (m *Manager) redirectHTTPS(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "Use HTTPS", http.StatusBadRequest)
		return
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if port := m.frozen.listen.AdvertisedHTTPSPort(); port != "" && port != "443" && port != "https" {
		host = net.JoinHostPort(host, port)
	} else if strings.Contains(host, ":") && !strings.HasPrefix(host, "[") {
		host = "[" + host + "]"
	}
	http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), http.StatusFound)
}

// Close stops obtaining and renewing certificates and waits for the
// background goroutines. An order in flight is cancelled, not waited for,
// so Close does not wait on a CA; with acme.engine autocert it may wait
// until autocert next polls the order (the CA's Retry-After, a second by
// default). Handshakes after Close still get the certificates already
// loaded. Close is idempotent.
func (m *Manager) Close() error {
	m.closeOnce.Do(func() {
		if m.watch != nil {
			m.watch.stop()
		}
		m.closeErr = m.engine.close()
		m.closeOnDemand()
		if m.lc != nil {
			m.lc.close()
		}
		m.ca.close()
		if m.closeStore != nil {
			if err := m.closeStore(); err != nil && m.closeErr == nil {
				m.closeErr = err
			}
		}
	})
	return m.closeErr
}
