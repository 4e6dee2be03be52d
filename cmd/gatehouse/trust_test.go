package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/tlsmgr"
)

// TestMain lets a test run this binary as the gatehouse command, in a
// process of its own: truststore reads HOME (the NSS database) when the
// process starts.
func TestMain(m *testing.M) {
	if os.Getenv("GATEHOUSE_TEST_AS_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// gatehouseProc runs this test binary as `gatehouse args...` with env
// added to the test's environment and returns its exit code and output.
func gatehouseProc(t *testing.T, exe string, cred *syscall.Credential, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	// Not t.Context(): cleanups run gatehouse too, after it is done.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Env = append(append(os.Environ(), "GATEHOUSE_TEST_AS_MAIN=1"), env...)
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("gatehouse %v: %v", args, err)
	}
	return code, out.String(), errOut.String()
}

func need(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed: .ci/run installs it (apt-get install -y libnss3-tools chromium curl ca-certificates)", tool)
		}
	}
}

func run1(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// newNSSDB makes an empty NSS database in home, as Chromium does at its
// first start, and returns its certutil name.
func newNSSDB(t *testing.T, home string) string {
	t.Helper()
	dir := filepath.Join(home, ".pki", "nssdb")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	run1(t, "certutil", "-N", "-d", "sql:"+dir, "--empty-password")
	return "sql:" + dir
}

// nssHas reports whether the NSS database db holds root.
func nssHas(t *testing.T, db string, root *x509.Certificate) bool {
	t.Helper()
	return strings.Contains(run1(t, "certutil", "-L", "-d", db), root.Subject.CommonName+" "+root.SerialNumber.String())
}

// javaHas reports whether the Java on PATH trusts root.
func javaHas(t *testing.T, root *x509.Certificate) bool {
	t.Helper()
	out, _ := exec.Command("keytool", "-list", "-cacerts", "-storepass", "changeit").CombinedOutput()
	return strings.Contains(string(out), tlsmgr.Fingerprint(root))
}

// systemHas reports whether Debian's system store holds root's file.
func systemHas(t *testing.T, root *x509.Certificate) bool {
	t.Helper()
	entries, err := os.ReadDir("/usr/local/share/ca-certificates")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), root.SerialNumber.String()) {
			return true
		}
	}
	return false
}

// curlOK fetches url with curl and the system trust store only.
func curlOK(t *testing.T, url, want string) (bool, string) {
	t.Helper()
	out, err := exec.Command("curl", "--silent", "--show-error", "--noproxy", "*", "--max-time", "20", url).CombinedOutput()
	return err == nil && string(out) == want, fmt.Sprintf("%v: %s", err, out)
}

// chromiumOK loads url in headless chromium with home as HOME (so its NSS
// database) and a fresh profile, and reports whether the page rendered.
func chromiumOK(t *testing.T, home, url, want string) (bool, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--no-proxy-server", "--user-data-dir="+filepath.Join(home, fmt.Sprintf("profile-%d", time.Now().UnixNano())),
		"--dump-dom", url)
	cmd.Env = append(os.Environ(), "HOME="+home)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium --dump-dom %s: %v", url, err)
	}
	return strings.Contains(string(out), want), string(out)
}

