// Package etcdtest starts a real etcd cluster inside a test binary: three
// members of go.etcd.io/etcd/server/v3/embed on loopback ports, with
// millisecond heartbeats so elections and lease expiry take a second, not
// ten. Members can be stopped and restarted to test what a client sees
// when one goes away. It is for tests only; gatehouse's binary never links
// the etcd server.
package etcdtest

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/gatehouse-proxy/gatehouse/tlsmgr/pebbletest"
)

// startTimeout bounds how long a member may take to join the cluster.
const startTimeout = 20 * time.Second

// Cluster is a running etcd cluster. Its methods may be called from the
// test goroutine only.
type Cluster struct {
	t       testing.TB
	members []*member
}

type member struct {
	cfg *embed.Config
	// mu guards the fields below.
	mu sync.Mutex
	// etcd is the running member, nil while it is stopped.
	etcd *embed.Etcd
	// closed is closed when the last stop has let go of the member's
	// ports and files; nil if it never stopped.
	closed chan struct{}
	// proxy is the member's client port, as the cluster's clients see it.
	proxy *proxy
}

// Start starts a cluster of n members (3 when n is 0) and waits until it
// has a leader. The cluster is stopped when the test ends.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	c := start(t, n, t.TempDir())
	t.Cleanup(c.stopAll)
	c.wait()
	return c
}

// shared is the cluster of [Shared], with the directory it keeps its data in.
var shared struct {
	mu  sync.Mutex // guards the fields below
	c   *Cluster
	dir string
}

// Shared returns a 3-member cluster shared by every test of the binary
// that calls it, started on first use and stopped by [Run]. Tests give
// their keys a prefix of their own (their name) and leave its members
// running: a test that stops members starts its own with [Start].
func Shared(t testing.TB) *Cluster {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.c == nil {
		dir, err := os.MkdirTemp("", "etcdtest")
		if err != nil {
			t.Fatalf("etcdtest: %v", err)
		}
		c := start(t, 3, dir)
		if err := c.startAll(); err != nil {
			c.stopAll()
			os.RemoveAll(dir)
			t.Fatalf("etcdtest: %v", err)
		}
		shared.c, shared.dir = c, dir
	}
	return shared.c
}

// Run runs the tests and then stops the cluster of [Shared], if one was
// started: call it from TestMain as os.Exit(etcdtest.Run(m)).
func Run(m *testing.M) int {
	code := m.Run()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.c != nil {
		shared.c.stopAll()
		os.RemoveAll(shared.dir)
		shared.c = nil
	}
	return code
}

// start configures a cluster of n members (3 when n is 0) with its data
// in dir; startAll or wait starts them.
func start(t testing.TB, n int, dir string) *Cluster {
	t.Helper()
	if n == 0 {
		n = 3
	}
	c := &Cluster{t: t}
	var initial []string
	for i := range n {
		name := fmt.Sprintf("m%d", i)
		peer := loopbackURL(pebbletest.FreePort(t))
		client := loopbackURL(pebbletest.FreePort(t))
		front := loopbackURL(pebbletest.FreePort(t)) // the proxy clients use
		cfg := embed.NewConfig()
		cfg.Name = name
		cfg.Dir = filepath.Join(dir, name)
		cfg.ListenPeerUrls = []url.URL{peer}
		cfg.AdvertisePeerUrls = []url.URL{peer}
		cfg.ListenClientUrls = []url.URL{client}
		cfg.AdvertiseClientUrls = []url.URL{front}
		cfg.InitialClusterToken = "gatehouse-etcdtest"
		cfg.ClusterState = embed.ClusterStateFlagNew
		// Ten-millisecond heartbeats: a leader is elected within about
		// 100 ms and the shortest lease TTL the server allows is one
		// second (etcd's floor is 1.5 election timeouts).
		cfg.TickMs = 10
		cfg.ElectionMs = 100
		cfg.UnsafeNoFsync = true
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		cfg.ListenMetricsUrls = nil
		c.members = append(c.members, &member{cfg: cfg, proxy: &proxy{addr: front.Host, target: client.Host}})
		initial = append(initial, name+"="+peer.String())
	}
	for _, m := range c.members {
		m.cfg.InitialCluster = strings.Join(initial, ",")
	}
	return c
}

