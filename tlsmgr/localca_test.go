package tlsmgr

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// fakeClock is a settable clock for the local CA.
type fakeClock struct {
	// mu guards t.
	mu sync.Mutex
	t  time.Time
}

// openLocalCA is openLocalCAOn for the storage directory storage.
func openLocalCA(ctx context.Context, storage string, now func() time.Time) (*localCA, error) {
	return openLocalCAOn(ctx, &certmagic.FileStorage{Path: storage}, now)
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func verifyLocal(t *testing.T, ca *localCA, chain [][]byte, name string) *x509.Certificate {
	t.Helper()
	if len(chain) != 2 {
		t.Fatalf("chain length: got %d, want 2 (leaf, intermediate)", len(chain))
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		t.Fatal(err)
	}
	inter, err := x509.ParseCertificate(chain[1])
	if err != nil {
		t.Fatal(err)
	}
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(ca.root)
	inters.AddCert(inter)
	if _, err := leaf.Verify(x509.VerifyOptions{
		DNSName: name, Roots: roots, Intermediates: inters,
		CurrentTime: ca.now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}); err != nil {
		t.Fatalf("verifying leaf for %q: %v", name, err)
	}
	return leaf
}

func TestLocalCALeaves(t *testing.T) {
	ca, err := openLocalCA(t.Context(), t.TempDir(), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, verifyAs string
		wantDNS        []string
		wantIP         net.IP
	}{
		{name: "localhost", verifyAs: "localhost", wantDNS: []string{"localhost"}},
		{name: "*.app.internal", verifyAs: "api.app.internal", wantDNS: []string{"*.app.internal"}},
		{name: "192.168.1.7", verifyAs: "192.168.1.7", wantIP: net.ParseIP("192.168.1.7")},
		{name: "::1", verifyAs: "::1", wantIP: net.IPv6loopback},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cert, err := ca.leaf(tt.name)
			if err != nil {
				t.Fatal(err)
			}
			leaf := verifyLocal(t, ca, cert.Certificate, tt.verifyAs)
			if !slices.Equal(leaf.DNSNames, tt.wantDNS) {
				t.Errorf("DNS names: got %v, want %v", leaf.DNSNames, tt.wantDNS)
			}
			if tt.wantIP != nil && (len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(tt.wantIP)) {
				t.Errorf("IP addresses: got %v, want [%v]", leaf.IPAddresses, tt.wantIP)
			}
			if got := leaf.NotAfter.Sub(leaf.NotBefore); got != defaultLeafLifetime+backdate {
				t.Errorf("leaf lifetime: got %v, want %v", got, defaultLeafLifetime+backdate)
			}
		})
	}
}

func TestLocalCALeafRenewal(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	ca, err := openLocalCA(t.Context(), t.TempDir(), clock.now)
	if err != nil {
		t.Fatal(err)
	}
	ca.leafLifetime = 3 * time.Minute
	first, err := ca.leaf("localhost")
	if err != nil {
		t.Fatal(err)
	}
	clock.advance(time.Minute)
	same, err := ca.leaf("localhost")
	if err != nil {
		t.Fatal(err)
	}
	if same != first {
		t.Errorf("leaf re-issued after a third of its life; want the same leaf")
	}
	clock.advance(time.Minute + time.Second)
	renewed, err := ca.leaf("localhost")
	if err != nil {
		t.Fatal(err)
	}
	if renewed.Leaf.SerialNumber.Cmp(first.Leaf.SerialNumber) == 0 {
		t.Fatalf("serial after two thirds of life: got the old %v, want a new one", first.Leaf.SerialNumber)
	}
	verifyLocal(t, ca, renewed.Certificate, "localhost")
}

