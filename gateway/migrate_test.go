package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/admin/client"
	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/gatehouse-proxy/gatehouse/gateway/gatewaytest"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr"
)

// migrateHosts is how many Certificates TestMigrate moves: the 50 of
// issue 14.
const migrateHosts = 50

// TestMigrate moves 50 Certificates from CA A to CA B through a running
// gatehouse's admin endpoint, at a pace, interrupted in the middle by the
// client going away and by a restart, then resumed with --revoke-old: a
// client polling every host with a fresh handshake never fails while
// gatehouse runs, every host serves B's chain at the end, B ordered each
// host about once, and A revoked every old certificate as superseded
// (issue 14).
func TestMigrate(t *testing.T) {
	if testing.Short() {
		t.Skip("issues certificates from two in-process Pebbles")
	}
	p := newPorts(t)
	var hosts []string
	for i := range migrateHosts {
		hosts = append(hosts, fmt.Sprintf("h%02d.test", i))
	}
	cfg, caA, caB := gatewaytest.TwoCAConfig(t, p, strings.Join(hosts, ", "))
	in := start(t, p, cfg)

	// Every host gets its first certificate from A, the first issuer.
	oldSerial := map[string]*big.Int{}
	for _, h := range hosts {
		waitForCertificate(t, in, caA, h, 60*time.Second)
		oldSerial[h] = servedLeaf(t, in.HTTPS, h, caA.IssuerRoots()).SerialNumber
	}

	either := caA.IssuerRoots()
	either.AppendCertsFromPEM(caB.IssuerRootsPEM())
	poll := startPolling(in.HTTPS, either, hosts)
	defer poll.stop()

	// Each call is bounded, so a migration that never ends fails the test
	// rather than hang it.
	api := client.New(fmt.Sprintf("http://127.0.0.1:%d", p.Admin), &http.Client{Timeout: 2 * time.Minute})
	opts := tlsmgr.MigrateOptions{To: caB.DirectoryURL(), Rate: 600}

	// A dry run plans every host and orders nothing.
	dry := opts
	dry.DryRun = true
	res, err := api.Migrate(t.Context(), dry, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Total != migrateHosts || res.Migrated != 0 || caB.Orders() != 0 {
		t.Fatalf("dry run: %+v, %d orders at B; want %d to migrate and none ordered", res, caB.Orders(), migrateHosts)
	}

	// The client goes away after half of them.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var migrated atomic.Int64
	_, err = api.Migrate(ctx, opts, func(ev tlsmgr.MigrationEvent) {
		if ev.Step == tlsmgr.MigrationFailed {
			t.Errorf("first run: %s failed: %s", ev.Host, ev.Reason)
		}
		if ev.Step == tlsmgr.MigrationMigrated && migrated.Add(1) == migrateHosts/2 {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted migration: got %v, want context.Canceled", err)
	}
	failures, polls, first := poll.take()
	if failures > 0 {
		t.Errorf("while migrating the first half: %d of %d polls failed; first: %s", failures, polls, first)
	}

	// A restart in the middle: progress is in storage.
	poll.pause()
	in.Stop()
	// The gatehouse stopped the migration with the client, or at the
	// latest with its shutdown: B has not ordered them all.
	if o := caB.Orders(); o >= migrateHosts {
		t.Fatalf("after the interruption B had %d orders, want fewer than %d", o, migrateHosts)
	}
	in = gatewaytest.StartFile(t, p, in.Storage, in.CfgPath, runGateway(nil))
	// A starting gatehouse loads its certificates from storage in the
	// background; the poller counts again once every host has one.
	for _, h := range hosts {
		waitFor(t, 30*time.Second, func() bool {
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", in.HTTPS, &tls.Config{ServerName: h, RootCAs: either})
			if err == nil {
				conn.Close()
			}
			return err == nil
		})
	}
	poll.resume()

	var revokedEvents atomic.Int64
	opts.RevokeOld = true
	res, err = api.Migrate(t.Context(), opts, func(ev tlsmgr.MigrationEvent) {
		switch ev.Step {
		case tlsmgr.MigrationFailed:
			t.Errorf("resumed run: %s failed: %s", ev.Host, ev.Reason)
		case tlsmgr.MigrationRevoked:
			revokedEvents.Add(1)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Total != migrateHosts || res.Migrated != migrateHosts || res.Revoked != migrateHosts || res.Failed != 0 ||
		res.Resumed < migrateHosts/2 || res.Resumed == migrateHosts {
		t.Errorf("resumed run: %+v; want all %d migrated and revoked, about half resumed", res, migrateHosts)
	}
	if revokedEvents.Load() != migrateHosts {
		t.Errorf("revoked events: %d, want %d", revokedEvents.Load(), migrateHosts)
	}
	failures, polls, first = poll.take()
	poll.stop()
	if failures > 0 {
		t.Errorf("while migrating the second half: %d of %d polls failed; first: %s", failures, polls, first)
	}
	if polls < 2*migrateHosts {
		t.Errorf("only %d polls during the second half: the poller did not run", polls)
	}
	// Orders in flight at the interruption (at most 8) are ordered again;
	// no host is ordered more.
	if o := caB.Orders(); o < migrateHosts || o > migrateHosts+8 {
		t.Errorf("orders at B: %d, want %d to %d", o, migrateHosts, migrateHosts+8)
	}

	for _, h := range hosts {
		leaf := servedLeaf(t, in.HTTPS, h, caB.IssuerRoots())
		if leaf.SerialNumber.Cmp(oldSerial[h]) == 0 {
			t.Errorf("%s still serves its old certificate", h)
		}
		if reason, ok := caA.RevocationReason(oldSerial[h]); !ok || reason != 4 {
			t.Errorf("%s: old certificate at A: revoked %v, reason %d; want revoked as superseded (4)", h, ok, reason)
		}
	}

	// --write-config puts B first in the file; a reload takes the new
	// order without a restart, so a renewal now orders from B.
	loaded, err := config.Load(in.CfgPath)
	if err != nil {
		t.Fatal(err)
	}
	changes := tlsmgr.IssuerOrder(loaded, caB.DirectoryURL())
	if len(changes) != 1 || changes[0].Path != "acme.issuers" || changes[0].Index != 1 {
		t.Fatalf("issuer order changes: %+v, want acme.issuers[1] first", changes)
	}
	if err := config.MoveIssuerFirst(in.CfgPath, changes[0].Path, changes[0].Index); err != nil {
		t.Fatal(err)
	}
	if err := api.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(in.Stderr.String(), "key=acme") {
		t.Errorf("the reload kept the running acme:\n%s", grepLines(in.Stderr.String(), "level=WARN"))
	}
	before := caB.Orders()
	if _, err := api.Renew(t.Context(), hosts[0], true); err != nil {
		t.Fatal(err)
	}
	if caB.Orders() != before+1 {
		t.Errorf("the forced renewal did not order from B (now first): orders at B %d, want %d", caB.Orders(), before+1)
	}
	servedLeaf(t, in.HTTPS, hosts[0], caB.IssuerRoots())

	// Run again, the migration has nothing left to do.
	res, err = api.Migrate(t.Context(), opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Total != 0 || res.Skipped != migrateHosts {
		t.Errorf("migration run again: %+v; want every host skipped as already from B", res)
	}
}

// servedLeaf returns the leaf the HTTPS Listener at addr serves for name,
// verified against roots.
func servedLeaf(t *testing.T, addr, name string, roots *x509.CertPool) *x509.Certificate {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, &tls.Config{ServerName: name, RootCAs: roots})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

// poller fetches every host over a fresh connection (so each poll sees
// the certificate served now) in a loop, counting failures.
type poller struct {
	wg     sync.WaitGroup
	done   chan struct{}
	paused atomic.Bool
	// epoch changes at each pause and resume: a poll that spans one is
	// not counted.
	epoch atomic.Int64
	// mu guards the counts.
	mu              sync.Mutex
	failures, polls int
	first           string
	stopOnce        sync.Once
}

func startPolling(addr string, roots *x509.CertPool, hosts []string) *poller {
	p := &poller{done: make(chan struct{})}
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: roots},
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, addr)
		},
	}}
	p.wg.Go(func() {
		for {
			for _, h := range hosts {
				select {
				case <-p.done:
					return
				default:
				}
				if p.paused.Load() {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				epoch := p.epoch.Load()
				err := func() error {
					resp, err := c.Get("https://" + h + "/")
					if err != nil {
						return err
					}
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						return errors.New(resp.Status)
					}
					return nil
				}()
				if p.paused.Load() || p.epoch.Load() != epoch {
					continue // the restart may have cut it off
				}
				p.mu.Lock()
				p.polls++
				if err != nil {
					p.failures++
					if p.first == "" {
						p.first = h + ": " + err.Error()
					}
				}
				p.mu.Unlock()
			}
		}
	})
	return p
}

// take returns the counts since the last take and resets them.
func (p *poller) take() (failures, polls int, first string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	failures, polls, first = p.failures, p.polls, p.first
	p.failures, p.polls, p.first = 0, 0, ""
	return
}

// pause stops counting (a restart is under way); resume counts again.
func (p *poller) pause() {
	p.paused.Store(true)
	p.epoch.Add(1)
}

func (p *poller) resume() {
	p.epoch.Add(1)
	p.paused.Store(false)
}

func (p *poller) stop() {
	p.stopOnce.Do(func() { close(p.done) })
	p.wg.Wait()
}
