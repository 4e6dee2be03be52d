package main

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/gatehouse-proxy/gatehouse/tlsmgr"
)

// runCmd runs a command in-process and returns its exit code and output.
func runCmd(t *testing.T, getenv func(string) string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return runStdin(t, nil, getenv, args...)
}

// runStdin is runCmd for a command that reads stdin (nil: the test
// process's own).
func runStdin(t *testing.T, stdin io.Reader, getenv func(string) string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut syncBuffer
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	err := run(context.Background(), args, &environment{stdout: &out, stderr: &errOut, stdin: stdin, getenv: getenv})
	switch e := err.(type) {
	case nil:
	case exitError:
		code = int(e)
	default:
		t.Fatalf("run returned %T %v, want nil or exitError", err, err)
	}
	return code, out.String(), errOut.String()
}

const validConfig = `listen: {http: ":18080", https: ":18443"}
storage: /tmp/gatehouse-validate
sites:
  - hosts: [localhost]
    routes:
      - path: /
        respond: {body: hello}
`

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(good, []byte(validConfig), 0o644)
	os.WriteFile(bad, []byte(`listen: {http: ":18080", https: ":18443"}
sites:
  - hosts: [localhost]
    routes:
      - path: /
        upstream: [http://127.0.0.1:9000]
      - path: nope
        respond: {status: 99}
`), 0o644)

	code, out, errOut := runCmd(t, nil, "validate", "-config", good)
	if code != 0 || strings.TrimSpace(out) != "ok" {
		t.Fatalf("valid config: got exit %d, stdout %q, stderr %q; want 0 and ok", code, out, errOut)
	}

	code, out, errOut = runCmd(t, nil, "validate", "--config", bad)
	if code != 1 || out != "" {
		t.Fatalf("invalid config: got exit %d, stdout %q; want 1 and nothing", code, out)
	}
	lines := strings.Split(strings.TrimSpace(errOut), "\n")
	shape := regexp.MustCompile(`^` + regexp.QuoteMeta(bad) + `:\d+:\d+: [a-z_\[\]0-9.]+: .+$`)
	for _, l := range lines {
		if !shape.MatchString(l) {
			t.Errorf("problem line %q is not FILE:LINE:COL: key.path: message", l)
		}
	}
	for _, want := range []string{
		bad + `:6:9: sites[0].routes[0].upstream: unknown key "upstream"; did you mean "upstreams"?`,
		bad + `:7:15: sites[0].routes[1].path:`,
		bad + `:8:27: sites[0].routes[1].respond.status:`,
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q; got:\n%s", want, errOut)
		}
	}

	// GATEHOUSE_CONFIG names the default file.
	env := func(k string) string {
		if k == "GATEHOUSE_CONFIG" {
			return good
		}
		return ""
	}
	if code, out, _ := runCmd(t, env, "validate"); code != 0 || strings.TrimSpace(out) != "ok" {
		t.Errorf("validate with GATEHOUSE_CONFIG: got %d %q, want 0 ok", code, out)
	}

	if code, _, errOut := runCmd(t, nil, "validate", "-config", filepath.Join(dir, "missing.yaml")); code != 1 || !strings.Contains(errOut, "missing.yaml") {
		t.Errorf("missing file: got exit %d, stderr %q; want 1 naming the file", code, errOut)
	}
}

func TestHelpAndVersion(t *testing.T) {
	code, out, _ := runCmd(t, nil, "version")
	if code != 0 || !strings.HasPrefix(out, "gatehouse ") {
		t.Errorf("version: got %d %q", code, out)
	}
	code, out, _ = runCmd(t, nil, "help")
	if code != 0 || !strings.Contains(out, "gatehouse run") || !strings.Contains(out, "gatehouse proxy") {
		t.Errorf("help: got %d %q", code, out)
	}
	for _, c := range commands() {
		code, _, errOut := runCmd(t, nil, c.name, "-h")
		if code != 0 || !strings.Contains(errOut, "Usage: gatehouse "+c.name) {
			t.Errorf("%s -h: got exit %d, stderr %q; want 0 and its usage", c.name, code, errOut)
		}
		code, out, _ := runCmd(t, nil, "help", c.name)
		if code != 0 || !strings.Contains(out, "Usage: gatehouse "+c.name) {
			t.Errorf("help %s: got exit %d, stdout %q; want 0 and its usage", c.name, code, out)
		}
	}
	if code, _, errOut := runCmd(t, nil, "frobnicate"); code != 2 || !strings.Contains(errOut, `unknown command "frobnicate"`) {
		t.Errorf("unknown command: got %d %q", code, errOut)
	}
	if code, out, errOut := runCmd(t, nil, "help", "frobnicate"); code != 2 || out != "" || !strings.Contains(errOut, `unknown command "frobnicate"`) {
		t.Errorf("help of an unknown command: got %d, stdout %q, stderr %q; want 2 and the error on stderr", code, out, errOut)
	}
	if code, _, _ := runCmd(t, nil, "run", "-nosuchflag"); code != 2 {
		t.Errorf("bad flag: got exit %d, want 2", code)
	}
	if code, _, errOut := runCmd(t, nil, "proxy", "--from", "localhost:8443"); code != 2 || !strings.Contains(errOut, "--to") {
		t.Errorf("proxy without --to: got %d %q", code, errOut)
	}
}

