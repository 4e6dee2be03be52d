package tlsmgr

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr/pebbletest"
)

// TestDNS01WildcardRFC2136 obtains a wildcard certificate and one for the
// zone apex through DNS-01: gatehouse writes the TXT records into a real
// BIND with TSIG-signed dynamic updates (lego's RFC 2136 provider), Pebble
// validates them by asking that BIND, and the records are gone afterwards.
func TestDNS01WildcardRFC2136(t *testing.T) {
	skipShort(t)
	t.Parallel()
	ns := pebbletest.StartBIND(t, "example.test")
	g := startPebbleGatehouse(t, pebbletest.Options{Resolver: ns.Addr})
	cfg := g.acmeConfig("*.example.test", "example.test")
	cfg.Sites[0].TLS.DNS = &config.DNS{
		Provider: "rfc2136",
		Credentials: map[string]string{
			"nameserver": ns.Addr, "tsig_key": ns.KeyName, "tsig_secret": ns.KeySecret, "tsig_algorithm": ns.KeyAlgorithm,
		},
		PropagationTimeout: 20 * time.Second,
		Resolvers:          []string{ns.Addr},
	}
	g.start(t, cfg, fastOptions())

	leaf := g.waitForCert(t, "a.example.test", "", 60*time.Second)
	if !slices.Equal(leaf.DNSNames, []string{"*.example.test"}) {
		t.Errorf("certificate for a.example.test names %v, want [*.example.test]", leaf.DNSNames)
	}
	other := g.waitForCert(t, "other.example.test", "", 5*time.Second)
	if other.SerialNumber.Cmp(leaf.SerialNumber) != 0 {
		t.Errorf("other.example.test got serial %v, want the wildcard's %v", other.SerialNumber, leaf.SerialNumber)
	}
	apex := g.waitForCert(t, "example.test", "", 60*time.Second)
	if !slices.Equal(apex.DNSNames, []string{"example.test"}) {
		t.Errorf("certificate for example.test names %v, want [example.test]", apex.DNSNames)
	}
	// One label only: a.b.example.test is no host of the site.
	if _, err := g.handshake("a.b.example.test"); err == nil {
		t.Error("a.b.example.test was served; a wildcard covers one label")
	}
	if got := g.ca.Orders(); got != 2 {
		t.Errorf("orders: got %d, want 2 (one wildcard, one apex)", got)
	}

	// The challenge records were removed from the zone.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for {
		vals, err := ns.TXT(ctx, "_acme-challenge.example.test")
		if err == nil && len(vals) == 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("_acme-challenge.example.test still holds TXT %q (err %v)", vals, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDNS01Exec obtains a wildcard certificate through lego's exec
// provider: a shell script that calls BIND's nsupdate, as a user would
// script any DNS service gatehouse has no provider for.
func TestDNS01Exec(t *testing.T) {
	skipShort(t)
	t.Parallel()
	nsupdate, err := exec.LookPath("nsupdate")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("nsupdate not found in CI: .ci/run should install bind9-dnsutils: %v", err)
		}
		t.Skip("nsupdate not installed: apt-get install -y bind9-dnsutils")
	}
	ns := pebbletest.StartBIND(t, "exec.test")
	host, port, _ := net.SplitHostPort(ns.Addr)
	script := filepath.Join(t.TempDir(), "dns-hook")
	// lego's exec provider runs: PROGRAM present|cleanup FQDN VALUE.
	body := fmt.Sprintf(`#!/bin/sh
set -e
case "$1" in
present) op="update add $2 1 TXT \"$3\"" ;;
cleanup) op="update delete $2 TXT \"$3\"" ;;
*) exit 0 ;;
esac
printf 'server %s %s\nzone exec.test.\n%%s\nsend\n' "$op" | %s -y %s:%s:%s
`, host, port, nsupdate, ns.KeyAlgorithm, strings.TrimSuffix(ns.KeyName, "."), ns.KeySecret)
	if err := os.WriteFile(script, []byte(body), 0o700); err != nil {
		t.Fatal(err)
	}
	g := startPebbleGatehouse(t, pebbletest.Options{Resolver: ns.Addr})
	g.acme = config.ACME{
		CA: g.ca.DirectoryURL(), CARoot: g.ca.ClientRootFile(),
		DNS: &config.DNS{
			Provider: "exec", Credentials: map[string]string{"program": script},
			PropagationTimeout: 20 * time.Second, Resolvers: []string{ns.Addr},
		},
	}
	g.start(t, g.acmeConfig("*.exec.test"), fastOptions())
	leaf := g.waitForCert(t, "www.exec.test", "", 60*time.Second)
	if !slices.Equal(leaf.DNSNames, []string{"*.exec.test"}) {
		t.Errorf("certificate for www.exec.test names %v, want [*.exec.test]", leaf.DNSNames)
	}
	if vals, err := ns.TXT(t.Context(), "_acme-challenge.exec.test"); err != nil || len(vals) != 0 {
		t.Errorf("_acme-challenge.exec.test after issuance: TXT %q (err %v), want none", vals, err)
	}
}

