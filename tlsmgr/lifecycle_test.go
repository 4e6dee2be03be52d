package tlsmgr

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr/pebbletest"
)

// eventReceiver is a real HTTP server that receives the events webhook.
type eventReceiver struct {
	url string
	// fail, while positive, makes that many next deliveries answer 503.
	mu     sync.Mutex
	fail   int
	events []Event
	posts  int
	got    chan struct{} // signalled after each event
}

func startEventReceiver(t *testing.T) *eventReceiver {
	t.Helper()
	r := &eventReceiver{got: make(chan struct{}, 1)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "want a JSON POST", http.StatusBadRequest)
			return
		}
		var ev Event
		if err := json.NewDecoder(req.Body).Decode(&ev); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.posts++
		if r.fail > 0 {
			r.fail--
			r.mu.Unlock()
			http.Error(w, "try later", http.StatusServiceUnavailable)
			return
		}
		r.events = append(r.events, ev)
		r.mu.Unlock()
		select {
		case r.got <- struct{}{}:
		default:
		}
	}))
	t.Cleanup(srv.Close)
	r.url = srv.URL + "/hook"
	return r
}

// wait returns the first event of type typ for name, waiting up to timeout.
func (r *eventReceiver) wait(t *testing.T, typ, name string, timeout time.Duration) Event {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		for _, ev := range r.events {
			if ev.Type == typ && slices.Contains(ev.Names, name) {
				r.mu.Unlock()
				return ev
			}
		}
		seen := make([]string, 0, len(r.events))
		for _, ev := range r.events {
			seen = append(seen, ev.Type+":"+strings.Join(ev.Names, ","))
		}
		r.mu.Unlock()
		select {
		case <-r.got:
		case <-deadline.C:
			t.Fatalf("no %s event for %s within %v; got %v", typ, name, timeout, seen)
		}
	}
}

func (r *eventReceiver) count(typ, name string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, ev := range r.events {
		if ev.Type == typ && slices.Contains(ev.Names, name) {
			n++
		}
	}
	return n
}

// last returns the latest event of type typ, or the zero Event.
func (r *eventReceiver) last(typ string) Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.events) - 1; i >= 0; i-- {
		if r.events[i].Type == typ {
			return r.events[i]
		}
	}
	return Event{}
}

// findInfo returns the inventory entry listing name.
func findInfo(t *testing.T, certs []CertificateInfo, name string) CertificateInfo {
	t.Helper()
	for _, c := range certs {
		if slices.Contains(c.Names, name) {
			return c
		}
	}
	t.Fatalf("no inventory entry for %s in %+v", name, certs)
	return CertificateInfo{}
}

func hasInfo(certs []CertificateInfo, name string) bool {
	return slices.ContainsFunc(certs, func(c CertificateInfo) bool { return slices.Contains(c.Names, name) })
}

func hexSerial(n *big.Int) string { return n.Text(16) }

