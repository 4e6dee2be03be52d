package etcdtest

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// TestClusterSurvivesOneMember checks the cluster starts, keeps writing
// with its leader stopped, and that the member catches up after its
// restart.
func TestClusterSurvivesOneMember(t *testing.T) {
	start := time.Now()
	c := Start(t, 3)
	t.Logf("3 members started in %v", time.Since(start))
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.Put(ctx, "k", "1"); err != nil {
		t.Fatal(err)
	}
	// Stop the leader, the worst case: a write that reaches a member while
	// the others elect a new leader is dropped and times out ("possibly
	// due to previous leader failure"; an election on a loaded machine
	// may take more than one such timeout), so a client writes again
	// until one lands, within the test's 20 s.
	leader := c.Leader()
	c.Stop(leader)
	for attempt := 1; ; attempt++ {
		_, err := cli.Put(ctx, "k", "2")
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("writing with the leader stopped: %d attempts, the last: %v", attempt, err)
		}
		t.Logf("write %d with the leader stopped: %v", attempt, err)
		time.Sleep(100 * time.Millisecond) // "no leader" comes back at once
	}
	c.Restart(leader)
	one, err := clientv3.New(clientv3.Config{Endpoints: []string{c.Endpoint(leader)}, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	resp, err := one.Get(ctx, "k") // linearizable: served once member 0 has caught up
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "2" {
		t.Errorf("got %v from the restarted member, want k=2", resp.Kvs)
	}
}
