//go:build linux

package tlsmgr

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	_ "unsafe" // for go:linkname

	"github.com/gatehouse-proxy/gatehouse/tlsmgr/pebbletest"
)

// Faults that lose nothing (issue 13): storage that takes no writes and a
// CA gone in the middle of a renewal. The old Certificate is served all
// along, the failure shows in the inventory and an event, storage holds
// the old Certificate whole, and the renewal succeeds once the fault is
// gone.

// certmagicRetryIntervals is certmagic's schedule of renewal retries
// after a failure: 1, 2, 2, 5, 10 minutes and on. A test shortens it to
// see a retry within seconds; it is certmagic's own backoff, scaled.
//
//go:linkname certmagicRetryIntervals github.com/caddyserver/certmagic.retryIntervals
var certmagicRetryIntervals []time.Duration

// shortenRenewalRetries replaces certmagic's retry schedule with
// intervals for the test. certmagic reads it from its own goroutines, so
// the test that calls this must not be parallel with other tests (its
// subtests may be, with each other): Go starts the package's parallel
// tests only once the serial ones are done.
func shortenRenewalRetries(t *testing.T, intervals ...time.Duration) {
	t.Helper()
	saved := certmagicRetryIntervals
	certmagicRetryIntervals = intervals
	t.Cleanup(func() { certmagicRetryIntervals = saved })
}

// mountTmpfs mounts a tmpfs of size bytes on dir for the test, so the
// test can make the storage read-only or full. root alone would ignore a
// chmod; mounting needs CAP_SYS_ADMIN, which the tests have (CI runs them
// as root).
func mountTmpfs(t *testing.T, dir string, size int) {
	t.Helper()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		t.Fatalf("mounting a tmpfs on the storage (needs CAP_SYS_ADMIN, as root has): %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmounting %s: %v", dir, err)
		}
	})
}

// remount makes the tmpfs on dir read-only or writable again.
func remount(t *testing.T, dir string, readOnly bool) {
	t.Helper()
	flags := uintptr(syscall.MS_REMOUNT)
	if readOnly {
		flags |= syscall.MS_RDONLY
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", flags, ""); err != nil {
		t.Fatalf("remounting %s (read-only %v): %v", dir, readOnly, err)
	}
}

// fillTmpfs fills the tmpfs on dir up to leave pages blocks free, and
// returns a func that frees the space again.
func fillTmpfs(t *testing.T, dir string, pages int) (free func()) {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(dir, ".filler")
	size := int64(st.Bavail)*st.Bsize - int64(pages)*st.Bsize
	if err := os.WriteFile(filler, make([]byte, size), 0o600); err != nil {
		t.Fatalf("filling the storage: %v", err)
	}
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	if int(st.Bavail) != pages {
		t.Fatalf("storage has %d blocks free after filling, want %d", st.Bavail, pages)
	}
	return func() {
		if err := os.Remove(filler); err != nil {
			t.Fatal(err)
		}
	}
}

