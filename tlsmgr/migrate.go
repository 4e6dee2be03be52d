package tlsmgr

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// DefaultMigrateRate is the pace of a migration that names none: orders
// per minute, at most; slower when half the target's orders limit spread
// over its window is less (a migration must leave room for renewals).
const DefaultMigrateRate = 10

// migrateInFlight bounds the orders of a migration in flight at once: a
// pace faster than the CA answers would otherwise pile them up.
const migrateInFlight = 8

// MigrateOptions says which Certificates a migration re-issues, from which
// issuer, and how fast.
type MigrateOptions struct {
	// To is the issuer to re-issue from: a CA name ("letsencrypt") or
	// directory URL, which must be among the issuers of the config
	// (acme.issuers, or a Site's tls.issuers). Required.
	To string `json:"to"`
	// From, when set, keeps only the Certificates whose current issuer is
	// this one (a name or directory URL).
	From string `json:"from,omitempty"`
	// Hosts, when set, keeps only the hosts matching one of its
	// comma-separated patterns ([path.Match] syntax: "*.example.com").
	Hosts string `json:"hosts,omitempty"`
	// Rate is the pace in orders per minute; zero means
	// [DefaultMigrateRate] or, slower, half the target's orders limit
	// spread over its window.
	Rate float64 `json:"rate,omitempty"`
	// DryRun reports the plan and orders nothing.
	DryRun bool `json:"dry_run,omitempty"`
	// RevokeOld revokes each old certificate at its CA, with reason
	// superseded, once every replacement is in place.
	RevokeOld bool `json:"revoke_old,omitempty"`
}

// MigrationStep is what happened to one Certificate of a migration.
type MigrationStep string

// The steps of a migration, as [MigrationEvent] reports them.
const (
	// MigrationPlanned: it is to be re-issued (a dry run reports this).
	MigrationPlanned MigrationStep = "planned"
	// MigrationSkipped: it is left as it is; Reason says why.
	MigrationSkipped MigrationStep = "skipped"
	// MigrationMigrated: its replacement is obtained and served.
	MigrationMigrated MigrationStep = "migrated"
	// MigrationRevoked: the old certificate is revoked at its CA.
	MigrationRevoked MigrationStep = "revoked"
	// MigrationFailed: re-issuing or revoking failed; Reason is the
	// error. Running the migration again retries it.
	MigrationFailed MigrationStep = "failed"
)

// MigrationEvent reports one step of a migration as it happens.
type MigrationEvent struct {
	// Host is the Certificate's host, and Step what happened to it.
	Host string        `json:"host"`
	Step MigrationStep `json:"step"`
	// From is the directory URL of the old certificate's issuer.
	From string `json:"from,omitempty"`
	// OldSerial and Serial are the old certificate's and the
	// replacement's, in lowercase hexadecimal.
	OldSerial string `json:"old_serial,omitempty"`
	Serial    string `json:"serial,omitempty"`
	// Reason says why a host is skipped, or what failed.
	Reason string `json:"reason,omitempty"`
	// Resumed is set when an earlier, interrupted run did this step.
	Resumed bool `json:"resumed,omitempty"`
	// Done counts the Certificates migrated so far (earlier runs
	// included) of Total to migrate.
	Done  int `json:"done"`
	Total int `json:"total"`
}

// MigrationResult sums up a migration (or its plan, for a dry run).
type MigrationResult struct {
	// ID names the migration's progress in storage (migrations/ID/): the
	// same To, From and Hosts resume it.
	ID string `json:"id"`
	// To is the target issuer's directory URL.
	To string `json:"to"`
	// Total counts the Certificates to migrate; Migrated those in place
	// (Resumed of them by an earlier run), Revoked the old ones revoked,
	// Skipped those left alone and Failed those that failed.
	Total    int `json:"total"`
	Migrated int `json:"migrated"`
	Resumed  int `json:"resumed"`
	Revoked  int `json:"revoked"`
	Skipped  int `json:"skipped"`
	Failed   int `json:"failed"`
	// Rate is the pace used, in orders per minute, and Estimate how long
	// the orders left take at that pace.
	Rate     float64       `json:"rate"`
	Estimate time.Duration `json:"estimate"`
	DryRun   bool          `json:"dry_run,omitempty"`
	// Budget, in a dry run, is what is left of the target's rate limits,
	// to set against the orders the plan needs.
	Budget []BudgetLine `json:"budget,omitempty"`
}

