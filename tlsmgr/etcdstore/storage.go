// Package etcdstore keeps certmagic's storage in etcd, so a fleet of
// gatehouse instances shares one set of certificates, keys and ACME
// accounts, and coordinates issuance with locks that free themselves when
// their holder dies.
//
// Keys live under <prefix>storage/ with their values as written (private
// keys sealed when an encryption key is set, see below), and the time each
// was written under <prefix>mtime/. Locks are [concurrency.Mutex]es under
// <prefix>locks/, each on its own lease (a session) of [Options.LockTTL],
// kept alive while held: a holder that dies or is cut off loses the lock
// when its lease expires, and nobody has to clean up after it.
//
// # Losing a lock
//
// certmagic holds the lock issue_cert_<name> through its whole retry loop
// and gives the storage no way to cancel the context of that loop. What
// this package does instead:
//   - every write (Store, Delete) of a key below certificates/*/<name>/
//     while this Storage holds issue_cert_<name> is a transaction that
//     commits only if the lock key is still ours; after the lease was lost
//     it fails with [ErrLockLost], so a certificate obtained under a lost
//     lock is never stored over the work of the new holder;
//   - certmagic calls RenewLockLease before every attempt of its retry
//     loop: a lost lock is then taken again if it is free, and the attempt
//     fails (to be retried later) if another instance holds it;
//   - [Storage.LockLost] returns a channel closed when the lease of a held
//     lock is lost, for gatehouse's own work under a lock.
//
// What is not possible: an ACME order already in flight when the lease
// is lost runs on to its end (certmagic's context is not ours); only its
// result is refused.
//
// # Private keys at rest
//
// With [Options.EncryptionKey], every value whose key ends in ".key"
// (certmagic's names for certificate private keys and ACME account keys)
// is sealed with AES-256-GCM before it is sent to etcd, bound to its key
// name. A sealed value read without the key, or with another key, is an
// error naming the key file, never a missing key, so certmagic does not
// replace it; and Store refuses to overwrite a sealed value it cannot
// open.
//
// # etcd unreachable
//
// With [Options.CacheDir], every value read from or written to etcd is
// also kept in that directory (in certmagic's file layout, private keys
// sealed as in etcd). While etcd cannot be reached, reads are served from
// it and writes fail; nothing in the cache is deleted because etcd was
// unreachable.
package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Defaults of [Options].
const (
	DefaultPrefix    = "/gatehouse/"
	DefaultLockTTL   = 10 * time.Second
	DefaultOpTimeout = 5 * time.Second
	// downFor is how long reads go to the cache without trying etcd
	// after etcd failed to answer, so an outage costs one timeout per
	// downFor rather than one per read.
	downFor = 2 * time.Second
)

// ErrUnavailable is returned (wrapped) by writes while etcd cannot be
// reached.
var ErrUnavailable = errors.New("etcd storage unavailable")

// Options configure a [Storage]. The zero value is usable.
type Options struct {
	// Prefix is put before every etcd key; it should end in "/".
	// Default [DefaultPrefix].
	Prefix string
	// EncryptionKey is the 32-byte AES-256 key that seals private keys;
	// nil stores them as given.
	EncryptionKey []byte
	// KeyFile is where EncryptionKey came from, named in errors.
	KeyFile string
	// CacheDir is the directory of the local read-through copy, "" for
	// none.
	CacheDir string
	// LockTTL is the lease TTL of a lock, rounded up to whole seconds.
	// Default [DefaultLockTTL].
	LockTTL time.Duration
	// OpTimeout bounds each etcd request. Default [DefaultOpTimeout].
	OpTimeout time.Duration
	// Logger receives a line when etcd becomes unreachable and when it is
	// back; nil discards.
	Logger *slog.Logger
}

// Storage is a certmagic.Storage, Locker, TryLocker and LockLeaseRenewer
// on etcd. It is safe for concurrent use.
type Storage struct {
	client    *clientv3.Client
	ownClient bool
	prefix    string
	seal      *sealer // nil: private keys are stored as given
	cache     *certmagic.FileStorage
	lockTTL   int
	opTimeout time.Duration
	logger    *slog.Logger

	// ctx is the context of the lock sessions' keepalives; cancel ends
	// them at Close.
	ctx    context.Context
	cancel context.CancelFunc

	// mu guards held.
	mu   sync.Mutex
	held map[string]*heldLock

	// downUntil is the Unix time in nanoseconds until which etcd is
	// taken to be unreachable; down reports the last state logged.
	downUntil atomic.Int64
	down      atomic.Bool
}

