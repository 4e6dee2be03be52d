package config

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestACMEServerDefaults: allowed_clients defaults to loopback, lifetime
// to 7d, and a config may hold the ACME server alone, without Sites.
func TestACMEServerDefaults(t *testing.T) {
	cfg, err := Parse("gatehouse.yaml", []byte("acme_server:\n  host: ca.home.arpa\n  allowed_names: [\"*.home.arpa\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	as := cfg.ACMEServer
	if !slices.Equal(as.AllowedClients, DefaultACMEServerClients) || as.Lifetime != DefaultACMEServerLifetime {
		t.Errorf("got allowed_clients %v, lifetime %v; want %v, %v", as.AllowedClients, as.Lifetime, DefaultACMEServerClients, DefaultACMEServerLifetime)
	}
	for in, want := range map[string]time.Duration{"7d": 7 * 24 * time.Hour, "36h": 36 * time.Hour, "90m": 90 * time.Minute} {
		l, err := ParseLifetime(in)
		if err != nil || time.Duration(l) != want {
			t.Errorf("ParseLifetime(%q) = %v, %v; want %v", in, l, err, want)
		}
		if back, _ := ParseLifetime(l.String()); back != l {
			t.Errorf("%q: String %q does not parse back", in, l.String())
		}
	}
}

// TestACMEServerProblems: each mistake in acme_server is reported at its
// line and column, all at once.
func TestACMEServerProblems(t *testing.T) {
	doc := `listen: {https: ":8443", http: ":8080"}
acme_server:
  host: "*.home.arpa"
  allowed_names: ["*", "x/y", "nas.home.arpa:443"]
  allowed_clients: [192.168.0.0/16, nonsense]
  lifetime: 200d
  resolvers: [192.168.1.1]
  eab_keys: {lab: c2hvcnQ}
sites:
  - hosts: [nas.home.arpa]
    routes: [{upstreams: ["http://127.0.0.1:5000"]}]
`
	_, err := Parse("gatehouse.yaml", []byte(doc))
	if err == nil {
		t.Fatal("no problems")
	}
	for _, want := range []string{
		`gatehouse.yaml:3:9: acme_server.host: "*.home.arpa": the ACME server's host cannot be a wildcard`,
		`gatehouse.yaml:4:19: acme_server.allowed_names[0]: "*" would allow every name`,
		`gatehouse.yaml:4:24: acme_server.allowed_names[1]: "x/y" is not a host name`,
		`gatehouse.yaml:4:31: acme_server.allowed_names[2]: "nas.home.arpa:443" has a port`,
		`gatehouse.yaml:5:37: acme_server.allowed_clients[1]: "nonsense" is neither an IP address nor a CIDR`,
		`gatehouse.yaml:6:13: acme_server.lifetime: 200d is outside 1h to 90d`,
		`gatehouse.yaml:7:15: acme_server.resolvers[0]: "192.168.1.1" is not host:port`,
		`gatehouse.yaml:8:19: acme_server.eab_keys.lab: the HMAC key is 5 bytes; it needs at least 32`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing problem %q in:\n%v", want, err)
		}
	}

	for name, tc := range map[string]struct{ doc, want string }{
		"no allowed_names": {"acme_server: {host: ca.home.arpa}\n", "acme_server.allowed_names: is required"},
		"no host":          {"acme_server: {allowed_names: [\"*.lan\"]}\n", "acme_server.host: is required"},
		"no https":         {"listen: {https: off}\nacme_server: {host: ca.lan, allowed_names: [\"*.lan\"]}\n", "acme_server needs listen.https"},
		"no clients":       {"acme_server: {host: ca.lan, allowed_names: [\"*.lan\"], allowed_clients: []}\n", "acme_server.allowed_clients: is empty"},
		"a Site's host": {"acme_server: {host: ca.lan, allowed_names: [\"*.lan\"]}\nsites: [{hosts: [CA.lan], routes: [{upstreams: [\"http://127.0.0.1:1\"]}]}]\n",
			`gatehouse.yaml:2:18: sites[0].hosts[0]: "ca.lan" is acme_server.host`},
		"bad lifetime": {"acme_server: {host: ca.lan, allowed_names: [\"*.lan\"], lifetime: 7x}\n", `acme_server.lifetime: expected a duration like "7d" or "36h"`},
		"unknown key":  {"acme_server: {host: ca.lan, allowed_names: [\"*.lan\"], alowed_clients: []}\n", `acme_server.alowed_clients: unknown key`},
	} {
		_, err := Parse("gatehouse.yaml", []byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", name, err, tc.want)
		}
	}
}

// TestACMEServerLocalKey: in a fleet, acme_server is a key of one
// instance's own file (its database is that machine's): kept from the
// local file, refused in the shared document.
func TestACMEServerLocalKey(t *testing.T) {
	dir := t.TempDir()
	localDoc := strings.Replace(fleetLocal, "https: off", `https: "127.0.0.1:8443"`, 1) +
		"acme_server: {host: ca.home.arpa, allowed_names: [\"*.home.arpa\"]}\n"
	local, err := Parse(filepath.Join(dir, "local.yaml"), []byte(localDoc))
	if err != nil {
		t.Fatal(err)
	}
	doc := "sites:\n  - hosts: [a.test]\n    routes: [{respond: {status: 201}}]\n"
	cfg, err := ParseShared("/gatehouse/config@7", []byte(doc), local)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ACMEServer == nil || cfg.ACMEServer.Host != "ca.home.arpa" {
		t.Errorf("acme_server %+v, want the local file's", cfg.ACMEServer)
	}
	_, err = ParseShared("/gatehouse/config@7", []byte(doc+"acme_server: {host: ca.lan, allowed_names: [\"*.lan\"]}\n"), local)
	if want := "/gatehouse/config@7:4:14: acme_server: acme_server belongs to each instance's own file"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("got %v, want %q", err, want)
	}
}