// ErrMigrateOptions is wrapped by the errors of options a migration cannot
// run with (no or an unknown target, a bad pattern or rate); the admin
// endpoint answers it with 400.
var ErrMigrateOptions = errors.New("invalid migration")

// ErrMigrationRunning says another run of the same migration (another
// command, or another instance of the fleet) holds its lock.
var ErrMigrationRunning = errors.New("this migration is already running (another gatehouse migrate, or another instance of the fleet)")

// ParseMigrateRate parses a pace such as "10/min", "1/s", "300/3h" or
// "10" (per minute) into orders per minute.
func ParseMigrateRate(s string) (float64, error) {
	num, per, ok := strings.Cut(strings.TrimSpace(s), "/")
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%w: rate %q: want a positive number of orders per unit, as 10/min", ErrMigrateOptions, s)
	}
	if !ok {
		return n, nil
	}
	unit := map[string]time.Duration{"s": time.Second, "sec": time.Second, "m": time.Minute, "min": time.Minute, "h": time.Hour, "hour": time.Hour, "d": 24 * time.Hour, "day": 24 * time.Hour}
	var d time.Duration
	if u, ok := unit[per]; ok {
		d = u
	} else if d, err = time.ParseDuration(per); err != nil || d <= 0 {
		return 0, fmt.Errorf("%w: rate %q: unknown unit %q (want s, min, h, day or a duration such as 3h)", ErrMigrateOptions, s, per)
	}
	return n * float64(time.Minute) / float64(d), nil
}

// matchHosts reports whether host matches one of the comma-separated
// patterns; an empty list matches every host.
func matchHosts(patterns, host string) bool {
	if patterns == "" {
		return true
	}
	for p := range strings.SplitSeq(patterns, ",") {
		if ok, _ := path.Match(normalizeHost(strings.TrimSpace(p)), host); ok {
			return true
		}
	}
	return false
}

// sameCA reports whether two directory URLs (or CA names) are the same CA.
func sameCA(a, b string) bool {
	norm := func(s string) string { return strings.TrimSuffix(config.CADirectory(strings.TrimSpace(s)), "/") }
	return a != "" && norm(a) == norm(b)
}

// migration is one run of a migration, live on a Manager or offline on a
// storage.
type migration struct {
	e     *certmagicEngine
	store certmagic.Storage
	inv   *inventory
	// hosts are the configured ACME hosts.
	hosts []string
	// serve loads each replacement into the engine's Cache (a live run).
	serve bool
	// lc, when set, receives the revoked events.
	lc       *lifecycle
	opts     MigrateOptions
	to, from string
	id       string
	progress func(MigrationEvent)
	logger   *slog.Logger

	// mu guards the fields below and the calls of progress.
	mu     sync.Mutex
	res    MigrationResult
	byHost map[string]*migrationItem
}

// migrationItem is the progress of one host, kept in storage at
// migrations/ID/hosts/HOST.json.
type migrationItem struct {
	Host string        `json:"host"`
	Step MigrationStep `json:"step"`
	// OldIssuerKey, OldCA and OldSerial describe the certificate being
	// replaced, noted before the order: once the replacement is in
	// place, it is what --revoke-old revokes.
	OldIssuerKey string    `json:"old_issuer_key"`
	OldCA        string    `json:"old_ca,omitempty"`
	OldSerial    string    `json:"old_serial,omitempty"`
	OldNotBefore time.Time `json:"old_not_before"`
	Serial       string    `json:"serial,omitempty"`
	Error        string    `json:"error,omitempty"`
	Updated      time.Time `json:"updated"`

	// target is the issuer the host re-issues from (not stored).
	target certmagic.Issuer
	// resumed is set for a step an earlier run did (not stored).
	resumed bool
}

// migrationHeader is migrations/ID/migration.json: what the migration is,
// and whether it finished (a finished one starts afresh when run again).
type migrationHeader struct {
	To       string    `json:"to"`
	From     string    `json:"from,omitempty"`
	Hosts    string    `json:"hosts,omitempty"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished,omitzero"`
}

