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
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"golang.org/x/time/rate"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// On-demand TLS: a Site with tls.on_demand gets no Certificate at start;
// the first handshake for a name that matches the Site's hosts and that
// the on_demand policy allows obtains one from ACME, through a certmagic
// Config of its own whose DecisionFunc is the policy. certmagic serialises
// loading and obtaining per name, so concurrent handshakes for one new name
// make one order. The policy is compiled with the host table (buildTable),
// so a reload swaps both at once; the certmagic Cache, the rate limiter and
// the ask client live across reloads in onDemand.

const (
	// onDemandCacheCapacity bounds how many on-demand Certificates are
	// kept in memory; beyond it certmagic evicts one at random, which is
	// then loaded again from storage at its next handshake.
	onDemandCacheCapacity = 10000
	// askTimeout bounds one question to on_demand.ask.
	askTimeout = 5 * time.Second
	// askConcurrency bounds the questions to ask in flight at once; when
	// they are all busy, further names are denied (not remembered), so a
	// flood of made-up names cannot queue up behind a slow ask service.
	askConcurrency = 8
	// deniedTTL is how long a denied name is denied without asking again.
	deniedTTL = 30 * time.Second
	// deniedMax bounds the negative cache.
	deniedMax = 10000
	// allowFileCheckInterval is the most often allow_file is stat'ed.
	allowFileCheckInterval = time.Second
	// askWarnEvery is the most often a failing ask is logged.
	askWarnEvery = 10 * time.Second
	// onDemandHandshakeTimeout bounds a handshake that waits for an
	// order; certmagic gives up obtaining after 3 minutes too.
	onDemandHandshakeTimeout = 3 * time.Minute
)

var (
	// errOnDemandDenied is the policy's "no" for a name.
	errOnDemandDenied = errors.New("name not allowed by the on_demand policy")
	// errOnDemandRate is returned when on_demand.rate has no token left.
	errOnDemandRate = errors.New("on_demand.rate exhausted; not ordering a new certificate now")
	// errAskBusy is returned when every ask slot is in use.
	errAskBusy = errors.New("too many on_demand.ask questions in flight")
)

// onDemand obtains Certificates at handshake time for on-demand Sites. It
// is created by the first Apply that has an on-demand Site and lives until
// Close.
type onDemand struct {
	logger *slog.Logger
	// table is the Manager's host table; decide reads the current one.
	table *atomic.Pointer[table]
	cache *certmagic.Cache
	cfg   *certmagic.Config
	// forward passes certmagic events on to the ACME engine's handler,
	// which logs them and reports them as Certificate events.
	forward func(ctx context.Context, event string, data map[string]any) error
	// limiter bounds new orders; Apply updates its rate from
	// on_demand.rate, keeping the tokens already spent.
	limiter *rate.Limiter
	ask     *http.Client
	// askSlots holds one token per ask question in flight.
	askSlots chan struct{}
	now      func() time.Time
	// unsubscribe ends certificateEvent's subscription.
	unsubscribe func()
	// askWarned is when a failed ask was last logged (Unix nanoseconds),
	// and askQuiet counts the failures not logged since: a flood of names
	// while ask is down logs one line every askWarnEvery.
	askWarned atomic.Int64
	askQuiet  atomic.Int64
}

