package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"math/big"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/tlsmgr"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr/pebbletest"
)

// certsServedSerial returns the serial of the certificate the instance serves
// for name, verified against roots.
func certsServedSerial(t *testing.T, in *instance, name string, roots *x509.CertPool) *big.Int {
	t.Helper()
	c, err := tls.Dial("tcp", in.HTTPS, &tls.Config{ServerName: name, RootCAs: roots})
	if err != nil {
		t.Fatalf("handshake for %s: %v", name, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber
}

// certsJSON runs `certs list --json` and returns the entry for name.
func certsJSON(t *testing.T, cfgPath, name string) (tlsmgr.CertificateInfo, string) {
	t.Helper()
	code, out, errOut := runCmd(t, nil, "certs", "list", "--json", "-config", cfgPath)
	if code != 0 {
		t.Fatalf("certs list --json: exit %d\n%s", code, errOut)
	}
	var certs []tlsmgr.CertificateInfo
	if err := json.Unmarshal([]byte(out), &certs); err != nil {
		t.Fatalf("certs list --json printed %q: %v", out, err)
	}
	for _, c := range certs {
		for _, n := range c.Names {
			if n == name {
				return c, errOut
			}
		}
	}
	t.Fatalf("certs list --json has no %s: %s", name, out)
	return tlsmgr.CertificateInfo{}, ""
}

// TestCertsCommand drives `gatehouse certs` against a running gatehouse
// (through the admin endpoint) and then offline on its storage, with a
// real ACME CA.
func TestCertsCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("issues certificates from an in-process Pebble")
	}
	p := newPorts(t)
	ca := pebbletest.Start(t, pebbletest.Options{HTTPPort: p.HTTP, TLSPort: p.HTTPS})
	cfg := fmt.Sprintf(adminACMEConfig, ca.DirectoryURL(), ca.ClientRootFile(), "app.test, gone.test")
	in := start(t, p, cfg)
	waitForCertificate(t, in, ca, "app.test", 30*time.Second)
	waitForCertificate(t, in, ca, "gone.test", 30*time.Second)

	// A reload without gone.test retires its certificate.
	writeConfig(t, in.CfgPath, p, in.Storage, fmt.Sprintf(adminACMEConfig, ca.DirectoryURL(), ca.ClientRootFile(), "app.test"))
	in.Reload <- nil
	waitFor(t, 10*time.Second, func() bool {
		code, out, _ := runCmd(t, nil, "certs", "list", "-config", in.CfgPath)
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); code == 0 && len(f) > 2 && f[0] == "retired" && f[2] == "gone.test" {
				return true
			}
		}
		return false
	})
	roots := ca.IssuerRoots()
	first := certsServedSerial(t, in, "app.test", roots)

	// list, as JSON and as a table (no colour outside a terminal).
	info, _ := certsJSON(t, in.CfgPath, "app.test")
	if info.Serial != first.Text(16) || info.Source != tlsmgr.SourceACME || info.Status != tlsmgr.StatusValid || info.CA != ca.DirectoryURL() {
		t.Errorf("certs list --json: got %+v; want acme, valid, serial %x", info, first)
	}
	code, out, errOut := runCmd(t, nil, "certs", "list", "-config", in.CfgPath)
	if code != 0 || !strings.Contains(out, "app.test") || !strings.Contains(out, "localhost") || !strings.HasPrefix(out, "STATUS") || strings.Contains(out, "\x1b[") {
		t.Errorf("certs list: exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, _ = runCmd(t, nil, "certs", "show", "app.test", "-config", in.CfgPath)
	if code != 0 || !strings.Contains(out, "serial:") || !strings.Contains(out, first.Text(16)) || !strings.Contains(out, "-----BEGIN CERTIFICATE-----") {
		t.Errorf("certs show: exit %d\n%s", code, out)
	}
	if code, _, errOut := runCmd(t, nil, "certs", "show", "nothing.test", "-config", in.CfgPath); code != 1 || !strings.Contains(errOut, "no certificate for nothing.test") {
		t.Errorf("certs show of an unknown name: exit %d, %q", code, errOut)
	}

	// renew --force serves a new certificate at once.
	code, out, errOut = runCmd(t, nil, "certs", "renew", "app.test", "--force", "-config", in.CfgPath)
	renewed := certsServedSerial(t, in, "app.test", roots)
	if code != 0 || renewed.Cmp(first) == 0 || !strings.Contains(out, renewed.Text(16)) {
		t.Fatalf("certs renew --force: exit %d, served %x (was %x)\n%s%s", code, renewed, first, out, errOut)
	}
	if code, _, errOut := runCmd(t, nil, "certs", "renew", "--all", "-config", in.CfgPath); code != 0 {
		t.Errorf("certs renew --all: exit %d\n%s", code, errOut)
	}

	// revoke needs a known reason, then revokes at the CA and serves a
	// replacement.
	if code, _, errOut := runCmd(t, nil, "certs", "revoke", "app.test", "-config", in.CfgPath); code != 2 || !strings.Contains(errOut, "--reason") {
		t.Errorf("certs revoke without --reason: exit %d, %q", code, errOut)
	}
	if code, _, errOut := runCmd(t, nil, "certs", "revoke", "app.test", "--reason", "bored", "-config", in.CfgPath); code != 2 || !strings.Contains(errOut, "keyCompromise") {
		t.Errorf("certs revoke with a bad reason: exit %d, %q", code, errOut)
	}
	code, out, errOut = runCmd(t, nil, "certs", "revoke", "app.test", "--reason", "superseded", "-config", in.CfgPath)
	replaced := certsServedSerial(t, in, "app.test", roots)
	if code != 0 || !ca.Revoked(renewed) || replaced.Cmp(renewed) == 0 || !strings.Contains(out, replaced.Text(16)) {
		t.Fatalf("certs revoke: exit %d, revoked at the CA %v, serving %x (was %x)\n%s%s", code, ca.Revoked(renewed), replaced, renewed, out, errOut)
	}

	// Offline: with gatehouse stopped, list reads the storage.
	if err := in.Stop(); err != nil {
		t.Fatal(err)
	}
	info, errOut = certsJSON(t, in.CfgPath, "app.test")
	if info.Serial != replaced.Text(16) || info.Status != tlsmgr.StatusValid || !strings.Contains(errOut, "no gatehouse answers") {
		t.Errorf("offline certs list: got serial %s status %s, stderr %q; want %x valid and a note", info.Serial, info.Status, errOut, replaced)
	}
	// Offline renewal answers the challenges on the config's Listener
	// addresses itself.
	code, out, errOut = runCmd(t, nil, "certs", "renew", "app.test", "--force", "-config", in.CfgPath)
	offline, _ := certsJSON(t, in.CfgPath, "app.test")
	if code != 0 || offline.Serial == replaced.Text(16) || !strings.Contains(out, offline.Serial) {
		t.Fatalf("offline certs renew --force: exit %d, stored serial %s (was %x)\n%s%s", code, offline.Serial, replaced, out, errOut)
	}
	replaced.SetString(offline.Serial, 16)

	// The host leaves the config: retire archives it, and it can still be
	// revoked offline.
	writeConfig(t, in.CfgPath, p, in.Storage, fmt.Sprintf(adminACMEConfig, ca.DirectoryURL(), ca.ClientRootFile(), "other.test"))
	code, out, errOut = runCmd(t, nil, "certs", "retire", "-config", in.CfgPath)
	if code != 0 || !strings.Contains(out, "app.test: retired") {
		t.Fatalf("certs retire: exit %d\n%s%s", code, out, errOut)
	}
	if info, _ := certsJSON(t, in.CfgPath, "app.test"); info.Status != tlsmgr.StatusRetired || info.Serial != replaced.Text(16) {
		t.Errorf("after certs retire: status %s serial %s; want retired %x", info.Status, info.Serial, replaced)
	}
	if code, out, _ := runCmd(t, nil, "certs", "retire", "-config", in.CfgPath); code != 0 || !strings.Contains(out, "nothing to retire") {
		t.Errorf("certs retire again: exit %d %q", code, out)
	}
	code, _, errOut = runCmd(t, nil, "certs", "revoke", "app.test", "--reason", "cessationOfOperation", "-config", in.CfgPath)
	if code != 0 || !ca.Revoked(replaced) {
		t.Errorf("offline certs revoke of the retired certificate: exit %d, revoked %v\n%s", code, ca.Revoked(replaced), errOut)
	}
}

// TestIsTerminal: colour (tlsmgr.WriteCertificates') only on a terminal,
// never in a pipe or a file.
func TestIsTerminal(t *testing.T) {
	if isTerminal(&strings.Builder{}) {
		t.Error("a strings.Builder is not a terminal")
	}
}

const pendingConfig = `listen: {http: "127.0.0.1:{{HTTP}}", https: "127.0.0.1:{{HTTPS}}"}
admin: "127.0.0.1:{{ADMIN}}"
storage: {{STORAGE}}
acme: {ca: %s, ca_root: %s}
sites:
  - hosts: [localhost]
    routes: [{respond: {body: local}}]
  - hosts: [quiet.internal]
    routes: [{respond: {body: quiet}}]
  - hosts: [stuck.test]
    routes: [{respond: {body: stuck}}]
`

// TestCertsPending checks that a host without a certificate yet is listed
// as pending, with no dates, wherever the inventory shows: a local CA host
// no client has asked for and an ACME host whose first order is still at
// the CA (Pebble validates against a port that never answers), in `certs
// list`, its JSON, the admin API, the metrics and the dashboard, online and
// offline.
func TestCertsPending(t *testing.T) {
	if testing.Short() {
		t.Skip("orders from an in-process Pebble")
	}
	p := newPorts(t)
	in, ca := startStuckOrder(t, p, pendingConfig)
	// Pebble gives up validating after 15s; everything below must see the
	// order still in flight, which the CA confirms at the end.
	pending := []string{"stuck.test", "quiet.internal"}

	// The table: pending, no days left, no renewal; localhost (asked for
	// by start's handshake) is valid.
	code, out, errOut := runCmd(t, nil, "certs", "list", "-config", in.CfgPath)
	if code != 0 {
		t.Fatalf("certs list: exit %d\n%s", code, errOut)
	}
	rows := map[string][]string{}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) >= 3 {
			rows[f[2]] = f
		}
	}
	for _, name := range pending {
		if f := rows[name]; len(f) < 3 || f[0] != "pending" || f[1] != "-" || strings.Contains(strings.Join(f, " "), "(lifetime)") {
			t.Errorf("certs list row of %s: got %q, want pending with no days left and no renewal\n%s", name, f, out)
		}
	}
	if f := rows["localhost"]; len(f) == 0 || f[0] != "valid" {
		t.Errorf("certs list row of localhost: got %q, want valid\n%s", f, out)
	}

	// The JSON of the CLI and of the admin API: pending, no dates.
	for _, name := range pending {
		info, _ := certsJSON(t, in.CfgPath, name)
		if info.Status != tlsmgr.StatusPending || !info.NotAfter.IsZero() || !info.NextRenewal.IsZero() || info.Failures != 0 {
			t.Errorf("certs list --json for %s: got %+v, want pending without dates or failures", name, info)
		}
	}
	a := adminClient{T: t, Base: fmt.Sprintf("http://127.0.0.1:%d", p.Admin)}
	if status, body := a.Do("GET", "/certs/stuck.test", "", ""); status != 200 || !strings.Contains(body, `"status": "pending"`) || strings.Contains(body, "not_after") {
		t.Errorf("GET /certs/stuck.test: got %d %s, want pending without not_after", status, body)
	}

	// The metrics: status pending, and no expiry (year 1 would set off
	// every expires-soon alert).
	_, metrics := a.Do("GET", "/metrics", "", "")
	for _, name := range pending {
		for _, re := range []string{
			`(?m)^gatehouse_certificate_status\{issuer="[^"]*",name="` + name + `",status="pending"\} 1$`,
			`(?m)^gatehouse_certificate_status\{issuer="[^"]*",name="` + name + `",status="valid"\} 0$`,
		} {
			if !regexp.MustCompile(re).MatchString(metrics) {
				t.Errorf("metrics: no match for %s\n%s", re, grepLines(metrics, "gatehouse_certificate_"))
			}
		}
		if regexp.MustCompile(`(?m)^gatehouse_certificate_not_after_seconds\{[^}]*name="` + name + `"`).MatchString(metrics) {
			t.Errorf("metrics: %s has no certificate but a not_after\n%s", name, grepLines(metrics, "gatehouse_certificate_not_after"))
		}
	}

	// The dashboard: a pending row and a pending count.
	_, page := a.Do("GET", "/", "", "")
	for _, name := range pending {
		if !regexp.MustCompile(`<tr class="cert pending" data-status="pending">\s*<td><div class="name">` + regexp.QuoteMeta(name) + `<`).MatchString(page) {
			t.Errorf("dashboard: no pending row for %s", name)
		}
	}
	if !strings.Contains(page, `<strong>2</strong><span class="badge status-pending">pending</span>`) {
		t.Error("dashboard: no count of 2 pending certificates")
	}
	asked := 0
	for _, v := range ca.Validations() {
		if v.Name != "stuck.test" {
			continue
		}
		asked++
		if v.Status != "processing" && v.Status != "pending" {
			t.Fatalf("the CA's challenge for stuck.test is %s; the order ended during the checks, which saw nothing pending", v.Status)
		}
	}
	if asked == 0 {
		t.Fatal("the CA was never asked to validate stuck.test")
	}

	// Offline, from the storage: still pending (the stopped order was
	// cancelled, not failed; local CA leaves live in memory only).
	if err := in.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, name := range pending {
		info, errOut := certsJSON(t, in.CfgPath, name)
		if info.Status != tlsmgr.StatusPending || !strings.Contains(errOut, "no gatehouse answers") {
			t.Errorf("offline certs list --json for %s: got status %s, stderr %q; want pending", name, info.Status, errOut)
		}
	}
}