// TestInventoryAfterIssuance checks every field of the inventory for an
// ACME, a local CA and a file Certificate, that the record survives a
// restart, and that the offline inventory agrees.
func TestInventoryAfterIssuance(t *testing.T) {
	skipShort(t)
	t.Parallel()
	g := startPebbleGatehouse(t, pebbletest.Options{})
	certFile, keyFile, fileSerial := writeSelfSigned(t, t.TempDir(), "file", "file.test")
	cfg := g.acmeConfig("inv.test")
	cfg.Sites = append(cfg.Sites,
		config.Site{Hosts: []string{"inv.internal"}, TLS: config.SiteTLS{Issuer: config.IssuerInternal}},
		config.Site{Hosts: []string{"file.test"}, TLS: config.SiteTLS{Cert: certFile, Key: keyFile}})
	// The lifecycle clock stands still, a minute behind: LastAttempt
	// must be what it said, and a restart must not move it.
	stamp := time.Now().Add(-time.Minute).Truncate(time.Millisecond).UTC()
	opts := fastOptions()
	opts.now = func() time.Time { return stamp }
	m := g.start(t, cfg, opts)
	leaf := g.waitForCert(t, "inv.test", "", 30*time.Second)

	got := findInfo(t, m.Certificates(), "inv.test")
	if got.Source != SourceACME || got.CA != g.ca.DirectoryURL() {
		t.Errorf("source, CA: got %q, %q; want acme, %q", got.Source, got.CA, g.ca.DirectoryURL())
	}
	if got.Serial != hexSerial(leaf.SerialNumber) {
		t.Errorf("serial: got %s, want the served %s", got.Serial, hexSerial(leaf.SerialNumber))
	}
	if got.Issuer != leaf.Issuer.CommonName || got.Issuer == "" {
		t.Errorf("issuer: got %q, want %q", got.Issuer, leaf.Issuer.CommonName)
	}
	if got.KeyType != "ecdsa-p256" {
		t.Errorf("key type: got %q, want ecdsa-p256", got.KeyType)
	}
	if !got.NotBefore.Equal(leaf.NotBefore) || !got.NotAfter.Equal(leaf.NotAfter) {
		t.Errorf("validity: got %v..%v, want %v..%v", got.NotBefore, got.NotAfter, leaf.NotBefore, leaf.NotAfter)
	}
	// Pebble's ARI window is a day either side of two thirds of the
	// lifetime, where a third is left; renewal comes at whichever of the
	// time picked in it and that point is earlier.
	lifetimePoint := leaf.NotAfter.Add(-leaf.NotAfter.Sub(leaf.NotBefore) / 3)
	switch got.RenewalReason {
	case ReasonLifetime:
		if d := got.NextRenewal.Sub(lifetimePoint); d < -time.Second || d > time.Second {
			t.Errorf("next renewal for the lifetime: got %v, want %v", got.NextRenewal, lifetimePoint)
		}
	case ReasonARI:
		if got.NextRenewal.After(lifetimePoint) || got.NextRenewal.Before(lifetimePoint.Add(-25*time.Hour)) {
			t.Errorf("next renewal by ARI: got %v, want in Pebble's window before %v", got.NextRenewal, lifetimePoint)
		}
	default:
		t.Errorf("renewal reason: got %q", got.RenewalReason)
	}
	if !got.LastAttempt.Equal(stamp) {
		t.Errorf("last attempt: got %v, want %v from the lifecycle clock", got.LastAttempt, stamp)
	}
	if got.Status != StatusValid || got.Failures != 0 || got.LastError != "" {
		t.Errorf("status: got %s, %d failures, error %q; want valid, 0, none", got.Status, got.Failures, got.LastError)
	}
	chain, err := parseChain([]byte(got.ChainPEM))
	if err != nil || len(chain) < 2 || !chain[0].Equal(leaf) {
		t.Errorf("chain PEM: %d certificates (%v), want the served leaf then its intermediate", len(chain), err)
	}

	// The record is private and in storage.
	fi, err := os.Stat(filepath.Join(g.storage, "inventory", "inv.test.json"))
	if err != nil {
		t.Fatalf("inventory record: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode of the inventory record: got %v, want 0600", fi.Mode().Perm())
	}

	file := findInfo(t, m.Certificates(), "file.test")
	if file.Source != SourceFile || file.Serial != hexSerial(fileSerial) || file.Status != StatusValid || file.RenewalReason != ReasonLifetime {
		t.Errorf("file certificate: got source %s serial %s status %s; want file %s valid", file.Source, file.Serial, file.Status, hexSerial(fileSerial))
	}
	// A local CA leaf exists once a handshake asked for it.
	if _, err := m.getCertificate(&tls.ClientHelloInfo{ServerName: "inv.internal"}); err != nil {
		t.Fatal(err)
	}
	internal := findInfo(t, m.Certificates(), "inv.internal")
	if internal.Source != SourceInternal || internal.Serial == "" || internal.Issuer != "gatehouse local CA intermediate" || internal.RenewalReason != ReasonLifetime {
		t.Errorf("internal certificate: got %+v", internal)
	}

	// Offline, from the storage and the config, the ACME entry is the same.
	off, err := Inventory(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if o := findInfo(t, off, "inv.test"); o.Serial != got.Serial || !o.LastAttempt.Equal(got.LastAttempt) || o.Status != StatusValid {
		t.Errorf("offline entry: got serial %s attempt %v status %s; want %s %v valid", o.Serial, o.LastAttempt, o.Status, got.Serial, got.LastAttempt)
	}
	if !hasInfo(off, "file.test") || !hasInfo(off, "inv.internal") {
		t.Errorf("offline inventory misses the file or internal certificate: %+v", off)
	}

	// Without its record (inventory/ lost, or a storage certmagic filled
	// before gatehouse kept one) the certificate is still found under its
	// issuer's directory.
	rec, aside := filepath.Join(g.storage, "inventory", "inv.test.json"), filepath.Join(t.TempDir(), "inv.test.json")
	if err := os.Rename(rec, aside); err != nil {
		t.Fatal(err)
	}
	bare, err := Inventory(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if b := findInfo(t, bare, "inv.test"); b.Serial != got.Serial || b.Status != StatusValid {
		t.Errorf("offline entry without a record: got serial %q status %s; want %s valid", b.Serial, b.Status, got.Serial)
	}
	if err := os.Rename(aside, rec); err != nil {
		t.Fatal(err)
	}

	// After a restart the inventory is read back from storage; a new
	// attempt would show the new clock.
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	opts2 := fastOptions()
	opts2.now = func() time.Time { return stamp.Add(time.Second) }
	m2 := g.start(t, cfg, opts2)
	g.waitForCert(t, "inv.test", "", 10*time.Second)
	again := findInfo(t, m2.Certificates(), "inv.test")
	if again.Serial != got.Serial || !again.LastAttempt.Equal(stamp) || again.Status != StatusValid {
		t.Errorf("after restart: got serial %s attempt %v status %s; want %s %v valid", again.Serial, again.LastAttempt, again.Status, got.Serial, stamp)
	}
}

// writeEventScript writes a command that appends its environment and the
// event it reads on stdin to out.
func writeEventScript(t *testing.T, out string) string {
	t.Helper()
	script := filepath.Join(t.TempDir(), "on-event.sh")
	// One printf, so a reader never sees half a line.
	body := "#!/bin/sh\nev=$(cat)\nprintf '%s %s %s\\n' \"$GATEHOUSE_EVENT\" \"$GATEHOUSE_NAMES\" \"$ev\" >> " + out + "\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return script
}

// execLines returns the lines the event script wrote: "TYPE NAMES JSON".
func execLines(t *testing.T, out string) []string {
	t.Helper()
	f, err := os.Open(out)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines
}

// waitExecLine waits for the line the event script wrote for the event of
// this type and names (comma-separated, as in GATEHOUSE_NAMES) with that
// event as JSON.
func waitExecLine(t *testing.T, out, typ, name string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		for _, l := range execLines(t, out) {
			if rest, ok := strings.CutPrefix(l, typ+" "+name+" "); ok {
				var ev Event
				if err := json.Unmarshal([]byte(rest), &ev); err == nil && ev.Type == typ && strings.Join(ev.Names, ",") == name {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("event command never got the %s event of %s as JSON; it wrote %q", typ, name, execLines(t, out))
		}
		<-tick.C
	}
}

// TestRenewRevokeRetire runs the lifecycle commands against Pebble: a
// forced renewal serves a new serial at once, a revocation is recorded by
// the CA and a replacement is served, removed hosts are retired (no longer
// renewed, kept, revocable) and deleted after retire_after; the webhook
// and the command receive each event.
func TestRenewRevokeRetire(t *testing.T) {
	skipShort(t)
	t.Parallel()
	g := startPebbleGatehouse(t, pebbletest.Options{})
	hook := startEventReceiver(t)
	execOut := filepath.Join(t.TempDir(), "events.log")
	events := &config.Events{Webhook: hook.url, Exec: []string{writeEventScript(t, execOut)}}
	cfg := g.acmeConfig("keep.test", "gone.test", "old.test")
	cfg.Events = events
	m := g.start(t, cfg, fastOptions())
	first := g.waitForCert(t, "keep.test", "", 30*time.Second)
	gone := g.waitForCert(t, "gone.test", "", 30*time.Second)
	g.waitForCert(t, "old.test", "", 30*time.Second)
	if ev := hook.wait(t, EventObtained, "keep.test", 10*time.Second); ev.Issuer != g.ca.DirectoryURL() || !ev.NotAfter.Equal(first.NotAfter) {
		t.Errorf("obtained event: got issuer %q not after %v; want %q, %v", ev.Issuer, ev.NotAfter, g.ca.DirectoryURL(), first.NotAfter)
	}
	waitExecLine(t, execOut, EventObtained, "keep.test")

	// Not due and not forced: nothing changes, no order.
	orders := g.ca.Orders()
	if err := m.Renew(t.Context(), "keep.test", false); err != nil {
		t.Fatalf("Renew: %v", err)
	}
	if leaf, err := g.handshake("keep.test"); err != nil || leaf.SerialNumber.Cmp(first.SerialNumber) != 0 || g.ca.Orders() != orders {
		t.Errorf("renewal that is not due changed something: %v, %d orders (had %d)", err, g.ca.Orders(), orders)
	}

	// Forced: a new certificate, served at once.
	if err := m.Renew(t.Context(), "KEEP.test", true); err != nil {
		t.Fatalf("Renew --force: %v", err)
	}
	renewed, err := g.handshake("keep.test")
	if err != nil || renewed.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Fatalf("after a forced renewal: %v, serial %v (was %v)", err, renewed.SerialNumber, first.SerialNumber)
	}
	if got := findInfo(t, m.Certificates(), "keep.test"); got.Serial != hexSerial(renewed.SerialNumber) {
		t.Errorf("inventory serial after renewal: got %s, want %s", got.Serial, hexSerial(renewed.SerialNumber))
	}
	hook.wait(t, EventRenewed, "keep.test", 10*time.Second)
	waitExecLine(t, execOut, EventRenewed, "keep.test")

	// Revoked at the CA, replaced and served without a restart.
	if err := m.Revoke(t.Context(), "keep.test", "keyCompromise"); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	if !g.ca.Revoked(renewed.SerialNumber) {
		t.Error("Pebble does not report the revoked certificate revoked")
	}
	replaced, err := g.handshake("keep.test")
	if err != nil || replaced.SerialNumber.Cmp(renewed.SerialNumber) == 0 || g.ca.Revoked(replaced.SerialNumber) {
		t.Fatalf("after revocation: %v, serving serial %v (revoked one %v)", err, replaced.SerialNumber, renewed.SerialNumber)
	}
	hook.wait(t, EventRevoked, "keep.test", 10*time.Second)
	waitExecLine(t, execOut, EventRevoked, "keep.test")

	for _, name := range []string{"nothing.test", "keep.internal"} {
		if err := m.Renew(t.Context(), name, true); !errors.Is(err, ErrUnknownCertificate) {
			t.Errorf("Renew(%s): got %v, want ErrUnknownCertificate", name, err)
		}
	}
	if err := m.Revoke(t.Context(), "keep.test", "because"); err == nil || !strings.Contains(err.Error(), "keyCompromise") {
		t.Errorf("Revoke with a bad reason: got %v, want the list of reasons", err)
	}

	// Removing two hosts retires them: not served, no longer renewed,
	// kept in storage, listed as retired.
	cfg2 := g.acmeConfig("keep.test")
	cfg2.Events = events
	if err := m.Apply(t.Context(), cfg2); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"gone.test", "old.test"} {
		hook.wait(t, EventRetired, name, 10*time.Second)
		info := findInfo(t, m.Certificates(), name)
		if info.Status != StatusRetired || info.RetiredAt.IsZero() || info.Serial == "" {
			t.Errorf("%s after removal: status %s retired at %v serial %q; want retired, archived", name, info.Status, info.RetiredAt, info.Serial)
		}
		if n := len(m.engine.(*certmagicEngine).cache.AllMatchingCertificates(name)); n != 0 {
			t.Errorf("%s still in certmagic's cache (%d), so still renewed", name, n)
		}
	}
	waitExecLine(t, execOut, EventRetired, "gone.test")
	if names, err := m.Retire(t.Context()); err != nil || len(names) != 0 {
		t.Errorf("Retire again: got %v, %v; want nothing new", names, err)
	}
	if hook.count(EventRetired, "gone.test") != 1 {
		t.Errorf("retired events for gone.test: got %d, want 1", hook.count(EventRetired, "gone.test"))
	}

	// A retired certificate can be revoked; it then leaves the inventory
	// and no replacement is ordered.
	orders = g.ca.Orders()
	if err := m.Revoke(t.Context(), "gone.test", "cessationOfOperation"); err != nil {
		t.Fatalf("Revoke of a retired certificate: %v", err)
	}
	if !g.ca.Revoked(gone.SerialNumber) {
		t.Error("Pebble does not report the retired certificate revoked")
	}
	if hasInfo(m.Certificates(), "gone.test") || g.ca.Orders() != orders {
		t.Errorf("after revoking retired gone.test: still listed %v, orders %d (had %d)", hasInfo(m.Certificates(), "gone.test"), g.ca.Orders(), orders)
	}

	// A retired host back in the config is served again from storage,
	// without a new order, and is no longer retired.
	orders = g.ca.Orders()
	cfgBack := g.acmeConfig("keep.test", "old.test")
	cfgBack.Events = events
	if err := m.Apply(t.Context(), cfgBack); err != nil {
		t.Fatal(err)
	}
	g.waitForCert(t, "old.test", "", 10*time.Second)
	if got := findInfo(t, m.Certificates(), "old.test"); got.Status != StatusValid || !got.RetiredAt.IsZero() || g.ca.Orders() != orders {
		t.Errorf("old.test back in the config: status %s retired at %v, %d orders (had %d); want valid, no new order", got.Status, got.RetiredAt, g.ca.Orders(), orders)
	}
	if err := m.Apply(t.Context(), cfg2); err != nil {
		t.Fatal(err)
	}
	if got := findInfo(t, m.Certificates(), "old.test"); got.Status != StatusRetired {
		t.Errorf("old.test removed again: status %s, want retired", got.Status)
	}

	// Past retire_after, a retired certificate is deleted with its files.
	keys, _ := filepath.Glob(filepath.Join(g.storage, "certificates", "*", "old.test"))
	if len(keys) != 1 {
		t.Fatalf("files of retired old.test: got %v, want them kept", keys)
	}
	cfg3 := g.acmeConfig("keep.test")
	cfg3.Events, cfg3.RetireAfter = events, time.Nanosecond
	if err := m.Apply(t.Context(), cfg3); err != nil {
		t.Fatal(err)
	}
	if hasInfo(m.Certificates(), "old.test") {
		t.Error("old.test still listed after retire_after")
	}
	if _, err := os.Stat(keys[0]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("files of old.test after retire_after: %v, want them deleted", err)
	}
	if got := findInfo(t, m.Certificates(), "keep.test"); got.Status != StatusValid || got.Serial != hexSerial(replaced.SerialNumber) {
		t.Errorf("keep.test after all this: status %s serial %s; want valid %s", got.Status, got.Serial, hexSerial(replaced.SerialNumber))
	}
}

// TestRenewalFailureReported lets a short-lived certificate come due while
// the CA is down: the renewal failure is reported (renewal_failed event,
// status failing with the error) and so is the certificate past its
// renewal point (expiring event), both before it expires.
func TestRenewalFailureReported(t *testing.T) {
	skipShort(t)
	t.Parallel()
	const validity = 21 * time.Second
	g := startPebbleGatehouse(t, pebbletest.Options{Validity: validity})
	hook := startEventReceiver(t)
	// certmagic keeps the retry schedule of failed renewals per name in a
	// package variable, so a name of its own keeps -count=N runs apart.
	host := fmt.Sprintf("fail-%d.test", rand.Uint32())
	cfg := g.acmeConfig(host)
	cfg.Events = &config.Events{Webhook: hook.url}
	opts := fastOptions()
	opts.renewCheckInterval = time.Second
	opts.lifecycleInterval = 200 * time.Millisecond
	m := g.start(t, cfg, opts)
	g.waitForCert(t, host, "", 30*time.Second)
	g.ca.Close() // the CA goes down before renewal is due

	failed := hook.wait(t, EventRenewalFailed, host, validity)
	// Pebble's ARI may have had certmagic renew once before the CA went
	// down: the certificate that matters is the one served once renewal
	// has failed, the last one there can be.
	leaf, err := g.handshake(host)
	if err != nil {
		t.Fatal(err)
	}
	if failed.Error == "" || !failed.Time.Before(leaf.NotAfter) {
		t.Errorf("renewal_failed event: error %q at %v; want an error before %v", failed.Error, failed.Time, leaf.NotAfter)
	}
	info := findInfo(t, m.Certificates(), host)
	if info.Status != StatusFailing || info.Failures < 1 || info.LastError == "" || info.Serial != hexSerial(leaf.SerialNumber) {
		t.Errorf("inventory after the failure: status %s, %d failures, error %q, serial %s; want failing with an error, serial %s",
			info.Status, info.Failures, info.LastError, info.Serial, hexSerial(leaf.SerialNumber))
	}
	expiring := hook.wait(t, EventExpiring, host, validity)
	if !expiring.Time.Before(leaf.NotAfter) || !expiring.NotAfter.Equal(leaf.NotAfter) {
		t.Errorf("expiring event at %v for not after %v; want it before %v", expiring.Time, expiring.NotAfter, leaf.NotAfter)
	}
	if n := hook.count(EventExpiring, host); n != 1 {
		t.Errorf("expiring events: got %d, want 1 per certificate", n)
	}
}

// TestFileCertificateExpiring checks a certificate from files past its
// renewal point is reported once as expiring: nobody renews it but its
// owner.
func TestFileCertificateExpiring(t *testing.T) {
	t.Parallel()
	hook := startEventReceiver(t)
	certFile, keyFile, serial := writeSelfSigned(t, t.TempDir(), "file", "files.test")
	cfg := &config.Config{
		Storage: t.TempDir(),
		Sites:   []config.Site{{Hosts: []string{"files.test"}, TLS: config.SiteTLS{Cert: certFile, Key: keyFile}}},
		Events:  &config.Events{Webhook: hook.url},
	}
	tbl, err := buildTable(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lc := newLifecycleCore(slog.New(slog.NewTextHandler(t.Output(), nil)), cfg.Storage, nil)
	defer lc.close()
	lc.apply(t.Context(), cfg, tbl)

	// writeSelfSigned certificates live two hours, from an hour ago: not
	// due now, due 45 minutes from now.
	lc.check(t.Context(), time.Now())
	later := time.Now().Add(45 * time.Minute)
	lc.check(t.Context(), later)
	lc.check(t.Context(), later.Add(time.Minute))
	lc.emit(Event{Type: EventRetired, Names: []string{"sentinel.test"}})
	hook.wait(t, EventRetired, "sentinel.test", 10*time.Second) // delivery is in order
	if n := hook.count(EventExpiring, "files.test"); n != 1 {
		t.Fatalf("expiring events for the file certificate: got %d, want 1", n)
	}
	ev := hook.wait(t, EventExpiring, "files.test", time.Second)
	if ev.NotAfter.IsZero() || !ev.Time.Equal(later) {
		t.Errorf("expiring event: %+v; want it at the check's time %v, with the certificate's end", ev, later.UTC())
	}
	inv, err := Inventory(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := findInfo(t, inv, "files.test"); got.Serial != hexSerial(serial) || got.Source != SourceFile || got.Status != StatusValid {
		t.Errorf("file certificate in the inventory now: serial %s source %s status %s; want %s file valid", got.Serial, got.Source, got.Status, hexSerial(serial))
	}
}

// TestAutocertInventory checks the inventory shows certificates of the
// autocert engine, which reports no events, and that the lifecycle
// commands it cannot do say so.
func TestAutocertInventory(t *testing.T) {
	skipShort(t)
	t.Parallel()
	g := startPebbleGatehouse(t, pebbletest.Options{})
	g.acme.Engine = config.EngineAutocert
	m := g.start(t, g.acmeConfig("ac.test"), fastOptions())
	leaf := g.waitForCert(t, "ac.test", "", 60*time.Second)
	// autocert serves the certificate from its handshake before the obtain
	// loop that asked for it has returned and recorded it: wait for that.
	var got CertificateInfo
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if got = findInfo(t, m.Certificates(), "ac.test"); got.Status == StatusValid {
			break
		}
	}
	if got.Serial != hexSerial(leaf.SerialNumber) || got.Status != StatusValid || got.Source != SourceACME {
		t.Errorf("autocert certificate in the inventory: serial %s status %s source %s; want %s valid acme", got.Serial, got.Status, got.Source, hexSerial(leaf.SerialNumber))
	}
	for _, err := range []error{m.Renew(t.Context(), "ac.test", true), m.Revoke(t.Context(), "ac.test", "superseded")} {
		if _, ok := errors.AsType[*RefusedError](err); !ok || !strings.Contains(err.Error(), "not supported by acme.engine autocert") {
			t.Errorf("lifecycle call with autocert: got %v, want a RefusedError", err)
		}
	}
}

// TestStatus checks how a Certificate's status follows from its dates and
// its record, most urgent first.
func TestStatus(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	cert := func(mod func(*CertificateInfo)) CertificateInfo {
		// 90 days, 30 days left, renewal due in 5 days.
		c := CertificateInfo{NotBefore: now.Add(-60 * day), NotAfter: now.Add(30 * day), NextRenewal: now.Add(5 * day)}
		if mod != nil {
			mod(&c)
		}
		return c
	}
	for _, tc := range []struct {
		name       string
		info       CertificateInfo
		attempting bool
		want       Status
	}{
		{"valid", cert(nil), false, StatusValid},
		{"renewing", cert(nil), true, StatusRenewing},
		{"stale attempt", cert(func(c *CertificateInfo) { c.LastAttempt = now.Add(-time.Hour) }), true, StatusValid},
		{"just past the renewal point", cert(func(c *CertificateInfo) { c.NextRenewal = now.Add(-time.Minute) }), false, StatusValid},
		{"expiring", cert(func(c *CertificateInfo) { c.NextRenewal = now.Add(-2 * time.Hour) }), false, StatusExpiring},
		{"failing", cert(func(c *CertificateInfo) { c.Failures, c.LastError = 2, "boom" }), false, StatusFailing},
		{"failing while retrying", cert(func(c *CertificateInfo) { c.Failures, c.LastAttempt = 1, now }), true, StatusFailing},
		{"expired", cert(func(c *CertificateInfo) { c.NotAfter, c.Failures = now.Add(-time.Second), 3 }), false, StatusExpired},
		{"retired", cert(func(c *CertificateInfo) { c.RetiredAt, c.NotAfter = now.Add(-day), now.Add(-time.Second) }), false, StatusRetired},
		{"first attempt queued", CertificateInfo{}, false, StatusPending},
		{"first attempt under way", CertificateInfo{}, true, StatusPending},
		{"first attempt failed", CertificateInfo{Failures: 1}, false, StatusFailing},
	} {
		if tc.attempting && tc.info.LastAttempt.IsZero() {
			tc.info.LastAttempt = now.Add(-time.Minute)
		}
		if got := status(tc.info, tc.attempting, now); got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.name, got, tc.want)
		}
	}

	certs := []CertificateInfo{
		{Names: []string{"v2"}, Status: StatusValid, NotAfter: now.Add(60 * day)},
		{Names: []string{"r"}, Status: StatusRetired, NotAfter: now.Add(day)},
		{Names: []string{"v1"}, Status: StatusValid, NotAfter: now.Add(10 * day)},
		{Names: []string{"f"}, Status: StatusFailing, NotAfter: now.Add(20 * day)},
		{Names: []string{"x"}, Status: StatusExpired, NotAfter: now.Add(-day)},
		{Names: []string{"i"}, Status: StatusValid},
		{Names: []string{"p"}, Status: StatusPending},
		{Names: []string{"n"}, Status: StatusRenewing, NotAfter: now.Add(40 * day)},
	}
	SortCertificates(certs)
	var order []string
	for _, c := range certs {
		order = append(order, c.Names[0])
	}
	if got, want := strings.Join(order, " "), "x f n p v1 v2 i r"; got != want {
		t.Errorf("sorted by urgency: got %s, want %s", got, want)
	}
}

