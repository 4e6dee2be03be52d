package gateway

import (
	"fmt"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/tlsmgr/pebbletest"
)

const dns01Config = `listen: {http: "127.0.0.1:{{HTTP}}", https: "127.0.0.1:{{HTTPS}}"}
admin: "off"
storage: {{STORAGE}}
acme:
  issuers:
    - ca: %[1]s
      ca_root: %[2]s
  dns:
    provider: rfc2136
    credentials: {nameserver: "%[3]s", tsig_key: "%[4]s", tsig_secret: "%[5]s"}
    resolvers: ["%[3]s"]
sites:
  - hosts: [localhost]
    routes: [{respond: {body: local}}]
  - hosts: ["*.wild.test", wild.test]
    routes: [{upstreams: [%[6]s]}]
`

// TestDNS01ThroughTheCommand runs the command on a YAML config whose only
// Site is a wildcard with its apex, solved through DNS-01 against a real
// BIND (RFC 2136, TSIG) that Pebble asks: any one-label name under the
// zone is then proxied over the wildcard certificate.
func TestDNS01ThroughTheCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("issues certificates from an in-process Pebble")
	}
	upstream := newAppUpstream(t)
	ns := pebbletest.StartBIND(t, "wild.test")
	p := newPorts(t)
	ca := pebbletest.Start(t, pebbletest.Options{HTTPPort: p.HTTP, TLSPort: p.HTTPS, Resolver: ns.Addr})
	cfg := fmt.Sprintf(dns01Config, ca.DirectoryURL(), ca.ClientRootFile(), ns.Addr, ns.KeyName, ns.KeySecret, upstream.URL)
	in := start(t, p, cfg)

	waitForCertificate(t, in, ca, "a.wild.test", 60*time.Second)
	waitForCertificate(t, in, ca, "wild.test", 60*time.Second)
	c := clientFor(in.HTTPS, ca.IssuerRoots())
	for _, host := range []string{"a.wild.test", "b.wild.test", "wild.test"} {
		if status, body := get(t, c, "https://"+host+"/"); status != 200 || body != "app saw "+host {
			t.Errorf("GET https://%s/: got %d %q, want 200 %q", host, status, body, "app saw "+host)
		}
	}
	if vals, err := ns.TXT(t.Context(), "_acme-challenge.wild.test"); err != nil || len(vals) != 0 {
		t.Errorf("_acme-challenge.wild.test after issuance: TXT %q (err %v), want none", vals, err)
	}
}