// wait starts every member and waits until they serve, failing the test
// if one does not.
func (c *Cluster) wait() {
	c.t.Helper()
	if err := c.startAll(); err != nil {
		c.t.Fatalf("etcdtest: %v", err)
	}
}

// startAll starts every member concurrently (each waits for the others to
// elect a leader) and returns the first error.
func (c *Cluster) startAll() error {
	errs := make(chan error, len(c.members))
	for i := range c.members {
		go func() { errs <- c.start(i) }()
	}
	var first error
	for range c.members {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

func loopbackURL(port int) url.URL {
	return url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", port)}
}

// start starts member i and waits until it serves.
func (c *Cluster) start(i int) error {
	m := c.members[i]
	m.mu.Lock()
	closed := m.closed
	m.mu.Unlock()
	if closed != nil {
		<-closed
	}
	e, err := embed.StartEtcd(m.cfg)
	if err != nil {
		return fmt.Errorf("starting member %s: %w", m.cfg.Name, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return fmt.Errorf("starting member %s: %w", m.cfg.Name, err)
	case <-time.After(startTimeout):
		e.Close()
		return fmt.Errorf("starting member %s: not ready after %v", m.cfg.Name, startTimeout)
	}
	if err := m.proxy.listen(); err != nil {
		e.Server.HardStop()
		e.Close()
		return fmt.Errorf("starting member %s: forwarding its client port: %w", m.cfg.Name, err)
	}
	m.mu.Lock()
	m.etcd = e
	m.mu.Unlock()
	return nil
}

// Leader returns the index of the member that is the leader, or -1 when
// none of the running members knows one.
func (c *Cluster) Leader() int {
	for i, m := range c.members {
		m.mu.Lock()
		e := m.etcd
		m.mu.Unlock()
		if e != nil && e.Server.Leader() == e.Server.MemberID() {
			return i
		}
	}
	return -1
}

// Endpoints returns the client URLs of every member, running or not.
func (c *Cluster) Endpoints() []string {
	var eps []string
	for _, m := range c.members {
		eps = append(eps, m.cfg.AdvertiseClientUrls[0].String())
	}
	return eps
}

// Endpoint returns the client URL of member i.
func (c *Cluster) Endpoint(i int) string {
	return c.members[i].cfg.AdvertiseClientUrls[0].String()
}

// Stop stops member i at once, as if its machine died; the others keep
// a quorum if there are three.
func (c *Cluster) Stop(i int) {
	c.stop(i)
}

// stop stops member i and returns a channel closed once it has let go of
// its ports and files.
func (c *Cluster) stop(i int) <-chan struct{} {
	m := c.members[i]
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.etcd == nil {
		if m.closed == nil {
			m.closed = make(chan struct{})
			close(m.closed)
		}
		return m.closed
	}
	// Clients are cut off at the proxy and HardStop stops the member at
	// once. Close then drains the client requests still pending (they
	// never end: the server is stopped) for etcd's request timeout, over
	// 5 s, so it runs in the background.
	e, closed := m.etcd, make(chan struct{})
	m.etcd, m.closed = nil, closed
	m.proxy.close()
	e.Server.HardStop()
	go func() {
		defer close(closed)
		e.Close()
	}()
	return closed
}

// Restart starts member i again, with its data, after [Cluster.Stop],
// and waits until it has rejoined.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	if err := c.start(i); err != nil {
		c.t.Fatalf("etcdtest: %v", err)
	}
}

// StopAll stops every member at once: etcd is entirely down.
func (c *Cluster) StopAll() {
	for i := range c.members {
		c.stop(i)
	}
}

// RestartAll starts every stopped member again and waits for them.
func (c *Cluster) RestartAll() {
	c.t.Helper()
	var stopped []int
	for i, m := range c.members {
		m.mu.Lock()
		if m.etcd == nil {
			stopped = append(stopped, i)
		}
		m.mu.Unlock()
	}
	errs := make(chan error, len(stopped))
	for _, i := range stopped {
		go func() { errs <- c.start(i) }()
	}
	for range stopped {
		if err := <-errs; err != nil {
			c.t.Fatalf("etcdtest: %v", err)
		}
	}
}

// stopAll stops every member and waits until they have let go of their
// ports and files.
func (c *Cluster) stopAll() {
	var closed []<-chan struct{}
	for i := range c.members {
		closed = append(closed, c.stop(i))
	}
	for _, ch := range closed {
		<-ch
	}
}
