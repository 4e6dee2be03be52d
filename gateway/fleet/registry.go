package fleet

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gatehouse-proxy/gatehouse/admin"
)

// The registry's keys: an instance's report lives at
// <prefix>instances/<name> on its lease, so it vanishes when the instance
// stops renewing it, and a copy without a lease at
// <prefix>instances-seen/<name>, so an instance that vanished is still
// listed, as gone.
func instanceKey(prefix, name string) string { return prefix + "instances/" + name }
func seenKey(prefix, name string) string     { return prefix + "instances-seen/" + name }

// reportEvery is how often the registry looks for a change to report;
// the report is written only when it changed.
const reportEvery = time.Second

// countEvery is how often the report counts the Certificates held, and
// whenever the config revision changes: a count reads each Certificate
// from storage, which in a fleet is an etcd round trip or three apiece.
const countEvery = 15 * time.Second

// register keeps this instance's registration until ctx is done, then
// revokes its lease so the instance is gone at once.
func (s *Source) register(ctx context.Context, log *slog.Logger) {
	log = log.With("instance", s.name)
	started := time.Now().UTC().Truncate(time.Second)
	var (
		lease   clientv3.LeaseID
		alive   <-chan *clientv3.LeaseKeepAliveResponse
		stopKA  context.CancelFunc = func() {}
		last    admin.FleetInstance
		failing string // the last error, logged once per change
		held    heldCount
	)
	fail := func(what string, err error) {
		if msg := what + ": " + err.Error(); msg != failing {
			failing = msg
			log.Warn("registering in the fleet; retrying", "error", msg)
		}
	}
	tick := time.NewTicker(reportEvery)
	defer tick.Stop()
	for {
		if lease == 0 && ctx.Err() == nil {
			if id, ch, cancel, err := s.grant(ctx); err != nil {
				fail("granting the registration lease", err)
			} else {
				lease, alive, stopKA = id, ch, cancel
				last = admin.FleetInstance{} // write it again, on the new lease
			}
		}
		if lease != 0 {
			rec := s.report(started, &held)
			if !sameReport(rec, last) {
				rec.Updated = time.Now().UTC().Truncate(time.Second)
				if err := s.put(ctx, lease, rec); err != nil {
					fail("writing the registration", err)
				} else {
					last = rec
					if failing != "" {
						failing = ""
						log.Info("registered in the fleet again")
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			stopKA()
			if lease != 0 {
				rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				_, _ = s.client.Revoke(rctx, lease)
				cancel()
			}
			return
		case _, ok := <-alive:
			if !ok {
				// The lease expired or etcd is unreachable: a new one
				// once it answers again.
				stopKA()
				lease, alive = 0, nil
			}
		case <-tick.C:
		}
	}
}

// grant starts a lease of s.ttl and keeps it alive.
func (s *Source) grant(ctx context.Context) (clientv3.LeaseID, <-chan *clientv3.LeaseKeepAliveResponse, context.CancelFunc, error) {
	gctx, cancel := context.WithTimeout(ctx, s.timeout)
	resp, err := s.client.Grant(gctx, int64(s.ttl/time.Second))
	cancel()
	if err != nil {
		return 0, nil, nil, err
	}
	kctx, stop := context.WithCancel(ctx)
	ch, err := s.client.KeepAlive(kctx, resp.ID)
	if err != nil {
		stop()
		return 0, nil, nil, err
	}
	return resp.ID, ch, stop, nil
}

// heldCount is the last count of the Certificates held.
type heldCount struct {
	n        int
	at       time.Time
	revision int64 // the config revision counted at
}

// report is what this instance reports now, counting the Certificates
// held again if held is older than countEvery or of another revision.
func (s *Source) report(started time.Time, held *heldCount) admin.FleetInstance {
	rec := admin.FleetInstance{Name: s.name, Address: s.address, Version: s.version, Started: started}
	if s.Gateway != nil {
		if cfg := s.Gateway.Running(); cfg != nil {
			rec.ConfigRevision = cfg.SharedRevision
		}
		if now := time.Now(); held.at.IsZero() || now.Sub(held.at) >= countEvery || held.revision != rec.ConfigRevision {
			*held = heldCount{n: s.Gateway.CertificatesHeld(), at: now, revision: rec.ConfigRevision}
		}
		rec.Certificates = held.n
	}
	s.mu.Lock()
	rec.LastError = s.lastErr
	s.mu.Unlock()
	return rec
}

func sameReport(a, b admin.FleetInstance) bool {
	a.Updated, b.Updated = time.Time{}, time.Time{}
	return a == b
}

// put writes rec to both registry keys in one transaction.
func (s *Source) put(ctx context.Context, lease clientv3.LeaseID, rec admin.FleetInstance) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	_, err = s.client.Txn(pctx).Then(
		clientv3.OpPut(instanceKey(s.prefix, s.name), string(b), clientv3.WithLease(lease)),
		clientv3.OpPut(seenKey(s.prefix, s.name), string(b)),
	).Commit()
	return err
}

// Status reads the fleet's registry and document at one revision: every
// instance that ever registered, sorted by name, each marked up, behind
// (registered, on an older config revision than the fleet's) or gone
// (registered no more).
func Status(ctx context.Context, client *clientv3.Client, prefix string) (admin.FleetStatus, error) {
	resp, err := client.Txn(ctx).Then(
		clientv3.OpGet(ConfigKey(prefix)),
		clientv3.OpGet(prefix+"instances/", clientv3.WithPrefix()),
		clientv3.OpGet(prefix+"instances-seen/", clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return admin.FleetStatus{}, fmt.Errorf("reading the fleet's registry from etcd: %w", err)
	}
	var st admin.FleetStatus
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
		st.ConfigRevision = kvs[0].ModRevision
	}
	byName := map[string]*admin.FleetInstance{}
	for i, r := range resp.Responses[1:] {
		for _, kv := range r.GetResponseRange().Kvs {
			var rec admin.FleetInstance
			if json.Unmarshal(kv.Value, &rec) != nil {
				continue
			}
			rec.Name = cmp.Or(rec.Name, string(kv.Key[strings.LastIndexByte(string(kv.Key), '/')+1:]))
			switch {
			case i == 0:
				rec.State = admin.FleetUp
				if rec.ConfigRevision < st.ConfigRevision {
					rec.State = admin.FleetBehind
				}
				byName[rec.Name] = &rec
			case byName[rec.Name] == nil:
				rec.State = admin.FleetGone
				byName[rec.Name] = &rec
			}
		}
	}
	for _, rec := range byName {
		st.Instances = append(st.Instances, *rec)
	}
	slices.SortFunc(st.Instances, func(a, b admin.FleetInstance) int { return strings.Compare(a.Name, b.Name) })
	return st, nil
}

// Forget removes an instance that is gone from the registry, so status no
// longer lists it. It refuses one still registered.
func Forget(ctx context.Context, client *clientv3.Client, prefix, name string) error {
	resp, err := client.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(instanceKey(prefix, name)), "=", 0)).
		Then(clientv3.OpDelete(seenKey(prefix, name))).Commit()
	if err != nil {
		return fmt.Errorf("removing %s from the fleet's registry: %w", name, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("%s is registered: it is running; stop it first", name)
	}
	return nil
}
