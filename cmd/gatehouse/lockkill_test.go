package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/gatehouse-proxy/gatehouse/gateway/gatewaytest"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr/etcdstore"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr/etcdtest"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr/pebbletest"
)

// killedConfig is a fleet instance's config: etcd storage (endpoint %[1]s,
// encryption key %[2]s), Pebble (%[3]s, %[4]s) by HTTP-01 only, and one
// Site for killed.fleet.test.
const killedConfig = `listen: {http: "127.0.0.1:{{HTTP}}", https: "127.0.0.1:{{HTTPS}}"}
admin: "off"
storage:
  etcd: {endpoints: [%[1]s], prefix: /killed/, dial_timeout: 2s, encryption_key_file: %[2]s}
  cache: {{STORAGE}}
acme: {ca: %[3]s, ca_root: %[4]s, challenges: [http-01]}
sites:
  - hosts: [localhost, killed.fleet.test]
    routes: [{respond: {body: fleet}}]
`

// TestFleetLockHolderKilled kills (SIGKILL: no unlock, no lease revoked)
// the gatehouse process that holds a name's lock while its order waits on
// the CA's validation. A second instance, started then, waits for the dead
// holder's lease to expire and completes the name with an order of its
// own: the name is never stuck behind a dead machine (issue 11).
func TestFleetLockHolderKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("issues certificates from an in-process Pebble")
	}
	t.Parallel()
	etcd := etcdtest.Start(t, 1)
	gate := startGate(t)
	ca := pebbletest.Start(t, pebbletest.Options{HTTPPort: gate.port})
	key := filepath.Join(t.TempDir(), "storage.key")
	if err := tlsmgr.GenerateStorageKey(key); err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf(killedConfig, etcd.Endpoint(0), key, ca.DirectoryURL(), ca.ClientRootFile())

	// A: a process of its own, so that it can die as a machine does.
	dir := t.TempDir()
	cfgA := filepath.Join(dir, "a.yaml")
	writeConfig(t, cfgA, newPorts(t), filepath.Join(dir, "cache-a"), body)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	a := exec.Command(exe, "run", "-config", cfgA)
	a.Env = append(os.Environ(), "GATEHOUSE_TEST_AS_MAIN=1")
	var aLog gatewaytest.SyncBuffer
	a.Stdout, a.Stderr = &aLog, &aLog
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Process.Kill(); a.Wait() })
	select {
	case <-gate.held:
	case <-time.After(60 * time.Second):
		t.Fatalf("the CA never began validating A's order\n%s", &aLog)
	}
	locks := heldLocks(t, etcd)
	if len(locks) == 0 {
		t.Fatalf("no lock held in etcd while A's order is pending\n%s", &aLog)
	}
	if err := a.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	a.Wait()
	killed := time.Now()

	// B: the CA's validations reach it from now on.
	pB := newPorts(t)
	gate.forwardTo(fmt.Sprintf("127.0.0.1:%d", pB.HTTP))
	b := start(t, pB, body)
	serial := waitServed(t, b.HTTPS, "killed.fleet.test", ca, 90*time.Second, b)
	waited := time.Since(killed)
	t.Logf("B served serial %s %v after A was killed holding %v", serial, waited.Round(time.Millisecond), locks)

	// The lock was A's until its lease ran out: a keepalive renews it
	// every third of the TTL, so at least two thirds of it remained.
	if min := etcdstore.DefaultLockTTL * 2 / 3; waited < min {
		t.Errorf("B completed the name %v after A died, before A's lease (TTL %v) could expire: the lock did not hold", waited, etcdstore.DefaultLockTTL)
	}
	if n := ca.Orders(); n != 2 {
		t.Errorf("orders: got %d, want 2 (A's, abandoned, and B's)", n)
	}
	if left := heldLocks(t, etcd); len(left) != 0 {
		t.Errorf("locks left in etcd after B completed: %v", left)
	}
}

// heldLocks lists the lock keys in etcd under the test's prefix.
func heldLocks(t *testing.T, c *etcdtest.Cluster) []string {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	resp, err := cli.Get(t.Context(), "/killed/locks/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, kv := range resp.Kvs {
		keys = append(keys, string(kv.Key))
	}
	return keys
}

// waitServed waits until addr serves name with a certificate from ca and
// returns its serial.
func waitServed(t *testing.T, addr, name string, ca *pebbletest.CA, timeout time.Duration, in *instance) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		d := &net.Dialer{Timeout: 5 * time.Second}
		c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: name, RootCAs: ca.IssuerRoots()})
		if err == nil {
			defer c.Close()
			return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not served with the CA's certificate within %v: %v\n%s", name, timeout, err, in.Stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// gate stands at the port where the CA validates HTTP-01: it holds every
// connection open unanswered until forwardTo, then pipes new ones to
// that address.
type gate struct {
	port int
	held chan struct{} // closed at the first connection
	to   atomic.Pointer[string]
}

func startGate(t *testing.T) *gate {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{port: ln.Addr().(*net.TCPAddr).Port, held: make(chan struct{})}
	var once sync.Once
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			to := g.to.Load()
			if to == nil {
				once.Do(func() { close(g.held) })
				wg.Go(func() { <-ctx.Done(); c.Close() })
				continue
			}
			wg.Go(func() { gatewaytest.Pipe(c, *to) })
		}
	})
	return g
}

func (g *gate) forwardTo(addr string) { g.to.Store(&addr) }