// countEvents returns a handler that passes records on to next and counts
// in n those with message msg and the attribute event=typ.
func countEvents(next slog.Handler, msg, typ string, n *atomic.Int64) slog.Handler {
	return tapHandler{Handler: next, tap: func(r slog.Record) {
		if r.Message != msg {
			return
		}
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "event" && a.Value.String() == typ {
				n.Add(1)
			}
			return true
		})
	}}
}

// caSwitch forwards TCP connections to an ACME directory server while it
// is up, and refuses them (cutting those open) while it is down: a CA
// outage that ends, unlike Pebble's Close.
type caSwitch struct {
	addr string
	// mu guards down and conns.
	mu    sync.Mutex
	down  bool
	conns map[net.Conn]bool
}

func startCASwitch(t *testing.T, target string) *caSwitch {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &caSwitch{addr: ln.Addr().String(), conns: map[net.Conn]bool{}}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.forward(c, target)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.setDown(true)
	})
	return s
}

// startSwitchedCA puts a caSwitch in front of g's Pebble and points g.acme
// at the directory through it. Pebble answers with URLs on the host it was
// asked at, so everything goes through the switch.
func startSwitchedCA(t *testing.T, g *pebbleGatehouse) *caSwitch {
	t.Helper()
	u, err := url.Parse(g.ca.DirectoryURL())
	if err != nil {
		t.Fatal(err)
	}
	sw := startCASwitch(t, u.Host)
	u.Host = sw.addr
	g.acme.CA = u.String()
	return sw
}

