package fleet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/admin"
	"github.com/gatehouse-proxy/gatehouse/admin/client"
	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/gatehouse-proxy/gatehouse/gateway"
	"github.com/gatehouse-proxy/gatehouse/gateway/gatewaytest"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr/etcdtest"
)

func TestMain(m *testing.M) { os.Exit(etcdtest.Run(m)) }

// localFile is an instance's own file: Listeners, admin, storage and the
// fleet, nothing else.
const localFile = `listen: {http: "127.0.0.1:{{HTTP}}", https: "127.0.0.1:{{HTTPS}}"}
admin: "127.0.0.1:{{ADMIN}}"
storage:
  etcd: {endpoints: [%s], prefix: %s, dial_timeout: 2s}
  cache: {{STORAGE}}
fleet: {name: %s, shared_config: true}
`

// doc is a shared document whose Sites answer body on localhost, and on
// extra.localhost when extra is set.
func doc(body, extra string) string {
	d := fmt.Sprintf("sites:\n  - hosts: [localhost]\n    routes: [{respond: {body: %q}}]\n", body)
	if extra != "" {
		d += fmt.Sprintf("  - hosts: [%s.localhost]\n    routes: [{respond: {body: %q}}]\n", extra, extra)
	}
	return d
}

// fleetT is one test's fleet: a prefix of its own on the shared cluster.
type fleetT struct {
	t      *testing.T
	c      *etcdtest.Cluster
	prefix string
	dir    string
	local  *config.Config // an instance's own file, for pushing
	f      *Fleet
}

func newFleet(t *testing.T) *fleetT {
	t.Helper()
	return newFleetOn(t, etcdtest.Shared(t))
}

// newFleetOn is newFleet on the cluster c.
func newFleetOn(t *testing.T, c *etcdtest.Cluster) *fleetT {
	t.Helper()
	ft := &fleetT{t: t, c: c, prefix: "/" + t.Name() + "/", dir: t.TempDir()}
	path := filepath.Join(ft.dir, "local.yaml")
	gatewaytest.WriteConfig(t, path, gatewaytest.NewPorts(t), filepath.Join(ft.dir, "storage"), ft.localBody("pusher"))
	local, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	ft.local = local
	if ft.f, err = Dial(local); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ft.f.Close() })
	return ft
}

func (ft *fleetT) localBody(name string) string {
	return fmt.Sprintf(localFile, strings.Join(ft.c.Endpoints(), ", "), ft.prefix, name)
}

// push writes body to a file and pushes it; it returns the revision.
func (ft *fleetT) push(body string, force bool) (int64, error) {
	ft.t.Helper()
	file := filepath.Join(ft.dir, "fleet.yaml")
	if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
		ft.t.Fatal(err)
	}
	res, err := PushFile(context.Background(), ft.local, file, force)
	return res.Revision, err
}

// member is one running instance.
type member struct {
	*gatewaytest.Instance
	ports gatewaytest.Ports
	src   *Source
	admin *client.Client
}

// start runs an instance named name, as `gatehouse run` does: the fleet
// Source as the primary, the registry on a lease of ttl.
func (ft *fleetT) start(name string, ttl time.Duration) *member {
	ft.t.Helper()
	dir := ft.t.TempDir()
	return ft.restart(name, ttl, gatewaytest.NewPorts(ft.t), filepath.Join(dir, "storage"), filepath.Join(dir, "gatehouse.yaml"))
}

// restart is start with the ports, storage and config file given, those of
// an instance started before.
func (ft *fleetT) restart(name string, ttl time.Duration, p gatewaytest.Ports, storage, cfgPath string) *member {
	ft.t.Helper()
	made := make(chan *Source, 1)
	run := func(ctx context.Context, cfgPath string, env gatewaytest.Env) error {
		local, err := config.Load(cfgPath)
		if err != nil {
			return err
		}
		src, err := NewSource(local, &gateway.File{Path: cfgPath, Signals: env.Reload}, Options{Version: "test", TTL: ttl})
		if err != nil {
			return err
		}
		defer src.Close()
		cfg, err := src.StartConfig(ctx)
		if err != nil {
			return err
		}
		g, err := gateway.New(gateway.Options{Config: cfg, Sources: []gateway.Source{src}, Log: env.Stderr, Fleet: src.Status})
		if err != nil {
			return err
		}
		src.Gateway = g
		made <- src
		return g.Run(ctx)
	}
	gatewaytest.WriteConfig(ft.t, cfgPath, p, storage, ft.localBody(name))
	in := gatewaytest.StartFile(ft.t, p, storage, cfgPath, run)
	return &member{Instance: in, ports: p, src: <-made, admin: client.New(fmt.Sprintf("http://127.0.0.1:%d", p.Admin), nil)}
}

// serves reports whether m answers want on url.
func (m *member) serves(url, want string) bool { return serves(m.Client(m.T), url, want) }

// serves reports whether c gets want from url.
func serves(c *http.Client, url, want string) bool {
	resp, err := c.Get(url)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return err == nil && resp.StatusCode == 200 && string(b) == want
}