const migrationsPrefix = "migrations"

func (mg *migration) headerKey() string { return path.Join(migrationsPrefix, mg.id, "migration.json") }
func (mg *migration) itemsPrefix() string {
	return path.Join(migrationsPrefix, mg.id, "hosts")
}
func (mg *migration) itemKey(host string) string {
	return path.Join(mg.itemsPrefix(), certmagic.StorageKeys.Safe(host)+".json")
}

// migrationID names a migration by what it moves: the same command run
// again finds its progress.
func migrationID(to, from, hosts string) string {
	sum := sha256.Sum256([]byte(to + "\n" + from + "\n" + hosts))
	return hex.EncodeToString(sum[:6])
}

// newMigration checks opts and resolves the target.
func newMigration(e *certmagicEngine, store certmagic.Storage, hosts []string, opts MigrateOptions, progress func(MigrationEvent), logger *slog.Logger) (*migration, error) {
	if strings.TrimSpace(opts.To) == "" {
		return nil, fmt.Errorf("%w: no target issuer (--to)", ErrMigrateOptions)
	}
	if opts.Rate < 0 {
		return nil, fmt.Errorf("%w: negative rate", ErrMigrateOptions)
	}
	for p := range strings.SplitSeq(opts.Hosts, ",") {
		if _, err := path.Match(strings.TrimSpace(p), ""); err != nil {
			return nil, fmt.Errorf("%w: host pattern %q: %w", ErrMigrateOptions, p, err)
		}
	}
	if progress == nil {
		progress = func(MigrationEvent) {}
	}
	mg := &migration{
		e: e, store: store, inv: &inventory{storage: store}, hosts: slices.Sorted(slices.Values(hosts)),
		opts: opts, progress: progress, logger: logger,
		to:     strings.TrimSuffix(config.CADirectory(strings.TrimSpace(opts.To)), "/"),
		byHost: map[string]*migrationItem{},
	}
	if opts.From != "" {
		mg.from = strings.TrimSuffix(config.CADirectory(strings.TrimSpace(opts.From)), "/")
	}
	known := false
	for _, h := range mg.hosts {
		if mg.targetFor(h) != nil {
			known = true
			break
		}
	}
	if !known {
		return nil, fmt.Errorf("%w: %s is not among the issuers of any ACME host (acme.issuers, or a Site's tls.issuers): add it to the config first", ErrMigrateOptions, opts.To)
	}
	mg.id = migrationID(mg.to, mg.from, opts.Hosts)
	mg.res = MigrationResult{ID: mg.id, To: mg.to, Rate: cmp.Or(opts.Rate, DefaultMigrateRate), DryRun: opts.DryRun}
	return mg, nil
}

// targetFor returns the issuer of host's issuance policy that is the
// target (as the policy holds it: orders through it draw from the
// rate-limit budget), or nil.
func (mg *migration) targetFor(host string) certmagic.Issuer {
	for _, iss := range mg.e.configFor(host).Issuers {
		if a := unwrapIssuer(iss); a != nil && sameCA(a.CA, mg.to) {
			return iss
		}
	}
	return nil
}

// issuerByKey returns the configured ACME issuer with this storage key,
// looking at host's policy first, then every policy's.
func (mg *migration) issuerByKey(host, key string) certmagic.Issuer {
	for _, iss := range mg.e.configFor(host).Issuers {
		if a := unwrapIssuer(iss); a != nil && a.IssuerKey() == key {
			return iss
		}
	}
	mg.e.policies.mu.Lock()
	defer mg.e.policies.mu.Unlock()
	for _, a := range mg.e.policies.issuers {
		if a.IssuerKey() == key {
			return a
		}
	}
	return nil
}

// emit reports ev with the counts; mg.mu must be held.
func (mg *migration) emit(ev MigrationEvent) {
	ev.Done, ev.Total = mg.res.Migrated, mg.res.Total
	mg.progress(ev)
}