// TestDNSProviders builds each DNS provider from every credential key
// gatehouse documents, so a key the validator accepts always reaches the
// provider.
func TestDNSProviders(t *testing.T) {
	tsigFile := filepath.Join(t.TempDir(), "tsig.key")
	if err := os.WriteFile(tsigFile, []byte("key \"k.\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2VjcmV0\";\n};\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		provider string
		creds    map[string]string
		wantErr  string
	}{
		{"rfc2136", map[string]string{"nameserver": "127.0.0.1:53", "tsig_key": "k", "tsig_secret": "c2VjcmV0", "tsig_algorithm": "hmac-sha512", "zone": "example.test", "ttl": "30"}, ""},
		{"rfc2136", map[string]string{"nameserver": "127.0.0.1", "tsig_file": tsigFile}, ""},
		{"rfc2136", map[string]string{"nameserver": "127.0.0.1", "tsig_key": "k", "tsig_secret": "c2VjcmV0", "tsig_algorithm": "hmac-md4"}, "unsupported TSIG algorithm"},
		{"cloudflare", map[string]string{"api_token": "t", "zone_token": "z", "base_url": "https://api.example.test/", "ttl": "300"}, ""},
		{"cloudflare", map[string]string{"email": "ops@example.test", "api_key": "k"}, ""},
		{"cloudflare", map[string]string{"api_token": "t", "ttl": "30"}, "invalid TTL"},
		{"route53", map[string]string{
			"access_key_id": "AKID", "secret_access_key": "secret", "session_token": "s", "region": "eu-west-1",
			"hosted_zone_id": "Z1", "assume_role_arn": "", "external_id": "", "private_zone": "true", "max_retries": "2", "ttl": "10",
		}, ""},
		{"digitalocean", map[string]string{"auth_token": "t", "base_url": "https://api.example.test", "ttl": "60"}, ""},
		{"exec", map[string]string{"program": "/bin/true", "mode": "RAW"}, ""},
		{"httpreq", map[string]string{"endpoint": "https://dns.example.test/", "mode": "RAW", "username": "u", "password": "p"}, ""},
		{"httpreq", map[string]string{"endpoint": "/relative"}, "not an absolute URL"},
	} {
		t.Run(tc.provider, func(t *testing.T) {
			d := &config.DNS{Provider: tc.provider, Credentials: tc.creds, PropagationTimeout: time.Minute}
			// Every key used here is one the validator accepts.
			var known []string
			for _, c := range config.DNSProviders[tc.provider] {
				known = append(known, c.Key)
			}
			for k := range tc.creds {
				if !slices.Contains(known, k) {
					t.Fatalf("credential %q is not in config.DNSProviders[%q]", k, tc.provider)
				}
			}
			_, _, err := newDNSProvider(d)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("newDNSProvider: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("newDNSProvider: got error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}