// newOnDemand creates the on-demand side of a certmagic engine: its own
// Cache and Config, sharing the engine's storage and the Issuers of
// acme.issuers (or acme.ca), so the same ACME accounts are used. It uses
// them without acme.dns: the names are not known in advance, so their DNS
// zones are not ours to write; HTTP-01 and TLS-ALPN-01 are.
func newOnDemand(e *certmagicEngine, tbl *atomic.Pointer[table], logger *slog.Logger) (*onDemand, error) {
	a := e.policies.settings.acme
	base, err := e.policies.get(&issuancePolicy{Issuers: globalIssuers(a), KeyType: a.KeyType})
	if err != nil {
		return nil, fmt.Errorf("building the on-demand issuers: %w", err)
	}
	o := &onDemand{
		logger:   logger,
		table:    tbl,
		forward:  e.onEvent,
		limiter:  rate.NewLimiter(rate.Every(config.DefaultOnDemandPer), config.DefaultOnDemandBurst),
		askSlots: make(chan struct{}, askConcurrency),
		now:      time.Now,
	}
	o.ask = &http.Client{
		Timeout: askTimeout,
		// Any redirect is an answer other than 2xx, so it denies.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport: &http.Transport{
			// No proxy from the environment: ask is a local policy
			// service, and a proxy would see every name asked about.
			Proxy:                 nil,
			DialContext:           (&net.Dialer{Timeout: askTimeout}).DialContext,
			TLSHandshakeTimeout:   askTimeout,
			ResponseHeaderTimeout: askTimeout,
			MaxIdleConnsPerHost:   askConcurrency,
			IdleConnTimeout:       time.Minute,
		},
	}
	// Renewals of on-demand Certificates that fail outside the CA are
	// reported as the engine's own are.
	zl := newWatchingZapLogger(logger, e.renewalJobFailed)
	o.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) { return o.cfg, nil },
		Capacity:         onDemandCacheCapacity,
		Logger:           zl,
	})
	o.cfg = certmagic.New(o.cache, certmagic.Config{
		Storage:   base.Storage,
		KeySource: base.KeySource,
		Issuers:   onDemandIssuers(base.Issuers),
		Logger:    zl,
		OnEvent:   o.onEvent,
		// Only life-cycle events; never one per handshake.
		ShouldEmitFunc: func(event string) bool { return strings.HasPrefix(event, "cert_") },
		OnDemand:       &certmagic.OnDemandConfig{DecisionFunc: o.decide},
	})
	return o, nil
}

// onDemandIssuers returns issuers drawing on the on-demand share of the
// budget: the same ACME Issuers (and so accounts) as the configured hosts.
func onDemandIssuers(issuers []certmagic.Issuer) []certmagic.Issuer {
	out := make([]certmagic.Issuer, len(issuers))
	for i, iss := range issuers {
		if bi, ok := iss.(*budgetIssuer); ok {
			od := *bi
			od.onDemand = true
			iss = &od
		}
		out[i] = iss
	}
	return out
}

// setRate makes r the rate of new orders.
func (o *onDemand) setRate(r *config.Rate) {
	burst, per := config.DefaultOnDemandBurst, config.DefaultOnDemandPer
	if r != nil && r.Burst > 0 {
		burst = r.Burst
	}
	if r != nil && r.Per > 0 {
		per = r.Per
	}
	o.limiter.SetLimit(rate.Every(per))
	o.limiter.SetBurst(burst)
}

// getCertificate serves the Certificate of name, an SNI name that an
// on-demand Site matches: from memory, from storage, or obtained now if
// the policy allows it. An allowed name's first handshake waits for the
// order (a few seconds with a healthy CA).
func (o *onDemand) getCertificate(hello *tls.ClientHelloInfo, name string) (*tls.Certificate, error) {
	if name == "" {
		return nil, fmt.Errorf("getting on-demand certificate: %w", errNoSNI)
	}
	ctx := hello.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	if o.mayWait(name) {
		// Extend before certmagic can make this handshake wait, for its
		// own decision and order or for another handshake's: certmagic
		// queues the others behind the one that decides before it calls
		// decide, so a mark set there came too late for some of them,
		// which got their Certificate past the deadline and could not
		// send it (the client saw EOF).
		extendHandshake(hello.Conn)
	}
	return o.cfg.GetCertificateWithContext(ctx, withServerName(hello, name))
}

// mayWait reports whether a handshake for name may have to wait for ask,
// storage or an order: whether the on-demand Cache has no unexpired
// Certificate for it (certmagic renews an expired one during the
// handshake).
func (o *onDemand) mayWait(name string) bool {
	for _, c := range o.cache.AllMatchingCertificates(name) {
		if !c.Expired() {
			return false
		}
	}
	return true
}