// run plans the migration, resuming the progress in storage, and unless
// it is a dry run orders the replacements at the pace, then revokes the
// old certificates if asked.
func (mg *migration) run(ctx context.Context) (MigrationResult, error) {
	if !mg.opts.DryRun {
		unlock, err := mg.lock(ctx)
		if err != nil {
			return mg.res, err
		}
		defer unlock()
	}
	hdr, err := mg.loadProgress(ctx)
	if err != nil {
		return mg.res, err
	}
	pending, err := mg.plan(ctx)
	if err != nil {
		return mg.res, err
	}
	budget := mg.targetBudget(ctx)
	if mg.opts.Rate == 0 {
		mg.res.Rate = min(mg.res.Rate, budgetRate(budget))
	}
	interval := time.Duration(float64(time.Minute) / mg.res.Rate)
	mg.res.Estimate = time.Duration(max(len(pending)-1, 0)) * interval
	if mg.opts.DryRun {
		mg.res.Budget = budget
		return mg.res, nil
	}
	if err := mg.storeJSON(ctx, mg.headerKey(), hdr); err != nil {
		return mg.res, err
	}
	for _, it := range pending {
		if err := mg.save(ctx, it); err != nil {
			return mg.res, err
		}
	}
	if mg.serve {
		// After a restart, a host migrated by the interrupted run may
		// serve the old certificate: certmagic loads the newer of the
		// two, and within one second they are equal.
		for _, h := range mg.hosts {
			if it := mg.byHost[h]; it != nil && it.resumed && it.target != nil {
				if err := mg.e.serveFrom(ctx, mg.targetConfig(it), h); err != nil {
					mg.logger.Warn("serving the migrated certificate", "host", h, "error", err)
				}
			}
		}
	}

	var wg sync.WaitGroup
	slots := make(chan struct{}, migrateInFlight)
	timer := time.NewTimer(0)
	defer timer.Stop()
orders:
	for i, it := range pending {
		if i > 0 {
			timer.Reset(interval)
			select {
			case <-ctx.Done():
				break orders
			case <-timer.C:
			}
		}
		select {
		case <-ctx.Done():
			break orders
		case slots <- struct{}{}:
		}
		wg.Go(func() {
			defer func() { <-slots }()
			mg.migrateOne(ctx, it)
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return mg.res, fmt.Errorf("migration interrupted after %d of %d (run it again to resume): %w", mg.res.Migrated, mg.res.Total, err)
	}
	if mg.opts.RevokeOld && mg.res.Failed == 0 {
		// Only once every replacement is in place: until then a fleet's
		// instances may still serve an old certificate.
		for _, h := range mg.hosts {
			if it := mg.byHost[h]; it != nil && it.Step == MigrationMigrated {
				if err := mg.revokeOld(ctx, it); err != nil {
					return mg.res, err
				}
			}
		}
	}
	if mg.res.Failed == 0 {
		hdr.Finished = time.Now().UTC()
		if err := mg.storeJSON(ctx, mg.headerKey(), hdr); err != nil {
			return mg.res, err
		}
	}
	return mg.res, nil
}

// targetBudget returns what is left of the target's rate limits; nil
// when there is no budget or it cannot be read (a dry run still shows
// its plan).
func (mg *migration) targetBudget(ctx context.Context) []BudgetLine {
	b, accounts := mg.e.policies.budgetState()
	if b == nil {
		return nil
	}
	accounts = slices.DeleteFunc(accounts, func(a budgetAccount) bool { return !sameCA(a.ca, mg.to) })
	lines, err := b.lines(ctx, accounts)
	if err != nil {
		mg.logger.WarnContext(ctx, "migrate: reading the target's rate-limit budget", "issuer", mg.to, "error", err)
		return nil
	}
	return lines
}

// budgetRate is the default pace the target's budget allows, in orders
// per minute: half its orders limit spread over the limit's window, so the
// other half stays for renewals; DefaultMigrateRate without such a limit.
func budgetRate(lines []BudgetLine) float64 {
	rate := float64(DefaultMigrateRate)
	spec := limitSpecs[LimitOrders]
	for _, l := range lines {
		if l.Limit == LimitOrders && l.Max > 0 {
			rate = min(rate, float64(l.Max)/2/spec.window.Minutes())
		}
	}
	return rate
}

// lock takes the migration's lock in storage, so two runs (two commands,
// or two instances of a fleet) never order the same replacements.
func (mg *migration) lock(ctx context.Context) (func(), error) {
	name := "migrate_" + mg.id
	if tl, ok := mg.store.(certmagic.TryLocker); ok {
		got, err := tl.TryLock(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("taking the migration's lock: %w", err)
		}
		if !got {
			return nil, ErrMigrationRunning
		}
	} else if err := mg.store.Lock(ctx, name); err != nil {
		return nil, fmt.Errorf("taking the migration's lock: %w", err)
	}
	return func() {
		if err := mg.store.Unlock(context.WithoutCancel(ctx), name); err != nil {
			mg.logger.Warn("releasing the migration's lock", "error", err)
		}
	}, nil
}

// loadProgress reads what earlier runs did into mg.byHost. A finished
// migration is forgotten: running it again starts afresh.
func (mg *migration) loadProgress(ctx context.Context) (migrationHeader, error) {
	hdr := migrationHeader{To: mg.to, From: mg.from, Hosts: mg.opts.Hosts, Started: time.Now().UTC()}
	b, err := mg.store.Load(ctx, mg.headerKey())
	if errors.Is(err, fs.ErrNotExist) {
		return hdr, nil
	}
	if err != nil {
		return hdr, fmt.Errorf("loading the migration's progress: %w", err)
	}
	var old migrationHeader
	if err := json.Unmarshal(b, &old); err != nil {
		return hdr, fmt.Errorf("decoding the migration's progress: %w", err)
	}
	if !old.Finished.IsZero() {
		if !mg.opts.DryRun {
			if err := mg.store.Delete(ctx, mg.itemsPrefix()); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return hdr, fmt.Errorf("clearing the finished migration's progress: %w", err)
			}
		}
		return hdr, nil
	}
	hdr.Started = old.Started
	keys, err := mg.store.List(ctx, mg.itemsPrefix(), false)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return hdr, fmt.Errorf("listing the migration's progress: %w", err)
	}
	for _, k := range keys {
		b, err := mg.store.Load(ctx, k)
		if err != nil {
			continue // deleted in between
		}
		var it migrationItem
		if json.Unmarshal(b, &it) == nil && it.Host != "" {
			mg.byHost[it.Host] = &it
		}
	}
	return hdr, nil
}

