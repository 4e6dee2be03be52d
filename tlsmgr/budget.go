package tlsmgr

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"net"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3/acme"
	"golang.org/x/net/publicsuffix"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// The rate-limit budget: every order, issued Certificate, failed
// validation and new account is recorded per Issuer in storage (so a fleet
// on etcd shares one budget), each limit as a sliding window of event
// times in one small record, pruned of what left the window at every
// write. Before an order is sent, the Issuer's limits (the CA's published
// ones, or the config's overrides) are checked: an order that would exceed
// one is not sent, the Issuer refuses with a [*BudgetError] and certmagic
// tries the next Issuer of the list; when none is left, the obtainer waits
// until the budget frees. On-demand issuance may use only on_demand.
// budget_share of each limit that names and accounts share, so a flood of
// custom names cannot spend what renewals need.

// Limit names one rate limit of a CA.
type Limit string

// The limits the budget keeps.
const (
	// LimitCertificatesPerDomain counts Certificates issued per
	// registered domain (public suffix list) in 7 days.
	LimitCertificatesPerDomain Limit = "certificates_per_domain"
	// LimitDuplicates counts Certificates issued per exact set of names
	// in 7 days.
	LimitDuplicates Limit = "duplicate_certificates"
	// LimitOrders counts new orders per ACME account in 3 hours.
	LimitOrders Limit = "orders_per_account"
	// LimitFailedValidations counts failed validations per host name per
	// account in an hour.
	LimitFailedValidations Limit = "failed_validations"
	// LimitAccounts counts new ACME accounts in 3 hours.
	LimitAccounts Limit = "new_accounts"
)

// limitSpec is how one Limit is counted.
type limitSpec struct {
	limit  Limit
	window time.Duration
	max    func(config.RateLimits) int
	// shared reports whether on-demand and configured hosts draw from the
	// same count, so that on-demand issuance gets only its share; the
	// other limits count per name, which is one or the other, or (new
	// accounts) what both use.
	shared bool
}

var limitSpecs = map[Limit]limitSpec{
	LimitCertificatesPerDomain: {LimitCertificatesPerDomain, config.WeekWindow, func(l config.RateLimits) int { return l.CertificatesPerDomainWeek }, true},
	LimitDuplicates:            {LimitDuplicates, config.WeekWindow, func(l config.RateLimits) int { return l.DuplicatesPerWeek }, false},
	LimitOrders:                {LimitOrders, config.ThreeHours, func(l config.RateLimits) int { return l.OrdersPer3Hours }, true},
	LimitFailedValidations:     {LimitFailedValidations, config.OneHourWindow, func(l config.RateLimits) int { return l.FailedValidationsPerHour }, false},
	LimitAccounts:              {LimitAccounts, config.ThreeHours, func(l config.RateLimits) int { return l.AccountsPer3Hours }, false},
}

// Limits returns every Limit the budget keeps, in a fixed order.
func Limits() []Limit {
	return []Limit{LimitCertificatesPerDomain, LimitDuplicates, LimitOrders, LimitFailedValidations, LimitAccounts}
}

// Window returns the length of l's sliding window.
func (l Limit) Window() time.Duration { return limitSpecs[l].window }

// budgetPrefix is the storage directory of the budget's records.
const budgetPrefix = "budget"

// maxWindowEntries bounds a record of a limit with no maximum (a CA
// without known limits), whose entries are kept only to be shown.
const maxWindowEntries = 1000

// BudgetError is an order gatehouse did not send because it would exceed a
// rate limit of the CA.
type BudgetError struct {
	// CA is the Issuer's ACME directory.
	CA string
	// Limit is the limit that is spent, Max its maximum in Window.
	Limit  Limit
	Max    int
	Window time.Duration
	// Key is what the limit counts: the registered domain, the names, the
	// account or the host.
	Key string
	// OnDemand reports whether the on-demand share of the limit is what
	// is spent.
	OnDemand bool
	// Until is when the budget has room for the order again.
	Until time.Time
}

func (e *BudgetError) Error() string {
	what := "rate limit"
	if e.OnDemand {
		what = "on-demand share of the rate limit"
	}
	return fmt.Sprintf("not ordering from %s: the %s %s (%d per %s) for %s is spent until %s",
		e.CA, what, e.Limit, e.Max, windowString(e.Window), e.Key, e.Until.UTC().Format(time.RFC3339))
}

