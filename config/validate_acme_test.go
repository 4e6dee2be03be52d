package config

import (
	"slices"
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

// TestCANames checks that ca: takes a known CA's name wherever it takes a
// directory URL, and that each name stands for its CA's directory.
func TestCANames(t *testing.T) {
	const file = `storage: /tmp/gatehouse-ca-names-test
acme:
  ca: buypass
sites:
  - hosts: [example.com]
    tls:
      issuers:
        - ca: letsencrypt
          profile: shortlived
        - ca: zerossl
          eab: {api_key: "0123abcd"}
        - ca: google
          eab: {key_id: kid, mac_key: aGVsbG8}
        - ca: https://ca.corp.example/acme/directory
          profile: anything-the-ca-names
    routes: [{respond: {body: ok}}]
`
	c, err := Parse("gatehouse.yaml", []byte(file))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	for _, tc := range []struct{ ca, want string }{
		{c.ACME.CA, "https://api.buypass.com/acme/directory"},
		{c.Sites[0].TLS.Issuers[0].CA, "https://acme-v02.api.letsencrypt.org/directory"},
		{c.Sites[0].TLS.Issuers[1].CA, "https://acme.zerossl.com/v2/DV90"},
		{c.Sites[0].TLS.Issuers[2].CA, "https://dv.acme-v02.api.pki.goog/directory"},
		{c.Sites[0].TLS.Issuers[3].CA, "https://ca.corp.example/acme/directory"},
	} {
		if got := CADirectory(tc.ca); got != tc.want {
			t.Errorf("CADirectory(%q): got %q, want %q", tc.ca, got, tc.want)
		}
	}
	if k, ok := LookupCA("https://api.buypass.com/acme/directory"); !ok || k.Name != "buypass" || !k.NoARI || k.Lifetime != 180*24*time.Hour {
		t.Errorf("LookupCA(Buypass's URL): got %+v, %v; want buypass, 180 days, no ARI", k, ok)
	}

	// acme.ca by name gets the same checks as an issuers entry.
	_, err = Parse("gatehouse.yaml", []byte("storage: /tmp/x\nacme: {ca: sslcom}\nsites: [{hosts: [example.com], routes: [{respond: {body: ok}}]}]\n"))
	if err == nil || !strings.Contains(err.Error(), "gatehouse.yaml:2:7: acme.eab: sslcom requires an external account binding") {
		t.Errorf("acme.ca sslcom without eab: got %v, want the EAB error at acme", err)
	}
}

// TestKnownCAsTable keeps the table usable: unique names that read as
// names, https directories, and a place to get a binding for each CA that
// needs one.
func TestKnownCAsTable(t *testing.T) {
	seen := map[string]bool{}
	for _, k := range KnownCAs {
		if !isCAName(k.Name) || seen[k.Name] || seen[k.Directory] {
			t.Errorf("%q: a duplicate, or not a name", k.Name)
		}
		seen[k.Name], seen[k.Directory] = true, true
		if msg := checkDirectoryURL(k.Directory); msg != "" || !strings.HasPrefix(k.Directory, "https://") {
			t.Errorf("%s: directory %s", k.Name, msg)
		}
		if k.EABFromAPIKey && k.EAB == "" {
			t.Errorf("%s derives an EAB but needs none", k.Name)
		}
	}
}

// TestDefaultDNSProviders checks that every provider compiled in by
// default is one of lego's, with credentials keys that carry their lego
// environment variable.
func TestDefaultDNSProviders(t *testing.T) {
	for _, name := range DefaultLegoDNSProviders {
		creds, ok := LookupDNSProvider(name)
		if !ok || len(creds) == 0 {
			t.Errorf("%s: not in lego's table, or no credentials keys", name)
			continue
		}
		for _, c := range creds {
			if c.Env == "" || c.Key == "" || strings.ToLower(c.Key) != c.Key {
				t.Errorf("%s: credential %+v has no lego variable, or a key that is not lowercase", name, c)
			}
		}
	}
	if creds, _ := LookupDNSProvider("hetzner"); !slices.ContainsFunc(creds, func(c DNSCredential) bool {
		return c.Key == "api_token" && c.Env == "HETZNER_API_TOKEN"
	}) {
		t.Errorf("hetzner: got %+v, want api_token for HETZNER_API_TOKEN", creds)
	}
}
