package acmeserver

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// certbot runs Debian's certbot against ca with its own directories
// under dir, trusting the local CA's root; it fails the test when certbot
// fails, showing its output.
func (ca *testCA) certbot(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, err := ca.runCertbot(t, dir, args...)
	if err != nil {
		t.Fatalf("certbot %s: %v\n%s", args[0], err, out)
	}
	return out
}

// runCertbot runs certbot as certbot does and returns its output.
func (ca *testCA) runCertbot(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	args = append(args,
		"--server", ca.dirURL, "--non-interactive",
		"--config-dir", filepath.Join(dir, "config"), "--work-dir", filepath.Join(dir, "work"), "--logs-dir", filepath.Join(dir, "logs"))
	cmd := exec.CommandContext(t.Context(), "certbot", args...)
	cmd.Env = append(os.Environ(), "REQUESTS_CA_BUNDLE="+ca.rootFile)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	t.Logf("certbot %s: %v", args[0], time.Since(start))
	return string(out), err
}

// TestCertbotHTTP01 has Debian's certbot obtain a certificate with
// HTTP-01 (--standalone), renew it and revoke it; every one chains to the
// local CA's root. The ACME server is reached at 127.0.0.1, the name
// validated is under .localhost (loopback without DNS).
func TestCertbotHTTP01(t *testing.T) {
	if _, err := exec.LookPath("certbot"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("certbot is missing; .ci/run installs it")
		}
		t.Skip("certbot is not installed (apt-get install certbot)")
	}
	ca := startCA(t, "127.0.0.1", nil, nil)
	dir := t.TempDir()
	const name = "certbot.localhost"
	standalone := []string{"--standalone", "--preferred-challenges", "http-01", "--http-01-address", "127.0.0.1", "--http-01-port", ca.ports.http}

	ca.certbot(t, dir, append([]string{"certonly", "-d", name, "--agree-tos", "--register-unsafely-without-email"}, standalone...)...)
	live := filepath.Join(dir, "config", "live", name)
	first := ca.verifyFile(t, filepath.Join(live, "fullchain.pem"), name)
	rec, ok := ca.issued(t, first.SerialNumber.Text(16))
	if !ok || rec.Client != "127.0.0.1" || rec.Names[0] != name {
		t.Fatalf("issued record %+v (found %v), want %s from 127.0.0.1", rec, ok, name)
	}

	// Off a terminal, certbot renew first sleeps up to 8 minutes.
	ca.certbot(t, dir, append([]string{"renew", "--cert-name", name, "--force-renewal", "--no-random-sleep-on-renew"}, standalone...)...)
	renewed := ca.verifyFile(t, filepath.Join(live, "fullchain.pem"), name)
	if renewed.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Fatal("certbot renew kept the first certificate")
	}

	ca.certbot(t, dir, "revoke", "--cert-name", name, "--reason", "keycompromise", "--no-delete-after-revoke")
	if rec, _ := ca.issued(t, renewed.SerialNumber.Text(16)); !rec.Revoked {
		t.Errorf("certificate %x is not revoked after certbot revoke", renewed.SerialNumber)
	}
	if rec, _ := ca.issued(t, first.SerialNumber.Text(16)); rec.Revoked {
		t.Errorf("first certificate %x is revoked; only the renewal was", first.SerialNumber)
	}

	// A name outside allowed_names is refused. Debian's certbot 2.1 on
	// Python 3.11 prints any ACME error as "AttributeError: can't set
	// attribute" (josepy's immutable error meets contextlib); its log
	// has the server's problem.
	out, err := ca.runCertbot(t, dir, append([]string{"certonly", "-d", "nas.example.com"}, standalone...)...)
	log, _ := os.ReadFile(filepath.Join(dir, "logs", "letsencrypt.log"))
	if err == nil || !strings.Contains(string(log), `acme.messages.Error: urn:ietf:params:acme:error:rejectedIdentifier :: The server will not issue certificates for the identifier :: this CA does not certify "nas.example.com"`) {
		t.Errorf("certbot for nas.example.com: %v, output:\n%s\nwant it refused with rejectedIdentifier naming it; its log:\n%s", err, out, log[max(0, len(log)-4000):])
	}
	if all, _ := ca.srv.Issued(); len(all) != 2 {
		t.Errorf("%d certificates issued, want 2 (obtained and renewed)", len(all))
	}
}