// windowString writes a window as "7d", "3h" or "1h".
func windowString(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	if d%time.Hour == 0 {
		return fmt.Sprintf("%dh", d/time.Hour)
	}
	return d.String()
}

// budget records and checks the rate limits of every Issuer in storage.
type budget struct {
	storage certmagic.Storage
	logger  *slog.Logger
	now     func() time.Time
	// share is on_demand.budget_share (a math.Float64bits), set by Apply.
	share atomic.Uint64
	// mu serialises read-modify-write of records within this process;
	// the storage lock of each Issuer does across a fleet.
	mu sync.Mutex
	// nextSweep is when lines may next delete expired records (Unix
	// seconds): reads (each metrics scrape, dashboard load) should not
	// take the Issuer's lock and write each time.
	nextSweep atomic.Int64
}

// sweepEvery is how often reading the budget deletes the records whose
// events have all left their window.
const sweepEvery = time.Hour

func newBudget(storage certmagic.Storage, logger *slog.Logger, now func() time.Time) *budget {
	if now == nil {
		now = time.Now
	}
	b := &budget{storage: storage, logger: logger, now: now}
	b.setShare(config.DefaultBudgetShare)
	return b
}

func (b *budget) setShare(f float64) { b.share.Store(math.Float64bits(f)) }
func (b *budget) getShare() float64  { return math.Float64frombits(b.share.Load()) }

// window is the record of one limit and one key: the Unix seconds of its
// events in the window, oldest first, those of configured hosts and those
// of on-demand names apart.
type window struct {
	// Key and Account say what is counted, for listing.
	Key      string  `json:"key"`
	Account  string  `json:"account,omitempty"`
	Managed  []int64 `json:"m,omitempty"`
	OnDemand []int64 `json:"od,omitempty"`
}

// prune drops the events before since, and the oldest beyond
// maxWindowEntries in all.
func (w *window) prune(since int64) {
	cut := func(ts []int64) []int64 {
		i, _ := slices.BinarySearch(ts, since)
		return ts[i:]
	}
	w.Managed, w.OnDemand = cut(w.Managed), cut(w.OnDemand)
	for len(w.Managed)+len(w.OnDemand) > maxWindowEntries {
		if len(w.OnDemand) == 0 || len(w.Managed) > 0 && w.Managed[0] <= w.OnDemand[0] {
			w.Managed = w.Managed[1:]
		} else {
			w.OnDemand = w.OnDemand[1:]
		}
	}
}

// all returns every event time, oldest first.
func (w *window) all() []int64 {
	out := slices.Concat(w.Managed, w.OnDemand)
	slices.Sort(out)
	return out
}

// add inserts an event in order: instances of a fleet may record with
// clocks a little apart.
func (w *window) add(at int64, onDemand bool) {
	ts := &w.Managed
	if onDemand {
		ts = &w.OnDemand
	}
	i, _ := slices.BinarySearch(*ts, at)
	*ts = slices.Insert(*ts, i, at)
}

// room returns, for a limit of most events per win with events ts
// (oldest first), when n more fit: now if they do.
func room(ts []int64, most, n int, win time.Duration, now time.Time) (time.Time, bool) {
	if len(ts)+n <= most {
		return now, true
	}
	if most < n {
		return now.Add(win), false
	}
	// The oldest len(ts)+n-most events must leave the window first.
	return time.Unix(ts[len(ts)+n-most-1], 0).Add(win), false
}

// budgetAccount identifies an Issuer in the budget: its CA and account.
type budgetAccount struct {
	ca        string // the ACME directory URL
	issuerKey string // certmagic's storage name of the CA
	email     string
	limits    config.RateLimits
}

func newBudgetAccount(is config.Issuer) budgetAccount {
	return budgetAccount{
		ca:        is.CA,
		issuerKey: (&certmagic.ACMEIssuer{CA: is.CA}).IssuerKey(),
		email:     strings.TrimSpace(is.Email),
		limits:    config.LimitsFor(is.CA, is.Limits),
	}
}

// accountKey is what names the account in records.
func (a budgetAccount) accountKey() string { return cmp.Or(a.email, "(no email)") }