// newStreakTest sets up what a failure streak test needs: gatehouse's
// Listeners, a Pebble behind a switch (at dirURL), a config for host
// sending events to a webhook and a command (writing to execOut), and
// options whose lifecycle clock is skew ahead of time.Now.
func newStreakTest(t *testing.T, host string) (g *pebbleGatehouse, sw *caSwitch, dirURL string,
	hook *eventReceiver, execOut string, cfg *config.Config, opts options, skew *atomic.Int64) {
	t.Helper()
	g = startPebbleGatehouse(t, pebbletest.Options{})
	sw = startSwitchedCA(t, g)
	hook = startEventReceiver(t)
	execOut = filepath.Join(t.TempDir(), "events.log")
	cfg = g.acmeConfig(host)
	cfg.Events = &config.Events{Webhook: hook.url, Exec: []string{writeEventScript(t, execOut)}}
	skew = new(atomic.Int64)
	opts = fastOptions()
	opts.now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	return g, sw, g.acme.CA, hook, execOut, cfg, opts, skew
}

func (s *caSwitch) forward(c net.Conn, target string) {
	defer c.Close()
	s.mu.Lock()
	if s.down {
		s.mu.Unlock()
		return
	}
	s.conns[c] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	up, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	defer up.Close()
	go func() {
		_, _ = io.Copy(up, c)
		up.Close()
	}()
	_, _ = io.Copy(c, up)
}

