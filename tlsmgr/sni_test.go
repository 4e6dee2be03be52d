package tlsmgr

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"slices"
	"testing"

	"github.com/gatehouse-proxy/gatehouse/config"
)

func TestGetCertificateDispatch(t *testing.T) {
	dir := t.TempDir()
	staticCert, staticKey, staticSerial := writeSelfSigned(t, dir, "static", "static.test")
	anyCert, anyKey, anySerial := writeSelfSigned(t, dir, "any", "fallback.test")
	cfg := &config.Config{Sites: []config.Site{
		{Hosts: []string{"static.test"}, TLS: config.SiteTLS{Cert: staticCert, Key: staticKey}},
		{Hosts: []string{"localhost", "*.app.internal", "10.1.2.3"}},
		{Hosts: []string{"acme.test"}},
		{Hosts: []string{"*"}, TLS: config.SiteTLS{Cert: anyCert, Key: anyKey}},
	}}
	m, fe := newFakeManager(t, cfg)
	if got, want := fe.managed, []string{"acme.test"}; !slices.Equal(got, want) {
		t.Fatalf("managed hosts: got %v, want %v", got, want)
	}

	tests := []struct {
		name       string
		sni        string
		protos     []string
		serial     string
		wantDNS    string
		wantIP     string
		wantEngine bool
	}{
		{name: "exact static", sni: "static.test", serial: staticSerial.String()},
		{name: "case and trailing dot", sni: "Static.Test.", serial: staticSerial.String()},
		{name: "exact internal", sni: "localhost", wantDNS: "localhost"},
		{name: "wildcard internal", sni: "api.app.internal", wantDNS: "*.app.internal"},
		{name: "ip host", sni: "10.1.2.3", wantIP: "10.1.2.3"},
		{name: "acme", sni: "acme.test", wantEngine: true},
		{name: "catch-all", sni: "other.test", serial: anySerial.String()},
		{name: "two labels under wildcard go to catch-all", sni: "a.b.app.internal", serial: anySerial.String()},
		{name: "tls-alpn-01", sni: "acme.test", protos: []string{acmeTLS1}, wantEngine: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(fe.calls())
			cert, err := m.getCertificate(&tls.ClientHelloInfo{ServerName: tt.sni, SupportedProtos: tt.protos})
			if err != nil {
				t.Fatalf("getCertificate(%q): %v", tt.sni, err)
			}
			if called := len(fe.calls()) > before; called != tt.wantEngine {
				t.Fatalf("engine called: got %v, want %v", called, tt.wantEngine)
			}
			if tt.wantEngine {
				return
			}
			leaf := cert.Leaf
			switch {
			case tt.serial != "":
				if got := leaf.SerialNumber.String(); got != tt.serial {
					t.Errorf("serial: got %s, want %s", got, tt.serial)
				}
			case tt.wantDNS != "":
				if !slices.Equal(leaf.DNSNames, []string{tt.wantDNS}) {
					t.Errorf("DNS names: got %v, want [%s]", leaf.DNSNames, tt.wantDNS)
				}
			case tt.wantIP != "":
				if len(leaf.IPAddresses) != 1 || leaf.IPAddresses[0].String() != tt.wantIP {
					t.Errorf("IP addresses: got %v, want [%s]", leaf.IPAddresses, tt.wantIP)
				}
			}
		})
	}
}

func TestGetCertificateUnknownRefused(t *testing.T) {
	cfg := &config.Config{Sites: []config.Site{
		{Hosts: []string{"localhost"}},
		{Hosts: []string{"acme.test"}},
	}}
	m, fe := newFakeManager(t, cfg)
	for _, tt := range []struct {
		name   string
		sni    string
		protos []string
	}{
		{name: "unknown name", sni: "unknown.test"},
		{name: "no SNI", sni: ""},
		{name: "tls-alpn-01 for unknown name", sni: "unknown.test", protos: []string{acmeTLS1}},
		{name: "tls-alpn-01 for internal name", sni: "localhost", protos: []string{acmeTLS1}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cert, err := m.getCertificate(&tls.ClientHelloInfo{ServerName: tt.sni, SupportedProtos: tt.protos})
			if err == nil {
				t.Fatalf("getCertificate(%q): got certificate %v, want error", tt.sni, cert.Leaf.DNSNames)
			}
			if !errors.Is(err, errUnknownHost) {
				t.Errorf("error: got %v, want %v", err, errUnknownHost)
			}
		})
	}
	if calls := fe.calls(); len(calls) != 0 {
		t.Errorf("engine calls: got %v, want none (no issuance for unknown names)", calls)
	}
	m.ca.mu.Lock()
	leaves := len(m.ca.leaves)
	m.ca.mu.Unlock()
	if leaves != 0 {
		t.Errorf("local CA leaves: got %d, want 0", leaves)
	}
}

