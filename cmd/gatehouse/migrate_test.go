package main

import (
	"math/big"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/gateway/gatewaytest"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr"
)

// TestMigrateCommand drives `gatehouse migrate` against a running
// gatehouse (a dry run, then two hosts), then offline on its storage for
// the rest with --revoke-old and --write-config (issue 14).
func TestMigrateCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("issues certificates from two in-process Pebbles")
	}
	p := newPorts(t)
	cfg, caA, caB := gatewaytest.TwoCAConfig(t, p, "a.test, b.test, c.test")
	in := start(t, p, cfg)
	old := map[string]*big.Int{}
	for _, h := range []string{"a.test", "b.test", "c.test"} {
		waitForCertificate(t, in, caA, h, 30*time.Second)
		old[h] = certsServedSerial(t, in, h, caA.IssuerRoots())
	}
	cfgFlag := []string{"-config", in.CfgPath}
	migrate := func(args ...string) (int, string, string) {
		t.Helper()
		return runCmd(t, nil, append(append([]string{"migrate"}, args...), cfgFlag...)...)
	}

	if code, _, errOut := migrate(); code != 2 || !strings.Contains(errOut, "--to is required") {
		t.Errorf("migrate without --to: exit %d, %q", code, errOut)
	}
	if code, _, errOut := migrate("--to", caB.DirectoryURL(), "--rate", "fast"); code != 2 || !strings.Contains(errOut, "--rate") {
		t.Errorf("migrate --rate fast: exit %d, %q", code, errOut)
	}
	if code, _, errOut := migrate("--to", "https://nowhere.test/dir"); code != 1 || !strings.Contains(errOut, "not among the issuers") {
		t.Errorf("migrate to an issuer not in the config: exit %d, %q", code, errOut)
	}

	// The dry run lists the plan and the line to change, and orders
	// nothing.
	code, out, errOut := migrate("--to", caB.DirectoryURL(), "--dry-run")
	if code != 0 || strings.Count(out, ": planned (now from "+caA.DirectoryURL()) != 3 || !strings.Contains(out, "plan: 3 to migrate") || !strings.Contains(out, "3 orders at 5/min") ||
		!strings.Contains(out, "budget at "+caB.DirectoryURL()+": orders_per_account (") || !strings.Contains(out, "per 3h): 1800 of 1800 left") ||
		!strings.Contains(out, in.CfgPath+":9:11: acme.issuers[1].ca: move this issuer") || caB.Orders() != 0 {
		t.Errorf("migrate --dry-run: exit %d, %d orders at B\n%s%s", code, caB.Orders(), out, errOut)
	}

	// Two hosts, through the running gatehouse: one line each (no
	// terminal), served at once.
	code, out, errOut = migrate("--to", caB.DirectoryURL(), "--hosts", "a.test,b.*", "--rate", "10/s")
	if code != 0 || !strings.Contains(out, "a.test: migrated (serial ") || !strings.Contains(out, "b.test: migrated") ||
		strings.Contains(out, "c.test") || !strings.Contains(out, "migrated 2 of 2") {
		t.Errorf("migrate --hosts: exit %d\n%s%s", code, out, errOut)
	}
	for _, h := range []string{"a.test", "b.test"} {
		if s := certsServedSerial(t, in, h, caB.IssuerRoots()); s.Cmp(old[h]) == 0 {
			t.Errorf("%s still serves %x", h, s)
		}
	}

	// Offline, the rest: c.test from B, its old one revoked, B first in
	// the file.
	if err := in.Stop(); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = migrate("--to", caB.DirectoryURL(), "--revoke-old", "--write-config", "--rate", "10/s")
	if code != 0 || !strings.Contains(errOut, "working on the storage") || !strings.Contains(out, "c.test: migrated") ||
		!strings.Contains(out, "c.test: revoked") || !strings.Contains(out, "a.test: skipped: already from") ||
		!strings.Contains(out, in.CfgPath+": acme.issuers: moved") {
		t.Errorf("offline migrate: exit %d\n%s%s", code, out, errOut)
	}
	if reason, ok := caA.RevocationReason(old["c.test"]); !ok || reason != 4 {
		t.Errorf("c.test's old certificate at A: revoked %v reason %d, want superseded (4)", ok, reason)
	}
	for _, h := range []string{"a.test", "b.test", "c.test"} {
		if info, _ := certsJSON(t, in.CfgPath, h); info.CA != caB.DirectoryURL() {
			t.Errorf("%s after the migration: from %s, want B", h, info.CA)
		}
	}
	b, _ := os.ReadFile(in.CfgPath)
	if i, j := strings.Index(string(b), caB.DirectoryURL()), strings.Index(string(b), caA.DirectoryURL()); i < 0 || j < i || !strings.Contains(string(b), "# the CA in trouble") {
		t.Errorf("config after --write-config: B not first, or the comment lost:\n%s", b)
	}
	if code, _, errOut := runCmd(t, nil, "validate", "-config", in.CfgPath); code != 0 {
		t.Errorf("validate after --write-config: exit %d\n%s", code, errOut)
	}
}

// TestMigrateOutput: on a terminal a bar redrawn in place, with skipped
// and failed hosts printed above it; otherwise one line per step.
func TestMigrateOutput(t *testing.T) {
	events := []tlsmgr.MigrationEvent{
		{Host: "a.test", Step: tlsmgr.MigrationPlanned, Total: 2},
		{Host: "b.test", Step: tlsmgr.MigrationPlanned, Total: 2},
		{Host: "c.test", Step: tlsmgr.MigrationSkipped, Reason: "no certificate yet", Total: 2},
		{Host: "a.test", Step: tlsmgr.MigrationMigrated, Serial: "2", OldSerial: "1", Done: 1, Total: 2},
		{Host: "b.test", Step: tlsmgr.MigrationFailed, Reason: "rateLimited", Done: 1, Total: 2},
	}
	var term strings.Builder
	o := newMigrateOutput(&term, true, false)
	for _, ev := range events {
		o.event(ev)
	}
	o.finish()
	want := "\r\x1b[K[..............................] 0/2 a.test planned" +
		"\r\x1b[K[..............................] 0/2 b.test planned" +
		"\r\x1b[Kc.test: skipped: no certificate yet\n" +
		"\r\x1b[K[..............................] 0/2 c.test skipped" +
		"\r\x1b[K[###############...............] 1/2 a.test migrated" +
		"\r\x1b[Kb.test: failed: rateLimited\n" +
		"\r\x1b[K[###############...............] 1/2 b.test failed\n"
	if got := term.String(); got != want {
		t.Errorf("terminal output:\n got %q\nwant %q", got, want)
	}

	var plain strings.Builder
	o = newMigrateOutput(&plain, false, false)
	for _, ev := range events {
		o.event(ev)
	}
	o.finish()
	want = "c.test: skipped: no certificate yet\n" +
		"a.test: migrated (serial 2, was 1) [1/2]\n" +
		"b.test: failed: rateLimited\n"
	if got := plain.String(); got != want {
		t.Errorf("plain output:\n got %q\nwant %q", got, want)
	}
}
