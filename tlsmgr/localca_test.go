package tlsmgr

import (
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// fakeClock is a settable clock for the local CA.
type fakeClock struct {
	// mu guards t.
	mu sync.Mutex
	t  time.Time
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
	ca, err := openLocalCA(filepath.Join(t.TempDir(), "pki"), time.Now)
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
	ca, err := openLocalCA(filepath.Join(t.TempDir(), "pki"), clock.now)
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
	ca, err := openLocalCA(filepath.Join(t.TempDir(), "pki"), time.Now)
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
	dir := filepath.Join(t.TempDir(), "pki")
	ca, err := openLocalCA(dir, clock.now)
	if err != nil {
		t.Fatal(err)
	}
	old := ca.inter
	clock.advance(intermediateLifetime * 2 / 3)
	clock.advance(time.Hour)
	cert, err := ca.leaf("localhost")
	if err != nil {
		t.Fatal(err)
	}
	if ca.inter.SerialNumber.Cmp(old.SerialNumber) == 0 {
		t.Fatal("intermediate not re-issued with under a third of its life left")
	}
	verifyLocal(t, ca, cert.Certificate, "localhost")
	reopened, err := openLocalCA(dir, clock.now)
	if err != nil {
		t.Fatal(err)
	}
	if reopened.inter.SerialNumber.Cmp(ca.inter.SerialNumber) != 0 {
		t.Error("new intermediate not persisted")
	}
}

func TestLocalCAPersistedAndPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	a, err := openLocalCA(dir, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	b, err := openLocalCA(dir, time.Now)
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
	pemBytes, path, err := LocalRoot(storage)
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
	again, _, err := LocalRoot(storage)
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
