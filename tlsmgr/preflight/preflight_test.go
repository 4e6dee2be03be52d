package preflight

import (
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr/pebbletest"
	"github.com/letsencrypt/pebble/v2/wfe"
)

// startZone runs BIND as the stand-in for public DNS: authoritative for
// "test.", holding records (zone-file syntax) and answering NXDOMAIN for
// any other name. Every CAA lookup up the tree ends at "test.", in the
// zone.
func startZone(t *testing.T, records ...string) *pebbletest.BIND {
	t.Helper()
	ns := pebbletest.StartBIND(t, "test")
	// Without its wildcard the zone holds only what the test says.
	ns.DeleteRecords(t, "*.test.", "A")
	if len(records) > 0 {
		ns.AddRecords(t, records...)
	}
	return ns
}

// testPorts are the Listener ports of a test config.
type testPorts struct{ HTTP, HTTPS, Admin int }

func newPorts(t *testing.T) testPorts {
	return testPorts{HTTP: pebbletest.FreePort(t), HTTPS: pebbletest.FreePort(t), Admin: pebbletest.FreePort(t)}
}

// acmeConfig has the admin endpoint on, a local CA Site for localhost
// and an ACME Site for hosts, whose CA is directory with root caRoot.
func acmeConfig(t *testing.T, p testPorts, directory, caRoot, hosts string) *config.Config {
	t.Helper()
	return parseConfig(t, fmt.Sprintf(`listen: {http: "127.0.0.1:%d", https: "127.0.0.1:%d"}
admin: "127.0.0.1:%d"
storage: %s
acme: {ca: %q, ca_root: %q}
sites:
  - hosts: [localhost]
    routes: [{respond: {body: local}}]
  - hosts: [%s]
    routes: [{respond: {body: app}}]
`, p.HTTP, p.HTTPS, p.Admin, t.TempDir(), directory, caRoot, hosts))
}

func parseConfig(t *testing.T, yaml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("", []byte(yaml))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, yaml)
	}
	return cfg
}

func run(t *testing.T, cfg *config.Config, opts Options) Report {
	t.Helper()
	r, err := Run(context.Background(), cfg, opts)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return r
}

// want checks that r holds each finding, its Message as a prefix.
func want(t *testing.T, r Report, findings ...Finding) {
	t.Helper()
	for _, w := range findings {
		if !slices.ContainsFunc(r.Findings, func(f Finding) bool {
			return f.Check == w.Check && f.Subject == w.Subject && f.Level == w.Level && strings.HasPrefix(f.Message, w.Message)
		}) {
			t.Errorf("no finding %+v in:\n%s", w, dump(r))
		}
	}
}

func dump(r Report) string {
	var b strings.Builder
	for _, f := range r.Findings {
		fmt.Fprintf(&b, "%-5s %-9s %s: %s\n", f.Level, f.Check, f.Subject, f.Message)
	}
	return b.String()
}

// checkOrder is the order the checks run in, which Report promises.
var checkOrder = []Check{CheckConfig, CheckDirectory, CheckAddress, CheckPorts, CheckCAA}

func wantInOrder(t *testing.T, r Report) {
	t.Helper()
	if !slices.IsSortedFunc(r.Findings, func(a, b Finding) int {
		return slices.Index(checkOrder, a.Check) - slices.Index(checkOrder, b.Check)
	}) {
		t.Errorf("findings out of check order:\n%s", dump(r))
	}
}