// storedFiles returns the files under dir/certificates by path, the
// Certificates certmagic keeps.
func storedFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	root := filepath.Join(dir, "certificates")
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		out[strings.TrimPrefix(p, dir+"/")] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// checkNoTempFiles fails for any temporary file left in the storage: ours
// (tmpMarker) or those of certmagic's atomic files (all digits).
func checkNoTempFiles(t *testing.T, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() == ".filler" {
			return err
		}
		digits := strings.Trim(d.Name(), "0123456789") == ""
		if strings.Contains(d.Name(), tmpMarker) || digits || strings.HasPrefix(d.Name(), "rw_test_") {
			t.Errorf("temporary file left in storage: %s", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// storedSerial loads the key and chain certmagic stores for host as a
// pair (they must belong together) and returns the leaf's serial.
func storedSerial(t *testing.T, dir, host string) string {
	t.Helper()
	crts, _ := filepath.Glob(filepath.Join(dir, "certificates", "*", host, host+".crt"))
	if len(crts) != 1 {
		t.Fatalf("stored chains for %s: %v, want one", host, crts)
	}
	pair, err := tls.LoadX509KeyPair(crts[0], strings.TrimSuffix(crts[0], ".crt")+".key")
	if err != nil {
		t.Fatalf("stored key and chain of %s: %v", host, err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf.SerialNumber.String()
}

// servedLog polls the HTTPS Listener for host, as a client would, and
// records every serial it is served (each change once) and every failed
// handshake.
type servedLog struct {
	stop, done chan struct{}
	// mu guards serials and errs.
	mu      sync.Mutex
	serials []string
	errs    []error
}

func pollServed(t *testing.T, g *pebbleGatehouse, host string) *servedLog {
	l := &servedLog{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			leaf, err := g.handshake(host)
			l.mu.Lock()
			switch {
			case err != nil:
				l.errs = append(l.errs, err)
			case len(l.serials) == 0 || l.serials[len(l.serials)-1] != leaf.SerialNumber.String():
				l.serials = append(l.serials, leaf.SerialNumber.String())
			}
			l.mu.Unlock()
			select {
			case <-l.stop:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(l.end)
	return l
}

func (l *servedLog) end() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	<-l.done
}

// check ends the polling and checks the client was served serials in
// this order, with no failed handshake.
func (l *servedLog) check(t *testing.T, want ...string) {
	t.Helper()
	// The poller may be a handshake behind the test's own.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		l.mu.Lock()
		n := len(l.serials)
		last := n > 0 && l.serials[n-1] == want[len(want)-1]
		l.mu.Unlock()
		if last {
			break
		}
	}
	l.end()
	if len(l.errs) > 0 {
		t.Errorf("%d handshakes failed while polling, the first: %v", len(l.errs), l.errs[0])
	}
	if !slices.Equal(l.serials, want) {
		t.Errorf("served serials: got %v, want %v", l.serials, want)
	}
}

// eventsOf subscribes to m's events of host.
func eventsOf(t *testing.T, m *Manager, host string) <-chan Event {
	ch := make(chan Event, 256)
	cancel := m.Subscribe(func(ev Event) {
		if slices.Contains(ev.Names, host) {
			select {
			case ch <- ev:
			default:
			}
		}
	})
	t.Cleanup(cancel)
	return ch
}

// waitEvent returns the next event of type typ, skipping others.
func waitEvent(t *testing.T, events <-chan Event, typ string, timeout time.Duration) Event {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case ev := <-events:
			if ev.Type == typ {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %s event within %v", typ, timeout)
		}
	}
}

// inventoryOf returns m's inventory entry for host.
func inventoryOf(t *testing.T, m *Manager, host string) CertificateInfo {
	t.Helper()
	certs, err := m.CertificatesContext(t.Context())
	if err != nil {
		t.Fatalf("reading the inventory: %v", err)
	}
	for _, c := range certs {
		if slices.Contains(c.Names, host) {
			return c
		}
	}
	t.Fatalf("%s not in the inventory", host)
	return CertificateInfo{}
}

// TestRenewalStorageFaults breaks the storage (a tmpfs) during a
// renewal: made read-only, or filled up, once the order is placed and
// before the certificate is issued; or made read-only before the renewal
// starts, which then places no order at all. The failure is an event and
// shows in the inventory, the old Certificate is served throughout and
// stays in storage whole (key and chain together, no temporary file
// left), and the renewal succeeds at certmagic's next retry once the
// storage takes writes again.
func TestRenewalStorageFaults(t *testing.T) {
	skipShort(t)
	shortenRenewalRetries(t, time.Second)
	readOnly := func(t *testing.T, dir string) func() {
		remount(t, dir, true)
		return func() { remount(t, dir, false) }
	}
	atFinalize := (*pebbletest.CA).HoldFinalize
	for _, tc := range []struct {
		name string
		// at holds the CA's request at which the storage breaks.
		at func(*pebbletest.CA) (held <-chan struct{}, release func())
		// fault breaks the storage on dir and returns the repair.
		fault func(t *testing.T, dir string) (repair func())
		// wantErr is in the error the failure reports.
		wantErr string
		// orders is how many orders the failed renewal placed.
		orders int
	}{
		{name: "read-only", at: atFinalize, fault: readOnly, wantErr: "read-only file system", orders: 1},
		{
			name: "full", at: atFinalize, wantErr: "no space left on device", orders: 1,
			fault: func(t *testing.T, dir string) func() { return fillTmpfs(t, dir, 0) },
		},
		{
			// certmagic asks for the renewal window, sees it moved, and
			// renews: its storage check fails before any order.
			name: "read-only-before", at: (*pebbletest.CA).HoldRenewalInfo, fault: readOnly,
			wantErr: "read-only file system", orders: 0,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			host := "storage-" + tc.name + ".test"
			g := startPebbleGatehouse(t, pebbletest.Options{ARIRetryAfter: time.Second})
			mountTmpfs(t, g.storage, 4<<20)
			opts := fastOptions()
			opts.renewCheckInterval = time.Second
			m := g.start(t, g.acmeConfig(host), opts)
			events := eventsOf(t, m, host)
			first := g.waitForCert(t, host, "", 30*time.Second)
			waitEvent(t, events, EventObtained, 10*time.Second)
			served := pollServed(t, g, host)

			// The CA moves the renewal window into the past, so
			// certmagic renews at its next look at the window (every
			// second); the storage breaks while the CA holds tc.at's
			// request.
			now := time.Now()
			if err := g.ca.SetRenewalWindow(first.SerialNumber, now.Add(-2*time.Hour), now.Add(-time.Hour)); err != nil {
				t.Fatal(err)
			}
			held, release := tc.at(g.ca)
			defer release()
			orders := g.ca.Orders()
			select {
			case <-held:
			case <-time.After(30 * time.Second):
				t.Fatal("the renewal never reached the held request within 30s")
			}
			before := storedFiles(t, g.storage)
			repair := tc.fault(t, g.storage)
			release()

			failed := waitEvent(t, events, EventRenewalFailed, 30*time.Second)
			if !strings.Contains(failed.Error, tc.wantErr) {
				t.Errorf("renewal_failed error: got %q, want it to contain %q", failed.Error, tc.wantErr)
			}
			info := inventoryOf(t, m, host)
			if info.Status != StatusFailing || !strings.Contains(info.LastError, tc.wantErr) || info.Failures < 1 {
				t.Errorf("inventory while failing: status %q, last error %q, failures %d; want failing with %q",
					info.Status, info.LastError, info.Failures, tc.wantErr)
			}
			if info.Serial != first.SerialNumber.Text(16) {
				t.Errorf("inventory serial while failing: got %s, want the old %s", info.Serial, first.SerialNumber.Text(16))
			}
			if got := g.ca.Orders() - orders; got != tc.orders {
				t.Errorf("orders placed by the failed renewal: got %d, want %d", got, tc.orders)
			}
			after := storedFiles(t, g.storage)
			for p, b := range before {
				if !bytes.Equal(after[p], b) {
					t.Errorf("stored %s changed by the failed renewal", p)
				}
			}
			for p := range after {
				if _, ok := before[p]; !ok {
					t.Errorf("failed renewal left %s in storage", p)
				}
			}
			checkNoTempFiles(t, g.storage)
			if got := storedSerial(t, g.storage, host); got != first.SerialNumber.String() {
				t.Errorf("stored serial after the failure: got %s, want the old %s", got, first.SerialNumber)
			}

			repair()
			renewed := g.waitForCert(t, host, first.SerialNumber.String(), 30*time.Second)
			waitEvent(t, events, EventRenewed, 10*time.Second)
			served.check(t, first.SerialNumber.String(), renewed.SerialNumber.String())
			info = inventoryOf(t, m, host)
			if info.Status != StatusValid || info.LastError != "" || info.Failures != 0 || info.Serial != renewed.SerialNumber.Text(16) {
				t.Errorf("inventory after the repair: status %q, last error %q, failures %d, serial %s; want valid, no error, serial %s",
					info.Status, info.LastError, info.Failures, info.Serial, renewed.SerialNumber.Text(16))
			}
			if got := storedSerial(t, g.storage, host); got != renewed.SerialNumber.String() {
				t.Errorf("stored serial after the repair: got %s, want %s", got, renewed.SerialNumber)
			}
			checkNoTempFiles(t, g.storage)
		})
	}
}

// TestFileStorageAllOrNothing stores a Certificate's key, chain and
// metadata as certmagic does (storeTx: in that order, and on a failure
// it deletes those already stored), with the disk filling up after the
// key: the old three stay as they were. Through certmagic's FileStorage
// alone the new key replaced the old one, then its Delete left the old
// chain with no key at all.
func TestFileStorageAllOrNothing(t *testing.T) {
	dir := t.TempDir()
	mountTmpfs(t, dir, 1<<20)
	s := newFileStorage(dir)
	ctx := t.Context()
	site := "certificates/ca/a.test/a.test"
	keys := []string{site + ".key", site + ".crt", site + ".json"}
	store := func(vals ...string) error {
		for i, k := range keys {
			if err := s.Store(ctx, k, []byte(vals[i])); err != nil {
				for j := i - 1; j >= 0; j-- {
					_ = s.Delete(ctx, keys[j])
				}
				return err
			}
		}
		return nil
	}
	if err := store("old key", "old chain", "old meta"); err != nil {
		t.Fatal(err)
	}
	check := func(want ...string) {
		t.Helper()
		for i, k := range keys {
			b, err := s.Load(ctx, k)
			if err != nil || string(b) != want[i] {
				t.Errorf("%s: got %q, %v; want %q", k, b, err, want[i])
			}
		}
		checkNoTempFiles(t, dir)
	}
	check("old key", "old chain", "old meta")

	// One block free: enough for the key, not for a chain that grew to
	// two blocks (a longer chain from the CA).
	newChain := strings.Repeat("c", 6000)
	free := fillTmpfs(t, dir, 1)
	err := store("new key", newChain, "new meta")
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("storing on a full disk: got %v, want ENOSPC", err)
	}
	check("old key", "old chain", "old meta")

	free()
	if err := store("new key", newChain, "new meta"); err != nil {
		t.Fatal(err)
	}
	check("new key", newChain, "new meta")

	// The metadata alone (an ARI update) is one atomic file.
	if err := s.Store(ctx, keys[2], []byte("ari meta")); err != nil {
		t.Fatal(err)
	}
	check("new key", newChain, "ari meta")
}

// TestRenewalCADown takes the CA down in the middle of a renewal: the
// order is placed and its challenge passed, and the CA is gone when the
// certificate is asked for (finalize). The renewal is retried on
// certmagic's backoff (shortened here), each failure an event and in the
// inventory; a client polling the Listener is served the old Certificate
// all along; and when the CA is back, one order renews it: no storm of
// orders that piled up meanwhile.
func TestRenewalCADown(t *testing.T) {
	skipShort(t)
	// While the CA is down, each of certmagic's looks at the renewal
	// window waits out its own retries (some 10 s), so two failures
	// keep the test short: the first and one retry.
	intervals := []time.Duration{time.Second}
	shortenRenewalRetries(t, intervals...)
	const host = "ca-down.test"
	g := startPebbleGatehouse(t, pebbletest.Options{ARIRetryAfter: time.Second})
	opts := fastOptions()
	opts.renewCheckInterval = time.Second
	m := g.start(t, g.acmeConfig(host), opts)
	events := eventsOf(t, m, host)
	first := g.waitForCert(t, host, "", 30*time.Second)
	waitEvent(t, events, EventObtained, 10*time.Second)
	served := pollServed(t, g, host)

	g.ca.DownAtFinalize()
	orders := g.ca.Orders()
	now := time.Now()
	if err := g.ca.SetRenewalWindow(first.SerialNumber, now.Add(-2*time.Hour), now.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	var fails []Event
	for len(fails) < len(intervals)+1 {
		fails = append(fails, waitEvent(t, events, EventRenewalFailed, 30*time.Second))
	}
	if !g.ca.IsDown() {
		t.Fatal("the renewals failed, but not because the CA went down at finalize")
	}
	for i, ev := range fails {
		if ev.Failures != i+1 || ev.Error == "" {
			t.Errorf("failure %d: failures %d, error %q; want %d and the error", i+1, ev.Failures, ev.Error, i+1)
		}
		if i == 0 {
			continue
		}
		// Each retry waits its interval after the failure before it.
		if gap := ev.Time.Sub(fails[i-1].Time); gap < intervals[i-1]-50*time.Millisecond {
			t.Errorf("retry %d came %v after the failure before it, want at least %v", i, gap, intervals[i-1])
		}
	}
	if got := g.ca.Orders(); got != orders+1 {
		t.Errorf("orders while the CA was down: got %d, want %d (the one that reached finalize)", got-orders, 1)
	}
	// Each retry went to the CA (and found it gone), not failed before it.
	if got := g.ca.Refused(); got < len(fails) {
		t.Errorf("requests the CA refused while down: %d, want at least one per failure (%d)", got, len(fails))
	}
	info := inventoryOf(t, m, host)
	if info.Status != StatusFailing || info.LastError == "" || info.Failures < len(fails) || info.Serial != first.SerialNumber.Text(16) {
		t.Errorf("inventory while the CA is down: status %q, last error %q, failures %d, serial %s; want failing, the error, %d failures, serial %s",
			info.Status, info.LastError, info.Failures, info.Serial, len(fails), first.SerialNumber.Text(16))
	}

	g.ca.Up()
	renewed := g.waitForCert(t, host, first.SerialNumber.String(), 30*time.Second)
	waitEvent(t, events, EventRenewed, 10*time.Second)
	// certmagic keeps looking at the new Certificate's window (every
	// second here): after two more looks, still the one order.
	seen := g.ca.RenewalInfoRequests()
	deadline := time.Now().Add(30 * time.Second)
	for g.ca.RenewalInfoRequests() < seen+2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if got := g.ca.Orders(); got != orders+2 {
		t.Errorf("orders after the CA came back: got %d, want 1", got-orders-1)
	}
	served.check(t, first.SerialNumber.String(), renewed.SerialNumber.String())
	info = inventoryOf(t, m, host)
	if info.Status != StatusValid || info.Failures != 0 || info.Serial != renewed.SerialNumber.Text(16) {
		t.Errorf("inventory after the CA came back: status %q, failures %d, serial %s; want valid, 0, %s",
			info.Status, info.Failures, info.Serial, renewed.SerialNumber.Text(16))
	}
	if got := storedSerial(t, g.storage, host); got != renewed.SerialNumber.String() {
		t.Errorf("stored serial: got %s, want %s", got, renewed.SerialNumber)
	}
}

// TestFileStorageRemovesStaleTemps checks the temporary files a crash
// left while staging a Certificate are removed when the storage is next
// opened, and a recent one (another process may be staging it) is kept.
func TestFileStorageRemovesStaleTemps(t *testing.T) {
	dir := t.TempDir()
	site := filepath.Join(dir, "certificates", "ca", "a.test")
	if err := os.MkdirAll(site, 0o700); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(site, ".a.test.key"+tmpMarker+"1")
	fresh := filepath.Join(site, ".a.test.crt"+tmpMarker+"2")
	kept := filepath.Join(site, "a.test.key")
	for _, p := range []string{stale, fresh, kept} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * staleTemp)
	for _, p := range []string{stale, kept} {
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	newFileStorage(dir)
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stale temporary file: got %v, want it removed", err)
	}
	for _, p := range []string{fresh, kept} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s: %v, want it kept", p, err)
		}
	}
}