var (
	_ certmagic.Storage          = (*Storage)(nil)
	_ certmagic.TryLocker        = (*Storage)(nil)
	_ certmagic.LockLeaseRenewer = (*Storage)(nil)
)

// New returns a Storage on client. Close does not close client.
func New(client *clientv3.Client, opts Options) (*Storage, error) {
	s := &Storage{
		client:    client,
		prefix:    opts.Prefix,
		lockTTL:   int((opts.LockTTL + time.Second - 1) / time.Second),
		opTimeout: opts.OpTimeout,
		logger:    opts.Logger,
		held:      map[string]*heldLock{},
	}
	if s.prefix == "" {
		s.prefix = DefaultPrefix
	}
	if s.lockTTL <= 0 {
		s.lockTTL = int(DefaultLockTTL / time.Second)
	}
	if s.opTimeout <= 0 {
		s.opTimeout = DefaultOpTimeout
	}
	if s.logger == nil {
		s.logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.EncryptionKey != nil {
		var err error
		if s.seal, err = newSealer(opts.EncryptionKey, opts.KeyFile); err != nil {
			return nil, err
		}
	}
	if opts.CacheDir != "" {
		s.cache = &certmagic.FileStorage{Path: opts.CacheDir}
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Client returns the etcd client, for other users of the same etcd (the
// fleet config, the instance registry).
func (s *Storage) Client() *clientv3.Client { return s.client }

// Prefix returns the prefix of every key this Storage uses.
func (s *Storage) Prefix() string { return s.prefix }

// String describes the storage for logs and certmagic's messages.
func (s *Storage) String() string {
	return fmt.Sprintf("etcd %s (prefix %s)", strings.Join(s.client.Endpoints(), ","), s.prefix)
}

// Close releases every lock still held, ends the sessions and, when the
// Storage was made by [Open], closes its client.
func (s *Storage) Close() error {
	s.mu.Lock()
	held := s.held
	s.held = map[string]*heldLock{}
	s.mu.Unlock()
	for _, hl := range held {
		s.release(hl)
	}
	s.cancel()
	if s.ownClient {
		return s.client.Close()
	}
	return nil
}

func (s *Storage) dataKey(key string) string  { return s.prefix + "storage/" + key }
func (s *Storage) mtimeKey(key string) string { return s.prefix + "mtime/" + key }
func (s *Storage) lockKey(name string) string { return s.prefix + "locks/" + name }

// clean normalises a certmagic key: no leading or trailing slash.
func clean(key string) string { return strings.Trim(key, "/") }

// opCtx bounds one etcd request.
func (s *Storage) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.opTimeout)
}

// reachable reports whether etcd is worth asking: it did not fail to
// answer in the last few seconds.
func (s *Storage) reachable() bool {
	return time.Now().UnixNano() >= s.downUntil.Load()
}

// failed records that etcd did not answer a request (ctx, the caller's,
// is not done) and logs the change of state once.
func (s *Storage) failed(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return
	}
	s.downUntil.Store(time.Now().Add(downFor).UnixNano())
	if !s.down.Swap(true) {
		s.logger.WarnContext(ctx, "etcd storage unreachable; serving from memory and the local cache, writes wait", "storage", s.String(), "error", err)
	}
}

// answered records that etcd answered.
func (s *Storage) answered(ctx context.Context) {
	if s.down.Swap(false) {
		s.downUntil.Store(0)
		s.logger.InfoContext(ctx, "etcd storage reachable again", "storage", s.String())
	}
}

func (s *Storage) unavailable(op, key string) error {
	return fmt.Errorf("%s %s: %w", op, key, ErrUnavailable)
}

// Store writes value at key. A private key is sealed first when an
// encryption key is set.
//
// A write of a certificate under its issue_cert_ lock (one just obtained)
// is not given up after one retry: it is tried again until the lock is
// lost or its TTL has passed, so an etcd election while the order
// finishes does not throw away the certificate and make certmagic order
// another.
func (s *Storage) Store(ctx context.Context, key string, value []byte) error {
	key = clean(key)
	guarded := s.guardian(key) != nil
	if !s.reachable() && !guarded && !isChallenge(key) {
		return s.unavailable("storing", key)
	}
	cmps, err := s.guard("storing", key)
	if err != nil {
		return err
	}
	v := value
	if isPrivateKey(key) {
		// Never overwrite a sealed key we cannot open: it may be the
		// fleet's, sealed with the right key, and we the misconfigured one.
		resp, err := s.get(ctx, s.dataKey(key))
		if err != nil {
			s.failed(ctx, err)
			return fmt.Errorf("storing %s: %w", key, err)
		}
		var rev int64
		if len(resp.Kvs) > 0 {
			if err := s.checkOpenable(key, resp.Kvs[0].Value); err != nil {
				return fmt.Errorf("storing %s: refusing to overwrite: %w", key, err)
			}
			rev = resp.Kvs[0].ModRevision
		}
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(s.dataKey(key)), "=", rev))
		switch {
		case isSealed(value):
			// Already sealed, as in a cache directory being copied back:
			// stored as is (sealing it again would hide the key), if it
			// opens with this Storage's key.
			if err := s.checkOpenable(key, value); err != nil && s.seal != nil {
				return fmt.Errorf("storing %s: %w", key, err)
			}
		case s.seal != nil:
			if v, err = s.seal.seal(key, value); err != nil {
				return fmt.Errorf("storing %s: %w", key, err)
			}
		}
	}
	now := strconv.FormatInt(time.Now().UnixNano(), 10)
	commit := s.commit
	if guarded || isChallenge(key) {
		// A challenge token is written once the order exists: failing
		// it fails the order.
		commit = s.commitPatiently
	}
	resp, err := commit(ctx, cmps, clientv3.OpPut(s.dataKey(key), string(v)), clientv3.OpPut(s.mtimeKey(key), now))
	if err != nil {
		s.failed(ctx, err)
		return fmt.Errorf("storing %s: %w", key, err)
	}
	s.answered(ctx)
	if !resp.Succeeded {
		return s.conflict("storing", key)
	}
	if !isChallenge(key) {
		s.cacheStore(key, v)
	}
	return nil
}

