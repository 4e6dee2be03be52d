package gateway

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr/pebbletest"
)

const acmeConfig = `listen: {http: "127.0.0.1:{{HTTP}}", https: "127.0.0.1:{{HTTPS}}"}
admin: "off"
storage: {{STORAGE}}
acme:
  ca: %s
  ca_root: %s
sites:
  - hosts: [localhost]
    routes: [{respond: {body: local}}]
  - hosts: [%s]
    routes: [{upstreams: [%s]}]
`

// TestACMEThroughTheCommand runs the whole command against a real ACME CA
// that is down when gatehouse starts: gatehouse still serves what it can,
// redirects, and obtains the certificate once the CA is back; a reload
// that adds a host gets that host a certificate too.
func TestACMEThroughTheCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("issues certificates from an in-process Pebble")
	}
	upstream := newAppUpstream(t)

	// Reserve the CA's address and learn the root of its TLS certificate,
	// then take it down before gatehouse starts.
	p := newPorts(t)
	caAddr := fmt.Sprintf("127.0.0.1:%d", pebbletest.FreePort(t))
	first := pebbletest.Start(t, pebbletest.Options{Addr: caAddr, HTTPPort: p.HTTP, TLSPort: p.HTTPS})
	dirURL, clientRoot := first.DirectoryURL(), first.ClientRootFile()
	first.Close()

	cfg := fmt.Sprintf(acmeConfig, dirURL, clientRoot, "app.test", upstream.URL)
	in := start(t, p, cfg)

	// With the CA down: the local-CA Site serves, the HTTP Listener
	// redirects, and the ACME host has no certificate yet.
	if status, body := get(t, in.Client(t), "https://localhost/"); status != 200 || body != "local" {
		t.Errorf("local CA site while the CA is down: got %d %q", status, body)
	}
	plain := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest("GET", "http://"+in.HTTP+"/x?y=1", nil)
	req.Host = "app.test"
	resp, err := plain.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if want := fmt.Sprintf("https://app.test:%d/x?y=1", p.HTTPS); resp.StatusCode != 308 || resp.Header.Get("Location") != want {
		t.Errorf("redirect while the CA is down: got %d %q, want 308 %q", resp.StatusCode, resp.Header.Get("Location"), want)
	}
	if conn, err := tls.Dial("tcp", in.HTTPS, &tls.Config{ServerName: "app.test", InsecureSkipVerify: true}); err == nil {
		conn.Close()
		t.Error("a certificate for app.test was served before any CA could issue one")
	}

	// The CA comes back at the same address; the retry loop finds it.
	ca := pebbletest.Start(t, pebbletest.Options{Addr: caAddr, HTTPPort: p.HTTP, TLSPort: p.HTTPS})
	acme := clientFor(in.HTTPS, ca.IssuerRoots())
	waitForCertificate(t, in, ca, "app.test", 45*time.Second)
	if status, body := get(t, acme, "https://app.test/"); status != 200 || body != "app saw app.test" {
		t.Errorf("proxied over the ACME certificate: got %d %q", status, body)
	}

	// A reload that adds a host obtains a certificate for it.
	writeConfig(t, in.CfgPath, p, in.Storage, strings.Replace(cfg, "[app.test]", "[app.test, new.test]", 1))
	in.Reload <- nil
	waitForCertificate(t, in, ca, "new.test", 30*time.Second)
	if status, body := get(t, acme, "https://new.test/"); status != 200 || body != "app saw new.test" {
		t.Errorf("host added by reload: got %d %q", status, body)
	}
}

const stuckOrderConfig = `listen: {http: "127.0.0.1:{{HTTP}}", https: "127.0.0.1:{{HTTPS}}"}
admin: "off"
storage: {{STORAGE}}
acme: {ca: %s, ca_root: %s, engine: %s}
sites:
  - hosts: [localhost]
    routes: [{respond: {body: local}}]
  - hosts: [stuck.test]
    routes: [{respond: {body: stuck}}]
`

// TestStopWhileOrderInFlight stops gatehouse while its ACME order is in
// flight and cannot finish: Pebble validates against a port that accepts
// and never answers, so the order stays pending for Pebble's 15s
// validation timeout (and the client would then try again). Stopping must
// cancel the order, not wait for it: Ctrl-C must not wait on a CA.
func TestStopWhileOrderInFlight(t *testing.T) {
	if testing.Short() {
		t.Skip("orders from an in-process Pebble")
	}
	for _, engine := range []string{config.EngineCertmagic, config.EngineAutocert} {
		t.Run(engine, func(t *testing.T) {
			in, _ := startStuckOrder(t, newPorts(t), stuckOrderConfig, engine)

			began := time.Now()
			if err := in.Stop(); err != nil {
				t.Errorf("run after shutdown: got %v, want nil", err)
			}
			if took := time.Since(began); took > 5*time.Second {
				t.Errorf("stopping with an order in flight took %s, want under 5s\n%s", took.Round(time.Millisecond), in.Stderr)
			}
		})
	}
}
