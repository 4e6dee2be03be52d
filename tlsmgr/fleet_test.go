package tlsmgr

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr/etcdtest"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr/pebbletest"
)

// TestEtcdLocalCAShared starts three Managers on one etcd at once, as a
// fleet booting together: they create one local CA and serve leaves of
// that root, its keys are sealed in etcd, `gatehouse trust` (LocalRootOf)
// reads the same root, and a Manager restarted while etcd is entirely
// down starts from its cache with that CA (issue 11).
func TestEtcdLocalCAShared(t *testing.T) {
	c := etcdtest.Start(t, 3)
	etcd := etcdConfig(t, c, "/localca/")
	const host = "shared.internal"
	caches := make([]string, 3)
	for i := range caches {
		caches[i] = t.TempDir()
	}
	cfgFor := func(cache string) *config.Config {
		return &config.Config{
			Storage: cache, StorageEtcd: etcd,
			Listen: config.Listen{HTTP: "127.0.0.1:0", HTTPS: "127.0.0.1:0"},
			Sites:  []config.Site{{Hosts: []string{host}}},
		}
	}
	newM := func(cache string) (*Manager, error) {
		m, err := newManager(t.Context(), cfgFor(cache), slog.New(slog.NewTextHandler(t.Output(), nil)), defaultOptions())
		if err == nil {
			t.Cleanup(func() { _ = m.Close() })
		}
		return m, err
	}
	ms := make([]*Manager, len(caches))
	var wg sync.WaitGroup
	errs := make([]error, len(caches))
	for i := range caches {
		wg.Go(func() { ms[i], errs[i] = newM(caches[i]) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Manager %d: %v", i, err)
		}
	}
	root := ms[0].ca.root
	for i, m := range ms {
		if !m.ca.root.Equal(root) {
			t.Errorf("Manager %d: got root %v, want the fleet's one, %v", i, m.ca.root.SerialNumber, root.SerialNumber)
		}
		cert, err := m.getCertificate(&tls.ClientHelloInfo{ServerName: host})
		if err != nil {
			t.Fatal(err)
		}
		verifyLocal(t, ms[0].ca, cert.Certificate, host)
	}

	resp, err := rawEtcd(t, c).Get(t.Context(), "/localca/storage/pki/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]byte{}
	for _, kv := range resp.Kvs {
		got[string(kv.Key)] = kv.Value
	}
	for _, f := range []string{rootKeyFile, intermediateKeyFile} {
		v, ok := got["/localca/storage/pki/"+f]
		if !ok {
			t.Errorf("%s: not in etcd (got %d keys under pki/)", f, len(got))
		} else if bytes.Contains(v, []byte("PRIVATE KEY")) {
			t.Errorf("%s is in clear in etcd", f)
		}
	}
	rootPEM, where, err := LocalRootOf(t.Context(), cfgFor(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	if pool := x509.NewCertPool(); !pool.AppendCertsFromPEM(rootPEM) || !bytes.Contains(rootPEM, pemOf(root)) {
		t.Errorf("LocalRootOf (%s): got another root than the fleet's", where)
	}

	// etcd down: a restarted Manager starts from its cache, same CA.
	c.StopAll()
	_ = ms[1].Close()
	m, err := newM(caches[1])
	if err != nil {
		t.Fatalf("restarting with etcd down: %v", err)
	}
	if !m.ca.root.Equal(root) {
		t.Errorf("restarted with etcd down: got root %v, want %v", m.ca.root.SerialNumber, root.SerialNumber)
	}
	cert, err := m.getCertificate(&tls.ClientHelloInfo{ServerName: host})
	if err != nil {
		t.Fatal(err)
	}
	verifyLocal(t, ms[0].ca, cert.Certificate, host)
}

func pemOf(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// TestEtcdRenewalServedFleetWide renews a Certificate on instance A and
// revokes (and so replaces) it on instance B: the other instance serves
// the new one within 5 s, from the watch on etcd and not at its next
// maintenance pass, which is minutes away (issue 11).
func TestEtcdRenewalServedFleetWide(t *testing.T) {
	skipShort(t)
	c := etcdtest.Start(t, 3)
	const host = "renew.fleet.test"
	a := startPebbleGatehouse(t, pebbletest.Options{})
	etcd := etcdConfig(t, c, "/renew/")
	cfgA := a.acmeConfig(host)
	cfgA.StorageEtcd = etcd
	ma := a.start(t, cfgA, fastOptions())
	first := a.waitForCert(t, host, "", 30*time.Second)

	b := &pebbleGatehouse{gatehouse: startGatehouse(t), ca: a.ca, acme: a.acme, storage: t.TempDir()}
	cfgB := b.acmeConfig(host)
	cfgB.StorageEtcd = etcd
	mb := b.start(t, cfgB, fastOptions())
	if got := b.waitForCert(t, host, "", 10*time.Second); got.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Fatalf("B serves serial %v, want A's %v", got.SerialNumber, first.SerialNumber)
	}

	if err := ma.Renew(t.Context(), host, true); err != nil {
		t.Fatal(err)
	}
	renewed := a.waitForCert(t, host, first.SerialNumber.String(), time.Second)
	if got := b.waitForCert(t, host, first.SerialNumber.String(), 5*time.Second); got.SerialNumber.Cmp(renewed.SerialNumber) != 0 {
		t.Errorf("B after A renewed: got serial %v, want %v", got.SerialNumber, renewed.SerialNumber)
	}

	// B never ordered: it revokes with the account A made.
	if err := mb.Revoke(t.Context(), host, "superseded"); err != nil {
		t.Fatal(err)
	}
	replaced := b.waitForCert(t, host, renewed.SerialNumber.String(), time.Second)
	if got := a.waitForCert(t, host, renewed.SerialNumber.String(), 5*time.Second); got.SerialNumber.Cmp(replaced.SerialNumber) != 0 {
		t.Errorf("A after B revoked: got serial %v, want the replacement %v", got.SerialNumber, replaced.SerialNumber)
	}
	if n := a.ca.Orders(); n != 3 {
		t.Errorf("orders: got %d, want 3 (first, renewal, replacement)", n)
	}
}