// errNoSNI refuses on-demand issuance for a hello without a server name.
var errNoSNI = errors.New("client sent no server name")

// decide is certmagic's DecisionFunc: it runs when a name is in no cache,
// before storage is read or a CA is asked. The name must still belong to an
// on-demand Site of the current table, and the policy must allow it.
func (o *onDemand) decide(ctx context.Context, name string) error {
	t := o.table.Load()
	if src := t.lookup(name); src == nil || src.kind != sourceOnDemand || t.onDemand == nil {
		return errOnDemandDenied
	}
	// This handshake now leads the loading or ordering of name. It was
	// given the longer deadline already unless its Certificate left the
	// Cache after getCertificate looked.
	if hello, _ := ctx.Value(certmagic.ClientHelloInfoCtxKey).(*tls.ClientHelloInfo); hello != nil {
		extendHandshake(hello.Conn)
	}
	err := t.onDemand.allow(ctx, o, name)
	if err != nil {
		o.logger.DebugContext(ctx, "on-demand certificate denied", "host", name, "error", err)
		return err
	}
	// With on_demand.rate spent, an allowed name can only be loaded from
	// storage. Saying no here spares certmagic's storage check and lock
	// files for every name of a flood under an allowed wildcard; the
	// token itself is taken in onEvent, when an order really starts.
	if o.limiter.Tokens() < 1 && !o.stored(ctx, name) {
		return errOnDemandRate
	}
	return nil
}

// stored reports whether storage has a Certificate for name from one of
// the on-demand Issuers.
func (o *onDemand) stored(ctx context.Context, name string) bool {
	for _, iss := range o.cfg.Issuers {
		if o.cfg.Storage.Exists(ctx, certmagic.StorageKeys.SiteCert(iss.IssuerKey(), name)) {
			return true
		}
	}
	return false
}

// extendHandshake moves the deadline of a connection whose handshake waits
// for ask, storage or an order to onDemandHandshakeTimeout from now. The
// HTTPS Listener's handshake deadline (timeouts.read_header) is meant for
// slow clients, and would otherwise cut off the first handshake of a name
// while ask and the CA answer. net/http clears the deadline once the
// handshake is done. A denied name's handshake ends at the decision, so
// the longer deadline only lasts for allowed names (bounded by
// on_demand.rate) and for ask (bounded by askTimeout and askConcurrency).
func extendHandshake(c net.Conn) {
	if c != nil {
		_ = c.SetDeadline(time.Now().Add(onDemandHandshakeTimeout))
	}
}

// onEvent spends a token of on_demand.rate before every new order (not
// renewals) and passes every event on. A refusal is final for this
// handshake (ErrNoRetry), so certmagic does not hold the handshake open
// to retry.
func (o *onDemand) onEvent(ctx context.Context, event string, data map[string]any) error {
	data["on_demand"] = true
	if event == "cert_obtaining" {
		if renewal, _ := data["renewal"].(bool); !renewal && !o.limiter.Allow() {
			host, _ := data["identifier"].(string)
			o.logger.WarnContext(ctx, "on-demand certificate not ordered: rate limit reached", "host", host)
			return certmagic.ErrNoRetry{Err: errOnDemandRate}
		}
	}
	if o.forward != nil {
		return o.forward(ctx, event, data)
	}
	return nil
}

