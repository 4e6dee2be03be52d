package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Update is what [Watch] passes on: every key under the prefix (Resync),
// or the changes since the last Update.
type Update struct {
	// Resync reports whether Items is everything under the prefix at
	// Revision: whatever the caller knows of that is not in it is gone.
	// The first Update is one, and so is the one after a watch had to be
	// started again (compaction, a lost leader, etcd down).
	Resync bool
	// Revision is the etcd revision the Update brings the caller to.
	Revision int64
	// Items are the keys, values and deletions, in revision order.
	Items []Item
}

// Item is one key of an [Update].
type Item struct {
	Key         string // the full etcd key
	Value       []byte // nil when Deleted
	Deleted     bool
	ModRevision int64
}

// watchRetry is the first and the longest pause before Watch lists again
// after a failure.
const (
	watchRetryMin = 100 * time.Millisecond
	watchRetryMax = 5 * time.Second
)

// Watch calls fn with everything under prefix, then with each change,
// until ctx is done; it returns ctx's error. fn runs on Watch's goroutine,
// one Update at a time. When the watch cannot go on from where it was
// (the revision was compacted away, the member lost its leader, etcd is
// down) Watch lists the prefix again, with backoff while that fails, and
// passes it on as a Resync. Watches require a leader, so a member cut off
// from the cluster does not hold a watch silently.
func Watch(ctx context.Context, client *clientv3.Client, prefix string, fn func(Update)) error {
	return watchFrom(ctx, client, prefix, 0, fn)
}

// watchFrom is Watch, starting with a watch from rev when rev > 0 (a
// test's way of asking for a compacted revision).
func watchFrom(ctx context.Context, client *clientv3.Client, prefix string, rev int64, fn func(Update)) error {
	delay := watchRetryMin
	for {
		if rev == 0 {
			resp, err := client.Get(ctx, prefix, clientv3.WithPrefix())
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if !sleep(ctx, delay) {
					return ctx.Err()
				}
				delay = min(2*delay, watchRetryMax)
				continue
			}
			u := Update{Resync: true, Revision: resp.Header.Revision}
			for _, kv := range resp.Kvs {
				u.Items = append(u.Items, Item{Key: string(kv.Key), Value: kv.Value, ModRevision: kv.ModRevision})
			}
			fn(u)
			rev = resp.Header.Revision + 1
		}
		err := watchOnce(ctx, client, prefix, rev, func(u Update) {
			delay = watchRetryMin
			rev = u.Revision + 1
			fn(u)
		})
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// Start again from a fresh list: after a compaction the changes
		// in between are gone, and after any other failure a list is the
		// simple way to be sure nothing was missed.
		rev = 0
		if !errors.Is(err, rpctypes.ErrCompacted) && !sleep(ctx, delay) {
			return ctx.Err()
		}
		delay = min(2*delay, watchRetryMax)
	}
}

// watchOnce watches prefix from rev until the watch ends, and returns why.
func watchOnce(ctx context.Context, client *clientv3.Client, prefix string, rev int64, fn func(Update)) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for resp := range client.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(rev)) {
		if err := resp.Err(); err != nil {
			return fmt.Errorf("watching %s: %w", prefix, err)
		}
		if len(resp.Events) == 0 {
			continue // progress notification
		}
		// The revision of the last event, not the header's: resuming
		// from the header's could skip events still on their way.
		u := Update{Revision: resp.Events[len(resp.Events)-1].Kv.ModRevision}
		for _, ev := range resp.Events {
			it := Item{Key: string(ev.Kv.Key), ModRevision: ev.Kv.ModRevision}
			if ev.Type == clientv3.EventTypeDelete {
				it.Deleted = true
			} else {
				it.Value = ev.Kv.Value
			}
			u.Items = append(u.Items, it)
		}
		fn(u)
	}
	return fmt.Errorf("watching %s: watch closed", prefix)
}

// sleep waits d or until ctx is done, and reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