func (mg *migration) storeJSON(ctx context.Context, key string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding the migration's progress: %w", err)
	}
	if err := mg.store.Store(ctx, key, b); err != nil {
		return fmt.Errorf("storing the migration's progress: %w", err)
	}
	return nil
}

// save stores the progress of it.
func (mg *migration) save(ctx context.Context, it *migrationItem) error {
	it.Updated = time.Now().UTC()
	return mg.storeJSON(context.WithoutCancel(ctx), mg.itemKey(it.Host), it)
}

// plan reports every host the filters keep, planned, skipped or done by
// an earlier run, and returns those left to order, in host order.
func (mg *migration) plan(ctx context.Context) ([]*migrationItem, error) {
	recs, err := mg.inv.list(ctx)
	if err != nil {
		return nil, err
	}
	mg.mu.Lock()
	defer mg.mu.Unlock()
	var pending []*migrationItem
	var events []MigrationEvent
	for _, host := range mg.hosts {
		if !matchHosts(mg.opts.Hosts, host) {
			continue
		}
		if it := mg.byHost[host]; it != nil && (it.Step == MigrationMigrated || it.Step == MigrationRevoked) {
			it.resumed, it.target = true, mg.targetFor(host)
			mg.res.Total++
			mg.res.Migrated++
			mg.res.Resumed++
			if it.Step == MigrationRevoked {
				mg.res.Revoked++
			}
			events = append(events, MigrationEvent{Host: host, Step: it.Step, From: it.OldCA, OldSerial: it.OldSerial, Serial: it.Serial, Resumed: true})
			continue
		}
		skip := func(reason string) {
			mg.res.Skipped++
			events = append(events, MigrationEvent{Host: host, Step: MigrationSkipped, Reason: reason})
		}
		target := mg.targetFor(host)
		if target == nil {
			skip("its issuers (acme.issuers, or its Site's tls.issuers) do not include " + mg.opts.To)
			continue
		}
		it := mg.byHost[host]
		if it == nil {
			// Noted before the first order: once the replacement is in
			// place, the current certificate is the target's.
			r, ok := recs[host]
			cur := mg.inv.loadACME(ctx, r.IssuerKey, host)
			if cur == nil {
				skip("no certificate yet")
				continue
			}
			oldCA := mg.e.caFor(host, cur.issuerKey)
			if oldCA == "" && ok {
				oldCA = r.CA
			}
			if cur.issuerKey == target.IssuerKey() {
				skip("already from " + mg.opts.To)
				continue
			}
			if mg.from != "" && !sameCA(oldCA, mg.from) {
				skip("issued by " + cmp.Or(oldCA, cur.issuerKey) + ", not " + mg.opts.From)
				continue
			}
			it = &migrationItem{
				Host: host, Step: MigrationPlanned, OldIssuerKey: cur.issuerKey, OldCA: oldCA,
				OldSerial: cur.chain[0].SerialNumber.Text(16), OldNotBefore: cur.chain[0].NotBefore,
			}
			mg.byHost[host] = it
		}
		it.target = target
		mg.res.Total++
		pending = append(pending, it)
		events = append(events, MigrationEvent{Host: host, Step: MigrationPlanned, From: it.OldCA, OldSerial: it.OldSerial, Reason: it.Error})
	}
	for _, ev := range events {
		mg.emit(ev)
	}
	return pending, nil
}

