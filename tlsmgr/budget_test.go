package tlsmgr

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr/etcdtest"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr/pebbletest"
)

// TestBudgetWindows checks the sliding windows on file storage with a
// clock of the test's own: a limit refuses the order that would exceed it
// and says until when, frees as events leave the window, gives on-demand
// issuance its share only, survives a new budget on the same storage (a
// restart), releases a failed order's Certificate, and lists what is left.
func TestBudgetWindows(t *testing.T) {
	ctx := t.Context()
	store := &certmagic.FileStorage{Path: t.TempDir()}
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	b := newBudget(store, slog.New(slog.DiscardHandler), clock)
	a := newBudgetAccount(config.Issuer{CA: "https://ca.test/dir", Email: "ops@example.org",
		Limits: &config.RateLimits{OrdersPer3Hours: 4, CertificatesPerDomainWeek: 3, DuplicatesPerWeek: 2}})

	for i, name := range []string{"a.example.co.uk", "b.example.co.uk", "c.example.co.uk"} {
		if _, err := b.reserve(ctx, a, []string{name}, false, false); err != nil {
			t.Fatalf("order %d for %s: %v", i+1, name, err)
		}
		now = now.Add(time.Minute)
	}
	// The fourth name under example.co.uk would be its fourth Certificate
	// this week.
	_, err := b.reserve(ctx, a, []string{"d.example.co.uk"}, false, false)
	be, ok := errors.AsType[*BudgetError](err)
	if !ok || be.Limit != LimitCertificatesPerDomain || be.Key != "example.co.uk" || be.Max != 3 {
		t.Fatalf("fourth certificate under example.co.uk: got %v, want the certificates_per_domain limit of example.co.uk", err)
	}
	if want := time.Date(2026, 12, 8, 12, 0, 0, 0, time.UTC); !be.Until.Equal(want) {
		t.Errorf("until: got %v, want %v (the first certificate leaves the week)", be.Until, want)
	}
	// Renewals are exempt from the per-domain limit.
	at, err := b.reserve(ctx, a, []string{"a.example.co.uk"}, true, false)
	if err != nil {
		t.Fatalf("renewal under a spent domain: %v", err)
	}
	if err := b.release(ctx, a, []string{"a.example.co.uk"}, at, false, false); err != nil {
		t.Fatal(err)
	}
	// Another registered domain still has room; the orders limit (4) is
	// then spent.
	if _, err := b.reserve(ctx, a, []string{"third.test"}, false, false); err == nil || !strings.Contains(err.Error(), "orders_per_account") {
		t.Fatalf("fifth order in 3h: got %v, want the orders_per_account limit", err)
	}

	// A restart: a new budget on the same storage counts the same.
	b = newBudget(store, slog.New(slog.DiscardHandler), clock)
	if _, err := b.reserve(ctx, a, []string{"third.test"}, false, false); err == nil {
		t.Fatal("after a restart the spent orders budget is forgotten")
	}
	// Three hours after the first orders they have left the window.
	now = time.Date(2026, 12, 1, 15, 0, 30, 0, time.UTC)
	if _, err := b.reserve(ctx, a, []string{"other.test"}, false, false); err != nil {
		t.Fatalf("order after the window moved: %v", err)
	}
	now = now.Add(2 * time.Minute)
	at, err = b.reserve(ctx, a, []string{"third.test"}, false, false)
	if err != nil {
		t.Fatalf("order after the window moved: %v", err)
	}
	// That order failed: its Certificate is released, the order stays.
	if err := b.release(ctx, a, []string{"third.test"}, at, false, false); err != nil {
		t.Fatal(err)
	}

	// On-demand may use half of each shared limit: 2 of the 4 orders.
	now = now.Add(4 * time.Hour)
	for _, name := range []string{"x.od1.test", "y.od2.test"} {
		if _, err := b.reserve(ctx, a, []string{name}, false, true); err != nil {
			t.Fatalf("on-demand order for %s: %v", name, err)
		}
	}
	_, err = b.reserve(ctx, a, []string{"z.od3.test"}, false, true)
	if be, ok := errors.AsType[*BudgetError](err); !ok || !be.OnDemand || be.Limit != LimitOrders || be.Max != 2 {
		t.Fatalf("third on-demand order: got %v, want the on-demand share (2) of orders_per_account", err)
	}
	// Renewals of the configured hosts still have the rest.
	if _, err := b.reserve(ctx, a, []string{"renewed.test"}, false, false); err != nil {
		t.Fatalf("configured host's order beside a spent on-demand share: %v", err)
	}

	lines, err := b.lines(ctx, []budgetAccount{a})
	if err != nil {
		t.Fatal(err)
	}
	find := func(l Limit, key string) BudgetLine {
		t.Helper()
		i := slices.IndexFunc(lines, func(bl BudgetLine) bool { return bl.Limit == l && bl.Key == key })
		if i < 0 {
			t.Fatalf("no budget line for %s %s in %+v", l, key, lines)
		}
		return lines[i]
	}
	if got := find(LimitOrders, "ops@example.org"); got.Used != 3 || got.OnDemandUsed != 2 || got.Remaining != 1 || got.OnDemandRemaining != 0 {
		t.Errorf("orders line: got %+v, want 3 used (2 on demand), 1 left, none for on-demand", got)
	}
	if got := find(LimitCertificatesPerDomain, "example.co.uk"); got.Used != 3 || got.Remaining != 0 || got.Window != "7d" {
		t.Errorf("example.co.uk line: got %+v, want 3 of 3 used in 7d", got)
	}
	if slices.ContainsFunc(lines, func(bl BudgetLine) bool { return bl.Key == "third.test" }) {
		t.Errorf("the released certificate of third.test still counts: %+v", lines)
	}
	if got := find(LimitAccounts, "all accounts"); got.Max != 0 || got.Remaining != -1 {
		t.Errorf("accounts line without a limit: got %+v, want max 0, remaining -1", got)
	}

	// A week later every record is empty; listing deletes them.
	now = now.Add(8 * 24 * time.Hour)
	if _, err := b.lines(ctx, []budgetAccount{a}); err != nil {
		t.Fatal(err)
	}
	keys, err := store.List(ctx, budgetPrefix, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if strings.HasSuffix(k, ".json") {
			t.Errorf("record %s left after its events left the window", k)
		}
	}

	// Reads within the hour after a sweep write nothing (each metrics
	// scrape reads the budget); the next one after it sweeps again.
	swept := now
	now = swept.Add(-4 * time.Hour)
	if _, err := b.reserve(ctx, a, []string{"late.test"}, false, false); err != nil {
		t.Fatal(err)
	}
	// Its orders record has left the 3h window; its per-domain and
	// duplicates records have not.
	records := func() int {
		keys, err := store.List(ctx, budgetPrefix, true)
		if err != nil {
			t.Fatal(err)
		}
		return len(slices.DeleteFunc(keys, func(k string) bool { return !strings.Contains(k, "/"+string(LimitOrders)+"/") }))
	}
	now = swept.Add(30 * time.Minute)
	if _, err := b.lines(ctx, []budgetAccount{a}); err != nil {
		t.Fatal(err)
	}
	if n := records(); n == 0 {
		t.Error("a read half an hour after a sweep deleted the expired orders record")
	}
	now = swept.Add(61 * time.Minute)
	if _, err := b.lines(ctx, []budgetAccount{a}); err != nil {
		t.Fatal(err)
	}
	if n := records(); n != 0 {
		t.Errorf("%d expired orders records left after the next hour's read", n)
	}
}

