package etcdstore

import (
	"context"
	"errors"
	"io/fs"
	"slices"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/gatehouse-proxy/gatehouse/tlsmgr/etcdtest"
)

// TestConformance runs the same checks against certmagic's FileStorage
// and etcd storage, so gatehouse behaves the same on either (issue 11).
func TestConformance(t *testing.T) {
	t.Run("file", func(t *testing.T) {
		testConformance(t, func(t *testing.T) func() certmagic.Storage {
			dir := t.TempDir()
			return func() certmagic.Storage { return &certmagic.FileStorage{Path: dir} }
		})
	})
	t.Run("etcd", func(t *testing.T) {
		c := etcdtest.Shared(t)
		testConformance(t, func(t *testing.T) func() certmagic.Storage {
			prefix := "/" + t.Name() + "/"
			return func() certmagic.Storage { return newStorage(t, c, Options{Prefix: prefix}) }
		})
	})
}

// testConformance checks a storage; backend returns, for one subtest, a
// function opening another handle (another instance) on the same storage.
func testConformance(t *testing.T, backend func(t *testing.T) func() certmagic.Storage) {
	ctx := t.Context()
	put := func(t *testing.T, s certmagic.Storage, kv ...string) {
		t.Helper()
		for i := 0; i < len(kv); i += 2 {
			if err := s.Store(ctx, kv[i], []byte(kv[i+1])); err != nil {
				t.Fatalf("storing %s: %v", kv[i], err)
			}
		}
	}

	t.Run("load", func(t *testing.T) {
		open := backend(t)
		s := open()
		if _, err := s.Load(ctx, "certificates/x/a.test/a.test.crt"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("loading a missing key: got %v, want fs.ErrNotExist", err)
		}
		put(t, s, "certificates/x/a.test/a.test.crt", "one", "certificates/x/a.test/a.test.crt", "two")
		got, err := open().Load(ctx, "certificates/x/a.test/a.test.crt")
		if err != nil || string(got) != "two" {
			t.Errorf("got %q, %v from another instance; want \"two\"", got, err)
		}
	})

	t.Run("exists and stat", func(t *testing.T) {
		s := backend(t)()
		before := time.Now().Add(-time.Minute)
		put(t, s, "acme/ca/users/me/me.json", "{}")
		for key, want := range map[string]bool{"acme/ca/users/me/me.json": true, "acme/ca/users": true, "acme/ca/users/you": false, "acme/ca/u": false} {
			if got := s.Exists(ctx, key); got != want {
				t.Errorf("Exists(%s): got %v, want %v", key, got, want)
			}
		}
		info, err := s.Stat(ctx, "acme/ca/users/me/me.json")
		if err != nil || !info.IsTerminal || info.Size != 2 || info.Modified.Before(before) || info.Key != "acme/ca/users/me/me.json" {
			t.Errorf("Stat of a value: got %+v, %v; want terminal, size 2, modified now", info, err)
		}
		if info, err := s.Stat(ctx, "acme/ca/users"); err != nil || info.IsTerminal {
			t.Errorf("Stat of a prefix: got %+v, %v; want not terminal", info, err)
		}
		if _, err := s.Stat(ctx, "acme/nothing"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Stat of a missing key: got %v, want fs.ErrNotExist", err)
		}
	})

	t.Run("list", func(t *testing.T) {
		s := backend(t)()
		put(t, s, "a/b/c.crt", "1", "a/b/d.crt", "2", "a/e.json", "3", "ab/f", "4")
		got, err := s.List(ctx, "a", false)
		slices.Sort(got)
		if want := []string{"a/b", "a/e.json"}; err != nil || !slices.Equal(got, want) {
			t.Errorf("List(a): got %q, %v; want %q", got, err, want)
		}
		got, err = s.List(ctx, "a", true)
		slices.Sort(got)
		if want := []string{"a/b", "a/b/c.crt", "a/b/d.crt", "a/e.json"}; err != nil || !slices.Equal(got, want) {
			t.Errorf("List(a, recursive): got %q, %v; want %q", got, err, want)
		}
		if _, err := s.List(ctx, "zzz", true); err == nil {
			t.Errorf("List of a missing prefix: got no error")
		}
	})

	t.Run("delete", func(t *testing.T) {
		s := backend(t)()
		put(t, s, "c/x.test/x.test.crt", "1", "c/x.test/x.test.key", "2", "c/x.test2/y", "3")
		if err := s.Delete(ctx, "c/x.test"); err != nil {
			t.Fatal(err)
		}
		if s.Exists(ctx, "c/x.test/x.test.crt") || s.Exists(ctx, "c/x.test") {
			t.Errorf("c/x.test still exists after deleting it")
		}
		if !s.Exists(ctx, "c/x.test2/y") {
			t.Errorf("deleting c/x.test also deleted c/x.test2")
		}
		if err := s.Delete(ctx, "c/nothing"); err != nil {
			t.Errorf("deleting a missing key: got %v, want nil", err)
		}
	})

	t.Run("lock", func(t *testing.T) {
		open := backend(t)
		a, b := open(), open()
		if err := a.Lock(ctx, "issue_cert_a.test"); err != nil {
			t.Fatal(err)
		}
		tryB, ok := b.(certmagic.TryLocker)
		if ok {
			if got, err := tryB.TryLock(ctx, "issue_cert_a.test"); got || err != nil {
				t.Errorf("TryLock of a held lock: got %v, %v; want false, nil", got, err)
			}
		}
		// Lock honours its context while it waits.
		wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		err := b.Lock(wctx, "issue_cert_a.test")
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Lock of a held lock with a deadline: got %v, want context.DeadlineExceeded", err)
		}
		if err := a.Unlock(ctx, "issue_cert_a.test"); err != nil {
			t.Fatal(err)
		}
		if err := b.Lock(ctx, "issue_cert_a.test"); err != nil {
			t.Fatalf("Lock after Unlock: %v", err)
		}
		if err := b.Unlock(ctx, "issue_cert_a.test"); err != nil {
			t.Fatal(err)
		}
	})
}