// isChallenge reports whether key is one of certmagic's challenge tokens
// (<issuer>/challenge_tokens/<name>.json), which the instance that
// ordered writes and whichever instance the CA reaches reads, at once.
// They always go to etcd: a token read from the cache (missing, as every
// token is there) fails the validation and costs the order, and one
// written to the cache is of no use after the order.
func isChallenge(key string) bool {
	return strings.Contains("/"+key, "/challenge_tokens/")
}

// retryPause is the pause before the second attempt of a request.
const retryPause = 100 * time.Millisecond

// try runs one etcd request, each attempt bounded by the op timeout, and
// once more after a short pause if the first fails: a request on a
// connection to a member that just died fails at once, and a write that
// reached a member just as the leader died is dropped by etcd and only
// times out, while the next one goes elsewhere. Every request of this
// package may be repeated: reads, and puts of the same value under the
// same conditions.
func (s *Storage) try(ctx context.Context, op func(ctx context.Context) error) error {
	var err error
	for attempt := range 2 {
		if attempt > 0 && !sleep(ctx, retryPause) {
			return ctx.Err()
		}
		octx, cancel := s.opCtx(ctx)
		err = op(octx)
		cancel()
		if err == nil || ctx.Err() != nil {
			return err
		}
	}
	return err
}

// commit runs the transaction "if cmps then ops" with try.
func (s *Storage) commit(ctx context.Context, cmps []clientv3.Cmp, ops ...clientv3.Op) (*clientv3.TxnResponse, error) {
	var resp *clientv3.TxnResponse
	err := s.try(ctx, func(ctx context.Context) error {
		var err error
		resp, err = s.client.Txn(ctx).If(cmps...).Then(ops...).Commit()
		return err
	})
	return resp, err
}

// commitPatiently is commit that keeps trying, with growing pauses,
// until the transaction went through, failed its comparisons, or
// s.lockTTL has passed: the time a lock's holder has before its lease
// runs out while etcd elects a leader or a member restarts.
func (s *Storage) commitPatiently(ctx context.Context, cmps []clientv3.Cmp, ops ...clientv3.Op) (*clientv3.TxnResponse, error) {
	deadline := time.Now().Add(time.Duration(s.lockTTL) * time.Second)
	pause := retryPause
	for {
		resp, err := s.commit(ctx, cmps, ops...)
		if err == nil || ctx.Err() != nil || time.Now().Add(pause).After(deadline) {
			return resp, err
		}
		if !sleep(ctx, pause) {
			return nil, ctx.Err()
		}
		pause = min(2*pause, time.Second)
	}
}