// askName asks on_demand.ask about name: nil only for a 2xx answer.
func (o *onDemand) askName(ctx context.Context, base *url.URL, name string) error {
	select {
	case o.askSlots <- struct{}{}:
	default:
		return errAskBusy
	}
	defer func() { <-o.askSlots }()
	u := *base
	q := "domain=" + url.QueryEscape(name)
	if u.RawQuery != "" {
		u.RawQuery += "&" + q
	} else {
		u.RawQuery = q
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("asking about %s: %w", name, err)
	}
	req.Header.Set("User-Agent", "gatehouse on-demand")
	resp, err := o.ask.Do(req)
	if err != nil {
		o.warnAsk(ctx, name, err)
		return fmt.Errorf("asking about %s: %w", name, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("asking about %s: status %d: %w", name, resp.StatusCode, errOnDemandDenied)
	}
	return nil
}

// certificateEvent keeps the on-demand Certificates in memory in step with
// storage when one is renewed, replaced or revoked outside a handshake
// (gatehouse certs renew and revoke work through the ACME engine), so the
// new one is served at once.
func (o *onDemand) certificateEvent(ev Event) {
	switch ev.Type {
	case EventObtained, EventRenewed, EventRevoked:
	default:
		return
	}
	t := o.table.Load()
	for _, name := range ev.Names {
		if t.isOnDemand(name) {
			o.reload(context.Background(), name)
		}
	}
}

// reload replaces the Certificate of name in the on-demand Cache by the
// one in storage, or drops it if storage has none. A name not in memory is
// left alone: its next handshake loads it.
func (o *onDemand) reload(ctx context.Context, name string) {
	var old []string
	for _, c := range o.cache.AllMatchingCertificates(name) {
		if slices.Contains(c.Names, name) {
			old = append(old, c.Hash())
		}
	}
	if len(old) == 0 {
		return
	}
	cur, err := o.cfg.CacheManagedCertificate(ctx, name)
	if err != nil {
		o.logger.WarnContext(ctx, "reloading on-demand certificate; dropping it from memory", "host", name, "error", err)
	} else {
		old = slices.DeleteFunc(old, func(h string) bool { return h == cur.Hash() })
	}
	o.cache.Remove(old)
}

// warnAsk logs a failed question to ask, at most once per askWarnEvery.
func (o *onDemand) warnAsk(ctx context.Context, name string, err error) {
	now := o.now().UnixNano()
	last := o.askWarned.Load()
	if now-last < int64(askWarnEvery) || !o.askWarned.CompareAndSwap(last, now) {
		o.askQuiet.Add(1)
		return
	}
	o.logger.WarnContext(ctx, "on_demand.ask failed; denying", "host", name, "error", err, "failures_not_logged", o.askQuiet.Swap(0))
}

// close stops the on-demand Cache's maintenance goroutine.
func (o *onDemand) close() {
	if o.unsubscribe != nil {
		o.unsubscribe()
	}
	o.cache.Stop()
	o.ask.CloseIdleConnections()
}

// onDemandPolicy is the compiled on_demand block of one config. It is part
// of the table, so it is swapped whole by Apply.
type onDemandPolicy struct {
	static *allowSet   // on_demand.allow
	file   *allowFile  // on_demand.allow_file, or nil
	ask    *url.URL    // on_demand.ask, or nil
	rate   config.Rate // on_demand.rate
	denied *negCache
}

// compileOnDemand compiles the policy of cfg into t if some Site of t is
// on demand; a config without one needs no policy.
func (t *table) compileOnDemand(cfg *config.Config) error {
	if !t.hasOnDemand {
		return nil
	}
	od := cfg.OnDemand
	if od == nil || (len(od.Allow) == 0 && od.AllowFile == "" && od.Ask == "") {
		return errors.New("on_demand: a site has tls.on_demand but no allow, allow_file or ask says which names may get a certificate")
	}
	p := &onDemandPolicy{denied: newNegCache(deniedTTL, deniedMax)}
	var err error
	if p.static, err = compileAllowSet(od.Allow); err != nil {
		return fmt.Errorf("on_demand.allow: %w", err)
	}
	if od.AllowFile != "" {
		if p.file, err = loadAllowFile(od.AllowFile); err != nil {
			return fmt.Errorf("on_demand.allow_file: %w", err)
		}
	}
	if od.Ask != "" {
		u, err := url.Parse(od.Ask)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("on_demand.ask: %q is not an http:// or https:// URL", od.Ask)
		}
		p.ask = u
	}
	if od.Rate != nil {
		p.rate = *od.Rate
	}
	t.onDemand = p
	return nil
}

