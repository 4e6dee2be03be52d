package etcdstore

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/tlsmgr/etcdtest"
)

// syncBuffer is a bytes.Buffer safe for a logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestEtcdDown checks that with etcd entirely down, certificates and
// keys are served from the local cache (also by a restarted instance),
// writes fail without touching the cache, and the outage is logged once
// (issue 11).
func TestEtcdDown(t *testing.T) {
	c := etcdtest.Start(t, 3)
	ctx := t.Context()
	cache := t.TempDir()
	file, key := writeKey(t)
	var log syncBuffer
	opts := Options{CacheDir: cache, EncryptionKey: key, KeyFile: file, OpTimeout: 500 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&log, nil))}
	s := newStorage(t, c, opts)
	certKey := "certificates/acme-v02/a.test/a.test.crt"
	keyKey := "certificates/acme-v02/a.test/a.test.key"
	if err := s.Store(ctx, certKey, []byte("cert")); err != nil {
		t.Fatal(err)
	}
	if err := s.Store(ctx, keyKey, []byte(testPEMKey)); err != nil {
		t.Fatal(err)
	}

	c.StopAll()
	check := func(s *Storage) {
		t.Helper()
		if got, err := s.Load(ctx, certKey); err != nil || string(got) != "cert" {
			t.Errorf("loading the certificate with etcd down: got %q, %v", got, err)
		}
		if got, err := s.Load(ctx, keyKey); err != nil || string(got) != testPEMKey {
			t.Errorf("loading the key with etcd down: got %q, %v", got, err)
		}
		if !s.Exists(ctx, certKey) {
			t.Errorf("the certificate does not exist with etcd down")
		}
		if keys, err := s.List(ctx, "certificates", true); err != nil || len(keys) != 4 {
			t.Errorf("listing with etcd down: got %q, %v; want 4 keys", keys, err)
		}
	}
	check(s)
	if err := s.Store(ctx, certKey, []byte("new")); !errors.Is(err, ErrUnavailable) {
		t.Errorf("storing with etcd down: got %v, want ErrUnavailable", err)
	}
	if err := s.Delete(ctx, "certificates/acme-v02/a.test"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("deleting with etcd down: got %v, want ErrUnavailable", err)
	}
	again := opts
	again.Logger = nil // the count below is of s's log
	restarted := newStorage(t, c, again)
	check(restarted)
	check(s) // the failed writes changed nothing
	if n := strings.Count(log.String(), "etcd storage unreachable"); n != 1 {
		t.Errorf("the outage was logged %d times, want once:\n%s", n, log.String())
	}
	if keyFile, err := (&cacheProbe{cache}).load(keyKey); err != nil || bytes.Contains(keyFile, []byte("PRIVATE KEY")) {
		t.Errorf("the cached private key: got %q, %v; want it sealed as in etcd", keyFile, err)
	}

	c.RestartAll()
	deadline := time.Now().Add(10 * time.Second)
	for s.Store(ctx, certKey, []byte("back")) != nil {
		if time.Now().After(deadline) {
			t.Fatal("storing still fails 10 s after etcd came back")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(log.String(), "etcd storage reachable again") {
		t.Errorf("the end of the outage was not logged:\n%s", log.String())
	}
}

// TestChallengeTokensAlwaysFromEtcd checks that an instance that just saw
// etcd fail still reads a challenge token another instance stored, from
// etcd: the CA's validation may reach any instance of the fleet, and a
// token looked up in the cache is never there (issue 11).
func TestChallengeTokensAlwaysFromEtcd(t *testing.T) {
	c := etcdtest.Shared(t)
	prefix := "/" + t.Name() + "/"
	cache := t.TempDir()
	a := newStorage(t, c, Options{Prefix: prefix, CacheDir: cache})
	b := newStorage(t, c, Options{Prefix: prefix})
	ctx := t.Context()
	const token = "acme/ca-dir/challenge_tokens/a.test.json"
	a.failed(ctx, errors.New("a request timed out"))
	if err := b.Store(ctx, token, []byte(`{"token":"t"}`)); err != nil {
		t.Fatal(err)
	}
	if v, err := a.Load(ctx, token); err != nil || string(v) != `{"token":"t"}` {
		t.Errorf("token read by another instance right after an etcd failure: got %q, %v; want it from etcd", v, err)
	}
	if _, err := (&cacheProbe{dir: cache}).load(token); err == nil {
		t.Error("the token was written to the cache; want challenge tokens in etcd only")
	}
	a.failed(ctx, errors.New("a request timed out"))
	if err := a.Store(ctx, token, []byte(`{"token":"u"}`)); err != nil {
		t.Errorf("storing a token right after an etcd failure: %v", err)
	}
}