// get runs a Get with try.
func (s *Storage) get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	var resp *clientv3.GetResponse
	err := s.try(ctx, func(ctx context.Context) error {
		var err error
		resp, err = s.client.Get(ctx, key, opts...)
		return err
	})
	return resp, err
}

// conflict explains a failed transaction of a write: the lock was lost,
// or the private key changed while it was being written.
func (s *Storage) conflict(op, key string) error {
	if hl := s.guardian(key); hl != nil {
		return fmt.Errorf("%s %s: %w: %s", op, key, ErrLockLost, hl.name)
	}
	return fmt.Errorf("%s %s: changed by another instance meanwhile", op, key)
}

// Load returns the value at key, opened if sealed. A missing key is an
// error wrapping fs.ErrNotExist, as certmagic expects. A key guarded by a
// held issue_cert_ lock is read from etcd only (see Exists).
func (s *Storage) Load(ctx context.Context, key string) ([]byte, error) {
	key = clean(key)
	raw, err := s.loadRaw(ctx, key)
	if err != nil {
		return nil, err
	}
	return s.open(key, raw)
}

// loadRaw returns the value at key as stored: from etcd, else from the
// cache while etcd is unreachable.
func (s *Storage) loadRaw(ctx context.Context, key string) ([]byte, error) {
	guarded := s.guardian(key) != nil || isChallenge(key)
	if s.reachable() || guarded {
		resp, err := s.get(ctx, s.dataKey(key))
		if err == nil {
			s.answered(ctx)
			if len(resp.Kvs) == 0 {
				s.cacheForget(key)
				return nil, fmt.Errorf("loading %s: %w", key, fs.ErrNotExist)
			}
			v := resp.Kvs[0].Value
			if !isChallenge(key) {
				s.cacheStore(key, v)
			}
			return v, nil
		}
		s.failed(ctx, err)
		if s.cache == nil || ctx.Err() != nil || guarded {
			return nil, fmt.Errorf("loading %s: %w", key, err)
		}
	}
	if s.cache == nil {
		return nil, s.unavailable("loading", key)
	}
	v, err := s.cache.Load(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("loading %s from the local cache (etcd unreachable): %w", key, err)
	}
	return v, nil
}

// Delete deletes key and every key below it. It is not an error if
// nothing was there.
func (s *Storage) Delete(ctx context.Context, key string) error {
	key = clean(key)
	if !s.reachable() && !isChallenge(key) {
		return s.unavailable("deleting", key)
	}
	cmps, err := s.guard("deleting", key)
	if err != nil {
		return err
	}
	ops := []clientv3.Op{
		clientv3.OpDelete(s.dataKey(key)),
		clientv3.OpDelete(s.mtimeKey(key)),
	}
	if key != "" {
		ops = append(ops,
			clientv3.OpDelete(s.dataKey(key)+"/", clientv3.WithPrefix()),
			clientv3.OpDelete(s.mtimeKey(key)+"/", clientv3.WithPrefix()))
	} else {
		ops = append(ops,
			clientv3.OpDelete(s.dataKey(""), clientv3.WithPrefix()),
			clientv3.OpDelete(s.mtimeKey(""), clientv3.WithPrefix()))
	}
	resp, err := s.commit(ctx, cmps, ops...)
	if err != nil {
		s.failed(ctx, err)
		return fmt.Errorf("deleting %s: %w", key, err)
	}
	s.answered(ctx)
	if !resp.Succeeded {
		return s.conflict("deleting", key)
	}
	if s.cache != nil {
		_ = s.cache.Delete(ctx, key) // etcd said it is gone: so is the copy
	}
	return nil
}

// Exists reports whether key exists as a value or as a prefix of others.
//
// Under a held issue_cert_ lock, certmagic asks whether the certificate
// exists to decide whether to order it, so for the keys that lock guards
// the answer always comes from etcd, never from the local cache (which
// lacks what another instance stored meanwhile): a stale "no" would make
// a second order for the name. When etcd does not answer then, the
// answer is "yes", which sends certmagic to load the certificate; that
// fails, and the obtain is tried again later rather than ordered now.
func (s *Storage) Exists(ctx context.Context, key string) bool {
	key = clean(key)
	guarded := s.guardian(key) != nil
	if s.reachable() || guarded {
		resp, err := s.commit(ctx, nil,
			clientv3.OpGet(s.dataKey(key), clientv3.WithCountOnly()),
			clientv3.OpGet(s.dataKey(key)+"/", clientv3.WithPrefix(), clientv3.WithCountOnly()),
		)
		if err == nil {
			s.answered(ctx)
			return resp.Responses[0].GetResponseRange().Count > 0 || resp.Responses[1].GetResponseRange().Count > 0
		}
		s.failed(ctx, err)
		if guarded {
			return true
		}
	}
	return s.cache != nil && s.cache.Exists(ctx, key)
}