// TestCheckPasses is the preflight of a machine where everything is right:
// the names resolve here, both challenge ports can be bound and are
// reached through the names, CAA allows the CA (at the name itself, and
// inherited from its parent) and the CA's directory answers.
func TestCheckPasses(t *testing.T) {
	ca := pebbletest.Start(t, pebbletest.Options{})
	ns := startZone(t,
		"app.test. 60 IN A 127.0.0.1",
		`app.test. 60 IN CAA 0 issue "pebble.test; validationmethods=http-01"`,
		`app.test. 60 IN CAA 0 iodef "mailto:ops@app.test"`,
		// other.test has no CAA of its own: the zone's apex governs it.
		"other.test. 60 IN A 127.0.0.1",
		`test. 60 IN CAA 0 issuewild ";"`,
		`test. 60 IN CAA 0 issue "pebble.test"`,
	)
	p := newPorts(t)
	cfg := acmeConfig(t, p, ca.DirectoryURL(), ca.ClientRootFile(), "app.test, other.test")

	var progress []Finding
	r := run(t, cfg, Options{Resolver: ns.Addr, CAAIdentity: "pebble.test", Progress: func(f Finding) { progress = append(progress, f) }})
	want(t, r,
		Finding{CheckDirectory, "CA " + ca.DirectoryURL(), OK, "the ACME directory answers; terms of service: " + wfe.ToSURL},
		Finding{CheckAddress, "app.test", OK, "resolves to 127.0.0.1 (this machine)"},
		Finding{CheckAddress, "other.test", OK, "resolves to 127.0.0.1 (this machine)"},
		Finding{CheckPorts, "listen.http", Note, fmt.Sprintf("the CA validates http-01 on port 80, not %d", p.HTTP)},
		Finding{CheckPorts, "listen.https", Note, fmt.Sprintf("the CA validates tls-alpn-01 on port 443, not %d", p.HTTPS)},
		Finding{CheckPorts, "app.test", OK, fmt.Sprintf("http-01: fetched http://app.test:%d/.well-known/acme-challenge/gatehouse-check-", p.HTTP)},
		Finding{CheckPorts, "app.test", OK, fmt.Sprintf("tls-alpn-01: app.test:%d reaches a temporary TLS listener on 127.0.0.1:%d", p.HTTPS, p.HTTPS)},
		Finding{CheckPorts, "other.test", OK, "http-01: fetched"},
		Finding{CheckCAA, "app.test", OK, "CAA at app.test allows pebble.test (" + ca.DirectoryURL() + ")"},
		Finding{CheckCAA, "other.test", OK, "CAA at test allows pebble.test"},
	)
	if n := r.Failures(); n != 0 {
		t.Errorf("Failures() = %d, want 0:\n%s", n, dump(r))
	}
	wantInOrder(t, r)
	if !slices.Equal(progress, r.Findings) {
		t.Errorf("Progress saw %d findings, Report holds %d: want the same, in the same order", len(progress), len(r.Findings))
	}
	for _, f := range r.Findings {
		if strings.Contains(f.Subject, "localhost") {
			t.Errorf("localhost uses the local CA and needs no preflight: %+v", f)
		}
	}
}

// TestCheckFails finds everything that would make orders fail, and why: a
// stale AAAA record, a name that does not resolve, CAA that forbids the CA
// (inherited from a parent), a critical CAA property, a port held by
// another program, and a CA that is down.
func TestCheckFails(t *testing.T) {
	ns := startZone(t,
		"app.test. 60 IN A 127.0.0.1",
		"stale.test. 60 IN A 127.0.0.1",
		"stale.test. 60 IN AAAA 2001:db8::1",
		"sub.locked.test. 60 IN A 127.0.0.1",
		`locked.test. 60 IN CAA 0 issue "letsencrypt.org"`,
		"crit.test. 60 IN A 127.0.0.1",
		`crit.test. 60 IN CAA 128 tbs "x"`,
	)
	p := newPorts(t)
	// Another program holds the HTTP port.
	busy, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p.HTTP))
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	// A well-formed root of a CA that is down.
	probe, err := throwawayCertificate()
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(t.TempDir(), "root.pem")
	if err := os.WriteFile(root, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: probe.Certificate[0]}), 0o644); err != nil {
		t.Fatal(err)
	}
	caDown := fmt.Sprintf("https://127.0.0.1:%d/dir", pebbletest.FreePort(t))
	cfg := acmeConfig(t, p, caDown, root, "app.test, stale.test, missing.test, sub.locked.test, crit.test")

	r := run(t, cfg, Options{Resolver: ns.Addr, CAAIdentity: "pebble.test"})
	want(t, r,
		Finding{CheckDirectory, "CA " + caDown, Fail, "the ACME directory does not answer"},
		Finding{CheckAddress, "stale.test", Fail, "resolves to 127.0.0.1, 2001:db8::1, and 2001:db8::1 is not an address of this machine"},
		Finding{CheckAddress, "missing.test", Fail, "has no A or AAAA record: the CA cannot reach it"},
		// TLS-ALPN-01 still works, so the lost HTTP-01 is only noted.
		Finding{CheckPorts, "app.test", Note, fmt.Sprintf("http-01: 127.0.0.1:%d (listen.http) is held by another program, not a running gatehouse", p.HTTP)},
		Finding{CheckPorts, "app.test", OK, fmt.Sprintf("tls-alpn-01: app.test:%d reaches a temporary TLS listener", p.HTTPS)},
		Finding{CheckCAA, "sub.locked.test", Fail, "CAA at locked.test allows only letsencrypt.org, not pebble.test"},
		Finding{CheckCAA, "crit.test", Fail, `CAA at crit.test has a critical "tbs" property no CA understands`},
		Finding{CheckCAA, "app.test", OK, "CAA: no records up to the top-level domain, so any CA may issue"},
	)
	if n := r.Failures(); n != 5 {
		t.Errorf("Failures() = %d, want 5 (CA, stale, missing, locked, crit):\n%s", n, dump(r))
	}
	wantInOrder(t, r)
	// Names that do not reach this machine get no port probe.
	for _, f := range r.Findings {
		if f.Check == CheckPorts && (f.Subject == "stale.test" || f.Subject == "missing.test") {
			t.Errorf("probed a name that does not resolve here: %+v", f)
		}
	}

	// With the HTTPS port held too, no challenge can work.
	busyTLS, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p.HTTPS))
	if err != nil {
		t.Fatal(err)
	}
	defer busyTLS.Close()
	r = run(t, cfg, Options{Resolver: ns.Addr, CAAIdentity: "pebble.test"})
	want(t, r,
		Finding{CheckPorts, "app.test", Fail, fmt.Sprintf("http-01: 127.0.0.1:%d (listen.http) is held by another program", p.HTTP)},
		Finding{CheckPorts, "app.test", Fail, fmt.Sprintf("tls-alpn-01: 127.0.0.1:%d (listen.https) is held by another program", p.HTTPS)},
	)
}