const refusedConfig = `listen: {http: "127.0.0.1:{{HTTP}}", https: "127.0.0.1:{{HTTPS}}"}
admin: "127.0.0.1:{{ADMIN}}"
storage: {{STORAGE}}
acme: {ca: %s, ca_root: %s}
sites:
  - hosts: [localhost]
    routes: [{respond: {body: local}}]
  - hosts: [static.example.com]
    tls: {cert: %s, key: %s}
    routes: [{respond: {body: files}}]
  - hosts: [%s]
    routes: [{respond: {body: app}}]
`

// TestCertsRefused checks that renewing or revoking a Certificate that
// cannot be (from files, from the local CA, retired, none obtained yet)
// is answered 409 with the reason, which `gatehouse certs` prints before
// exiting 1, while a CA that is down is still a 502; and that `certs renew
// --all` passes over a host with no certificate yet.
func TestCertsRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("issues certificates from an in-process Pebble")
	}
	p := newPorts(t)
	// The CA's DNS knows app.test and gone.test only: validating
	// fail.test fails, so it never gets a certificate.
	z := startZone(t, "app.test. 60 IN A 127.0.0.1", "gone.test. 60 IN A 127.0.0.1")
	ca := pebbletest.Start(t, pebbletest.Options{HTTPPort: p.HTTP, TLSPort: p.HTTPS, Resolver: z.Addr})
	certFile, err := filepath.Abs("../../examples/certs/static.example.com.crt")
	if err != nil {
		t.Fatal(err)
	}
	keyFile := strings.TrimSuffix(certFile, ".crt") + ".key"
	cfg := func(hosts string) string {
		return fmt.Sprintf(refusedConfig, ca.DirectoryURL(), ca.ClientRootFile(), certFile, keyFile, hosts)
	}
	in := start(t, p, cfg("app.test, gone.test, fail.test"))
	a := adminClient{T: t, Base: fmt.Sprintf("http://127.0.0.1:%d", p.Admin)}
	waitForCertificate(t, in, ca, "app.test", 30*time.Second)
	waitForCertificate(t, in, ca, "gone.test", 30*time.Second)
	waitFor(t, 60*time.Second, func() bool { return a.Certs()["fail.test"].Status == tlsmgr.StatusFailing })
	writeConfig(t, in.CfgPath, p, in.Storage, cfg("app.test, fail.test"))
	in.Reload <- nil
	waitFor(t, 10*time.Second, func() bool {
		_, body := a.Do("GET", "/certs/gone.test", "", "")
		return strings.Contains(body, `"status": "retired"`)
	})

	for _, tc := range []struct {
		op, name, want string
	}{
		{"renew", "static.example.com", "renewing certificate of static.example.com: it comes from files (tls.cert, tls.key); replace them and reload"},
		{"revoke", "static.example.com", "revoking certificate of static.example.com: it comes from files (tls.cert, tls.key); revoke it with the CA that issued it"},
		{"revoke", "localhost", "revoking certificate of localhost: it comes from the local CA, which keeps no revocation list; renew it for a new leaf"},
		{"renew", "fail.test", "renewing certificate of fail.test: it has no certificate yet (status pending or failing)"},
		{"revoke", "fail.test", "revoking certificate of fail.test: it has no certificate yet (status pending or failing)"},
		{"renew", "gone.test", "renewing certificate of gone.test: it is retired (its host left the config)"},
	} {
		orders := ca.Orders()
		status, answer := a.Do("POST", "/certs/"+tc.name+"/"+tc.op, "application/json", `{"reason": "superseded"}`)
		var e struct{ Error string }
		_ = json.Unmarshal([]byte(answer), &e)
		if status != 409 || !strings.HasPrefix(e.Error, tc.want) {
			t.Errorf("POST /certs/%s/%s: got %d %s, want 409 %q", tc.name, tc.op, status, answer, tc.want)
		}
		args := []string{"certs", tc.op, tc.name, "-config", in.CfgPath}
		if tc.op == "revoke" {
			args = append(args, "--reason", "superseded")
		}
		code, out, errOut := runCmd(t, nil, args...)
		if want := "gatehouse certs: " + e.Error + "\n"; code != 1 || errOut != want || out != "" {
			t.Errorf("certs %s %s: exit %d, stdout %q, stderr %q; want exit 1 and stderr %q", tc.op, tc.name, code, out, errOut, want)
		}
		if ca.Orders() != orders {
			t.Errorf("certs %s %s ordered from the CA", tc.op, tc.name)
		}
	}
	if status, body := a.Do("POST", "/certs/nothing.test/renew", "", ""); status != 404 {
		t.Errorf("renewing an unknown name: got %d %s, want 404", status, body)
	}

	// renew --all passes over fail.test and gone.test and renews the rest
	// (nothing is due).
	code, _, errOut := runCmd(t, nil, "certs", "renew", "--all", "-config", in.CfgPath)
	if code != 0 || !strings.Contains(errOut, "# fail.test: no certificate yet (failing); skipped") {
		t.Errorf("certs renew --all: exit %d, stderr %q; want 0 and fail.test skipped", code, errOut)
	}

	// A CA that is down is a gateway failure, not a refusal.
	ca.Close()
	if status, body := a.Do("POST", "/certs/app.test/renew?force=1", "", ""); status != 502 || !strings.Contains(body, "renewing certificate of app.test") {
		t.Errorf("renewing with the CA down: got %d %s, want 502", status, body)
	}
	if code, _, errOut := runCmd(t, nil, "certs", "renew", "app.test", "--force", "-config", in.CfgPath); code != 1 || !strings.HasPrefix(errOut, "gatehouse certs: renewing certificate of app.test: ") {
		t.Errorf("certs renew with the CA down: exit %d, stderr %q; want 1 and the error", code, errOut)
	}
}
