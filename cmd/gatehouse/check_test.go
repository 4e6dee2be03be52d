package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse-proxy/gatehouse/tlsmgr/pebbletest"
)

// The checks themselves are tested in tlsmgr/preflight; these test what
// `gatehouse check` prints and its exit status.

// startZone runs BIND as public DNS for "test.", holding only records.
func startZone(t *testing.T, records ...string) *pebbletest.BIND {
	t.Helper()
	ns := pebbletest.StartBIND(t, "test")
	ns.DeleteRecords(t, "*.test.", "A")
	ns.AddRecords(t, records...)
	return ns
}

// runCheck runs `gatehouse check` in-process and returns its output and
// error.
func runCheck(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out := &syncBuffer{}
	env := &environment{stdout: out, stderr: out, getenv: func(string) string { return "" }}
	err := run(context.Background(), append([]string{"check"}, args...), env)
	return out.String(), err
}

// wantLines checks that out holds every line, in this order, each as a
// line prefix.
func wantLines(t *testing.T, out string, lines ...string) {
	t.Helper()
	rest := strings.Split(out, "\n")
	for _, want := range lines {
		i := 0
		for i < len(rest) && !strings.HasPrefix(rest[i], want) {
			i++
		}
		if i == len(rest) {
			t.Errorf("no line starting with %q (after the lines before it) in:\n%s", want, out)
			return
		}
		rest = rest[i+1:]
	}
}

// TestCheckPasses prints one line per finding, in check order, then the
// all-clear, and exits 0.
func TestCheckPasses(t *testing.T) {
	ca := pebbletest.Start(t, pebbletest.Options{})
	ns := startZone(t, "app.test. 60 IN A 127.0.0.1", `test. 60 IN CAA 0 issue "pebble.test"`)
	p := newPorts(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "gatehouse.yaml")
	writeConfig(t, cfgPath, p, filepath.Join(dir, "storage"), fmt.Sprintf(adminACMEConfig, ca.DirectoryURL(), ca.ClientRootFile(), "app.test"))

	out, err := runCheck(t, "-config", cfgPath, "-resolver", ns.Addr, "-caa-identity", "pebble.test")
	if err != nil {
		t.Fatalf("check: %v\n%s", err, out)
	}
	wantLines(t, out,
		"ok    CA "+ca.DirectoryURL()+": the ACME directory answers",
		"ok    app.test: resolves to 127.0.0.1 (this machine)",
		fmt.Sprintf("note  listen.http: the CA validates http-01 on port 80, not %d: it must be forwarded there", p.HTTP),
		fmt.Sprintf("ok    app.test: http-01: fetched http://app.test:%d/.well-known/acme-challenge/gatehouse-check-", p.HTTP),
		fmt.Sprintf("ok    app.test: tls-alpn-01: app.test:%d reaches a temporary TLS listener", p.HTTPS),
		"ok    app.test: CAA at test allows pebble.test ("+ca.DirectoryURL()+")",
		"ok: nothing found that would make the CA refuse an order",
	)
}

// TestCheckFails prints each failure as FAIL, counts them and exits 1.
func TestCheckFails(t *testing.T) {
	ca := pebbletest.Start(t, pebbletest.Options{})
	ns := startZone(t, "stale.test. 60 IN A 127.0.0.1", "stale.test. 60 IN AAAA 2001:db8::1")
	p := newPorts(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "gatehouse.yaml")
	caDown := fmt.Sprintf("https://127.0.0.1:%d/dir", pebbletest.FreePort(t))
	writeConfig(t, cfgPath, p, filepath.Join(dir, "storage"), fmt.Sprintf(adminACMEConfig, caDown, ca.ClientRootFile(), "missing.test, stale.test"))

	out, err := runCheck(t, "-config", cfgPath, "-resolver", ns.Addr, "-caa-identity", "pebble.test")
	var exit exitError
	if !errors.As(err, &exit) || exit != 1 {
		t.Fatalf("check: got %v, want exit status 1\n%s", err, out)
	}
	wantLines(t, out,
		"FAIL  CA "+caDown+": the ACME directory does not answer",
		"FAIL  missing.test: has no A or AAAA record: the CA cannot reach it",
		"FAIL  stale.test: resolves to 127.0.0.1, 2001:db8::1, and 2001:db8::1 is not an address of this machine",
		"ok    missing.test: CAA: no records up to the top-level domain, so any CA may issue",
		"3 problems would make obtaining certificates fail",
	)

	// One problem is one.
	writeConfig(t, cfgPath, p, filepath.Join(dir, "storage"), fmt.Sprintf(adminACMEConfig, ca.DirectoryURL(), ca.ClientRootFile(), "missing.test"))
	out, err = runCheck(t, "-config", cfgPath, "-resolver", ns.Addr, "-caa-identity", "pebble.test")
	if !errors.As(err, &exit) || exit != 1 {
		t.Fatalf("check: got %v, want exit status 1\n%s", err, out)
	}
	wantLines(t, out, "1 problem would make obtaining certificates fail")

	// A -resolver without a port stops before any check.
	out, err = runCheck(t, "-config", cfgPath, "-resolver", "127.0.0.1")
	if !errors.As(err, &exit) || exit != 1 || !strings.HasPrefix(out, "gatehouse check: -resolver: want HOST:PORT") {
		t.Errorf("check -resolver 127.0.0.1: got %v, want exit status 1 and the flag named\n%s", err, out)
	}
}

// TestCheckWhileRunning checks a config whose gatehouse is already serving:
// the ports are its own, so the probes go to it.
func TestCheckWhileRunning(t *testing.T) {
	if testing.Short() {
		t.Skip("starts gatehouse with an in-process Pebble")
	}
	p := newPorts(t)
	ca := pebbletest.Start(t, pebbletest.Options{HTTPPort: p.HTTP, TLSPort: p.HTTPS})
	ns := startZone(t, "app.test. 60 IN A 127.0.0.1")
	in := start(t, p, fmt.Sprintf(adminACMEConfig, ca.DirectoryURL(), ca.ClientRootFile(), "app.test"))

	out, err := runCheck(t, "-config", in.CfgPath, "-resolver", ns.Addr)
	if err != nil {
		t.Fatalf("check: %v\n%s", err, out)
	}
	wantLines(t, out,
		fmt.Sprintf("ok    app.test: http-01: http://app.test:%d/.well-known/acme-challenge/", p.HTTP),
		fmt.Sprintf("ok    app.test: tls-alpn-01: app.test:%d reaches the running gatehouse", p.HTTPS),
	)
}