// TestCheckCAAUnknownCA fails a CA whose CAA identity gatehouse does not
// know (not Let's Encrypt, ZeroSSL...) behind CAA that names a CA, and says
// how to name it; CAA without an issue property allows it anyway.
func TestCheckCAAUnknownCA(t *testing.T) {
	ca := pebbletest.Start(t, pebbletest.Options{})
	ns := startZone(t,
		`le.test. 60 IN CAA 0 issue "letsencrypt.org"`,
		`open.test. 60 IN CAA 0 iodef "mailto:ops@open.test"`,
	)
	cfg := parseConfig(t, fmt.Sprintf(`listen: {http: "127.0.0.1:%d", https: "127.0.0.1:%d"}
admin: "off"
storage: %s
acme: {ca: %q, ca_root: %q, dns: {provider: exec, credentials: {program: /bin/true}}}
sites:
  - hosts: [le.test, open.test]
    routes: [{respond: {body: app}}]
`, pebbletest.FreePort(t), pebbletest.FreePort(t), t.TempDir(), ca.DirectoryURL(), ca.ClientRootFile()))

	r := run(t, cfg, Options{Resolver: ns.Addr})
	want(t, r,
		Finding{CheckCAA, "le.test", Fail, "CAA at le.test allows only letsencrypt.org; gatehouse does not know which name the CA at " +
			ca.DirectoryURL() + " uses (say it with -caa-identity)"},
		Finding{CheckCAA, "open.test", OK, "CAA at open.test has no issue property, so any CA may issue"},
	)
	if n := r.Failures(); n != 1 {
		t.Errorf("Failures() = %d, want 1:\n%s", n, dump(r))
	}
}

// TestCheckWildcard checks a wildcard host solved through DNS-01: no address
// or port is needed, and its CAA is read from issuewild.
func TestCheckWildcard(t *testing.T) {
	ca := pebbletest.Start(t, pebbletest.Options{})
	ns := startZone(t,
		`wild.test. 60 IN CAA 0 issue ";"`,
		`wild.test. 60 IN CAA 0 issuewild "pebble.test"`,
		`locked.test. 60 IN CAA 0 issuewild "letsencrypt.org"`,
	)
	cfg := parseConfig(t, fmt.Sprintf(`listen: {http: "127.0.0.1:%d", https: "127.0.0.1:%d"}
admin: "off"
storage: %s
acme: {ca: %q, ca_root: %q}
sites:
  - hosts: ["*.wild.test", "*.locked.test"]
    tls: {dns: {provider: exec, credentials: {program: /bin/true}}}
    routes: [{respond: {body: wild}}]
`, pebbletest.FreePort(t), pebbletest.FreePort(t), t.TempDir(), ca.DirectoryURL(), ca.ClientRootFile()))

	r := run(t, cfg, Options{Resolver: ns.Addr, CAAIdentity: "pebble.test"})
	want(t, r,
		Finding{CheckAddress, "*.wild.test", OK, "solved with DNS-01: no address or open port needed"},
		Finding{CheckCAA, "*.wild.test", OK, "CAA at wild.test allows pebble.test"},
		Finding{CheckCAA, "*.locked.test", Fail, "CAA at locked.test allows only letsencrypt.org, not pebble.test"},
	)
	if n := r.Failures(); n != 1 {
		t.Errorf("Failures() = %d, want 1:\n%s", n, dump(r))
	}
	for _, f := range r.Findings {
		if f.Check == CheckPorts {
			t.Errorf("DNS-01 hosts need no port probe: %+v", f)
		}
	}
}

