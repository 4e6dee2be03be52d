package etcdstore

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gatehouse-proxy/gatehouse/tlsmgr/etcdtest"
)

const lockName = "issue_cert_a.test"

// TestLockExclusion checks two instances never hold the same lock at once.
func TestLockExclusion(t *testing.T) {
	c := etcdtest.Shared(t)
	var holders, maxHolders atomic.Int32
	var wg sync.WaitGroup
	for range 2 {
		s := newStorage(t, c, Options{})
		wg.Go(func() {
			for range 10 {
				if err := s.Lock(t.Context(), lockName); err != nil {
					t.Error(err)
					return
				}
				n := holders.Add(1)
				if n > maxHolders.Load() {
					maxHolders.Store(n)
				}
				time.Sleep(time.Millisecond) // widen the window a second holder would need
				holders.Add(-1)
				if err := s.Unlock(t.Context(), lockName); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if got := maxHolders.Load(); got != 1 {
		t.Errorf("got %d holders at once, want 1", got)
	}
}

// TestLockDeadHolder checks a lock whose holder died without unlocking
// frees itself when its lease expires, and not before.
func TestLockDeadHolder(t *testing.T) {
	c := etcdtest.Shared(t)
	cli := newClient(t, c)
	dead, err := New(cli, Options{Prefix: "/" + t.Name() + "/", LockTTL: testLockTTL})
	if err != nil {
		t.Fatal(err)
	}
	if err := dead.Lock(t.Context(), lockName); err != nil {
		t.Fatal(err)
	}
	cli.Close() // the instance dies: no Unlock, no revoke, no keepalive

	other := newStorage(t, c, Options{})
	if ok, err := other.TryLock(t.Context(), lockName); ok || err != nil {
		t.Fatalf("TryLock while the dead holder's lease lives: got %v, %v; want false, nil", ok, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := other.Lock(ctx, lockName); err != nil {
		t.Fatalf("Lock after the holder died: %v", err)
	}
	t.Logf("got the lock %v after the holder died", time.Since(start))
}

// TestLockCancel checks Lock gives up when its context is cancelled and
// leaves nothing behind that would block the next holder.
func TestLockCancel(t *testing.T) {
	c := etcdtest.Shared(t)
	a, b := newStorage(t, c, Options{}), newStorage(t, c, Options{})
	if err := a.Lock(t.Context(), lockName); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- b.Lock(ctx, lockName) }()
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if err := a.Unlock(t.Context(), lockName); err != nil {
		t.Fatal(err)
	}
	if ok, err := newStorage(t, c, Options{}).TryLock(t.Context(), lockName); !ok || err != nil {
		t.Errorf("TryLock after the holder unlocked and the waiter gave up: got %v, %v; want true", ok, err)
	}
}

// TestLockLost checks what an instance whose lease was lost (cut off from
// etcd longer than the TTL) can still do: nothing it writes under the
// lock is stored, and it takes the lock again only once it is free.
func TestLockLost(t *testing.T) {
	c := etcdtest.Shared(t)
	a, b := newStorage(t, c, Options{}), newStorage(t, c, Options{})
	ctx := t.Context()
	certKey := "certificates/acme-v02/a.test/a.test.crt"
	if err := a.Lock(ctx, lockName); err != nil {
		t.Fatal(err)
	}
	if err := a.Store(ctx, certKey, []byte("a, under the lock")); err != nil {
		t.Fatal(err)
	}
	// The lease is lost: revoke it from outside, as its expiry would.
	resp, err := newClient(t, c).Get(ctx, a.Prefix()+"locks/"+lockName+"/", clientv3.WithPrefix())
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("got %v, %v; want one lock key", resp, err)
	}
	if _, err := newClient(t, c).Revoke(ctx, clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.LockLost(lockName):
	case <-time.After(10 * time.Second):
		t.Fatal("LockLost not closed after the lease was revoked")
	}
	if err := b.Lock(ctx, lockName); err != nil {
		t.Fatal(err)
	}
	if err := b.Store(ctx, certKey, []byte("b")); err != nil {
		t.Fatal(err)
	}
	if err := a.Store(ctx, certKey, []byte("a, late")); !errors.Is(err, ErrLockLost) {
		t.Errorf("storing under a lost lock: got %v, want ErrLockLost", err)
	}
	if err := a.Delete(ctx, "certificates/acme-v02/a.test"); !errors.Is(err, ErrLockLost) {
		t.Errorf("deleting under a lost lock: got %v, want ErrLockLost", err)
	}
	if got, _ := b.Load(ctx, certKey); string(got) != "b" {
		t.Errorf("got %q, want the new holder's \"b\"", got)
	}
	if err := a.RenewLockLease(ctx, lockName, time.Minute); !errors.Is(err, ErrLockLost) {
		t.Errorf("renewing a lock another instance holds: got %v, want ErrLockLost", err)
	}
	if err := b.Unlock(ctx, lockName); err != nil {
		t.Fatal(err)
	}
	if err := a.RenewLockLease(ctx, lockName, time.Minute); err != nil {
		t.Fatalf("renewing a lost lock that is free again: %v", err)
	}
	if err := a.Store(ctx, certKey, []byte("a again")); err != nil {
		t.Errorf("storing under the lock taken again: %v", err)
	}
	if ok, _ := b.TryLock(ctx, lockName); ok {
		t.Errorf("b got the lock a took again")
	}
}

// TestMemberStopped checks that the etcd leader stopping while a lock is
// held changes nothing: the lease outlives its TTL, the lock stays
// exclusive, reads and writes go on (a write caught in the leader change
// is repeated by Store).
func TestMemberStopped(t *testing.T) {
	c := etcdtest.Start(t, 3)
	// A TTL longer than the shortest: the client needs a moment to move
	// its keepalives to another member (longer under -race), and a
	// production TTL is ten times that.
	const ttl = 3 * time.Second
	a, b := newStorage(t, c, Options{LockTTL: ttl}), newStorage(t, c, Options{LockTTL: ttl})
	ctx := t.Context()
	if err := a.Lock(ctx, lockName); err != nil {
		t.Fatal(err)
	}
	leader := c.Leader()
	if leader < 0 {
		t.Fatal("no leader")
	}
	c.Stop(leader)
	deadline := time.Now().Add(ttl + time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		key := "certificates/acme-v02/a.test/a.test.json"
		if err := a.Store(ctx, key, []byte{byte(i)}); err != nil {
			t.Fatalf("storing with the leader stopped: %v", err)
		}
		if got, err := b.Load(ctx, key); err != nil || len(got) != 1 || got[0] != byte(i) {
			t.Fatalf("loading with the leader stopped: got %v, %v; want [%d]", got, err, i)
		}
		if ok, err := b.TryLock(ctx, lockName); ok || err != nil {
			t.Fatalf("TryLock with the leader stopped: got %v, %v; want false, nil", ok, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case <-a.LockLost(lockName):
		t.Fatal("the lease was lost with the leader stopped")
	default:
	}
}

// TestExistsUnderLockAsksEtcd checks that an instance that just saw etcd
// fail (and so answers other reads from its cache) still asks etcd
// whether a certificate exists once it holds the certificate's issue
// lock: another instance stored it meanwhile, and a stale "no" from the
// cache would order it a second time (issue 11).
func TestExistsUnderLockAsksEtcd(t *testing.T) {
	c := etcdtest.Shared(t)
	prefix := "/" + t.Name() + "/"
	a := newStorage(t, c, Options{Prefix: prefix, CacheDir: t.TempDir()})
	b := newStorage(t, c, Options{Prefix: prefix})
	ctx := t.Context()
	certKey := "certificates/acme-v02/a.test/a.test.crt"
	if err := b.Store(ctx, certKey, []byte("b's certificate")); err != nil {
		t.Fatal(err)
	}
	a.failed(ctx, errors.New("a request timed out")) // etcd failed a moment ago
	if a.Exists(ctx, certKey) {
		t.Fatal("without the lock: got exists, want the cache's answer (it has nothing yet)")
	}
	a.downUntil.Store(0)
	if err := a.Lock(ctx, lockName); err != nil {
		t.Fatal(err)
	}
	a.failed(ctx, errors.New("a request timed out"))
	if !a.Exists(ctx, certKey) {
		t.Error("under the lock: got not exists from the cache, want etcd's answer")
	}
	if v, err := a.Load(ctx, certKey); err != nil || string(v) != "b's certificate" {
		t.Errorf("Load under the lock: got %q, %v; want etcd's value", v, err)
	}
}