// recordKey returns the storage key of the record of limit l and key k.
func (a budgetAccount) recordKey(l Limit, k string) string {
	safe := certmagic.StorageKeys.Safe(k)
	if safe != k || len(safe) > 100 {
		// Names with characters Safe drops, and long name sets, get a
		// hash so that two keys never share a record.
		sum := sha256.Sum256([]byte(k))
		safe = hex.EncodeToString(sum[:12])
	}
	return path.Join(budgetPrefix, a.issuerKey, string(l), safe+".json")
}

func (a budgetAccount) lockName() string { return "budget_" + a.issuerKey }

// registeredDomain returns the registered domain of a name by the public
// suffix list: example.co.uk for www.example.co.uk; an IP address is its
// own.
func registeredDomain(name string) string {
	name = strings.TrimPrefix(strings.ToLower(strings.TrimSuffix(name, ".")), "*.")
	if net.ParseIP(name) != nil {
		return name
	}
	d, err := publicsuffix.EffectiveTLDPlusOne(name)
	if err != nil {
		return name // a public suffix itself
	}
	return d
}

// check is one limit to check and count for an order.
type check struct {
	spec    limitSpec
	key     string
	account string // set for per-account limits
	// count reports whether the order is recorded at once: an order, and
	// the Certificate it is to bring (released if it fails), so that
	// orders running at once cannot together exceed a limit; failed
	// validations are recorded when they fail.
	count bool
}

// orderChecks returns the limits an order for names from a draws on. A
// renewal (a's CA issued these names before) is exempt from the
// certificates-per-domain limit, as Let's Encrypt exempts it, so new names
// never starve renewals of theirs.
func orderChecks(a budgetAccount, names []string, renewal bool) []check {
	out := []check{{spec: limitSpecs[LimitOrders], key: a.accountKey(), account: a.accountKey(), count: true}}
	for _, d := range registeredDomains(names) {
		if !renewal {
			out = append(out, check{spec: limitSpecs[LimitCertificatesPerDomain], key: d, count: true})
		}
	}
	out = append(out, check{spec: limitSpecs[LimitDuplicates], key: namesKey(names), count: true})
	for _, n := range names {
		out = append(out, check{spec: limitSpecs[LimitFailedValidations], key: a.accountKey() + " " + n, account: a.accountKey()})
	}
	return out
}

// registeredDomains returns the registered domains of names, each once.
func registeredDomains(names []string) []string {
	var out []string
	for _, n := range names {
		if d := registeredDomain(n); !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return out
}

// namesKey is the key of an exact set of names.
func namesKey(names []string) string {
	s := slices.Clone(names)
	for i := range s {
		s[i] = strings.ToLower(s[i])
	}
	slices.Sort(s)
	return strings.Join(slices.Compact(s), ",")
}

// locked runs f under the Issuer's lock, in this process and in storage.
func (b *budget) locked(ctx context.Context, a budgetAccount, f func() error) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.storage.Lock(ctx, a.lockName()); err != nil {
		return fmt.Errorf("locking the rate-limit budget of %s: %w", a.ca, err)
	}
	defer func() {
		if err := b.storage.Unlock(context.WithoutCancel(ctx), a.lockName()); err != nil {
			b.logger.Warn("unlocking the rate-limit budget", "issuer", a.ca, "error", err)
		}
	}()
	return f()
}

