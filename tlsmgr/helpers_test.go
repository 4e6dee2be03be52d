package tlsmgr

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// writeSelfSigned writes a self-signed certificate for names and its key
// (mode 0600) into dir and returns the two paths and the serial.
func writeSelfSigned(t *testing.T, dir, base string, names ...string) (certFile, keyFile string, serial *big.Int) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err = randomSerial()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, base+".pem"), filepath.Join(dir, base+".key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, serial
}

// fakeEngine records what the Manager asks of an ACME engine.
type fakeEngine struct {
	cert *tls.Certificate
	// mu guards the fields below.
	mu      sync.Mutex
	gets    []string
	managed []string
}

func (f *fakeEngine) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gets = append(f.gets, hello.ServerName)
	return f.cert, nil
}

func (f *fakeEngine) handleHTTP(w http.ResponseWriter, r *http.Request) bool {
	if r.URL.Path == "/.well-known/acme-challenge/known" {
		_, _ = w.Write([]byte("key-authz"))
		return true
	}
	return false
}

func (f *fakeEngine) manage(hosts []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.managed = hosts
}

func (f *fakeEngine) close() error { return nil }

func (f *fakeEngine) calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.gets...)
}

// newFakeManager returns a Manager whose ACME engine is fake, with cfg
// applied, so dispatch is tested without any CA.
func newFakeManager(t *testing.T, cfg *config.Config) (*Manager, *fakeEngine) {
	t.Helper()
	if cfg.Storage == "" {
		cfg.Storage = t.TempDir()
	}
	ca, err := openLocalCA(t.Context(), cfg.Storage, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c, k, _ := writeSelfSigned(t, dir, "acme", "acme.test")
	pair, err := tls.LoadX509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	fe := &fakeEngine{cert: &pair}
	m := &Manager{
		logger: slog.New(slog.DiscardHandler), ca: ca, engine: fe,
		frozen:  frozen{storage: cfg.Storage, acme: cfg.ACME, listen: cfg.Listen},
		http01:  true,
		tlsALPN: true,
	}
	m.table.Store(&table{})
	if err := m.Apply(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	return m, fe
}
