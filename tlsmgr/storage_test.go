package tlsmgr

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr/etcdtest"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr/pebbletest"
)

// etcdConfig returns storage.etcd on cluster c under prefix, with a new
// encryption key.
func etcdConfig(t *testing.T, c *etcdtest.Cluster, prefix string) *config.EtcdStorage {
	t.Helper()
	keyFile := filepath.Join(t.TempDir(), "storage.key")
	if err := GenerateStorageKey(keyFile); err != nil {
		t.Fatal(err)
	}
	return &config.EtcdStorage{Endpoints: c.Endpoints(), Prefix: prefix, DialTimeout: time.Second, EncryptionKeyFile: keyFile}
}

// rawEtcd returns a plain client of c, to see what etcd holds.
func rawEtcd(t *testing.T, c *etcdtest.Cluster) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// TestEtcdFleet obtains a certificate from Pebble with etcd storage, then
// checks a second instance on the same etcd serves the same certificate
// without ordering again, that the private keys in etcd are sealed, and
// that an instance restarted while etcd is entirely down serves the
// certificate from its local cache (issue 11).
func TestEtcdFleet(t *testing.T) {
	skipShort(t)
	c := etcdtest.Start(t, 3)
	g := startPebbleGatehouse(t, pebbletest.Options{})
	etcd := etcdConfig(t, c, "/fleet/")
	cfgA := g.acmeConfig("fleet.test")
	cfgA.StorageEtcd = etcd
	g.start(t, cfgA, fastOptions())
	leaf := g.waitForCert(t, "fleet.test", "", 30*time.Second)
	orders := g.ca.Orders()

	// Instance B: its own Listeners and cache, the same etcd and CA.
	b := &pebbleGatehouse{gatehouse: startGatehouse(t), ca: g.ca, acme: g.acme, storage: t.TempDir()}
	cfgB := b.acmeConfig("fleet.test")
	cfgB.StorageEtcd = etcd
	b.start(t, cfgB, fastOptions())
	got := b.waitForCert(t, "fleet.test", "", 10*time.Second)
	if got.SerialNumber.Cmp(leaf.SerialNumber) != 0 {
		t.Errorf("instance B serves serial %v, want A's %v", got.SerialNumber, leaf.SerialNumber)
	}
	if n := g.ca.Orders(); n != orders {
		t.Errorf("orders after instance B started: got %d, want %d", n, orders)
	}

	resp, err := rawEtcd(t, c).Get(t.Context(), "/fleet/storage/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	keys := 0
	for _, kv := range resp.Kvs {
		if strings.HasSuffix(string(kv.Key), ".key") {
			keys++
			if bytes.Contains(kv.Value, []byte("PRIVATE KEY")) {
				t.Errorf("%s is in clear in etcd", kv.Key)
			}
		}
	}
	if keys < 2 { // the certificate's and the ACME account's
		t.Errorf("got %d private keys in etcd, want the certificate's and the account's", keys)
	}
	if _, err := os.Stat(filepath.Join(g.storage, "pki", rootCertFile)); err != nil {
		t.Errorf("the local CA is not in the cache directory: %v", err)
	}

	// etcd entirely down; B restarts and serves from its cache.
	c.StopAll()
	if err := b.cur.Load().Close(); err != nil {
		t.Logf("closing B with etcd down: %v", err)
	}
	b.start(t, cfgB, fastOptions())
	got = b.waitForCert(t, "fleet.test", "", 20*time.Second)
	if got.SerialNumber.Cmp(leaf.SerialNumber) != 0 {
		t.Errorf("restarted B serves serial %v with etcd down, want %v", got.SerialNumber, leaf.SerialNumber)
	}
	if _, err := g.handshake("fleet.test"); err != nil {
		t.Errorf("A stopped serving with etcd down: %v", err)
	}
}

// TestCopyStorage migrates a file storage to etcd and back: every key
// arrives (private keys sealed in etcd), and a second run copies nothing.
func TestCopyStorage(t *testing.T) {
	c := etcdtest.Start(t, 3)
	ctx := t.Context()
	dir := t.TempDir()
	files := map[string]string{
		"certificates/acme/a.test/a.test.crt":  "cert",
		"certificates/acme/a.test/a.test.key":  "-----BEGIN EC PRIVATE KEY-----\n",
		"certificates/acme/a.test/a.test.json": "{}",
		"acme/acme/users/me/me.key":            "-----BEGIN EC PRIVATE KEY-----\n",
	}
	for k, v := range files {
		p := filepath.Join(dir, filepath.FromSlash(k))
		os.MkdirAll(filepath.Dir(p), 0o700)
		if err := os.WriteFile(p, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(filepath.Join(dir, "locks"), 0o700)
	os.WriteFile(filepath.Join(dir, "locks", "issue_cert_a.test.lock"), []byte("{}"), 0o600)

	toEtcd := &config.Config{StorageEtcd: etcdConfig(t, c, "/copy/")}
	report, err := CopyStorage(ctx, &config.Config{Storage: dir}, toEtcd, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(report.Copied) != len(files) || len(report.Unchanged) != 0 {
		t.Errorf("file to etcd: got %+v, want the %d keys copied (no lock)", report, len(files))
	}
	resp, err := rawEtcd(t, c).Get(ctx, "/copy/storage/acme/acme/users/me/me.key")
	if err != nil || len(resp.Kvs) != 1 || bytes.Contains(resp.Kvs[0].Value, []byte("PRIVATE KEY")) {
		t.Errorf("the account key in etcd: got %v, %v; want it sealed", resp.Kvs, err)
	}
	if report, err = CopyStorage(ctx, &config.Config{Storage: dir}, toEtcd, nil); err != nil || len(report.Copied) != 0 || len(report.Unchanged) != len(files) {
		t.Errorf("second run: got %+v, %v; want nothing copied", report, err)
	}

	back := t.TempDir()
	if report, err = CopyStorage(ctx, toEtcd, &config.Config{Storage: back}, nil); err != nil || len(report.Copied) != len(files) {
		t.Fatalf("etcd to file: got %+v, %v", report, err)
	}
	for k, v := range files {
		if got, err := os.ReadFile(filepath.Join(back, filepath.FromSlash(k))); err != nil || string(got) != v {
			t.Errorf("%s after the round trip: got %q, %v; want %q", k, got, err, v)
		}
	}
}

// TestStorageConfig checks the storage arguments of gatehouse storage copy.
func TestStorageConfig(t *testing.T) {
	cfg, err := StorageConfig("etcd://10.0.0.1:2379,10.0.0.2:2379/fleet")
	if err != nil {
		t.Fatal(err)
	}
	if e := cfg.StorageEtcd; e == nil || e.Prefix != "/fleet/" || len(e.Endpoints) != 2 || e.Endpoints[1] != "http://10.0.0.2:2379" {
		t.Errorf("got %+v, want two endpoints and prefix /fleet/", cfg.StorageEtcd)
	}
	if cfg, err := StorageConfig("/var/lib/gatehouse"); err != nil || cfg.Storage != "/var/lib/gatehouse" || cfg.StorageEtcd != nil {
		t.Errorf("a directory: got %+v, %v", cfg, err)
	}
	if _, err := StorageConfig("etcd:///x"); err == nil {
		t.Errorf("etcd:// without a host: got no error")
	}
}

// TestCopyStorageSpecs: the storage left out is the local config's,
// asked for only then, and its error stops the copy.
func TestCopyStorageSpecs(t *testing.T) {
	ctx := t.Context()
	src, dst := t.TempDir(), filepath.Join(t.TempDir(), "dst")
	key := "certificates/acme/a.test/a.test.crt"
	os.MkdirAll(filepath.Join(src, filepath.Dir(key)), 0o700)
	os.WriteFile(filepath.Join(src, key), []byte("cert"), 0o600)
	asked := 0
	local := func() (*config.Config, error) { asked++; return &config.Config{Storage: dst}, nil }

	report, err := CopyStorageSpecs(ctx, src, "", local, nil)
	if got, _ := os.ReadFile(filepath.Join(dst, key)); err != nil || asked != 1 || len(report.Copied) != 1 || string(got) != "cert" {
		t.Errorf("to the local config's storage: got %+v, %v, local asked %d times, %q at the destination; want the key copied", report, err, asked, got)
	}
	back := t.TempDir()
	if report, err := CopyStorageSpecs(ctx, dst, back, local, nil); err != nil || asked != 1 || len(report.Copied) != 1 {
		t.Errorf("both given: got %+v, %v, local asked %d times in all; want the key copied without asking again", report, err, asked)
	}
	broken := errors.New("no config")
	if _, err := CopyStorageSpecs(ctx, "", back, func() (*config.Config, error) { return nil, broken }, nil); !errors.Is(err, broken) {
		t.Errorf("local config failing: got %v, want its error", err)
	}
}

// TestEtcdLeaderStoppedMidIssuance stops the etcd leader while a
// certificate is being obtained: it is obtained all the same, with one
// order (issue 11).
func TestEtcdLeaderStoppedMidIssuance(t *testing.T) {
	skipShort(t)
	c := etcdtest.Start(t, 3)
	g := startPebbleGatehouse(t, pebbletest.Options{})
	cfg := g.acmeConfig("leader.test")
	cfg.StorageEtcd = etcdConfig(t, c, "/leader/")
	g.start(t, cfg, fastOptions())
	c.Stop(c.Leader())
	g.waitForCert(t, "leader.test", "", 30*time.Second)
	if n := g.ca.Orders(); n != 1 {
		t.Errorf("got %d orders, want 1", n)
	}
}