// TestPushFleetWide pushes a new document to three running instances
// under load: each serves the new Site within a second (applyBound), no request fails,
// and the registry lists all three on the new revision (issue 11).
func TestPushFleetWide(t *testing.T) {
	ft := newFleet(t)
	rev1, err := ft.push(doc("one", ""), false)
	if err != nil {
		t.Fatal(err)
	}
	var ms []*member
	for i := range 3 {
		ms = append(ms, ft.start(fmt.Sprintf("edge-%d", i+1), 0))
	}
	var loads []*gatewaytest.Load
	for _, m := range ms {
		if !m.serves("https://localhost/", "one") {
			t.Fatalf("%s does not serve revision %d's site\n%s", m.src.name, rev1, m.Stderr)
		}
		loads = append(loads, gatewaytest.StartLoad(m.Client(t), 4, "https://localhost/"))
	}

	rev2, err := ft.push(doc("one", "two"), false)
	if err != nil {
		t.Fatal(err)
	}
	pushed := time.Now()
	logStart := map[string]int{}
	for _, m := range ms {
		logStart[m.src.name] = len(m.Stderr.String())
	}
	var wg sync.WaitGroup
	for _, m := range ms {
		wg.Go(func() {
			c := m.Client(t)
			deadline := pushed.Add(applyBound + 5*time.Second)
			for !serves(c, "https://two.localhost/", "two") {
				if time.Now().After(deadline) {
					t.Errorf("%s never served revision %d's new site\n%s", m.src.name, rev2, m.Stderr)
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
			if d := time.Since(pushed); d > applyBound {
				t.Errorf("%s served the new site %v after the push, want within %v\n%s", m.src.name, d, applyBound, m.Stderr.String()[logStart[m.src.name]:])
			}
		})
	}
	wg.Wait()
	for i, l := range loads {
		if failures, total, first := l.Stop(); failures > 0 || total == 0 {
			t.Errorf("%s: %d of %d requests failed during the push; first: %s", ms[i].src.name, failures, total, first)
		}
	}

	// The registry, through the admin endpoint and from etcd.
	gatewaytest.WaitFor(t, 5*time.Second, func() bool {
		st, err := ms[0].admin.Fleet(context.Background())
		if err != nil || st.ConfigRevision != rev2 || len(st.Instances) != 3 {
			return false
		}
		for _, in := range st.Instances {
			if in.State != admin.FleetUp || in.ConfigRevision != rev2 || in.Version != "test" || in.Certificates == 0 {
				return false
			}
		}
		return true
	})

	docs, err := ft.f.History(context.Background(), 10)
	if err != nil || len(docs) != 2 || docs[0].Revision != rev2 || docs[1].Revision != rev1 || string(docs[1].Data) != doc("one", "") {
		t.Errorf("history: got %d revisions (%v), want %d then %d", len(docs), err, rev2, rev1)
	}
}

// TestPushConflict pushes a file pulled before someone else's push: it is
// refused, nothing written, unless forced; an invalid file is refused with
// its lines and nothing written (issue 11).
func TestPushConflict(t *testing.T) {
	ft := newFleet(t)
	if _, err := ft.push(doc("one", ""), false); err != nil {
		t.Fatal(err)
	}
	pulled, err := ft.f.Pull(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(Pulled(pulled)), `"one"`, `"mine"`, 1)
	theirs, err := ft.push(doc("theirs", ""), false)
	if err != nil {
		t.Fatalf("a push of a file without a pulled revision: %v", err)
	}

	_, err = ft.push(edited, false)
	var conflict *ConflictError
	if !errors.As(err, &conflict) || conflict.Base != pulled.Revision || conflict.Current != theirs {
		t.Fatalf("push of a file pulled at %d after a push of %d: got %v, want a conflict", pulled.Revision, theirs, err)
	}
	if !strings.Contains(err.Error(), "push --force") {
		t.Errorf("the refusal does not say how to override: %v", err)
	}
	if now, _ := ft.f.Pull(context.Background()); now.Revision != theirs {
		t.Errorf("a refused push wrote revision %d", now.Revision)
	}
	forced, err := ft.push(edited, true)
	if err != nil || forced <= theirs {
		t.Fatalf("push --force: revision %d, %v", forced, err)
	}

	_, err = ft.push("sites:\n  - hosts: [localhost]\n    routes: [{upstreams: [\"ftp://x\"]}]\n", false)
	var problems config.Problems
	if !errors.As(err, &problems) || !strings.Contains(err.Error(), filepath.Join(ft.dir, "fleet.yaml")+":3:") {
		t.Errorf("push of an invalid file: got %v, want its problems at file:line", err)
	}
	_, err = ft.push("listen: {http: \":80\"}\n"+doc("x", ""), false)
	if err == nil || !strings.Contains(err.Error(), "fleet.yaml:1:9: listen: listen belongs to each instance's own file") {
		t.Errorf("push of a document with a local key: got %v", err)
	}
	if now, _ := ft.f.Pull(context.Background()); now.Revision != forced {
		t.Errorf("a refused invalid push wrote revision %d, want %d kept", now.Revision, forced)
	}
}

// TestInvalidDocument writes a document that does not validate straight to
// etcd, as etcdctl would: each instance refuses it with one log line
// naming the revision and keeps serving the last good one, and the
// registry flags it behind; a killed instance is gone once its lease
// expires (issue 11).
func TestInvalidDocument(t *testing.T) {
	ft := newFleet(t)
	good, err := ft.push(doc("good", ""), false)
	if err != nil {
		t.Fatal(err)
	}
	a, b := ft.start("edge-a", 2*time.Second), ft.start("edge-b", 2*time.Second)

	resp, err := a.src.client.Put(context.Background(), ConfigKey(ft.prefix), "sites:\n  - hosts: [localhost]\n    routes: [{respond: {status: 999}}]\n")
	if err != nil {
		t.Fatal(err)
	}
	bad := resp.Header.Revision
	want := fmt.Sprintf("refusing the fleet's config revision %d", bad)
	for _, m := range []*member{a, b} {
		gatewaytest.WaitFor(t, 5*time.Second, func() bool { return strings.Contains(m.Stderr.String(), want) })
		if !m.serves("https://localhost/", "good") {
			t.Errorf("%s does not serve the last good revision %d", m.src.name, good)
		}
	}
	st := waitStatus(t, ft, func(st admin.FleetStatus) bool {
		return len(st.Instances) == 2 && st.Instances[0].State == admin.FleetBehind && st.Instances[1].State == admin.FleetBehind &&
			st.Instances[0].LastError != "" && st.Instances[1].LastError != ""
	})
	if in := st.Instances[0]; in.ConfigRevision != good || !strings.Contains(in.LastError, want) {
		t.Errorf("registry: got %+v, want revision %d and the refusal", in, good)
	}
	for _, m := range []*member{a, b} {
		if n := strings.Count(m.Stderr.String(), want); n != 1 {
			t.Errorf("%s logged the refusal %d times, want once\n%s", m.src.name, n, gatewaytest.GrepLines(m.Stderr.String(), "level=ERROR"))
		}
	}

	// A good revision applies again and clears the error.
	fixed, err := ft.push(doc("fixed", ""), true)
	if err != nil {
		t.Fatal(err)
	}
	waitStatus(t, ft, func(st admin.FleetStatus) bool {
		return len(st.Instances) == 2 && st.Instances[0].State == admin.FleetUp && st.Instances[0].ConfigRevision == fixed && st.Instances[0].LastError == ""
	})

	// Killed: b's process stops renewing its lease without revoking it.
	b.src.client.Close()
	killed := time.Now()
	st = waitStatus(t, ft, func(st admin.FleetStatus) bool {
		return len(st.Instances) == 2 && st.Instances[1].State == admin.FleetGone
	})
	if d := time.Since(killed); d < time.Second {
		t.Errorf("edge-b was gone after %v, before its 2s lease could expire", d)
	}
	if st.Instances[0].State != admin.FleetUp {
		t.Errorf("edge-a: got %s, want up", st.Instances[0].State)
	}
	if err := ft.f.Forget(context.Background(), "edge-a"); err == nil {
		t.Error("forget of a running instance: no error")
	}
	if err := ft.f.Forget(context.Background(), "edge-b"); err != nil {
		t.Fatal(err)
	}
	if st, _ := ft.f.Status(context.Background()); len(st.Instances) != 1 {
		t.Errorf("after forget: got %+v, want edge-a only", st.Instances)
	}
}

// waitStatus polls the registry until ok accepts it.
func waitStatus(t *testing.T, ft *fleetT, ok func(admin.FleetStatus) bool) admin.FleetStatus {
	t.Helper()
	var st admin.FleetStatus
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var err error
		if st, err = ft.f.Status(context.Background()); err == nil && ok(st) {
			return st
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the registry never got there; last: %+v", st)
	return st
}

// TestRestartOnLastGood restarts an instance while the fleet's current
// document is refused, then while etcd is entirely down: both times it
// starts on the last good document it kept (issue 11).
func TestRestartOnLastGood(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ft := newFleetOn(t, c)
	if _, err := ft.push(doc("good", ""), false); err != nil {
		t.Fatal(err)
	}
	a := ft.start("edge-a", 0)
	resp, err := a.src.client.Put(context.Background(), ConfigKey(ft.prefix), "sitez: []\n")
	if err != nil {
		t.Fatal(err)
	}
	gatewaytest.WaitFor(t, 5*time.Second, func() bool {
		return strings.Contains(a.Stderr.String(), fmt.Sprintf("refusing the fleet's config revision %d", resp.Header.Revision))
	})
	a.Stop()

	a = ft.restart("edge-a", 0, a.ports, a.Storage, a.CfgPath)
	if !a.serves("https://localhost/", "good") {
		t.Fatalf("restarted on a refused revision, it does not serve the last good one\n%s", a.Stderr)
	}
	a.Stop()

	c.StopAll()
	a = ft.restart("edge-a", 0, a.ports, a.Storage, a.CfgPath)
	if !a.serves("https://localhost/", "good") {
		t.Errorf("restarted while etcd is down, it does not serve the last good document\n%s", a.Stderr)
	}
}