func TestTrust(t *testing.T) {
	storage := t.TempDir()
	code, out, errOut := runCmd(t, nil, "trust", "-storage", storage)
	if code != 0 {
		t.Fatalf("trust: exit %d: %s", code, errOut)
	}
	if !strings.HasPrefix(out, "-----BEGIN CERTIFICATE-----") {
		t.Errorf("trust stdout is not a PEM certificate: %q", out)
	}
	path := filepath.Join(storage, "pki", "root.pem")
	if !strings.Contains(errOut, path) {
		t.Errorf("trust stderr %q does not name %s", errOut, path)
	}
	onDisk, err := os.ReadFile(path)
	if err != nil || string(onDisk) != out {
		t.Errorf("printed root differs from %s (%v)", path, err)
	}
	root, _, err := tlsmgr.ReadLocalRoot(storage)
	if err != nil {
		t.Fatal(err)
	}
	// The fingerprint a phone shows when installing the root.
	sum := sha256.Sum256(root.Raw)
	if want := "# SHA-256 fingerprint " + strings.ToUpper(hex.EncodeToString(sum[:])); !strings.Contains(strings.ReplaceAll(errOut, ":", ""), want) {
		t.Errorf("trust stderr %q lacks the root's SHA-256 fingerprint", errOut)
	}
	if !regexp.MustCompile(`# SHA-256 fingerprint ([0-9A-F]{2}:){31}[0-9A-F]{2}\n`).MatchString(errOut) {
		t.Errorf("trust stderr %q: want the fingerprint as colon-separated hex pairs", errOut)
	}
	// The same root on every call: it is created once.
	_, again, _ := runCmd(t, nil, "trust", "-storage", storage)
	if again != out {
		t.Error("second trust printed a different root")
	}
}

// TestTrustRacesFirstRun runs `gatehouse trust` several times while the
// first `gatehouse run` on the same new storage starts: they all create
// the local CA at once, and must agree on one root, the one run serves
// from.
func TestTrustRacesFirstRun(t *testing.T) {
	dir := t.TempDir()
	storage := filepath.Join(dir, "storage")
	cfgPath := filepath.Join(dir, "gatehouse.yaml")
	p := newPorts(t)
	writeConfig(t, cfgPath, p, storage, `listen: {http: "127.0.0.1:{{HTTP}}", https: "127.0.0.1:{{HTTPS}}"}
admin: "off"
storage: {{STORAGE}}
sites:
  - hosts: [localhost]
    routes: [{respond: {body: local}}]
`)
	const n = 4
	outs := make([]string, n)
	errs := make([]error, n)
	begin := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-begin
			var out, errOut syncBuffer
			env := &environment{stdout: &out, stderr: &errOut, getenv: func(string) string { return "" }}
			errs[i] = run(t.Context(), []string{"trust", "-storage", storage}, env)
			outs[i] = out.String()
		})
	}
	close(begin)
	in := startArgs(t, p, storage, cfgPath, []string{"run", "-config", cfgPath})
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("trust %d: %v", i, errs[i])
		}
		roots := x509.NewCertPool()
		block, _ := pem.Decode([]byte(outs[i]))
		if block == nil {
			t.Fatalf("trust %d printed no PEM: %q", i, outs[i])
		}
		root, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		roots.AddCert(root)
		// gatehouse serves leaves from the root every trust printed.
		resp, err := clientFor(in.HTTPS, roots).Get("https://localhost/")
		if err != nil {
			t.Errorf("GET trusting the root trust %d printed: %v", i, err)
			continue
		}
		resp.Body.Close()
	}
}

// TestUntrustWithoutCA: untrust never creates a CA to remove; it says
// there is none where it looked.
func TestUntrustWithoutCA(t *testing.T) {
	storage := t.TempDir()
	code, _, errOut := runCmd(t, nil, "untrust", "-storage", storage)
	if code != 1 || !strings.Contains(errOut, filepath.Join(storage, "pki", "root.pem")) || !strings.Contains(errOut, "no such file") {
		t.Errorf("untrust without a local CA: got %d %q, want 1 naming the missing root", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(storage, "pki")); err == nil {
		t.Error("untrust created a local CA")
	}
}
