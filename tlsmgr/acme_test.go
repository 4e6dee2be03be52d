package tlsmgr

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr/pebbletest"
)

// Integration tests against an in-process Pebble. Each test has its own CA,
// ports and hosts, so they run in parallel.

// checkKeyFiles checks every private key under dir is 0600 and every
// directory 0700, and that a file matching each of the glob patterns
// (relative to dir) exists.
func checkKeyFiles(t *testing.T, dir string, patterns ...string) {
	t.Helper()
	for _, p := range patterns {
		if m, err := filepath.Glob(filepath.Join(dir, p)); err != nil || len(m) == 0 {
			t.Errorf("no file matches %s under %s", p, dir)
		}
	}
	keys := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if fi.Mode().Perm() != 0o700 {
				t.Errorf("mode of directory %s: got %v, want 0700", path, fi.Mode().Perm())
			}
		// certmagic keeps keys in *.key files; autocert keeps each key
		// with its certificate, so every file it writes holds one.
		case strings.HasSuffix(path, ".key") || strings.Contains(path, string(filepath.Separator)+"autocert"+string(filepath.Separator)):
			keys++
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("mode of key %s: got %v, want 0600", path, fi.Mode().Perm())
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if keys == 0 {
		t.Errorf("no key files found under %s", dir)
	}
}

// TestACMEHTTP01 obtains a certificate with HTTP-01 only, serves it, keeps
// keys private, and reuses it after a restart without a new order.
func TestACMEHTTP01(t *testing.T) {
	skipShort(t)
	t.Parallel()
	g := startPebbleGatehouse(t, pebbletest.Options{})
	g.acme.Challenges = []string{config.ChallengeHTTP01}
	cfg := g.acmeConfig("http01.test")
	m := g.start(t, cfg, fastOptions())

	leaf := g.waitForCert(t, "http01.test", "", 30*time.Second)
	if leaf.DNSNames[0] != "http01.test" {
		t.Errorf("DNS names: got %v, want [http01.test]", leaf.DNSNames)
	}
	checkChallenges(t, g.ca, "http01.test", config.ChallengeHTTP01)
	checkKeyFiles(t, g.storage, "certificates/*/http01.test/http01.test.key", "acme/*/users/*/*.key", "pki/root.key")

	// A name no site lists is refused and places no order.
	orders := g.ca.Orders()
	if _, err := g.handshake("unknown.test"); err == nil {
		t.Error("handshake for unknown.test succeeded; want it refused")
	}

	// Restart on the same storage and CA: the stored certificate is served
	// and no order is placed.
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	m2 := g.start(t, cfg, fastOptions())
	again := g.waitForCert(t, "http01.test", "", 10*time.Second)
	if again.SerialNumber.Cmp(leaf.SerialNumber) != 0 {
		t.Errorf("serial after restart: got %v, want %v", again.SerialNumber, leaf.SerialNumber)
	}
	if err := m2.Close(); err != nil {
		t.Fatal(err)
	}
	if got := g.ca.Orders(); got != orders {
		t.Errorf("orders after restart: got %d, want %d", got, orders)
	}
}

// TestACMETLSALPN01 obtains a certificate with TLS-ALPN-01 only, answered
// by the HTTPS Listener's GetCertificate.
func TestACMETLSALPN01(t *testing.T) {
	skipShort(t)
	t.Parallel()
	g := startPebbleGatehouse(t, pebbletest.Options{})
	g.acme.Challenges = []string{config.ChallengeTLSALPN01}
	m := g.start(t, g.acmeConfig("alpn.test"), fastOptions())
	leaf := g.waitForCert(t, "alpn.test", "", 30*time.Second)
	if leaf.DNSNames[0] != "alpn.test" {
		t.Errorf("DNS names: got %v, want [alpn.test]", leaf.DNSNames)
	}
	checkChallenges(t, g.ca, "alpn.test", config.ChallengeTLSALPN01)

	// Removing the host stops serving and renewing it; its files stay.
	if err := m.Apply(t.Context(), g.acmeConfig("other.test")); err != nil {
		t.Fatal(err)
	}
	if _, err := g.handshake("alpn.test"); err == nil {
		t.Error("alpn.test still served after it was removed")
	}
	if certs := m.engine.(*certmagicEngine).cache.AllMatchingCertificates("alpn.test"); len(certs) != 0 {
		t.Errorf("alpn.test still in certmagic's cache (%d certificates), so still renewed", len(certs))
	}
	g.waitForCert(t, "other.test", "", 30*time.Second)
	keys, err := filepath.Glob(filepath.Join(g.storage, "certificates", "*", "alpn.test", "alpn.test.key"))
	if err != nil || len(keys) != 1 {
		t.Errorf("stored key of alpn.test: got %v (%v), want it kept", keys, err)
	}
}

