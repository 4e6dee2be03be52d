package tlsmgr

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/gatehouse-proxy/gatehouse/config"
)

func serialFor(t *testing.T, m *Manager, sni string) string {
	t.Helper()
	c, err := m.getCertificate(&tls.ClientHelloInfo{ServerName: sni})
	if err != nil {
		t.Fatalf("getCertificate(%q): %v", sni, err)
	}
	return c.Leaf.SerialNumber.String()
}

func TestStaticReloadedByApply(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, serial1 := writeSelfSigned(t, dir, "site", "static.test")
	cfg := &config.Config{Sites: []config.Site{{Hosts: []string{"static.test"}, TLS: config.SiteTLS{Cert: certFile, Key: keyFile}}}}
	m, _ := newFakeManager(t, cfg)
	if got := serialFor(t, m, "static.test"); got != serial1.String() {
		t.Fatalf("serial: got %s, want %s", got, serial1)
	}

	// The operator replaces the files, then sends SIGHUP.
	_, _, serial2 := writeSelfSigned(t, dir, "site", "static.test")
	if err := m.Apply(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	if got := serialFor(t, m, "static.test"); got != serial2.String() {
		t.Fatalf("serial after reload: got %s, want %s", got, serial2)
	}

	// A broken file fails the reload and the served certificate stays.
	if err := os.WriteFile(certFile, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := m.Apply(t.Context(), cfg); err == nil {
		t.Fatal("Apply with a broken certificate: got nil error, want one")
	}
	if got := serialFor(t, m, "static.test"); got != serial2.String() {
		t.Fatalf("serial after failed reload: got %s, want %s", got, serial2)
	}
}

func TestApplyAllOrNothing(t *testing.T) {
	cfg := &config.Config{Sites: []config.Site{{Hosts: []string{"a.test"}}}}
	m, fe := newFakeManager(t, cfg)
	bad := &config.Config{Storage: cfg.Storage, Sites: []config.Site{
		{Hosts: []string{"b.test"}},
		{Hosts: []string{"c.test"}, TLS: config.SiteTLS{Cert: "/nonexistent.pem", Key: "/nonexistent.key"}},
	}}
	if err := m.Apply(t.Context(), bad); err == nil {
		t.Fatal("Apply: got nil error, want one")
	}
	if got := fe.managed; !slices.Equal(got, []string{"a.test"}) {
		t.Errorf("managed after failed Apply: got %v, want [a.test]", got)
	}
	if _, err := m.getCertificate(&tls.ClientHelloInfo{ServerName: "b.test"}); err == nil {
		t.Error("b.test served after failed Apply")
	}

	// A good Apply replaces the set: a.test is no longer managed.
	good := &config.Config{Storage: cfg.Storage, Sites: []config.Site{{Hosts: []string{"b.test"}}}}
	if err := m.Apply(t.Context(), good); err != nil {
		t.Fatal(err)
	}
	if got := fe.managed; !slices.Equal(got, []string{"b.test"}) {
		t.Errorf("managed: got %v, want [b.test]", got)
	}
	if _, err := m.getCertificate(&tls.ClientHelloInfo{ServerName: "a.test"}); err == nil {
		t.Error("a.test still served after it was removed")
	}
}

func TestApplyNeedsRestart(t *testing.T) {
	storage := t.TempDir()
	base := config.Config{Storage: storage, ACME: config.ACME{Engine: config.EngineCertmagic,
		Issuers: []config.Issuer{{CA: "https://a.test/dir"}, {CA: "https://b.test/dir"}}}}
	m, _ := newFakeManager(t, &base)
	for _, tt := range []struct {
		name, want string
		change     func(c *config.Config)
	}{
		{name: "engine", want: "acme.engine", change: func(c *config.Config) { c.ACME.Engine = config.EngineAutocert }},
		{name: "storage", want: "storage", change: func(c *config.Config) { c.Storage = t.TempDir() }},
		{name: "ca", want: "acme", change: func(c *config.Config) { c.ACME.CA = "https://other.test/dir" }},
		{name: "listen", want: "listen", change: func(c *config.Config) { c.Listen.HTTPS = ":8443" }},
		{name: "issuer", want: "acme", change: func(c *config.Config) {
			c.ACME.Issuers = []config.Issuer{{CA: "https://a.test/dir"}, {CA: "https://c.test/dir"}}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := base
			tt.change(&c)
			err := m.Apply(t.Context(), &c)
			if err == nil || !strings.Contains(err.Error(), "restart") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Apply: got %v, want an error naming %s and a restart", err, tt.want)
			}
		})
	}
}

// TestApplyIssuerOrder: the order of acme.issuers changes without a
// restart, as `gatehouse migrate --write-config` changes it (issue 14).
func TestApplyIssuerOrder(t *testing.T) {
	a, b := config.Issuer{CA: "https://a.test/dir"}, config.Issuer{CA: "https://b.test/dir", Profile: "x"}
	cfg := config.Config{ACME: config.ACME{Engine: config.EngineCertmagic, Issuers: []config.Issuer{a, b}}}
	m, _ := newFakeManager(t, &cfg)
	// A new value, as a reload makes: the applied one stays as it was.
	reordered := cfg
	reordered.ACME.Issuers = []config.Issuer{b, a}
	if err := m.Apply(t.Context(), &reordered); err != nil {
		t.Errorf("Apply with the issuers reordered: %v", err)
	}
}

func TestHTTPHandler(t *testing.T) {
	m, _ := newFakeManager(t, &config.Config{Listen: config.Listen{HTTP: ":80", HTTPS: ":8443"}})
	fallback := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("fallback")) })
	for _, tt := range []struct {
		name, path string
		fallback   http.Handler
		http01     bool
		wantStatus int
		wantBody   string
		wantLoc    string
	}{
		{name: "challenge", path: "/.well-known/acme-challenge/known", fallback: fallback, http01: true, wantStatus: 200, wantBody: "key-authz"},
		{name: "unknown token", path: "/.well-known/acme-challenge/other", fallback: fallback, http01: true, wantStatus: 200, wantBody: "fallback"},
		{name: "http-01 off", path: "/.well-known/acme-challenge/known", fallback: fallback, wantStatus: 200, wantBody: "fallback"},
		{name: "other path", path: "/x", fallback: fallback, http01: true, wantStatus: 200, wantBody: "fallback"},
		{name: "nil fallback redirects", path: "/x?y=1", http01: true, wantStatus: http.StatusFound, wantLoc: "https://app.test:8443/x?y=1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m.http01 = tt.http01
			rec := httptest.NewRecorder()
			m.HTTPHandler(tt.fallback).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://app.test"+tt.path, nil))
			if rec.Code != tt.wantStatus {
				t.Errorf("status: got %d, want %d", rec.Code, tt.wantStatus)
			}
			if tt.wantBody != "" && rec.Body.String() != tt.wantBody {
				t.Errorf("body: got %q, want %q", rec.Body.String(), tt.wantBody)
			}
			if got := rec.Header().Get("Location"); got != tt.wantLoc {
				t.Errorf("Location: got %q, want %q", got, tt.wantLoc)
			}
		})
	}
}

// TestRedirectPublicPort checks that the default redirect names the port
// clients reach the HTTPS Listener on, not the one it listens on behind a
// port mapping.
func TestRedirectPublicPort(t *testing.T) {
	for _, tt := range []struct {
		public  int
		wantLoc string
	}{
		{public: 443, wantLoc: "https://app.test/x?y=1"},
		{public: 9443, wantLoc: "https://app.test:9443/x?y=1"},
	} {
		m, _ := newFakeManager(t, &config.Config{Listen: config.Listen{HTTP: ":8080", HTTPS: ":8443", PublicHTTPSPort: tt.public}})
		rec := httptest.NewRecorder()
		m.HTTPHandler(nil).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://app.test:8080/x?y=1", nil))
		if got := rec.Header().Get("Location"); rec.Code != http.StatusFound || got != tt.wantLoc {
			t.Errorf("public_https_port %d: got %d %q, want 302 %q", tt.public, rec.Code, got, tt.wantLoc)
		}
	}
}