// TestInventoryKeepsUnsavedRecords updates records while the storage (a
// tmpfs) is read-only: the update fails, yet load and list show it, so
// the inventory shows the failure it could not write down; once the
// storage takes writes, the next update is stored and the memory copy
// dropped.
func TestInventoryKeepsUnsavedRecords(t *testing.T) {
	dir := t.TempDir()
	mountTmpfs(t, dir, 1<<20)
	inv := &inventory{storage: newFileStorage(dir)}
	ctx := t.Context()
	def := func(name string) func() record {
		return func() record { return record{Names: []string{name}, Source: SourceACME} }
	}
	fail := func(msg string) func(*record) {
		return func(r *record) { r.Failures++; r.LastError = msg }
	}
	if _, err := inv.update(ctx, "a.test", def("a.test"), fail("first")); err != nil {
		t.Fatal(err)
	}

	remount(t, dir, true)
	r, err := inv.update(ctx, "a.test", nil, fail("read-only"))
	if !errors.Is(err, syscall.EROFS) || r.Failures != 2 {
		t.Errorf("update on read-only storage: got %+v, %v; want 2 failures and EROFS", r, err)
	}
	if _, err := inv.update(ctx, "b.test", def("b.test"), fail("read-only")); !errors.Is(err, syscall.EROFS) {
		t.Errorf("new record on read-only storage: got %v, want EROFS", err)
	}
	if got, err := inv.load(ctx, "a.test"); err != nil || got == nil || got.Failures != 2 || got.LastError != "read-only" {
		t.Errorf("load while read-only: got %+v, %v; want the unsaved record", got, err)
	}
	recs, err := inv.list(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if recs["a.test"].Failures != 2 || recs["b.test"].LastError != "read-only" {
		t.Errorf("list while read-only: got %+v; want both unsaved records", recs)
	}

	remount(t, dir, false)
	if _, err := inv.update(ctx, "a.test", nil, fail("stored")); err != nil {
		t.Fatal(err)
	}
	fresh := &inventory{storage: newFileStorage(dir)}
	if got, err := fresh.load(ctx, "a.test"); err != nil || got == nil || got.Failures != 3 || got.LastError != "stored" {
		t.Errorf("stored record after the repair: got %+v, %v; want 3 failures, error stored", got, err)
	}
	if _, ok := inv.unsavedRecord("a.test"); ok {
		t.Error("a.test still kept in memory after it was stored")
	}
	if _, ok := inv.unsavedRecord("b.test"); !ok {
		t.Error("b.test dropped from memory before any update of it was stored")
	}
}

// TestFileStorageReleasesOrphanLocks unlocks while the storage is
// read-only: the lock file stays, and FileStorage would keep it fresh for
// good. Once the storage takes writes, the next write removes it, so the
// name can be locked again at once; a lock file another process made
// since (it found ours stale) is left alone.
func TestFileStorageReleasesOrphanLocks(t *testing.T) {
	dir := t.TempDir()
	mountTmpfs(t, dir, 1<<20)
	s := newFileStorage(dir)
	ctx := t.Context()
	for _, name := range []string{"ours", "theirs"} {
		if err := s.Lock(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	remount(t, dir, true)
	for _, name := range []string{"ours", "theirs"} {
		if err := s.Unlock(ctx, name); !errors.Is(err, syscall.EROFS) {
			t.Fatalf("unlocking %s on read-only storage: got %v, want EROFS", name, err)
		}
	}
	remount(t, dir, false)
	theirs := s.lockFile("theirs")
	other := []byte(`{"created":"2030-01-01T00:00:00Z","updated":"2030-01-01T00:00:00Z"}`)
	if err := os.WriteFile(theirs, other, 0o644); err != nil {
		t.Fatal(err)
	}

	if err := s.Store(ctx, "other/key", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.lockFile("ours")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("our lock file after the next write: %v, want it removed", err)
	}
	if ok, err := s.TryLock(ctx, "ours"); !ok || err != nil {
		t.Errorf("locking the name again: %v, %v; want it locked at once", ok, err)
	}
	if b, err := os.ReadFile(theirs); err != nil || !bytes.Equal(b, other) {
		t.Errorf("another's lock file: %q, %v; want it left alone", b, err)
	}
}