// migrateOne obtains the replacement of it from the target issuer and,
// live, serves it in place of the old one.
func (mg *migration) migrateOne(ctx context.Context, it *migrationItem) {
	serial, err := mg.replace(ctx, it)
	mg.mu.Lock()
	defer mg.mu.Unlock()
	if err != nil && ctx.Err() != nil {
		return // interrupted: still to do, for the next run
	}
	ev := MigrationEvent{Host: it.Host, From: it.OldCA, OldSerial: it.OldSerial}
	if err != nil {
		it.Step, it.Error = MigrationFailed, err.Error()
		mg.res.Failed++
		ev.Step, ev.Reason = MigrationFailed, err.Error()
		mg.logger.Warn("migrating certificate", "host", it.Host, "to", mg.to, "error", err)
	} else {
		it.Step, it.Serial, it.Error = MigrationMigrated, serial, ""
		mg.res.Migrated++
		ev.Step, ev.Serial = MigrationMigrated, serial
		mg.logger.Info("certificate migrated", "host", it.Host, "from", it.OldCA, "to", mg.to, "serial", serial)
	}
	if err := mg.save(ctx, it); err != nil {
		mg.logger.Warn("storing the migration's progress", "host", it.Host, "error", err)
	}
	mg.emit(ev)
}

// replace obtains and serves the replacement of it, returning its serial.
func (mg *migration) replace(ctx context.Context, it *migrationItem) (string, error) {
	cfg := mg.targetConfig(it)
	key := it.target.IssuerKey()
	fresh := func() *acmeFacts {
		f := mg.inv.loadACMEUnder(ctx, key, it.Host)
		if f != nil && f.chain[0].NotBefore.Before(it.OldNotBefore) {
			return nil // a stale copy, older than the certificate it is to replace
		}
		return f
	}
	if err := cfg.ObtainCertSync(ctx, it.Host); err != nil {
		return "", fmt.Errorf("obtaining from %s: %w", mg.to, err)
	}
	f := fresh()
	if f == nil {
		// The target kept an older certificate of this host (an earlier
		// migration's): drop it and order a new one.
		if err := mg.store.Delete(ctx, certmagic.StorageKeys.CertsSitePrefix(key, it.Host)); err != nil {
			return "", fmt.Errorf("deleting the stale certificate of %s: %w", mg.to, err)
		}
		if err := cfg.ObtainCertSync(ctx, it.Host); err != nil {
			return "", fmt.Errorf("obtaining from %s: %w", mg.to, err)
		}
		if f = fresh(); f == nil {
			return "", fmt.Errorf("obtaining from %s: no certificate in storage after the order", mg.to)
		}
	}
	if mg.serve {
		if err := mg.e.serveFrom(ctx, cfg, it.Host); err != nil {
			return "", err
		}
	}
	return f.chain[0].SerialNumber.Text(16), nil
}