func TestLocalCAConcurrentIssuesOnce(t *testing.T) {
	ca, err := openLocalCA(t.Context(), t.TempDir(), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	serials := make([]string, 16)
	for i := range serials {
		wg.Go(func() {
			c, err := ca.leaf("localhost")
			if err != nil {
				t.Error(err)
				return
			}
			serials[i] = c.Leaf.SerialNumber.String()
		})
	}
	wg.Wait()
	for _, s := range serials {
		if s != serials[0] {
			t.Fatalf("serials: got %v, want one leaf shared by all", serials)
		}
	}
}

func TestLocalCAIntermediateReissued(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	storage := t.TempDir()
	ca, err := openLocalCA(t.Context(), storage, clock.now)
	if err != nil {
		t.Fatal(err)
	}
	defer ca.close()
	old := ca.inter
	clock.advance(intermediateLifetime * 2 / 3)
	clock.advance(time.Hour)
	cert, err := ca.leaf("localhost")
	if err != nil {
		t.Fatal(err)
	}
	// The handshake got a leaf from the current intermediate at once;
	// the rotation runs in the background.
	verifyLocal(t, ca, cert.Certificate, "localhost")
	ca.wg.Wait()
	if ca.inter.SerialNumber.Cmp(old.SerialNumber) == 0 {
		t.Fatal("intermediate not re-issued with under a third of its life left")
	}
	checkUnlocked(t, storage)
	reopened, err := openLocalCA(t.Context(), storage, clock.now)
	if err != nil {
		t.Fatal(err)
	}
	if reopened.inter.SerialNumber.Cmp(ca.inter.SerialNumber) != 0 {
		t.Error("new intermediate not persisted")
	}
}

func TestLocalCAPersistedAndPrivate(t *testing.T) {
	storage := t.TempDir()
	dir := filepath.Join(storage, pkiDir)
	a, err := openLocalCA(t.Context(), storage, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	b, err := openLocalCA(t.Context(), storage, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	if !a.root.Equal(b.root) {
		t.Error("root re-created on second open; want it reused")
	}
	if !a.inter.Equal(b.inter) {
		t.Error("intermediate re-created on second open; want it reused")
	}
	checkMode(t, dir, 0o700)
	checkMode(t, filepath.Join(dir, rootKeyFile), 0o600)
	checkMode(t, filepath.Join(dir, intermediateKeyFile), 0o600)
}

func checkMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("mode of %s: got %v, want %v", path, got, want)
	}
}

func TestLocalRoot(t *testing.T) {
	// A storage directory made by hand with a loose mode is tightened.
	storage := filepath.Join(t.TempDir(), "storage")
	if err := os.Mkdir(storage, 0o755); err != nil {
		t.Fatal(err)
	}
	pemBytes, path, err := LocalRoot(t.Context(), storage)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(storage, "pki", "root.pem"); path != want {
		t.Errorf("path: got %s, want %s", path, want)
	}
	onDisk, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(onDisk) != string(pemBytes) {
		t.Error("returned PEM differs from the file")
	}
	block, _ := pem.Decode(pemBytes)
	root, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !root.IsCA || root.NotAfter.Sub(root.NotBefore) < 9*365*24*time.Hour {
		t.Errorf("root: IsCA %v, lifetime %v; want a CA of about 10 years", root.IsCA, root.NotAfter.Sub(root.NotBefore))
	}
	again, _, err := LocalRoot(t.Context(), storage)
	if err != nil {
		t.Fatal(err)
	}
	if string(again) != string(pemBytes) {
		t.Error("second LocalRoot returned another root")
	}
	// The running server uses the same root.
	m, err := New(t.Context(), &config.Config{Storage: storage, Listen: config.Listen{HTTP: "127.0.0.1:0", HTTPS: "127.0.0.1:0"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if !m.ca.root.Equal(root) {
		t.Error("New uses another root than LocalRoot")
	}
	checkMode(t, storage, 0o700)
}

// TestLocalCAConcurrentCreators opens one new storage from several
// Managers and LocalRoot calls at once, as a first `gatehouse run` racing
// `gatehouse trust`, or two instances sharing a storage, do. Each opens
// the storage on its own, so only the storage lock keeps them from each
// creating a root and serving leaves from one nobody trusts.
func TestLocalCAConcurrentCreators(t *testing.T) {
	storage := t.TempDir()
	const n = 6
	roots := make([]*x509.Certificate, n)
	chains := make([][][]byte, n) // a leaf served by each Manager
	errs := make([]error, n)
	begin := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-begin
			if i%2 == 0 {
				m, err := New(t.Context(), &config.Config{Storage: storage, Listen: config.Listen{HTTP: "127.0.0.1:0", HTTPS: "127.0.0.1:0"}}, nil)
				if err != nil {
					errs[i] = err
					return
				}
				defer m.Close()
				cert, err := m.ca.leaf("localhost")
				roots[i], chains[i], errs[i] = m.ca.root, cert.Certificate, err
				return
			}
			pemBytes, _, err := LocalRoot(t.Context(), storage)
			if err != nil {
				errs[i] = err
				return
			}
			block, _ := pem.Decode(pemBytes)
			roots[i], errs[i] = x509.ParseCertificate(block.Bytes)
		})
	}
	close(begin)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("creator %d: %v", i, err)
		}
	}
	onDisk, err := os.ReadFile(filepath.Join(storage, pkiDir, rootCertFile))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(onDisk)
	stored, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range roots {
		if !r.Equal(stored) {
			t.Errorf("creator %d: got root %v, want the one in storage, %v", i, r.SerialNumber, stored.SerialNumber)
		}
		if chains[i] != nil {
			// What each Manager serves verifies against the stored root.
			verifyLocal(t, &localCA{root: stored, now: time.Now}, chains[i], "localhost")
		}
	}
	checkUnlocked(t, storage)
}