// List returns the keys below prefix: its direct children, or with
// recursive every key and "directory" below it, like certmagic's
// FileStorage. A prefix with nothing below it is an error wrapping
// fs.ErrNotExist.
func (s *Storage) List(ctx context.Context, prefix string, recursive bool) ([]string, error) {
	prefix = clean(prefix)
	if !s.reachable() {
		return s.cacheList(ctx, prefix, recursive)
	}
	from := s.dataKey(prefix)
	if prefix != "" {
		from += "/"
	}
	resp, err := s.get(ctx, from, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		s.failed(ctx, err)
		return s.cacheList(ctx, prefix, recursive)
	}
	s.answered(ctx)
	seen := map[string]bool{}
	var keys []string
	add := func(k string) {
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	for _, kv := range resp.Kvs {
		parts := strings.Split(strings.TrimPrefix(string(kv.Key), from), "/")
		if !recursive {
			add(path.Join(prefix, parts[0]))
			continue
		}
		for i := range parts {
			add(path.Join(prefix, path.Join(parts[:i+1]...)))
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("listing %s: %w", prefix, fs.ErrNotExist)
	}
	slices.Sort(keys)
	return keys, nil
}

func (s *Storage) cacheList(ctx context.Context, prefix string, recursive bool) ([]string, error) {
	if s.cache == nil {
		return nil, s.unavailable("listing", prefix)
	}
	keys, err := s.cache.List(ctx, prefix, recursive)
	if err != nil {
		return nil, fmt.Errorf("listing %s from the local cache (etcd unreachable): %w", prefix, err)
	}
	return keys, nil
}

// Stat describes key: its size as stored and when it was written, or,
// for a prefix of other keys, that it is not terminal.
func (s *Storage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	key = clean(key)
	if s.reachable() {
		resp, err := s.commit(ctx, nil,
			clientv3.OpGet(s.dataKey(key)),
			clientv3.OpGet(s.mtimeKey(key)),
			clientv3.OpGet(s.dataKey(key)+"/", clientv3.WithPrefix(), clientv3.WithCountOnly()),
		)
		if err == nil {
			s.answered(ctx)
			if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
				info := certmagic.KeyInfo{Key: key, Size: int64(len(kvs[0].Value)), IsTerminal: true}
				if mt := resp.Responses[1].GetResponseRange().Kvs; len(mt) > 0 {
					if ns, err := strconv.ParseInt(string(mt[0].Value), 10, 64); err == nil {
						info.Modified = time.Unix(0, ns)
					}
				}
				return info, nil
			}
			if resp.Responses[2].GetResponseRange().Count > 0 {
				return certmagic.KeyInfo{Key: key}, nil
			}
			return certmagic.KeyInfo{}, fmt.Errorf("stat %s: %w", key, fs.ErrNotExist)
		}
		s.failed(ctx, err)
		if ctx.Err() != nil {
			return certmagic.KeyInfo{}, fmt.Errorf("stat %s: %w", key, err)
		}
	}
	if s.cache == nil {
		return certmagic.KeyInfo{}, s.unavailable("stat", key)
	}
	return s.cache.Stat(ctx, key)
}

// cacheStore keeps v as the local copy of key, unless it already is.
func (s *Storage) cacheStore(key string, v []byte) {
	if s.cache == nil || key == "" {
		return
	}
	if old, err := s.cache.Load(context.Background(), key); err == nil && string(old) == string(v) {
		return
	}
	if err := s.cache.Store(context.Background(), key, v); err != nil {
		s.logger.Warn("writing the local storage cache", "key", key, "error", err)
	}
}

// cacheForget removes the local copy of key after etcd said it does not
// exist. Only a file goes: a directory of the cache is left alone.
func (s *Storage) cacheForget(key string) {
	if s.cache == nil || key == "" {
		return
	}
	if info, err := s.cache.Stat(context.Background(), key); err == nil && info.IsTerminal {
		_ = s.cache.Delete(context.Background(), key)
	}
}