// targetConfig returns a Config of it's host whose only issuer is the
// target: obtaining through it orders from the target whatever the
// policy's order, and is a no-op when the target already holds the
// replacement (a run interrupted after the order); loading through it
// picks the target's certificate, which then replaces the old one in the
// Cache. The old one serves until then.
func (mg *migration) targetConfig(it *migrationItem) *certmagic.Config {
	hostCfg := mg.e.configFor(it.Host)
	return certmagic.New(mg.e.cache, certmagic.Config{
		Storage:   hostCfg.Storage,
		Logger:    hostCfg.Logger,
		OnEvent:   hostCfg.OnEvent,
		KeySource: hostCfg.KeySource,
		Issuers:   []certmagic.Issuer{it.target},
	})
}

// serveFrom loads the certificate of name that cfg's issuers hold into the
// Cache and then drops the ones it replaces, so a handshake always finds
// one.
func (e *certmagicEngine) serveFrom(ctx context.Context, cfg *certmagic.Config, name string) error {
	var old []string
	for _, c := range e.cache.AllMatchingCertificates(name) {
		if slices.Contains(c.Names, name) {
			old = append(old, c.Hash())
		}
	}
	cur, err := cfg.CacheManagedCertificate(ctx, name)
	if err != nil {
		return fmt.Errorf("loading the new certificate: %w", err)
	}
	old = slices.DeleteFunc(old, func(h string) bool { return h == cur.Hash() })
	e.cache.Remove(old)
	return nil
}

// revokeOld revokes the certificate it replaced, with reason superseded,
// at the issuer that holds it, and deletes it from storage.
func (mg *migration) revokeOld(ctx context.Context, it *migrationItem) error {
	const superseded = 4 // RFC 5280 section 5.3.1
	err := func() error {
		iss := mg.issuerByKey(it.Host, it.OldIssuerKey)
		if iss == nil {
			return fmt.Errorf("the old issuer (%s) is not in the config any more; revoke it at that CA by hand", cmp.Or(it.OldCA, it.OldIssuerKey))
		}
		before := mg.inv.loadACMEUnder(ctx, it.OldIssuerKey, it.Host)
		found, err := mg.e.revokeStored(ctx, mg.store, iss, it.Host, superseded)
		if err != nil {
			return err
		}
		if found && mg.lc != nil && before != nil {
			mg.lc.emit(Event{Type: EventRevoked, Names: []string{it.Host}, Time: time.Now().UTC(), NotAfter: before.chain[0].NotAfter, Issuer: cmp.Or(it.OldCA, unwrapIssuer(iss).CA)})
		}
		return nil
	}()
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("migration interrupted while revoking the old certificates (run it again to resume): %w", ctx.Err())
	}
	mg.mu.Lock()
	defer mg.mu.Unlock()
	ev := MigrationEvent{Host: it.Host, From: it.OldCA, OldSerial: it.OldSerial, Serial: it.Serial}
	if err != nil {
		// The replacement serves; a CA that cannot revoke (it may be
		// why the migration runs) leaves the old one valid until it
		// expires.
		it.Error = "revoking the old certificate: " + err.Error()
		mg.res.Failed++
		ev.Step, ev.Reason = MigrationFailed, it.Error
	} else {
		it.Step, it.Error = MigrationRevoked, ""
		mg.res.Revoked++
		ev.Step = MigrationRevoked
	}
	if err := mg.save(ctx, it); err != nil {
		mg.logger.Warn("storing the migration's progress", "host", it.Host, "error", err)
	}
	mg.emit(ev)
	return nil
}

