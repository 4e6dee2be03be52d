// Package fleet measures issuance by a fleet of gatehouse instances on one
// etcd against one instance alone (issue 11). It is a benchmark rather
// than a test: bench/run.sh runs it as case 8, with
// go test -run '^$' -bench FleetIssuance -benchtime Nx ./bench/fleet.
package fleet

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/gatehouse-proxy/gatehouse/gateway"
	"github.com/gatehouse-proxy/gatehouse/gateway/gatewaytest"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr/etcdtest"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr/pebbletest"
)

var names = flag.Int("fleet.names", 100, "names to issue")

// hosts are the loopback addresses of the instances: the same ports on
// each, as on three machines.
var hosts = []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}

// BenchmarkFleetIssuance issues the same names with one instance and with
// three on one etcd, behind a balancer that spreads the CA's validations
// over the instances, each round with a fresh Pebble; the two runs take
// turns going first. It reports the median wall times (until every
// instance serves every name), their ratio and the most orders the fleet
// made in a round, which should be one per name.
func BenchmarkFleetIssuance(b *testing.B) {
	c := etcdtest.Start(b, 3)
	var single, fleet []float64
	orders := 0
	for i := range b.N {
		runs := []int{1, len(hosts)}
		if i%2 == 1 {
			slices.Reverse(runs)
		}
		for _, n := range runs {
			d, o := issue(b, c, fmt.Sprintf("/bench%d-%d/", i, n), hosts[:n], *names)
			if n == 1 {
				single = append(single, d.Seconds())
				continue
			}
			fleet = append(fleet, d.Seconds())
			orders = max(orders, o)
			if o != *names {
				// Reported (fleet-orders) and judged by bench/run.sh's
				// report, with the other figures, rather than failing
				// the run and losing them.
				b.Logf("round %d: the fleet made %d orders for %d names, want one per name", i, o, *names)
			}
		}
	}
	s, f := median(single), median(fleet)
	b.ReportMetric(s, "single-s")
	b.ReportMetric(f, "fleet-s")
	b.ReportMetric(f/s, "fleet/single")
	b.ReportMetric(float64(orders), "fleet-orders")
	b.ReportMetric(0, "ns/op")
}

func median(v []float64) float64 {
	slices.Sort(v)
	if len(v) == 0 {
		return 0
	}
	return v[len(v)/2]
}

// instanceConfig is an instance's config: Listeners on %[1]s:%[2]d (HTTP)
// and :%[3]d (HTTPS), etcd %[4]s under %[5]s, key %[6]s, cache %[7]s,
// Pebble %[8]s (%[9]s), one Site for the names %[10]s.
const instanceConfig = `listen: {http: "%[1]s:%[2]d", https: "%[1]s:%[3]d"}
admin: "off"
log: {level: info, access: false}
storage:
  etcd: {endpoints: [%[4]s], prefix: %[5]s, encryption_key_file: %[6]s}
  cache: %[7]s
acme: {ca: %[8]s, ca_root: %[9]s}
sites:
  - hosts: [%[10]s]
    routes: [{respond: {body: ok}}]
`

// issue runs an instance on each of addrs, all on etcd c under prefix,
// until every one serves every one of n names from a fresh Pebble, and
// returns how long that took and how many orders Pebble took.
func issue(b *testing.B, c *etcdtest.Cluster, prefix string, addrs []string, n int) (time.Duration, int) {
	b.Helper()
	httpPort, httpsPort := pebbletest.FreePort(b), pebbletest.FreePort(b)
	gatewaytest.StartBalancer(b, []int{httpPort, httpsPort}, addrs)
	ca := pebbletest.Start(b, pebbletest.Options{HTTPPort: httpPort, TLSPort: httpsPort})
	defer ca.Close()
	dir := b.TempDir()
	key := filepath.Join(dir, "storage.key")
	if err := tlsmgr.GenerateStorageKey(key); err != nil {
		b.Fatal(err)
	}
	var list []string
	for i := range n {
		list = append(list, fmt.Sprintf("n%d.fleet.test", i))
	}
	var cfgs []*config.Config
	for i, addr := range addrs {
		path := filepath.Join(dir, fmt.Sprintf("gatehouse-%d.yaml", i))
		body := fmt.Sprintf(instanceConfig, addr, httpPort, httpsPort, strings.Join(c.Endpoints(), ", "), prefix, key,
			filepath.Join(dir, fmt.Sprintf("cache-%d", i)), ca.DirectoryURL(), ca.ClientRootFile(), strings.Join(list, ", "))
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			b.Fatal(err)
		}
		cfg, err := config.Load(path)
		if err != nil {
			b.Fatal(err)
		}
		cfgs = append(cfgs, cfg)
	}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	start := time.Now()
	var logs []string
	for i, cfg := range cfgs {
		logs = append(logs, filepath.Join(dir, fmt.Sprintf("gatehouse-%d.log", i)))
		lf, err := os.Create(logs[i])
		if err != nil {
			b.Fatal(err)
		}
		defer lf.Close()
		g, err := gateway.New(gateway.Options{Config: cfg, Log: lf})
		if err != nil {
			b.Fatal(err)
		}
		wg.Go(func() { _ = g.Run(ctx) })
	}
	roots := ca.IssuerRoots()
	deadline := start.Add(5 * time.Minute)
	for _, addr := range addrs {
		https := net.JoinHostPort(addr, fmt.Sprint(httpsPort))
		for _, name := range list {
			for !serves(https, name, roots) {
				if time.Now().After(deadline) {
					b.Fatalf("%s does not serve %s after 5 minutes (%d orders so far)", https, name, ca.Orders())
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	elapsed, orders := time.Since(start), ca.Orders()
	if orders != n && len(addrs) > 1 {
		// Say why: the lines of each instance about failed attempts.
		for i, path := range logs {
			data, _ := os.ReadFile(path)
			var lines []string
			for _, l := range strings.Split(string(data), "\n") {
				if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
					lines = append(lines, l)
				}
			}
			b.Logf("instance %d, %d warnings and errors:\n%s", i, len(lines), strings.Join(lines[:min(len(lines), 20)], "\n"))
		}
	}
	return elapsed, orders
}

// serves reports whether addr completes a handshake for name with a
// certificate from roots.
func serves(addr, name string, roots *x509.CertPool) bool {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: name, RootCAs: roots})
	if err != nil {
		return false
	}
	c.Close()
	return true
}