func (s *caSwitch) setDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
	if down {
		for c := range s.conns {
			c.Close()
		}
	}
}

// sentCount returns how many events of type typ for name the webhook and
// the command have got. It emits a sentinel event first and waits for
// both to get it: events go out in order, so once the sentinel arrives
// everything emitted before it has.
func sentCount(t *testing.T, m *Manager, hook *eventReceiver, execOut, typ, name string) (webhook, command int) {
	t.Helper()
	sentinel := fmt.Sprintf("sentinel-%x.test", rand.Uint64())
	m.lc.emit(Event{Type: EventRetired, Names: []string{sentinel}})
	hook.wait(t, EventRetired, sentinel, 10*time.Second)
	waitExecLine(t, execOut, EventRetired, sentinel)
	for _, l := range execLines(t, execOut) {
		if strings.HasPrefix(l, typ+" "+name+" ") {
			command++
		}
	}
	return hook.count(typ, name), command
}

// TestRenewalFailedReminders fails the renewals of a Pebble certificate
// again and again (the CA is unreachable): the webhook and the command get
// renewal_failed when the streak starts and then once a day while it
// lasts, not at every attempt, which the log and the subscribers (the
// metrics) still see; a renewal ends the streak, and the next failure is
// sent at once.
func TestRenewalFailedReminders(t *testing.T) {
	skipShort(t)
	t.Parallel()
	const host = "streak.test"
	g, sw, dirURL, hook, execOut, cfg, opts, skew := newStreakTest(t, host)
	var logged atomic.Int64
	m := g.startLogged(t, cfg, opts, countEvents(slog.NewTextHandler(t.Output(), nil), "certificate event", EventRenewalFailed, &logged))
	var subscribed atomic.Int64
	unsubscribe := m.Subscribe(func(ev Event) {
		if ev.Type == EventRenewalFailed {
			subscribed.Add(1)
		}
	})
	defer unsubscribe()
	g.waitForCert(t, host, "", 30*time.Second)

	attempts := 0
	fail := func() {
		t.Helper()
		sw.setDown(true)
		defer sw.setDown(false)
		if err := m.Renew(t.Context(), host, true); err == nil {
			t.Fatal("renewal succeeded with the CA down")
		}
		attempts++
	}
	sent := func(want int) {
		t.Helper()
		if got, execs := sentCount(t, m, hook, execOut, EventRenewalFailed, host); got != want || execs != want {
			t.Errorf("after %d failed renewals: the webhook got %d renewal_failed events and the command %d, want %d", attempts, got, execs, want)
		}
		if logged.Load() != int64(attempts) || subscribed.Load() != int64(attempts) {
			t.Errorf("after %d failed renewals: %d logged, %d to subscribers; want every one", attempts, logged.Load(), subscribed.Load())
		}
	}

	fail()
	fail()
	sent(1)
	if ev := hook.wait(t, EventRenewalFailed, host, time.Second); ev.Failures != 1 || ev.Error == "" || ev.Issuer != dirURL {
		t.Errorf("first renewal_failed: %+v; want failures 1, the error and the CA", ev)
	}
	skew.Add(int64(23 * time.Hour))
	fail()
	sent(1)
	skew.Add(int64(time.Hour)) // a day after the first one was sent
	fail()
	sent(2)
	fail()
	sent(2)
	if reminder := hook.last(EventRenewalFailed); reminder.Failures != 4 {
		t.Errorf("the reminder: %+v; want renewal_failed with failures 4", reminder)
	}

	// Renewed: the streak is over, and the next failure is news again.
	if err := m.Renew(t.Context(), host, true); err != nil {
		t.Fatalf("renewal with the CA back: %v", err)
	}
	hook.wait(t, EventRenewed, host, 10*time.Second)
	fail()
	sent(3)
	if again := hook.last(EventRenewalFailed); again.Failures != 1 {
		t.Errorf("the first failure after a renewal: %+v; want renewal_failed with failures 1", again)
	}
}