func (b *budget) load(ctx context.Context, key string) (*window, error) {
	data, err := b.storage.Load(ctx, key)
	if errors.Is(err, fs.ErrNotExist) {
		return &window{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("loading rate-limit record %s: %w", key, err)
	}
	var w window
	if err := json.Unmarshal(data, &w); err != nil {
		// A damaged record counts as empty, and is rewritten whole.
		b.logger.Warn("rate-limit record is damaged; counting it as empty", "key", key, "error", err)
		return &window{}, nil
	}
	return &w, nil
}

func (b *budget) store(ctx context.Context, key string, w *window) error {
	data, err := json.Marshal(w)
	if err != nil {
		return fmt.Errorf("encoding rate-limit record %s: %w", key, err)
	}
	if err := b.storage.Store(ctx, key, data); err != nil {
		return fmt.Errorf("storing rate-limit record %s: %w", key, err)
	}
	return nil
}

// reserve checks an order for names against every limit of a and, if it
// fits, records it and the Certificate it is to bring, at the time it
// returns. It returns a
// *BudgetError for the first limit the order would exceed.
func (b *budget) reserve(ctx context.Context, a budgetAccount, names []string, renewal, onDemand bool) (int64, error) {
	now := b.now()
	share := b.getShare()
	return now.Unix(), b.locked(ctx, a, func() error {
		type loaded struct {
			recKey string
			w      *window
		}
		var toStore []loaded
		for _, c := range orderChecks(a, names, renewal) {
			most := c.spec.max(a.limits)
			if most <= 0 && !c.count {
				continue // no limit, nothing to record now
			}
			key := a.recordKey(c.spec.limit, c.key)
			w, err := b.load(ctx, key)
			if err != nil {
				return err
			}
			w.prune(now.Add(-c.spec.window).Unix())
			if most > 0 {
				if until, ok := room(w.all(), most, 1, c.spec.window, now); !ok {
					return &BudgetError{CA: a.ca, Limit: c.spec.limit, Max: most, Window: c.spec.window, Key: c.key, Until: until}
				}
				if onDemand && c.spec.shared {
					odMax := int(math.Floor(float64(most) * share))
					if until, ok := room(w.OnDemand, odMax, 1, c.spec.window, now); !ok {
						return &BudgetError{CA: a.ca, Limit: c.spec.limit, Max: odMax, Window: c.spec.window, Key: c.key, OnDemand: true, Until: until}
					}
				}
			}
			if c.count {
				w.Key, w.Account = c.key, c.account
				w.add(now.Unix(), onDemand)
				toStore = append(toStore, loaded{key, w})
			}
		}
		for _, l := range toStore {
			if err := b.store(ctx, l.recKey, l.w); err != nil {
				return err
			}
		}
		return nil
	})
}

// record adds one event of limit l for each key to a's records.
func (b *budget) record(ctx context.Context, a budgetAccount, l Limit, account string, keys []string, times int, onDemand bool) error {
	spec := limitSpecs[l]
	now := b.now()
	return b.locked(ctx, a, func() error {
		for _, k := range keys {
			key := a.recordKey(l, k)
			w, err := b.load(ctx, key)
			if err != nil {
				return err
			}
			w.prune(now.Add(-spec.window).Unix())
			w.Key, w.Account = k, account
			for range times {
				w.add(now.Unix(), onDemand)
			}
			if err := b.store(ctx, key, w); err != nil {
				return err
			}
		}
		return nil
	})
}

// release takes back the Certificate reserve counted at at for names,
// when the order failed: the records reserve's orderChecks counted it in
// (a renewal's not in certificates_per_domain), not the order itself.
func (b *budget) release(ctx context.Context, a budgetAccount, names []string, at int64, renewal, onDemand bool) error {
	var checks []check
	for _, c := range orderChecks(a, names, renewal) {
		if c.count && (c.spec.limit == LimitCertificatesPerDomain || c.spec.limit == LimitDuplicates) {
			checks = append(checks, c)
		}
	}
	return b.locked(ctx, a, func() error {
		for _, c := range checks {
			key := a.recordKey(c.spec.limit, c.key)
			w, err := b.load(ctx, key)
			if err != nil {
				return err
			}
			ts := &w.Managed
			if onDemand {
				ts = &w.OnDemand
			}
			i := slices.Index(*ts, at)
			if i < 0 {
				continue
			}
			*ts = slices.Delete(*ts, i, i+1)
			if err := b.store(ctx, key, w); err != nil {
				return err
			}
		}
		return nil
	})
}

// failed records n failed validations of each of names.
func (b *budget) failed(ctx context.Context, a budgetAccount, names []string, n int, onDemand bool) error {
	keys := make([]string, len(names))
	for i, name := range names {
		keys[i] = a.accountKey() + " " + name
	}
	return b.record(ctx, a, LimitFailedValidations, a.accountKey(), keys, n, onDemand)
}

// newAccount checks the new-accounts limit of a's CA and records one.
func (b *budget) newAccount(ctx context.Context, a budgetAccount) error {
	spec := limitSpecs[LimitAccounts]
	most := spec.max(a.limits)
	now := b.now()
	return b.locked(ctx, a, func() error {
		key := a.recordKey(LimitAccounts, "all")
		w, err := b.load(ctx, key)
		if err != nil {
			return err
		}
		w.prune(now.Add(-spec.window).Unix())
		if most > 0 {
			if until, ok := room(w.all(), most, 1, spec.window, now); !ok {
				return &BudgetError{CA: a.ca, Limit: LimitAccounts, Max: most, Window: spec.window, Key: "all accounts", Until: until}
			}
		}
		w.Key = "all accounts"
		w.add(now.Unix(), false)
		return b.store(ctx, key, w)
	})
}

// budgetIssuer is a certmagic ACME Issuer that draws from the budget: it
// refuses an order that would exceed a limit, so certmagic tries the next
// Issuer, and records what its orders spend. The Issuer it wraps may be
// shared by the on-demand Config, whose budgetIssuer has onDemand set.
//
// certmagic sends ARI's "replaces" only when an Issuer is an
// *certmagic.ACMEIssuer itself, so renewals through a budgetIssuer go
// without it.
type budgetIssuer struct {
	*certmagic.ACMEIssuer
	b        *budget
	account  budgetAccount
	onDemand bool
	// tries is how many orders one Issue may make: acmez orders again
	// with each further challenge type after a failed validation.
	tries int
}

var (
	_ certmagic.Issuer     = (*budgetIssuer)(nil)
	_ certmagic.PreChecker = (*budgetIssuer)(nil)
	_ certmagic.Revoker    = (*budgetIssuer)(nil)
)

// Issue implements certmagic.Issuer.
func (bi *budgetIssuer) Issue(ctx context.Context, csr *x509.CertificateRequest) (*certmagic.IssuedCertificate, error) {
	names := csrNames(csr)
	renewal := bi.renewal(ctx, names)
	at, err := bi.b.reserve(ctx, bi.account, names, renewal, bi.onDemand)
	reserved := err == nil
	if err != nil {
		var be *BudgetError
		if !errors.As(err, &be) {
			// The budget is advisory: a storage that cannot record it
			// must not stop renewals.
			bi.b.logger.WarnContext(ctx, "rate-limit budget not checked; ordering anyway", "issuer", bi.account.ca, "names", names, "error", err)
		} else {
			bi.b.logger.WarnContext(ctx, "order not sent: rate-limit budget spent; trying the next issuer or waiting",
				"issuer", be.CA, "limit", string(be.Limit), "key", be.Key, "max", be.Max, "window", windowString(be.Window),
				"on_demand", be.OnDemand, "until", be.Until.UTC().Format(time.RFC3339), "names", names)
			if bi.onDemand {
				// A handshake waits for this: no retries.
				return nil, certmagic.ErrNoRetry{Err: be}
			}
			return nil, be
		}
	}
	ic, err := bi.ACMEIssuer.Issue(ctx, csr)
	if err == nil {
		return ic, nil
	}
	// Recording outlives a cancelled order.
	rctx := context.WithoutCancel(ctx)
	var rerr error
	if reserved {
		rerr = bi.b.release(rctx, bi.account, names, at, renewal, bi.onDemand)
	}
	if failedValidation(err) {
		// acmez ordered once per challenge type it tried, each failing.
		rerr = cmp.Or(bi.b.failed(rctx, bi.account, names, bi.tries, bi.onDemand), rerr)
		if bi.tries > 1 {
			rerr = cmp.Or(bi.b.record(rctx, bi.account, LimitOrders, bi.account.accountKey(), []string{bi.account.accountKey()}, bi.tries-1, bi.onDemand), rerr)
		}
	}
	if rerr != nil {
		bi.b.logger.WarnContext(ctx, "recording in the rate-limit budget", "issuer", bi.account.ca, "names", names, "error", rerr)
	}
	return ic, err
}

// renewal reports whether this CA's Certificate for names is in storage,
// so an order for them renews it.
func (bi *budgetIssuer) renewal(ctx context.Context, names []string) bool {
	for _, n := range names {
		if !bi.b.storage.Exists(ctx, certmagic.StorageKeys.SiteCert(bi.IssuerKey(), n)) {
			return false
		}
	}
	return len(names) > 0
}

// csrNames returns the names a CSR asks for.
func csrNames(csr *x509.CertificateRequest) []string {
	names := slices.Clone(csr.DNSNames)
	for _, ip := range csr.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 && csr.Subject.CommonName != "" {
		names = append(names, csr.Subject.CommonName)
	}
	return names
}

// failedValidation reports whether err is an order that failed because a
// challenge did not validate.
func failedValidation(err error) bool {
	var p acme.Problem
	if !errors.As(err, &p) {
		var pp *acme.Problem
		if !errors.As(err, &pp) || pp == nil {
			return false
		}
		p = *pp
	}
	if _, ok := p.Resource.(acme.Authorization); ok {
		return true
	}
	switch p.Type {
	case acme.ProblemTypeUnauthorized, acme.ProblemTypeConnection, acme.ProblemTypeDNS, acme.ProblemTypeTLS,
		acme.ProblemTypeIncorrectResponse, acme.ProblemTypeCAA:
		return true
	}
	return false
}

// unwrapIssuer returns the ACME Issuer behind iss, or nil.
func unwrapIssuer(iss certmagic.Issuer) *certmagic.ACMEIssuer {
	switch i := iss.(type) {
	case *certmagic.ACMEIssuer:
		return i
	case *budgetIssuer:
		return i.ACMEIssuer
	}
	return nil
}

// BudgetLine is what is left of one rate limit of one Issuer, for one key.
type BudgetLine struct {
	// Issuer is the CA's ACME directory.
	Issuer string `json:"issuer"`
	// Limit is the limit, Window the length of its sliding window ("7d").
	Limit  Limit  `json:"limit"`
	Window string `json:"window"`
	// Key is what the limit counts: the registered domain, the names, the
	// account, or "account host".
	Key string `json:"key"`
	// Max is the limit's maximum in the window; 0 when the CA has none
	// gatehouse knows (the events are counted all the same).
	Max int `json:"max"`
	// Used counts the events in the window, OnDemandUsed those of
	// on-demand names among them.
	Used         int `json:"used"`
	OnDemandUsed int `json:"on_demand_used,omitempty"`
	// Remaining is Max minus Used (never below 0); -1 without a Max.
	Remaining int `json:"remaining"`
	// OnDemandRemaining is what on-demand issuance may still use of a
	// limit it shares with the configured hosts; -1 without a Max or when
	// the limit is not shared.
	OnDemandRemaining int `json:"on_demand_remaining"`
	// FreesAt is when the oldest event leaves the window; zero when there
	// is none.
	FreesAt time.Time `json:"frees_at,omitzero"`
}

// lines returns the budget of every account of accounts: one line per
// limit with events in its window, and the account-wide limits always.
// Records whose events have all left their window are deleted, at most
// once per sweepEvery.
func (b *budget) lines(ctx context.Context, accounts []budgetAccount) ([]BudgetLine, error) {
	now := b.now()
	share := b.getShare()
	var out []BudgetLine
	byKey := map[string]budgetAccount{}
	for _, a := range accounts {
		if _, dup := byKey[a.issuerKey]; !dup {
			byKey[a.issuerKey] = a
		}
	}
	line := func(a budgetAccount, l Limit, key string, w *window) BudgetLine {
		spec := limitSpecs[l]
		most := spec.max(a.limits)
		bl := BudgetLine{Issuer: a.ca, Limit: l, Window: windowString(spec.window), Key: key, Max: most,
			Used: len(w.Managed) + len(w.OnDemand), OnDemandUsed: len(w.OnDemand), Remaining: -1, OnDemandRemaining: -1}
		if most > 0 {
			bl.Remaining = max(0, most-bl.Used)
			if spec.shared {
				od := int(math.Floor(float64(most) * share))
				bl.OnDemandRemaining = max(0, min(od-bl.OnDemandUsed, bl.Remaining))
			}
		}
		if all := w.all(); len(all) > 0 {
			bl.FreesAt = time.Unix(all[0], 0).Add(spec.window).UTC()
		}
		return bl
	}
	type seenKey struct {
		issuer string
		limit  Limit
		key    string
	}
	seen := map[seenKey]bool{}
	var expired []string
	keys, err := b.storage.List(ctx, budgetPrefix, true)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("listing the rate-limit budget: %w", err)
	}
	slices.Sort(keys)
	for _, k := range keys {
		parts := strings.Split(k, "/")
		if len(parts) != 4 || !strings.HasSuffix(k, ".json") {
			continue
		}
		a, ok := byKey[parts[1]]
		spec, known := limitSpecs[Limit(parts[2])]
		if !ok || !known {
			continue // an Issuer no longer configured
		}
		w, err := b.load(ctx, k)
		if err != nil {
			continue // deleted in between
		}
		w.prune(now.Add(-spec.window).Unix())
		if len(w.Managed)+len(w.OnDemand) == 0 {
			expired = append(expired, k)
			continue
		}
		out = append(out, line(a, spec.limit, w.Key, w))
		seen[seenKey{a.ca, spec.limit, w.Key}] = true
	}
	for _, a := range accounts {
		for _, l := range []Limit{LimitOrders, LimitAccounts} {
			key := a.accountKey()
			if l == LimitAccounts {
				key = "all accounts"
			}
			if !seen[seenKey{a.ca, l, key}] {
				seen[seenKey{a.ca, l, key}] = true
				out = append(out, line(a, l, key, &window{}))
			}
		}
	}
	if at := now.Unix(); len(expired) > 0 && at >= b.nextSweep.Load() {
		b.nextSweep.Store(at + int64(sweepEvery/time.Second))
		b.sweep(ctx, expired)
	}
	slices.SortStableFunc(out, func(x, y BudgetLine) int {
		return cmp.Or(cmp.Compare(x.Issuer, y.Issuer), cmp.Compare(slices.Index(Limits(), x.Limit), slices.Index(Limits(), y.Limit)), cmp.Compare(x.Key, y.Key))
	})
	return out, nil
}