func TestTLSALPNDisabled(t *testing.T) {
	m, fe := newFakeManager(t, &config.Config{Sites: []config.Site{{Hosts: []string{"acme.test"}}}})
	m.tlsALPN = false
	if _, err := m.getCertificate(&tls.ClientHelloInfo{ServerName: "acme.test", SupportedProtos: []string{acmeTLS1}}); err == nil {
		t.Fatal("got certificate, want error with tls-alpn-01 off")
	}
	if calls := fe.calls(); len(calls) != 0 {
		t.Errorf("engine calls: got %v, want none", calls)
	}
}

// TestHandshakeNoSNIUsesLocalIP checks a real handshake to an IP with no SNI
// (clients never send IPs as SNI) gets the internal leaf for that IP.
func TestHandshakeNoSNIUsesLocalIP(t *testing.T) {
	m, _ := newFakeManager(t, &config.Config{Sites: []config.Site{{Hosts: []string{"127.0.0.1"}}}})
	ln, err := tls.Listen("tcp", "127.0.0.1:0", m.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			_ = c.Close()
		}
	}()
	roots := x509.NewCertPool()
	roots.AddCert(m.ca.root)
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	defer conn.Close()
	leaf := conn.ConnectionState().PeerCertificates[0]
	if len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) {
		t.Errorf("IP addresses: got %v, want [127.0.0.1]", leaf.IPAddresses)
	}
	if got := conn.ConnectionState().NegotiatedProtocol; got != "" {
		t.Errorf("ALPN: got %q, want none", got)
	}
}

func TestTLSConfig(t *testing.T) {
	m, _ := newFakeManager(t, &config.Config{})
	tc := m.TLSConfig()
	if tc.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion: got %x, want %x", tc.MinVersion, tls.VersionTLS12)
	}
	if want := []string{"h2", "http/1.1", acmeTLS1}; !slices.Equal(tc.NextProtos, want) {
		t.Errorf("NextProtos: got %v, want %v", tc.NextProtos, want)
	}
}

func TestBuildTableErrors(t *testing.T) {
	for _, tt := range []struct {
		name  string
		sites []config.Site
	}{
		{name: "duplicate host", sites: []config.Site{{Hosts: []string{"a.test"}}, {Hosts: []string{"A.test."}}}},
		{name: "wildcard acme", sites: []config.Site{{Hosts: []string{"*.a.test"}, TLS: config.SiteTLS{Issuer: config.IssuerACME}}}},
		{name: "catch-all without files", sites: []config.Site{{Hosts: []string{"*"}}}},
		{name: "missing static files", sites: []config.Site{{Hosts: []string{"a.test"}, TLS: config.SiteTLS{Cert: "/nonexistent.pem", Key: "/nonexistent.key"}}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := buildTable(&config.Config{Sites: tt.sites}); err == nil {
				t.Fatal("buildTable: got nil error, want one")
			}
		})
	}
}

// TestSharedStaticCertificateLoadedOnce checks that Sites naming the same
// certificate files share one parsed copy: with 10,000 Sites on one
// wildcard certificate, start-up and memory would otherwise grow with the
// Site count.
func TestSharedStaticCertificateLoadedOnce(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := writeSelfSigned(t, dir, "shared", "a.test", "b.test")
	shared := config.SiteTLS{Cert: certFile, Key: keyFile}
	tbl, err := buildTable(&config.Config{Sites: []config.Site{
		{Hosts: []string{"a.test"}, TLS: shared},
		{Hosts: []string{"b.test"}, TLS: shared},
	}})
	if err != nil {
		t.Fatal(err)
	}
	a, b := tbl.lookup("a.test"), tbl.lookup("b.test")
	if a == nil || b == nil || a.cert == nil || a.cert != b.cert {
		t.Errorf("two Sites on one certificate file: got %p and %p, want one shared certificate", a, b)
	}
}