// TestRegisteredDomain checks names map to their registered domain by the
// public suffix list.
func TestRegisteredDomain(t *testing.T) {
	for name, want := range map[string]string{
		"www.example.com":     "example.com",
		"a.b.example.co.uk":   "example.co.uk",
		"*.shop.example.com":  "example.com",
		"app.test":            "app.test",
		"x.y.github.io":       "y.github.io",
		"192.0.2.1":           "192.0.2.1",
		"WWW.Example.COM.":    "example.com",
		"co.uk":               "co.uk",
		"customer.myshop.com": "myshop.com",
	} {
		if got := registeredDomain(name); got != want {
			t.Errorf("registeredDomain(%q) = %q, want %q", name, got, want)
		}
	}
}

// TestBudgetSwitchesIssuer runs two Pebbles, the first with a budget of two
// certificates per registered domain: the third host of the domain comes
// from the second CA without a third order at the first, and after a
// restart on the same storage the fourth does too.
func TestBudgetSwitchesIssuer(t *testing.T) {
	skipShort(t)
	t.Parallel()
	g := startPebbleGatehouse(t, pebbletest.Options{})
	caB := pebbletest.Start(t, pebbletest.Options{HTTPPort: g.httpPort, TLSPort: g.httpsPort})
	g.acme = config.ACME{
		Email: "admin@example.org",
		Issuers: []config.Issuer{
			{CA: g.ca.DirectoryURL(), CARoot: g.ca.ClientRootFile(), Limits: &config.RateLimits{CertificatesPerDomainWeek: 2}},
			{CA: caB.DirectoryURL(), CARoot: caB.ClientRootFile()},
		},
	}
	logs := &recordHandler{Handler: testLog(t)}
	cfg := g.acmeConfig("one.budget.test", "two.budget.test")
	m := g.startLogged(t, cfg, fastOptions(), logs)
	g.waitForCert(t, "one.budget.test", "", 60*time.Second)
	g.waitForCert(t, "two.budget.test", "", 60*time.Second)

	cfg = g.acmeConfig("one.budget.test", "two.budget.test", "three.budget.test")
	if err := m.Apply(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	waitForCert(t, g.gatehouse, "three.budget.test", caB.IssuerRoots(), "", 60*time.Second)
	if got := g.ca.Orders(); got != 2 {
		t.Errorf("orders at the first CA: got %d, want 2 (its budget)", got)
	}
	if got := caB.Orders(); got != 1 {
		t.Errorf("orders at the second CA: got %d, want 1", got)
	}
	if got := logs.attr("order not sent: rate-limit budget spent; trying the next issuer or waiting", "key", "budget.test", "limit"); got != string(LimitCertificatesPerDomain) {
		t.Errorf("the refused order's log names limit %q, want %s", got, LimitCertificatesPerDomain)
	}
	if got := logs.attr("order not sent: rate-limit budget spent; trying the next issuer or waiting", "key", "budget.test", "until"); got == "" {
		t.Error("the refused order's log does not say until when")
	}

	lines, err := m.Budget(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var domainLine *BudgetLine
	for i, l := range lines {
		if l.Issuer == g.ca.DirectoryURL() && l.Limit == LimitCertificatesPerDomain && l.Key == "budget.test" {
			domainLine = &lines[i]
		}
	}
	if domainLine == nil || domainLine.Used != 2 || domainLine.Remaining != 0 {
		t.Errorf("budget of budget.test at the first CA: got %+v, want 2 used, 0 left", domainLine)
	}

	// A restart on the same storage: the budget is read back.
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	cfg = g.acmeConfig("one.budget.test", "two.budget.test", "three.budget.test", "four.budget.test")
	m = g.start(t, cfg, fastOptions())
	waitForCert(t, g.gatehouse, "four.budget.test", caB.IssuerRoots(), "", 60*time.Second)
	if got, gotB := g.ca.Orders(), caB.Orders(); got != 2 || gotB != 2 {
		t.Errorf("orders after the restart: first CA %d, second %d; want 2 and 2", got, gotB)
	}
	// The first hosts are still served from the first CA, and renew there:
	// a renewal is exempt from the per-domain limit.
	old := g.waitForCert(t, "one.budget.test", "", 10*time.Second)
	if err := m.Renew(t.Context(), "one.budget.test", true); err != nil {
		t.Fatalf("renewing one.budget.test: %v", err)
	}
	g.waitForCert(t, "one.budget.test", old.SerialNumber.String(), 30*time.Second)
	if got := g.ca.Orders(); got != 3 {
		t.Errorf("orders at the first CA after a renewal: got %d, want 3", got)
	}
}

// TestBudgetOnDemandShare gives the only CA a budget of 4 orders, half of
// which on-demand issuance may use: a configured host and two on-demand
// names get Certificates, the third on-demand name is refused without an
// order, and a forced renewal of the configured host still goes through.
func TestBudgetOnDemandShare(t *testing.T) {
	skipShort(t)
	t.Parallel()
	g := startPebbleGatehouse(t, pebbletest.Options{})
	g.acme.Limits = &config.RateLimits{OrdersPer3Hours: 4}
	cfg := g.acmeConfig("app.share.test")
	cfg.Sites = append(cfg.Sites, config.Site{Hosts: []string{"*.od.share.test"}, TLS: config.SiteTLS{OnDemand: true}})
	cfg.OnDemand = &config.OnDemand{Allow: []string{"*.od.share.test"}, BudgetShare: "50%"}
	m := g.start(t, cfg, fastOptions())
	first := g.waitForCert(t, "app.share.test", "", 60*time.Second)

	g.mustHandshake(t, "a.od.share.test")
	g.mustHandshake(t, "b.od.share.test")
	g.checkOrders(t, 3)
	g.mustRefuse(t, "c.od.share.test")
	g.checkOrders(t, 3)

	// The renewal of the configured host draws on the rest.
	if err := m.Renew(t.Context(), "app.share.test", true); err != nil {
		t.Fatalf("renewing app.share.test beside a spent on-demand share: %v", err)
	}
	g.waitForCert(t, "app.share.test", first.SerialNumber.String(), 30*time.Second)
	g.checkOrders(t, 4)

	lines, err := m.Budget(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(lines, func(l BudgetLine) bool { return l.Limit == LimitOrders })
	if i < 0 || lines[i].Used != 4 || lines[i].OnDemandUsed != 2 || lines[i].Remaining != 0 {
		t.Errorf("orders budget: got %+v, want 4 used, 2 of them on demand, none left", lines)
	}
}

// TestBudgetEtcdShared runs two instances' budgets on one etcd, each with
// its own client, ordering at once: together they make exactly as many
// orders as the limit allows, and each sees the other's.
func TestBudgetEtcdShared(t *testing.T) {
	c := etcdtest.Start(t, 1)
	etcd := etcdConfig(t, c, "/budget/")
	var budgets []*budget
	for range 2 {
		store, closeStore, err := openStorage(&config.Config{Storage: t.TempDir(), StorageEtcd: etcd}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { closeStore() })
		budgets = append(budgets, newBudget(store, slog.New(slog.DiscardHandler), nil))
	}
	a := newBudgetAccount(config.Issuer{CA: "https://ca.test/dir", Limits: &config.RateLimits{OrdersPer3Hours: 5}})
	const tries = 12
	var wg sync.WaitGroup
	errs := make(chan error, tries)
	for i := range tries {
		wg.Go(func() {
			_, err := budgets[i%2].reserve(t.Context(), a, []string{fmt.Sprintf("h%d.fleet.test", i)}, false, false)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	var ok, refused int
	for err := range errs {
		switch _, spent := errors.AsType[*BudgetError](err); {
		case err == nil:
			ok++
		case spent:
			refused++
		default:
			t.Errorf("reserve: %v", err)
		}
	}
	if ok != 5 || refused != tries-5 {
		t.Errorf("orders reserved: %d, refused %d; want 5 and %d", ok, refused, tries-5)
	}
	for i, b := range budgets {
		lines, err := b.lines(t.Context(), []budgetAccount{a})
		if err != nil {
			t.Fatal(err)
		}
		j := slices.IndexFunc(lines, func(l BudgetLine) bool { return l.Limit == LimitOrders })
		if j < 0 || lines[j].Used != 5 || lines[j].Remaining != 0 {
			t.Errorf("instance %d's orders line: %+v, want 5 used, none left", i, lines)
		}
	}
}

// TestBudgetFailedValidations blocks both challenges of a host at a CA
// whose budget allows two failed validations per host an hour: the first
// order fails both challenge types, and gatehouse then sends no further
// order for the host, saying which limit and until when.
func TestBudgetFailedValidations(t *testing.T) {
	skipShort(t)
	t.Parallel()
	g := startPebbleGatehouse(t, pebbletest.Options{})
	const host = "blocked.budget.test"
	g.blockChallenge(config.ChallengeHTTP01, host)
	g.blockChallenge(config.ChallengeTLSALPN01, host)
	g.acme.Limits = &config.RateLimits{FailedValidationsPerHour: 2}
	h, refused := signalOnAttr(testLog(t), "order not sent: rate-limit budget spent; trying the next issuer or waiting", "limit", string(LimitFailedValidations))
	logs := &recordHandler{Handler: h}
	m := g.startLogged(t, g.acmeConfig(host), fastOptions(), logs)
	select {
	case <-refused:
	case <-time.After(60 * time.Second):
		t.Fatal("no order was refused for the failed_validations budget within 60s")
	}
	if got := g.ca.Orders(); got != 2 {
		t.Errorf("orders at the CA: got %d, want 2 (one per challenge type)", got)
	}
	if got := logs.attr("order not sent: rate-limit budget spent; trying the next issuer or waiting", "limit", string(LimitFailedValidations), "key"); got != "admin@example.org "+host {
		t.Errorf("refused order's key: got %q, want the account and host", got)
	}
	lines, err := m.Budget(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(lines, func(l BudgetLine) bool { return l.Limit == LimitFailedValidations })
	if i < 0 || lines[i].Used != 2 || lines[i].Remaining != 0 || lines[i].FreesAt.IsZero() {
		t.Errorf("failed validations line: got %+v, want 2 used, none left, and when it frees", lines)
	}
	j := slices.IndexFunc(lines, func(l BudgetLine) bool { return l.Limit == LimitOrders })
	if j < 0 || lines[j].Used != g.ca.Orders() {
		t.Errorf("orders line: got %+v, want %d used (as the CA saw)", lines, g.ca.Orders())
	}
}

// TestBudgetReleaseRenewal: a failed renewal takes back only what its
// reservation counted. A new Certificate for another name of the same
// domain, ordered in the same second, stays counted against the domain.
func TestBudgetReleaseRenewal(t *testing.T) {
	ctx := t.Context()
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	b := newBudget(&certmagic.FileStorage{Path: t.TempDir()}, slog.New(slog.DiscardHandler), func() time.Time { return now })
	a := newBudgetAccount(config.Issuer{CA: "https://ca.test/dir", Limits: &config.RateLimits{CertificatesPerDomainWeek: 1}})
	if _, err := b.reserve(ctx, a, []string{"new.example.org"}, false, false); err != nil {
		t.Fatal(err)
	}
	at, err := b.reserve(ctx, a, []string{"old.example.org"}, true, false)
	if err != nil {
		t.Fatalf("renewal: %v", err)
	}
	if err := b.release(ctx, a, []string{"old.example.org"}, at, true, false); err != nil {
		t.Fatal(err)
	}
	_, err = b.reserve(ctx, a, []string{"third.example.org"}, false, false)
	if be, ok := errors.AsType[*BudgetError](err); !ok || be.Limit != LimitCertificatesPerDomain {
		t.Errorf("a second new Certificate under example.org after the failed renewal: got %v, want the certificates_per_domain limit", err)
	}
}