// sweep deletes the records of keys if they are still empty, so records of
// names ordered long ago do not pile up.
func (b *budget) sweep(ctx context.Context, keys []string) {
	now := b.now()
	for _, k := range keys {
		spec := limitSpecs[Limit(strings.Split(k, "/")[2])]
		a := budgetAccount{issuerKey: strings.Split(k, "/")[1]}
		_ = b.locked(ctx, a, func() error {
			w, err := b.load(ctx, k)
			if err != nil {
				return err
			}
			w.prune(now.Add(-spec.window).Unix())
			if len(w.Managed)+len(w.OnDemand) == 0 {
				if err := b.storage.Delete(ctx, k); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return err
				}
			}
			return nil
		})
	}
}

// budgetAccounts returns the accounts of every ACME Issuer cfg uses.
func budgetAccounts(cfg *config.Config) []budgetAccount {
	var out []budgetAccount
	seen := map[string]bool{}
	add := func(list []config.Issuer) {
		for _, is := range list {
			a := newBudgetAccount(is)
			if k := a.issuerKey + " " + a.email; !seen[k] {
				seen[k] = true
				out = append(out, a)
			}
		}
	}
	add(globalIssuers(cfg.ACME))
	for _, s := range cfg.Sites {
		if len(s.TLS.Issuers) > 0 {
			add(inherit(s.TLS.Issuers, cfg.ACME))
		}
	}
	return out
}

