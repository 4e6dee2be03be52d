package gateway

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/tlsmgr/pebbletest"
)

const onDemandConfig = `listen: {http: "127.0.0.1:{{HTTP}}", https: "127.0.0.1:{{HTTPS}}"}
admin: "off"
storage: {{STORAGE}}
acme:
  ca: %s
  ca_root: %s
on_demand:
  allow: ["*.tenants.test"]
  allow_file: %s
sites:
  - hosts: [localhost]
    routes: [{respond: {body: local}}]
  - hosts: ["*"]
    tls: {on_demand: true}
    routes: [{upstreams: [%s]}]
`

// TestOnDemandThroughTheCommand runs the command with a catch-all
// on-demand Site: an allowed name gets a certificate at its first request
// and is proxied; a name the policy does not allow gets a TLS alert and no
// order; adding it to allow_file lets it in without a reload.
func TestOnDemandThroughTheCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("issues certificates from an in-process Pebble")
	}
	upstream := newAppUpstream(t)
	p := newPorts(t)
	ca := pebbletest.Start(t, pebbletest.Options{HTTPPort: p.HTTP, TLSPort: p.HTTPS})
	allowFile := filepath.Join(t.TempDir(), "customers.txt")
	if err := os.WriteFile(allowFile, []byte("shop.example.test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	in := start(t, p, fmt.Sprintf(onDemandConfig, ca.DirectoryURL(), ca.ClientRootFile(), allowFile, upstream.URL))
	if got := ca.Orders(); got != 0 {
		t.Errorf("orders at start: got %d, want 0 (nothing is known to be needed yet)", got)
	}

	c := clientFor(in.HTTPS, ca.IssuerRoots())
	for _, host := range []string{"shop.example.test", "a.tenants.test"} {
		if status, body := get(t, c, "https://"+host+"/"); status != 200 || body != "app saw "+host {
			t.Errorf("first request to %s: got %d %q", host, status, body)
		}
	}
	if got := ca.Orders(); got != 2 {
		t.Errorf("orders: got %d, want 2", got)
	}

	refused := func(host string) bool {
		conn, err := tls.Dial("tcp", in.HTTPS, &tls.Config{ServerName: host, RootCAs: ca.IssuerRoots()})
		if err == nil {
			conn.Close()
		}
		return err != nil
	}
	for _, host := range []string{"other.example.test", "x.y.tenants.test"} {
		if !refused(host) {
			t.Errorf("handshake as %s succeeded; want a TLS alert", host)
		}
	}
	if got := ca.Orders(); got != 2 {
		t.Errorf("orders after denied names: got %d, want 2", got)
	}

	if err := os.WriteFile(allowFile, []byte("shop.example.test\nother.example.test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, func() bool { return !refused("other.example.test") })
	if status, body := get(t, c, "https://other.example.test/"); status != 200 || body != "app saw other.example.test" {
		t.Errorf("name added to allow_file: got %d %q", status, body)
	}
}

// TestOnDemandSlowFirstHandshake checks the first handshakes of an
// allowed name outlive timeouts.read_header (the HTTPS Listener's
// handshake deadline, meant for slow clients) while they wait for ask and
// the order: 20 clients at once, one question, one order, 20 answers.
func TestOnDemandSlowFirstHandshake(t *testing.T) {
	if testing.Short() {
		t.Skip("issues certificates from an in-process Pebble")
	}
	upstream := newAppUpstream(t)
	var asked atomic.Int32
	ask := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		select {
		case <-r.Context().Done():
		case <-time.After(2 * time.Second): // longer than read_header
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer ask.Close()
	p := newPorts(t)
	ca := pebbletest.Start(t, pebbletest.Options{HTTPPort: p.HTTP, TLSPort: p.HTTPS})
	cfg := fmt.Sprintf(`listen: {http: "127.0.0.1:{{HTTP}}", https: "127.0.0.1:{{HTTPS}}"}
admin: "off"
storage: {{STORAGE}}
timeouts: {read_header: 1s}
acme: {ca: %s, ca_root: %s}
on_demand: {ask: %s}
sites:
  - hosts: [localhost]
    routes: [{respond: {body: local}}]
  - hosts: ["*.slow.test"]
    tls: {on_demand: true}
    routes: [{upstreams: [%s]}]
`, ca.DirectoryURL(), ca.ClientRootFile(), ask.URL, upstream.URL)
	in := start(t, p, cfg)

	const n = 20
	errs := make(chan error, n)
	start := make(chan struct{})
	for range n {
		go func() {
			<-start
			c := clientFor(in.HTTPS, ca.IssuerRoots()) // a connection of its own
			resp, err := c.Get("https://a.slow.test/")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode != 200 {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
			errs <- err
		}()
	}
	close(start)
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("first requests to a.slow.test: %v", err)
		}
	}
	if got := asked.Load(); got != 1 {
		t.Errorf("ask asked %d times, want 1", got)
	}
	if got := ca.Orders(); got != 1 {
		t.Errorf("orders: got %d, want 1", got)
	}
}