// Migrate re-issues the ACME Certificates opts selects from the issuer
// opts.To, at opts.Rate orders a minute, and serves each replacement
// without a restart; the old certificate serves until then. Progress is
// kept in storage (migrations/ID/), so an interrupted migration (ctx
// cancelled, or a restart) resumes where it stopped when run again with
// the same To, From and Hosts, on this instance or another sharing the
// storage. progress, when set, gets every step as it happens, one call at
// a time. A Certificate that fails is counted and reported, and the rest
// go on; running again retries it. On-demand Certificates are not
// migrated (they are ordered from their Site's issuers as handshakes ask).
func (m *Manager) Migrate(ctx context.Context, opts MigrateOptions, progress func(MigrationEvent)) (MigrationResult, error) {
	e, ok := m.engine.(*certmagicEngine)
	if !ok {
		return MigrationResult{}, fmt.Errorf("migrating certificates: not supported by acme.engine %s; use certmagic, the default", m.frozen.acme.Engine)
	}
	mg, err := newMigration(e, m.inventory().storage, m.table.Load().acmeHosts, opts, progress, m.logger)
	if err != nil {
		return MigrationResult{}, fmt.Errorf("migrating certificates: %w", err)
	}
	mg.serve, mg.lc = true, m.lc
	return mg.run(ctx)
}

// MigrateOffline is [Manager.Migrate] without a running gatehouse, on the
// storage and with the account of cfg: the CA's challenges are answered on
// the config's Listener addresses, which must be free. The replacements
// are served when gatehouse next starts (it serves the newest certificate
// of a host). The events configured in cfg are delivered before it
// returns.
func MigrateOffline(ctx context.Context, cfg *config.Config, opts MigrateOptions, progress func(MigrationEvent), logger *slog.Logger) (MigrationResult, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ACME.Engine == config.EngineAutocert {
		return MigrationResult{}, fmt.Errorf("migrating certificates: not supported by acme.engine %s; use certmagic, the default", cfg.ACME.Engine)
	}
	t, err := buildTable(cfg)
	if err != nil {
		return MigrationResult{}, fmt.Errorf("reading the configured certificates: %w", err)
	}
	e, lc, closeAll, err := openOffline(cfg, t, logger)
	if err != nil {
		return MigrationResult{}, err
	}
	defer closeAll()
	mg, err := newMigration(e, e.policies.storage, t.acmeHosts, opts, progress, logger)
	if err != nil {
		return MigrationResult{}, fmt.Errorf("migrating certificates: %w", err)
	}
	mg.lc = lc
	return mg.run(ctx)
}

// IssuerOrderChange is where the config lists a migration's target issuer
// after another one, so renewals would still try that one first.
type IssuerOrderChange struct {
	// Path is the list's key path ("acme.issuers", "sites[1].tls.issuers")
	// and Index where the target stands in it.
	Path  string
	Index int
	// Where is the target's entry, as FILE:LINE:COL: path: message, and
	// First the entry now first.
	Where, First config.Problem
}

// IssuerOrder returns the issuer lists of cfg that hold the issuer to
// (a name or directory URL) but not first, each once.
func IssuerOrder(cfg *config.Config, to string) []IssuerOrderChange {
	var out []IssuerOrderChange
	check := func(listPath string, list []config.Issuer) {
		for i, is := range list {
			if !sameCA(is.CA, to) {
				continue
			}
			if i > 0 {
				out = append(out, IssuerOrderChange{
					Path: listPath, Index: i,
					Where: cfg.Problemf(fmt.Sprintf("%s[%d].ca", listPath, i), "move this issuer (%s) first", is.CA),
					First: cfg.Problemf(fmt.Sprintf("%s[0].ca", listPath), "now first (%s)", list[0].CA),
				})
			}
			return
		}
	}
	check("acme.issuers", cfg.ACME.Issuers)
	for i, s := range cfg.Sites {
		check(fmt.Sprintf("sites[%d].tls.issuers", i), s.TLS.Issuers)
	}
	return out
}

// PutIssuerFirst edits the config file of cfg so that each issuer list
// [IssuerOrder] returns holds the issuer to first, and renewals try it
// first. It returns the changes made, also those made before an error.
func PutIssuerFirst(cfg *config.Config, to string) ([]IssuerOrderChange, error) {
	var done []IssuerOrderChange
	for _, ch := range IssuerOrder(cfg, to) {
		if err := config.MoveIssuerFirst(cfg.File, ch.Path, ch.Index); err != nil {
			return done, fmt.Errorf("writing the config: %w (change %s by hand)", err, ch.Where.Error())
		}
		done = append(done, ch)
	}
	return done, nil
}