// Budget returns what is left of the rate limits of every ACME Issuer of
// the applied config, as recorded in storage (shared by a fleet), sorted
// by Issuer, limit and key. It is empty with acme.engine autocert, which
// keeps no budget.
func (m *Manager) Budget(ctx context.Context) ([]BudgetLine, error) {
	e, ok := m.engine.(*certmagicEngine)
	if !ok {
		return nil, nil
	}
	b, accounts := e.policies.budgetState()
	if b == nil {
		return nil, nil
	}
	return b.lines(ctx, accounts)
}

// Budget reads what is left of the rate limits of the config's ACME
// Issuers from its storage, as [Manager.Budget] does.
func (o *Offline) Budget(ctx context.Context) ([]BudgetLine, error) {
	return budgetOffline(ctx, o.Config)
}

// budgetOffline reads the budget from the storage cfg names, without a
// running gatehouse. cfg must be loaded (validated and defaulted).
func budgetOffline(ctx context.Context, cfg *config.Config) ([]BudgetLine, error) {
	store, closeStore, err := openStorage(cfg, nil)
	if err != nil {
		return nil, err
	}
	defer closeStore()
	b := newBudget(store, slog.New(slog.DiscardHandler), nil)
	b.setShare(config.BudgetShareOf(cfg.OnDemand))
	return b.lines(ctx, budgetAccounts(cfg))
}
