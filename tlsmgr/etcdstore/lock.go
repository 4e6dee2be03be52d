package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/caddyserver/certmagic"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// ErrLockLost is returned (wrapped) by a write guarded by a lock whose
// lease was lost, and by RenewLockLease when another instance took it.
var ErrLockLost = errors.New("lock lost")

// issuePrefix is how certmagic names the lock it holds while obtaining or
// renewing the certificate of a name (certIssueLockOp in config.go).
const issuePrefix = "issue_cert_"

// heldLock is a lock this Storage holds.
type heldLock struct {
	name string
	// site is certmagic.StorageKeys.Safe of the name an issue_cert_ lock
	// guards, "" for other locks.
	site string
	sess *concurrency.Session
	mu   *concurrency.Mutex
}

// Lock blocks until it holds the lock name, or ctx is done.
func (s *Storage) Lock(ctx context.Context, name string) error {
	return s.lock(ctx, name, false)
}

// TryLock takes the lock name if it is free and reports whether it did.
func (s *Storage) TryLock(ctx context.Context, name string) (bool, error) {
	err := s.lock(ctx, name, true)
	if errors.Is(err, concurrency.ErrLocked) {
		return false, nil
	}
	return err == nil, err
}

func (s *Storage) lock(ctx context.Context, name string, try bool) error {
	hl, err := s.acquire(ctx, name, try)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.held[name] = hl
	s.mu.Unlock()
	return nil
}

// acquire takes the lock name on a new session.
func (s *Storage) acquire(ctx context.Context, name string, try bool) (*heldLock, error) {
	if !s.reachable() {
		return nil, s.unavailable("locking", name)
	}
	// The lease is granted under ctx (so Lock honours it while etcd is
	// slow), but kept alive under s.ctx: the lock must outlive the call.
	var lease *clientv3.LeaseGrantResponse
	err := s.try(ctx, func(ctx context.Context) error {
		var err error
		lease, err = s.client.Grant(ctx, int64(s.lockTTL))
		return err
	})
	if err != nil {
		s.failed(ctx, err)
		return nil, fmt.Errorf("locking %s: granting lease: %w", name, err)
	}
	sess, err := concurrency.NewSession(s.client, concurrency.WithLease(lease.ID), concurrency.WithContext(s.ctx))
	if err != nil {
		s.revoke(lease.ID)
		return nil, fmt.Errorf("locking %s: starting session: %w", name, err)
	}
	m := concurrency.NewMutex(sess, s.lockKey(name))
	if try {
		tctx, cancel := s.opCtx(ctx)
		err = m.TryLock(tctx)
		cancel()
	} else {
		err = m.Lock(ctx)
	}
	if err != nil {
		sess.Orphan()
		s.revoke(lease.ID)
		if errors.Is(err, concurrency.ErrLocked) {
			return nil, err
		}
		return nil, fmt.Errorf("locking %s: %w", name, err)
	}
	hl := &heldLock{name: name, sess: sess, mu: m}
	if d, ok := strings.CutPrefix(name, issuePrefix); ok {
		hl.site = certmagic.StorageKeys.Safe(d)
	}
	return hl, nil
}

// revoke ends a lease, freeing its lock at once; if etcd cannot be
// reached, the lease expires by itself within its TTL.
func (s *Storage) revoke(id clientv3.LeaseID) {
	ctx, cancel := s.opCtx(context.Background())
	defer cancel()
	_, _ = s.client.Revoke(ctx, id)
}

// release gives up hl.
func (s *Storage) release(hl *heldLock) {
	hl.sess.Orphan()
	s.revoke(hl.sess.Lease()) // deletes the mutex key with the lease
}

// Unlock releases the lock name, taken by Lock or TryLock.
func (s *Storage) Unlock(ctx context.Context, name string) error {
	s.mu.Lock()
	hl := s.held[name]
	delete(s.held, name)
	s.mu.Unlock()
	if hl == nil {
		return fmt.Errorf("unlocking %s: not held", name)
	}
	s.release(hl)
	return nil
}

// RenewLockLease checks that the lock name is still held; certmagic calls
// it before each attempt to obtain a certificate. The lease itself is kept
// alive all along, so leaseDuration is not needed. If the lease was lost,
// the lock is taken again when it is free; if another instance holds it,
// the error wraps ErrLockLost and certmagic retries the attempt later.
func (s *Storage) RenewLockLease(ctx context.Context, name string, _ time.Duration) error {
	s.mu.Lock()
	hl := s.held[name]
	s.mu.Unlock()
	if hl == nil {
		return fmt.Errorf("renewing lock %s: not held", name)
	}
	if s.stillOwner(ctx, hl) {
		return nil
	}
	s.release(hl)
	fresh, err := s.acquire(ctx, name, true)
	if errors.Is(err, concurrency.ErrLocked) {
		return fmt.Errorf("renewing lock %s: %w: another instance holds it now", name, ErrLockLost)
	}
	if err != nil {
		return fmt.Errorf("renewing lock %s: %w", name, err)
	}
	s.mu.Lock()
	s.held[name] = fresh
	s.mu.Unlock()
	return nil
}

// stillOwner reports whether hl's session is alive and its key is still
// the owner of the lock.
func (s *Storage) stillOwner(ctx context.Context, hl *heldLock) bool {
	select {
	case <-hl.sess.Done():
		return false
	default:
	}
	octx, cancel := s.opCtx(ctx)
	defer cancel()
	resp, err := s.client.Txn(octx).If(hl.mu.IsOwner()).Commit()
	return err == nil && resp.Succeeded
}

// LockLost returns a channel closed when the lease of the held lock name
// is lost (expired or revoked: another instance may hold the lock now),
// or nil when name is not held.
func (s *Storage) LockLost(name string) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if hl := s.held[name]; hl != nil {
		return hl.sess.Done()
	}
	return nil
}

// guardian returns the held lock that guards writes of key: the
// issue_cert_ lock of the name whose certificate, key or metadata key is.
func (s *Storage) guardian(key string) *heldLock {
	parts := strings.Split(key, "/")
	if len(parts) < 3 || parts[0] != "certificates" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, hl := range s.held {
		if hl.site != "" && hl.site == parts[2] {
			return hl
		}
	}
	return nil
}

// guard returns the comparisons a write of key must pass: that the lock
// guarding it, if this Storage holds one, is still ours.
func (s *Storage) guard(op, key string) ([]clientv3.Cmp, error) {
	hl := s.guardian(key)
	if hl == nil {
		return nil, nil
	}
	select {
	case <-hl.sess.Done():
		return nil, fmt.Errorf("%s %s: %w: %s (its lease expired)", op, key, ErrLockLost, hl.name)
	default:
	}
	return []clientv3.Cmp{hl.mu.IsOwner()}, nil
}
