package etcdstore

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/gatehouse-proxy/gatehouse/tlsmgr/etcdtest"
)

// testLockTTL is the lease TTL of locks in tests: the shortest etcd allows
// with etcdtest's heartbeats.
const testLockTTL = time.Second

// newClient returns a client of every member of c, closed at the end of
// the test.
func newClient(t *testing.T, c *etcdtest.Cluster) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// newStorage returns a Storage on a client of its own, so that closing it
// looks to etcd like a dead instance.
func newStorage(t *testing.T, c *etcdtest.Cluster, opts Options) *Storage {
	t.Helper()
	if opts.LockTTL == 0 {
		opts.LockTTL = testLockTTL
	}
	if opts.OpTimeout == 0 {
		opts.OpTimeout = 2 * time.Second
	}
	if opts.Prefix == "" {
		opts.Prefix = "/" + t.Name() + "/"
	}
	s, err := New(newClient(t, c), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestMain(m *testing.M) { os.Exit(etcdtest.Run(m)) }

// cacheProbe reads the cache directory as it lies on disk.
type cacheProbe struct{ dir string }

func (p *cacheProbe) load(key string) ([]byte, error) {
	return os.ReadFile(filepath.Join(p.dir, filepath.FromSlash(key)))
}
