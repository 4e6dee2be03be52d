package config

import (
	"strings"
	"testing"
	"time"
)

// TestDNS01Config checks what DNS-01 settings come out of a file: the
// defaults, relative paths, and that DNS-only ACME needs no HTTP Listener.
func TestDNS01Config(t *testing.T) {
	const file = `listen: {http: "off", https: "127.0.0.1:8443"}
storage: /tmp/gatehouse-dns01-config-test
acme:
  profile: shortlived
  issuers:
    - ca: https://acme-v02.api.letsencrypt.org/directory
    - ca: https://acme.zerossl.com/v2/DV90
      eab: {key_id: kid, mac_key: aGVsbG8}
      profile: classic
  dns:
    provider: rfc2136
    credentials: {nameserver: "127.0.0.1:53", tsig_file: keys/tsig.key}
sites:
  - hosts: ["*.example.com", example.com]
    routes: [{respond: {body: ok}}]
`
	_, err := Parse("/etc/gatehouse/gatehouse.yaml", []byte(file))
	// The key file does not exist: the error names it with its resolved path.
	if err == nil || !strings.Contains(err.Error(), "acme.dns.credentials.tsig_file: /etc/gatehouse/keys/tsig.key does not exist") {
		t.Fatalf("Parse: got %v, want only the missing tsig_file, resolved against the config's directory", err)
	}
	if strings.Count(err.Error(), "\n") > 0 {
		t.Errorf("Parse: more than one problem: %v", err)
	}

	withKey := strings.Replace(file, "tsig_file: keys/tsig.key", "tsig_key: k, tsig_secret: c2VjcmV0", 1)
	c, err := Parse("/etc/gatehouse/gatehouse.yaml", []byte(withKey))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if got := c.ACME.DNS.PropagationTimeout; got != 2*time.Minute {
		t.Errorf("propagation_timeout default: got %v, want 2m", got)
	}
	if got := c.DNSFor(&c.Sites[0]); got != c.ACME.DNS {
		t.Errorf("DNSFor(site without tls.dns) = %v, want acme.dns", got)
	}
}