// allow reports (as nil) whether the policy allows name: allow, then
// allow_file, then ask. Denials are remembered for deniedTTL; a changed
// allow_file forgets them.
func (p *onDemandPolicy) allow(ctx context.Context, o *onDemand, name string) error {
	now := o.now()
	if p.file != nil && p.file.refresh(now, o.logger) {
		p.denied.clear()
	}
	if p.denied.has(name, now) {
		return fmt.Errorf("%w (denied recently)", errOnDemandDenied)
	}
	if p.static.match(name) || (p.file != nil && p.file.match(name)) {
		return nil
	}
	if p.ask != nil {
		err := o.askName(ctx, p.ask, name)
		if err == nil {
			return nil
		}
		if errors.Is(err, errAskBusy) || ctx.Err() != nil {
			// Not a verdict on the name: deny now, ask again next time.
			return err
		}
		p.denied.add(name, now)
		return err
	}
	p.denied.add(name, now)
	return errOnDemandDenied
}

// allowSet matches names against compiled allow patterns.
type allowSet struct {
	exact map[string]struct{}
	// wild holds the parents of one-label wildcards ("example.com" for
	// "*.example.com").
	wild map[string]struct{}
	res  []*regexp.Regexp
}

// compileAllowSet compiles normalised allow patterns.
func compileAllowSet(pats []string) (*allowSet, error) {
	s := &allowSet{exact: map[string]struct{}{}, wild: map[string]struct{}{}}
	for _, p := range pats {
		p = config.NormalizeAllowPattern(p)
		if msg := config.CheckAllowPattern(p); msg != "" {
			return nil, errors.New(msg)
		}
		switch {
		case strings.HasPrefix(p, "~"):
			re, err := config.CompileAllowRegexp(p[1:])
			if err != nil {
				return nil, err
			}
			s.res = append(s.res, re)
		case strings.HasPrefix(p, "*."):
			s.wild[p[2:]] = struct{}{}
		default:
			s.exact[p] = struct{}{}
		}
	}
	return s, nil
}

// match reports whether name, normalised, is allowed by s.
func (s *allowSet) match(name string) bool {
	if s == nil {
		return false
	}
	if _, ok := s.exact[name]; ok {
		return true
	}
	if i := strings.IndexByte(name, '.'); i > 0 {
		if _, ok := s.wild[name[i+1:]]; ok {
			return true
		}
	}
	for _, re := range s.res {
		if re.MatchString(name) {
			return true
		}
	}
	return false
}

// allowFile is on_demand.allow_file, read again when its modification time
// or size changes, checked at most once per allowFileCheckInterval so a
// flood of handshakes costs at most one stat a second.
type allowFile struct {
	path string
	set  atomic.Pointer[allowSet]
	// next is when the file may be stat'ed again (Unix nanoseconds).
	next atomic.Int64

	// mu guards modTime and size, and serialises reloads.
	mu      sync.Mutex
	modTime time.Time
	size    int64
}

// loadAllowFile reads path; any bad line is an error here (at start or
// reload of the config), unlike in refresh.
func loadAllowFile(path string) (*allowFile, error) {
	f := &allowFile{path: path}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	set, err := readAllowFile(path)
	if err != nil {
		return nil, err
	}
	f.set.Store(set)
	f.modTime, f.size = fi.ModTime(), fi.Size()
	f.next.Store(time.Now().Add(allowFileCheckInterval).UnixNano())
	return f, nil
}

func readAllowFile(path string) (*allowSet, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pats, errs := config.ParseAllowFile(data)
	if len(errs) > 0 {
		msgs := make([]string, len(errs))
		for i, e := range errs {
			msgs[i] = fmt.Sprintf("%s:%d: %s", path, e.Line, e.Msg)
		}
		return nil, errors.New(strings.Join(msgs, "; "))
	}
	return compileAllowSet(pats)
}

