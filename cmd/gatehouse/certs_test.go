package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/tlsmgr"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr/pebbletest"
)

const certsConfig = `listen: {http: "127.0.0.1:{{HTTP}}", https: "127.0.0.1:{{HTTPS}}"}
admin: "127.0.0.1:{{ADMIN}}"
storage: {{STORAGE}}
acme:
  ca: %s
  ca_root: %s
sites:
  - hosts: [localhost]
    routes: [{respond: {body: local}}]
  - hosts: [%s]
    routes: [{respond: {body: app}}]
`

// certsServedSerial returns the serial of the certificate the instance serves
// for name, verified against roots.
func certsServedSerial(t *testing.T, in *instance, name string, roots *x509.CertPool) *big.Int {
	t.Helper()
	c, err := tls.Dial("tcp", in.https, &tls.Config{ServerName: name, RootCAs: roots})
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
	cfg := fmt.Sprintf(certsConfig, ca.DirectoryURL(), ca.ClientRootFile(), "app.test, gone.test")
	in := start(t, p, cfg)
	waitForCertificate(t, in, ca, "app.test", 30*time.Second)
	waitForCertificate(t, in, ca, "gone.test", 30*time.Second)

	// A reload without gone.test retires its certificate.
	writeConfig(t, in.cfgPath, p, in.storage, fmt.Sprintf(certsConfig, ca.DirectoryURL(), ca.ClientRootFile(), "app.test"))
	in.reload <- nil
	waitFor(t, 10*time.Second, func() bool {
		code, out, _ := runCmd(t, nil, "certs", "list", "-config", in.cfgPath)
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
	info, _ := certsJSON(t, in.cfgPath, "app.test")
	if info.Serial != first.Text(16) || info.Source != tlsmgr.SourceACME || info.Status != tlsmgr.StatusValid || info.CA != ca.DirectoryURL() {
		t.Errorf("certs list --json: got %+v; want acme, valid, serial %x", info, first)
	}
	code, out, errOut := runCmd(t, nil, "certs", "list", "-config", in.cfgPath)
	if code != 0 || !strings.Contains(out, "app.test") || !strings.Contains(out, "localhost") || !strings.HasPrefix(out, "STATUS") || strings.Contains(out, "\x1b[") {
		t.Errorf("certs list: exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, _ = runCmd(t, nil, "certs", "show", "app.test", "-config", in.cfgPath)
	if code != 0 || !strings.Contains(out, "serial:") || !strings.Contains(out, first.Text(16)) || !strings.Contains(out, "-----BEGIN CERTIFICATE-----") {
		t.Errorf("certs show: exit %d\n%s", code, out)
	}
	if code, _, errOut := runCmd(t, nil, "certs", "show", "nothing.test", "-config", in.cfgPath); code != 1 || !strings.Contains(errOut, "no certificate for nothing.test") {
		t.Errorf("certs show of an unknown name: exit %d, %q", code, errOut)
	}

	// renew --force serves a new certificate at once.
	code, out, errOut = runCmd(t, nil, "certs", "renew", "app.test", "--force", "-config", in.cfgPath)
	renewed := certsServedSerial(t, in, "app.test", roots)
	if code != 0 || renewed.Cmp(first) == 0 || !strings.Contains(out, renewed.Text(16)) {
		t.Fatalf("certs renew --force: exit %d, served %x (was %x)\n%s%s", code, renewed, first, out, errOut)
	}
	if code, _, errOut := runCmd(t, nil, "certs", "renew", "--all", "-config", in.cfgPath); code != 0 {
		t.Errorf("certs renew --all: exit %d\n%s", code, errOut)
	}

	// revoke needs a known reason, then revokes at the CA and serves a
	// replacement.
	if code, _, errOut := runCmd(t, nil, "certs", "revoke", "app.test", "-config", in.cfgPath); code != 2 || !strings.Contains(errOut, "--reason") {
		t.Errorf("certs revoke without --reason: exit %d, %q", code, errOut)
	}
	if code, _, errOut := runCmd(t, nil, "certs", "revoke", "app.test", "--reason", "bored", "-config", in.cfgPath); code != 2 || !strings.Contains(errOut, "keyCompromise") {
		t.Errorf("certs revoke with a bad reason: exit %d, %q", code, errOut)
	}
	code, out, errOut = runCmd(t, nil, "certs", "revoke", "app.test", "--reason", "superseded", "-config", in.cfgPath)
	replaced := certsServedSerial(t, in, "app.test", roots)
	if code != 0 || !ca.Revoked(renewed) || replaced.Cmp(renewed) == 0 || !strings.Contains(out, replaced.Text(16)) {
		t.Fatalf("certs revoke: exit %d, revoked at the CA %v, serving %x (was %x)\n%s%s", code, ca.Revoked(renewed), replaced, renewed, out, errOut)
	}

	// Offline: with gatehouse stopped, list reads the storage.
	if err := in.stop(); err != nil {
		t.Fatal(err)
	}
	info, errOut = certsJSON(t, in.cfgPath, "app.test")
	if info.Serial != replaced.Text(16) || info.Status != tlsmgr.StatusValid || !strings.Contains(errOut, "no gatehouse answers") {
		t.Errorf("offline certs list: got serial %s status %s, stderr %q; want %x valid and a note", info.Serial, info.Status, errOut, replaced)
	}
	// Offline renewal answers the challenges on the config's Listener
	// addresses itself.
	code, out, errOut = runCmd(t, nil, "certs", "renew", "app.test", "--force", "-config", in.cfgPath)
	offline, _ := certsJSON(t, in.cfgPath, "app.test")
	if code != 0 || offline.Serial == replaced.Text(16) || !strings.Contains(out, offline.Serial) {
		t.Fatalf("offline certs renew --force: exit %d, stored serial %s (was %x)\n%s%s", code, offline.Serial, replaced, out, errOut)
	}
	replaced.SetString(offline.Serial, 16)

	// The host leaves the config: retire archives it, and it can still be
	// revoked offline.
	writeConfig(t, in.cfgPath, p, in.storage, fmt.Sprintf(certsConfig, ca.DirectoryURL(), ca.ClientRootFile(), "other.test"))
	code, out, errOut = runCmd(t, nil, "certs", "retire", "-config", in.cfgPath)
	if code != 0 || !strings.Contains(out, "app.test: retired") {
		t.Fatalf("certs retire: exit %d\n%s%s", code, out, errOut)
	}
	if info, _ := certsJSON(t, in.cfgPath, "app.test"); info.Status != tlsmgr.StatusRetired || info.Serial != replaced.Text(16) {
		t.Errorf("after certs retire: status %s serial %s; want retired %x", info.Status, info.Serial, replaced)
	}
	if code, out, _ := runCmd(t, nil, "certs", "retire", "-config", in.cfgPath); code != 0 || !strings.Contains(out, "nothing to retire") {
		t.Errorf("certs retire again: exit %d %q", code, out)
	}
	code, _, errOut = runCmd(t, nil, "certs", "revoke", "app.test", "--reason", "cessationOfOperation", "-config", in.cfgPath)
	if code != 0 || !ca.Revoked(replaced) {
		t.Errorf("offline certs revoke of the retired certificate: exit %d, revoked %v\n%s", code, ca.Revoked(replaced), errOut)
	}
}

// TestCertsTableColours checks days left are coloured by urgency when
// asked (on a terminal) and never otherwise.
func TestCertsTableColours(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	certs := []tlsmgr.CertificateInfo{
		{Names: []string{"valid.test"}, Source: "acme", Status: tlsmgr.StatusValid, NotAfter: now.Add(60 * 24 * time.Hour)},
		{Names: []string{"expiring.test"}, Source: "acme", Status: tlsmgr.StatusExpiring, NotAfter: now.Add(20 * 24 * time.Hour)},
		{Names: []string{"expired.test"}, Source: "acme", Status: tlsmgr.StatusExpired, NotAfter: now.Add(-36 * time.Hour)},
		{Names: []string{"leafless.internal"}, Source: "internal", Status: tlsmgr.StatusValid},
	}
	var b strings.Builder
	printTable(&b, certs, now, true)
	for _, want := range []string{green + "60" + reset, yellow + "20" + reset, red + "-2" + reset} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("coloured table lacks %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	printTable(&b, certs, now, false)
	if strings.Contains(b.String(), "\x1b[") || !strings.Contains(b.String(), "expired.test") {
		t.Errorf("plain table:\n%s", b.String())
	}
	if isTerminal(&b) {
		t.Error("a strings.Builder is not a terminal")
	}
}