// TestTrustInstallSystem installs a running gatehouse's local CA root in
// this machine's trust stores (Debian's system store, a fresh NSS database
// as Chromium's, Java's), and checks what a user would: curl without
// --cacert and headless Chromium load the page, and after untrust neither
// does. Before that, an install without root rights and one whose last
// store fails change nothing. The test restores the stores it changed.
func TestTrustInstallSystem(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("changes the system trust store: needs root (CI runs as root)")
	}
	need(t, "certutil", "chromium", "curl", "update-ca-certificates", "keytool")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := newPorts(t)
	const page = "served-by-a-trusted-gatehouse"
	in := start(t, p, `listen: {http: "127.0.0.1:{{HTTP}}", https: "127.0.0.1:{{HTTPS}}"}
admin: "off"
storage: {{STORAGE}}
sites:
  - hosts: [localhost]
    routes: [{respond: {body: `+page+`}}]
`)
	url := fmt.Sprintf("https://localhost:%d/", p.HTTPS)
	root, _, err := tlsmgr.ReadLocalRoot(in.Storage)
	if err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	db := newNSSDB(t, home)
	env := []string{"HOME=" + home}
	t.Cleanup(func() {
		// Restore the stores even when an assertion stopped the test.
		if code, out, errOut := gatehouseProc(t, exe, nil, env, "untrust", "-storage", in.Storage); code != 0 {
			t.Errorf("cleanup: untrust: exit %d\n%s%s", code, out, errOut)
		}
	})

	if ok, _ := curlOK(t, url, page); ok {
		t.Fatal("curl trusts the local CA before trust --install: the test shows nothing")
	}
	if ok, _ := chromiumOK(t, home, url, page); ok {
		t.Fatal("chromium trusts the local CA before trust --install: the test shows nothing")
	}

	t.Run("without root rights", func(t *testing.T) {
		// nobody, without sudo on this machine, cannot change the system
		// store nor Java's: nothing is installed, not even in its own
		// NSS database, and it is told what to run.
		if _, err := exec.LookPath("sudo"); err == nil {
			t.Fatal("sudo is installed: the no-rights case would ask it for a password")
		}
		dir, err := os.MkdirTemp("", "gatehouse-nobody-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		nobodyHome := filepath.Join(dir, "home")
		nobodyDB := newNSSDB(t, nobodyHome)
		nobodyExe := filepath.Join(dir, "gatehouse")
		run1(t, "cp", exe, nobodyExe)
		run1(t, "chmod", "0755", dir, nobodyExe)
		run1(t, "chown", "-R", "65534:65534", nobodyHome)
		storage := filepath.Join(nobodyHome, "storage")
		code, out, errOut := gatehouseProc(t, nobodyExe, &syscall.Credential{Uid: 65534, Gid: 65534}, []string{"HOME=" + nobodyHome},
			"trust", "--install", "-storage", storage)
		if code != 1 {
			t.Fatalf("trust --install as nobody: exit %d, want 1\n%s%s", code, out, errOut)
		}
		for _, want := range []string{
			"the system trust store (/usr/local/share/ca-certificates) and Java's keystore",
			"need root rights", "nothing was changed",
			"run it as root: su -c 'gatehouse trust --install -storage " + storage + "'",
		} {
			if !strings.Contains(errOut, want) {
				t.Errorf("trust --install as nobody: stderr lacks %q\n%s", want, errOut)
			}
		}
		nobodyRoot, _, err := tlsmgr.ReadLocalRoot(storage)
		if err != nil {
			t.Fatal(err)
		}
		if systemHas(t, nobodyRoot) || nssHas(t, nobodyDB, nobodyRoot) {
			t.Error("trust --install as nobody installed the root in a store")
		}
	})

	t.Run("rollback", func(t *testing.T) {
		// A Java whose keystore is broken fails last, after the system
		// store and the NSS database took the root: both lose it again.
		javaHome := t.TempDir()
		os.MkdirAll(filepath.Join(javaHome, "bin"), 0o755)
		os.MkdirAll(filepath.Join(javaHome, "lib", "security"), 0o755)
		keytool, _ := exec.LookPath("keytool")
		if err := os.Symlink(keytool, filepath.Join(javaHome, "bin", "keytool")); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(javaHome, "lib", "security", "cacerts"), []byte("not a keystore"), 0o644)
		code, out, errOut := gatehouseProc(t, exe, nil, append(env, "JAVA_HOME="+javaHome), "trust", "--install", "-storage", in.Storage)
		if code != 1 || !strings.Contains(errOut, "installing in Java's keystore") || !strings.Contains(errOut, "nothing was changed") {
			t.Fatalf("trust --install with a broken Java keystore: exit %d, want 1 saying it rolled back\n%s%s", code, out, errOut)
		}
		if systemHas(t, root) || nssHas(t, db, root) || javaHas(t, root) {
			t.Errorf("after the failed install: system %v, NSS %v, Java %v; want the root in none", systemHas(t, root), nssHas(t, db, root), javaHas(t, root))
		}
		if ok, _ := curlOK(t, url, page); ok {
			t.Error("curl trusts the local CA after a rolled back install")
		}
	})

	code, out, errOut := gatehouseProc(t, exe, nil, env, "trust", "--install", "-storage", in.Storage)
	if code != 0 {
		t.Fatalf("trust --install: exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{
		"SHA-256 " + tlsmgr.Fingerprint(root),
		"the system trust store (/usr/local/share/ca-certificates): installed",
		"the NSS databases of Firefox and Chromium (" + filepath.Join(home, ".pki", "nssdb"),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("trust --install: stdout lacks %q\n%s", want, out)
		}
	}
	if ok, why := curlOK(t, url, page); !ok {
		t.Errorf("curl %s after trust --install: %s", url, why)
	}
	if ok, dom := chromiumOK(t, home, url, page); !ok {
		t.Errorf("chromium after trust --install did not render the page:\n%.600s", dom)
	}
	if !nssHas(t, db, root) || !javaHas(t, root) {
		t.Errorf("after trust --install: NSS %v, Java %v; want both", nssHas(t, db, root), javaHas(t, root))
	}
	// Again: every store already has it.
	if code, out, errOut := gatehouseProc(t, exe, nil, env, "trust", "--install", "-storage", in.Storage); code != 0 || strings.Count(out, ": already trusted") != 3 {
		t.Errorf("second trust --install: exit %d, want every store already trusted\n%s%s", code, out, errOut)
	}

	code, out, errOut = gatehouseProc(t, exe, nil, env, "untrust", "-storage", in.Storage)
	if code != 0 || !strings.Contains(out, "the system trust store (/usr/local/share/ca-certificates): removed") {
		t.Fatalf("untrust: exit %d\n%s%s", code, out, errOut)
	}
	if ok, _ := curlOK(t, url, page); ok {
		t.Error("curl still trusts the local CA after untrust")
	}
	if ok, _ := chromiumOK(t, home, url, page); ok {
		t.Error("chromium still trusts the local CA after untrust")
	}
	if systemHas(t, root) || nssHas(t, db, root) || javaHas(t, root) {
		t.Errorf("after untrust: system %v, NSS %v, Java %v; want the root in none", systemHas(t, root), nssHas(t, db, root), javaHas(t, root))
	}
}