// TestCheckWhileRunning checks a config whose Listeners are held by a
// program whose admin endpoint answers /healthz, as a running gatehouse's
// does: the probes go to it instead of temporary listeners.
func TestCheckWhileRunning(t *testing.T) {
	ca := pebbletest.Start(t, pebbletest.Options{})
	ns := startZone(t, "app.test. 60 IN A 127.0.0.1")
	p := newPorts(t)
	serve := func(port int, h http.Handler) {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: h}
		var wg sync.WaitGroup
		wg.Go(func() { srv.Serve(ln) })
		t.Cleanup(func() { srv.Close(); wg.Wait() })
	}
	serve(p.Admin, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			io.WriteString(w, "ok")
			return
		}
		http.NotFound(w, r)
	}))
	serve(p.HTTP, http.NotFoundHandler())
	serve(p.HTTPS, http.NotFoundHandler())
	cfg := acmeConfig(t, p, ca.DirectoryURL(), ca.ClientRootFile(), "app.test")

	r := run(t, cfg, Options{Resolver: ns.Addr, CAAIdentity: "pebble.test"})
	want(t, r,
		Finding{CheckPorts, "app.test", OK, fmt.Sprintf("http-01: http://app.test:%d/.well-known/acme-challenge/gatehouse-check-", p.HTTP)},
		Finding{CheckPorts, "app.test", OK, fmt.Sprintf("tls-alpn-01: app.test:%d reaches the running gatehouse", p.HTTPS)},
	)
	if n := r.Failures(); n != 0 {
		t.Errorf("Failures() = %d, want 0:\n%s", n, dump(r))
	}
}

func TestCheckBadResolver(t *testing.T) {
	cfg := parseConfig(t, "sites: [{hosts: [app.test], routes: [{respond: {body: app}}]}]\nstorage: "+t.TempDir())
	if _, err := Run(context.Background(), cfg, Options{Resolver: "127.0.0.1"}); err == nil || !strings.Contains(err.Error(), "want HOST:PORT") {
		t.Errorf("Run with Resolver 127.0.0.1: got %v, want an error asking for HOST:PORT", err)
	}
}

func TestCheckCAAIdentity(t *testing.T) {
	for _, tc := range []struct{ directory, want string }{
		{"https://acme-v02.api.letsencrypt.org/directory", "letsencrypt.org"},
		{"https://acme-staging-v02.api.letsencrypt.org/directory", "letsencrypt.org"},
		{"https://acme.zerossl.com/v2/DV90", "sectigo.com"},
		{"https://dv.acme-v02.api.pki.goog/directory", "pki.goog"},
		{"https://127.0.0.1:14000/dir", ""},
		{"https://notletsencrypt.org/directory", ""},
	} {
		if got := caaIdentity(tc.directory); got != tc.want {
			t.Errorf("caaIdentity(%q): got %q, want %q", tc.directory, got, tc.want)
		}
	}
}

// TestCARefNames checks that a CA given by name is fetched at its
// directory URL and reported under both, and that its CAA identity comes
// from the same table.
func TestCARefNames(t *testing.T) {
	ref := newCARef("buypass", "", nil)
	if ref.url != "https://api.buypass.com/acme/directory" || ref.name != "buypass" {
		t.Errorf("newCARef(buypass): got %+v", ref)
	}
	if ref := newCARef("https://ca.example/dir", "", nil); ref.url != "https://ca.example/dir" || ref.name != "" {
		t.Errorf("newCARef(URL): got %+v", ref)
	}
	if got := caaIdentity(config.CADirectory("sslcom")); got != "ssl.com" {
		t.Errorf("caaIdentity(sslcom): got %q, want ssl.com", got)
	}
}
