package etcdstore

import (
	"context"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/tlsmgr/etcdtest"
)

// TestWatch checks Watch passes on a snapshot then every change, and
// after a compaction lists again rather than miss changes.
func TestWatch(t *testing.T) {
	c := etcdtest.Shared(t)
	cli := newClient(t, c)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	prefix := "/" + t.Name() + "/"
	if _, err := cli.Put(ctx, prefix+"a", "1"); err != nil {
		t.Fatal(err)
	}

	updates := make(chan Update, 16)
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- Watch(wctx, cli, prefix, func(u Update) { updates <- u }) }()
	next := func() Update {
		t.Helper()
		select {
		case u := <-updates:
			return u
		case <-ctx.Done():
			t.Fatal("no update")
			return Update{}
		}
	}
	if u := next(); !u.Resync || len(u.Items) != 1 || string(u.Items[0].Value) != "1" {
		t.Errorf("first update: got %+v, want a resync with a=1", u)
	}
	if _, err := cli.Put(ctx, prefix+"b", "2"); err != nil {
		t.Fatal(err)
	}
	if u := next(); u.Resync || len(u.Items) != 1 || u.Items[0].Key != prefix+"b" {
		t.Errorf("after a put: got %+v, want the change of b", u)
	}
	if _, err := cli.Delete(ctx, prefix+"a"); err != nil {
		t.Fatal(err)
	}
	if u := next(); len(u.Items) != 1 || !u.Items[0].Deleted {
		t.Errorf("after a delete: got %+v, want a deleted", u)
	}
	stop()
	if err := <-done; err != context.Canceled {
		t.Errorf("Watch returned %v, want context.Canceled", err)
	}

	// A watcher that resumes from a compacted revision gets a fresh list.
	old, err := cli.Put(ctx, prefix+"c", "3")
	if err != nil {
		t.Fatal(err)
	}
	last, err := cli.Put(ctx, prefix+"c", "4")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, last.Header.Revision); err != nil {
		t.Fatal(err)
	}
	wctx, stop = context.WithCancel(ctx)
	defer stop()
	go func() { done <- watchFrom(wctx, cli, prefix, old.Header.Revision, func(u Update) { updates <- u }) }()
	u := next()
	if !u.Resync || len(u.Items) != 2 {
		t.Errorf("after a compaction: got %+v, want a resync with b and c", u)
	}
	for _, it := range u.Items {
		if it.Key == prefix+"c" && string(it.Value) != "4" {
			t.Errorf("after a compaction: got c=%s, want 4", it.Value)
		}
	}
}