// TestObtainFailedReminders keeps a host's first certificate from being
// obtained (the CA is unreachable) while the obtainer retries on its
// short backoff: the webhook and the command get obtain_failed when the
// streak starts and then once a day while it lasts, not at every attempt,
// which the log and the subscribers (the metrics) still see. Obtaining
// the certificate ends the streak, so its first renewal failure is sent
// at once.
func TestObtainFailedReminders(t *testing.T) {
	skipShort(t)
	t.Parallel()
	const host = "first-streak.test"
	g, sw, dirURL, hook, execOut, cfg, opts, skew := newStreakTest(t, host)
	sw.setDown(true) // before the Manager starts obtaining
	var logged atomic.Int64
	var subscribed atomic.Int64
	seen := make(chan struct{}, 1)
	m := g.startLogged(t, cfg, opts, countEvents(slog.NewTextHandler(t.Output(), nil), "certificate event", EventObtainFailed, &logged))
	unsubscribe := m.Subscribe(func(ev Event) {
		if ev.Type == EventObtainFailed {
			subscribed.Add(1)
			select {
			case seen <- struct{}{}:
			default:
			}
		}
	})
	defer unsubscribe()

	// failures waits until the subscriber has seen n more failed attempts.
	failures := func(n int64) {
		t.Helper()
		want := subscribed.Load() + n
		deadline := time.NewTimer(30 * time.Second)
		defer deadline.Stop()
		for subscribed.Load() < want {
			select {
			case <-seen:
			case <-deadline.C:
				t.Fatalf("waiting for %d obtain_failed events: got %d", want, subscribed.Load())
			}
		}
	}
	sent := func(want int) {
		t.Helper()
		if got, execs := sentCount(t, m, hook, execOut, EventObtainFailed, host); got != want || execs != want {
			t.Errorf("after %d failed attempts: the webhook got %d obtain_failed events and the command %d, want %d", subscribed.Load(), got, execs, want)
		}
		// The first attempts may end before Subscribe, so the log can
		// be ahead; both see far more than were sent.
		if l, s := logged.Load(), subscribed.Load(); l < s || s <= int64(want) {
			t.Errorf("%d obtain_failed logged, %d to subscribers, %d sent; want every attempt logged and to subscribers", l, s, want)
		}
	}
	failures(3)
	sent(1)
	if ev := hook.last(EventObtainFailed); ev.Failures != 1 || ev.Error == "" || ev.Issuer != dirURL {
		t.Errorf("first obtain_failed: %+v; want failures 1, the error and the CA", ev)
	}
	skew.Add(int64(23 * time.Hour))
	failures(2)
	sent(1)
	skew.Add(int64(time.Hour)) // a day after the first one was sent
	// The attempt under way may have read the clock before it moved.
	failures(2)
	sent(2)
	failures(2)
	sent(2)
	if reminder := hook.last(EventObtainFailed); reminder.Failures < 5 {
		t.Errorf("the reminder: %+v; want obtain_failed with failures 5 or more", reminder)
	}

	// Obtained: the streak is over, and the next failure is news again.
	sw.setDown(false)
	hook.wait(t, EventObtained, host, 30*time.Second)
	sw.setDown(true)
	if err := m.Renew(t.Context(), host, true); err == nil {
		t.Fatal("renewal succeeded with the CA down")
	}
	hook.wait(t, EventRenewalFailed, host, 10*time.Second)
	if again := hook.last(EventRenewalFailed); again.Failures != 1 {
		t.Errorf("the first failure after obtaining: %+v; want renewal_failed with failures 1", again)
	}
}