// TestLocalCAStorageLock checks the local CA waits for the storage lock
// (so a CA being created by another process is never created twice) and
// releases it when loading fails.
func TestLocalCAStorageLock(t *testing.T) {
	storage := t.TempDir()
	other := &certmagic.FileStorage{Path: storage}
	if err := other.Lock(t.Context(), localCALock); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if _, err := openLocalCA(ctx, storage, time.Now); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("opening while another process holds the lock: got %v, want %v", err, context.DeadlineExceeded)
	}
	if _, err := os.Stat(filepath.Join(storage, pkiDir, rootCertFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("root file while another process holds the lock: got %v, want none", err)
	}
	if err := other.Unlock(t.Context(), localCALock); err != nil {
		t.Fatal(err)
	}

	// A root that cannot be loaded fails the open, and the lock is
	// released all the same.
	for _, f := range []string{rootCertFile, rootKeyFile} {
		if err := os.WriteFile(filepath.Join(storage, pkiDir, f), []byte("garbage"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := openLocalCA(t.Context(), storage, time.Now); err == nil {
		t.Fatal("opening a garbled root: got no error")
	}
	checkUnlocked(t, storage)
}

// checkUnlocked fails t if the local CA's storage lock is held.
func checkUnlocked(t *testing.T, storage string) {
	t.Helper()
	s := &certmagic.FileStorage{Path: storage}
	ok, err := s.TryLock(t.Context(), localCALock)
	if err != nil || !ok {
		t.Fatalf("local CA lock after open: got held (%v), want released", err)
	}
	if err := s.Unlock(t.Context(), localCALock); err != nil {
		t.Fatal(err)
	}
}

// TestLocalCARotationShared rotates the intermediate of two Managers
// sharing a storage, as two instances do, once their clock makes it due.
// A handshake never waits for the storage lock: while another process
// holds it, the handshake gets a leaf from the current intermediate and
// the files stay as they are. The first Manager then rotates under the
// lock; the second, holding it in turn, finds that intermediate on disk
// and loads it instead of writing another.
func TestLocalCARotationShared(t *testing.T) {
	storage := t.TempDir()
	clock := &fakeClock{t: time.Now()}
	const host = "rotate.internal"
	opts := defaultOptions()
	opts.caNow = clock.now
	newM := func() *Manager {
		t.Helper()
		cfg := &config.Config{
			Storage: storage,
			Listen:  config.Listen{HTTP: "127.0.0.1:0", HTTPS: "127.0.0.1:0"},
			Sites:   []config.Site{{Hosts: []string{host}}},
		}
		m, err := newManager(t.Context(), cfg, slog.New(slog.NewTextHandler(t.Output(), nil)), opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = m.Close() })
		return m
	}
	a, b := newM(), newM()
	old := a.ca.inter
	if !b.ca.inter.Equal(old) {
		t.Fatalf("second Manager: got intermediate %v, want the stored one, %v", b.ca.inter.SerialNumber, old.SerialNumber)
	}
	// served returns the intermediate m serves host with, from a fresh
	// leaf.
	served := func(m *Manager) *x509.Certificate {
		t.Helper()
		cert, err := m.getCertificate(&tls.ClientHelloInfo{ServerName: host})
		if err != nil {
			t.Fatal(err)
		}
		verifyLocal(t, m.ca, cert.Certificate, host)
		inter, err := x509.ParseCertificate(cert.Certificate[1])
		if err != nil {
			t.Fatal(err)
		}
		return inter
	}
	stored := func() *x509.Certificate {
		t.Helper()
		// loadPair fails on a key that does not match the certificate.
		cert, _, err := loadPair(t.Context(), &certmagic.FileStorage{Path: storage}, intermediateCertFile, intermediateKeyFile)
		if err != nil {
			t.Fatalf("loading the stored intermediate: %v", err)
		}
		return cert
	}

	// Due; leaves last a day, so two days on each Manager issues anew.
	clock.advance(intermediateLifetime*2/3 + 48*time.Hour)
	other := &certmagic.FileStorage{Path: storage}
	if err := other.Lock(t.Context(), localCALock); err != nil {
		t.Fatal(err)
	}
	if got := served(a); !got.Equal(old) {
		t.Errorf("handshake while the lock is held elsewhere: got intermediate %v, want the current one, %v", got.SerialNumber, old.SerialNumber)
	}
	if got := stored(); !got.Equal(old) {
		t.Errorf("stored intermediate while the lock is held elsewhere: got %v, want %v untouched", got.SerialNumber, old.SerialNumber)
	}
	if err := other.Unlock(t.Context(), localCALock); err != nil {
		t.Fatal(err)
	}
	a.ca.wg.Wait() // the rotation the handshake started
	rotated := stored()
	if rotated.Equal(old) {
		t.Fatal("intermediate not rotated once the lock was free")
	}
	if !a.ca.inter.Equal(rotated) {
		t.Errorf("first Manager: got intermediate %v, want the one it stored, %v", a.ca.inter.SerialNumber, rotated.SerialNumber)
	}
	clock.advance(48 * time.Hour)
	if got := served(a); !got.Equal(rotated) {
		t.Errorf("first Manager serves intermediate %v, want %v", got.SerialNumber, rotated.SerialNumber)
	}

	// The second Manager's rotation loads the first one's.
	served(b)
	b.ca.wg.Wait()
	if got := stored(); !got.Equal(rotated) {
		t.Errorf("stored intermediate after the second Manager's rotation: got %v, want the first's, %v, kept", got.SerialNumber, rotated.SerialNumber)
	}
	if !b.ca.inter.Equal(rotated) {
		t.Errorf("second Manager: got intermediate %v, want the first's, %v", b.ca.inter.SerialNumber, rotated.SerialNumber)
	}
	clock.advance(48 * time.Hour)
	if got := served(b); !got.Equal(rotated) {
		t.Errorf("second Manager serves intermediate %v, want %v", got.SerialNumber, rotated.SerialNumber)
	}
	checkUnlocked(t, storage)
}