// TestACMEChallengeNoFallback configures one challenge type and makes it
// fail while the other would succeed (Pebble reaches both Listeners): the
// attempt fails and the CA is never asked for the other type, whichever
// type certmagic would have preferred.
func TestACMEChallengeNoFallback(t *testing.T) {
	skipShort(t)
	t.Parallel()
	for _, ch := range []string{config.ChallengeHTTP01, config.ChallengeTLSALPN01} {
		t.Run(ch, func(t *testing.T) {
			t.Parallel()
			g := startPebbleGatehouse(t, pebbletest.Options{})
			g.acme.Challenges = []string{ch}
			host := "no-" + ch + ".test"
			g.blockChallenge(ch, host)
			h, failed := signalOn(testLog(t), "obtaining certificate failed; will retry")
			g.startLogged(t, g.acmeConfig(host), fastOptions(), h)
			select {
			case <-failed:
			case <-time.After(30 * time.Second):
				t.Fatalf("no failed attempt logged; validations: %+v", g.ca.Validations())
			}
			vs := g.ca.Validations()
			if len(vs) == 0 {
				t.Fatal("the CA was asked to validate nothing")
			}
			for _, v := range vs {
				if v.Type != ch || v.Status == "valid" {
					t.Errorf("validation %+v; want %s only, never valid", v, ch)
				}
			}
			if _, err := g.handshake(host); err == nil {
				t.Errorf("%s served although its only challenge fails", host)
			}
		})
	}
}

// TestAutocert obtains a certificate with the autocert engine.
func TestAutocert(t *testing.T) {
	skipShort(t)
	t.Parallel()
	g := startPebbleGatehouse(t, pebbletest.Options{})
	g.acme.Engine = config.EngineAutocert
	g.start(t, g.acmeConfig("autocert.test"), fastOptions())
	leaf := g.waitForCert(t, "autocert.test", "", 60*time.Second)
	if leaf.DNSNames[0] != "autocert.test" {
		t.Errorf("DNS names: got %v, want [autocert.test]", leaf.DNSNames)
	}
	checkKeyFiles(t, g.storage, "autocert/autocert.test*", "autocert/acme_account+key")
}

// TestCloseWhileOrderInFlight closes the Manager while its order cannot
// finish (Pebble's validation hangs on a silent port): with either engine,
// Close cancels the order and returns while the CA is still validating,
// rather than wait out the CA.
func TestCloseWhileOrderInFlight(t *testing.T) {
	skipShort(t)
	t.Parallel()
	for _, engine := range []string{config.EngineCertmagic, config.EngineAutocert} {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			silent, validating := pebbletest.SilentPort(t)
			g := startPebbleGatehouse(t, pebbletest.Options{HTTPPort: silent, TLSPort: silent})
			g.acme.Engine = engine
			m := g.start(t, g.acmeConfig("stuck.test"), fastOptions())
			select {
			case <-validating:
			case <-time.After(20 * time.Second):
				t.Fatal("Pebble never began validating the order")
			}

			if err := m.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			// Pebble gives up on the silent port only after 15s: a
			// validation still under way shows Close did not wait for it.
			processing := false
			for _, v := range g.ca.Validations() {
				processing = processing || v.Status == "processing"
			}
			if !processing {
				t.Errorf("Close returned after the CA finished validating (%+v); want it to cancel the order", g.ca.Validations())
			}
		})
	}
}

// TestACMERenewal checks a short-lived certificate is renewed by certmagic's
// maintenance with no call from us.
func TestACMERenewal(t *testing.T) {
	skipShort(t)
	t.Parallel()
	g := startPebbleGatehouse(t, pebbletest.Options{Validity: 30 * time.Second})
	opts := fastOptions()
	opts.renewCheckInterval = time.Second
	g.start(t, g.acmeConfig("renew.test"), opts)
	first := g.waitForCert(t, "renew.test", "", 30*time.Second)
	renewed := g.waitForCert(t, "renew.test", first.SerialNumber.String(), 40*time.Second)
	if !renewed.NotAfter.After(first.NotAfter) {
		t.Errorf("renewed NotAfter %v not after the first %v", renewed.NotAfter, first.NotAfter)
	}
}

// TestACMECAUnreachableAtStart starts gatehouse while the CA is down: New
// succeeds, and the certificate arrives once the CA is up.
func TestACMECAUnreachableAtStart(t *testing.T) {
	skipShort(t)
	t.Parallel()
	g := startGatehouse(t)
	caAddr := fmt.Sprintf("127.0.0.1:%d", pebbletest.FreePort(t))

	// The directory server's TLS root is httptest's fixed one, so another
	// CA can name it before this CA runs.
	probe := pebbletest.Start(t, pebbletest.Options{})
	acme := config.ACME{CA: "https://" + caAddr + "/dir", CARoot: probe.ClientRootFile(), Email: "admin@example.org"}
	h, failed := signalOn(testLog(t), "obtaining certificate failed; will retry")
	g.startLogged(t, g.config(t.TempDir(), acme, "late.test"), fastOptions(), h)
	select {
	case <-failed:
	case <-time.After(30 * time.Second):
		t.Fatal("no failed attempt logged while the CA is down")
	}
	if _, err := handshake(g.httpsAddr, "late.test", probe.IssuerRoots()); err == nil {
		t.Fatal("certificate served before the CA is up")
	}

	ca := pebbletest.Start(t, pebbletest.Options{HTTPPort: g.httpPort, TLSPort: g.httpsPort, Addr: caAddr})
	leaf := waitForCert(t, g, "late.test", ca.IssuerRoots(), "", 30*time.Second)
	if leaf.DNSNames[0] != "late.test" {
		t.Errorf("DNS names: got %v, want [late.test]", leaf.DNSNames)
	}
}