// refresh reads the file again if it changed since the last look, and
// reports whether the allowed set changed. A file that cannot be read or
// has a bad line is logged, and the last good set stays.
func (f *allowFile) refresh(now time.Time, logger *slog.Logger) bool {
	next := f.next.Load()
	if now.UnixNano() < next || !f.next.CompareAndSwap(next, now.Add(allowFileCheckInterval).UnixNano()) {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	fi, err := os.Stat(f.path)
	if err != nil {
		if f.size != -1 {
			logger.Warn("reading on_demand.allow_file failed; keeping the last good list", "file", f.path, "error", err)
			f.size = -1
		}
		return false
	}
	if fi.ModTime().Equal(f.modTime) && fi.Size() == f.size {
		return false
	}
	f.modTime, f.size = fi.ModTime(), fi.Size()
	set, err := readAllowFile(f.path)
	if err != nil {
		logger.Warn("on_demand.allow_file has problems; keeping the last good list", "file", f.path, "error", err)
		return false
	}
	f.set.Store(set)
	logger.Info("on_demand.allow_file reloaded", "file", f.path, "names", len(set.exact), "wildcards", len(set.wild), "regexps", len(set.res))
	return true
}

func (f *allowFile) match(name string) bool { return f.set.Load().match(name) }

// negCache remembers denied names for a while, bounded in size.
type negCache struct {
	ttl time.Duration
	max int
	// mu guards until.
	mu    sync.Mutex
	until map[string]time.Time // name → end of its denial
}

func newNegCache(ttl time.Duration, max int) *negCache {
	return &negCache{ttl: ttl, max: max, until: map[string]time.Time{}}
}

func (c *negCache) has(name string, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	end, ok := c.until[name]
	if ok && !now.Before(end) {
		delete(c.until, name)
		return false
	}
	return ok
}

// add remembers name. When full, expired names go first; if none has
// expired, an arbitrary quarter is dropped (map order is random), so the
// cache stays bounded under a flood while most recent denials survive.
func (c *negCache) add(name string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.until) >= c.max {
		for n, end := range c.until {
			if !now.Before(end) {
				delete(c.until, n)
			}
		}
		for n := range c.until {
			if len(c.until) < c.max*3/4 {
				break
			}
			delete(c.until, n)
		}
	}
	c.until[name] = now.Add(c.ttl)
}

func (c *negCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.until)
}

func (c *negCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.until)
}

// prepareOnDemand readies on-demand issuance for t before Apply swaps it
// in: it creates the on-demand engine at the first on-demand Site, and
// sets the rate limit. It fails, changing nothing, when the ACME engine is
// not certmagic.
func (m *Manager) prepareOnDemand(t *table) error {
	if t.onDemand == nil {
		return nil
	}
	o := m.onDemand.Load()
	if o == nil {
		e, ok := m.engine.(*certmagicEngine)
		if !ok {
			return errors.New("on-demand TLS needs acme.engine certmagic")
		}
		var err error
		if o, err = newOnDemand(e, &m.table, m.logger); err != nil {
			return err
		}
		o.unsubscribe = m.Subscribe(o.certificateEvent)
		m.onDemand.Store(o)
	}
	o.setRate(&t.onDemand.rate)
	return nil
}

// onDemandCertificate serves a hello for an on-demand Site.
func (m *Manager) onDemandCertificate(hello *tls.ClientHelloInfo, name string) (*tls.Certificate, error) {
	o := m.onDemand.Load()
	if o == nil {
		return nil, fmt.Errorf("getting certificate for %q: on-demand TLS is not ready", name)
	}
	return o.getCertificate(hello, name)
}

// closeOnDemand stops on-demand issuance, if it was started.
func (m *Manager) closeOnDemand() {
	if o := m.onDemand.Load(); o != nil {
		o.close()
	}
}

// servesOnDemand reports whether name belongs to an on-demand Site of the
// current config (as an exact host, or through "*" or a wildcard), so its
// Certificate, if any, is an on-demand one.
func (m *Manager) servesOnDemand(name string) bool {
	name = normalizeHost(name)
	return name != "" && m.table.Load().isOnDemand(name)
}

// isOnDemand reports whether name, normalised, belongs to an on-demand
// Site of t.
func (t *table) isOnDemand(name string) bool {
	src := t.lookup(name)
	return src != nil && src.kind == sourceOnDemand
}
