package config

import (
	"strings"
	"testing"
)

func TestDockerConfig(t *testing.T) {
	const head = "listen: {http: \"off\", https: \"127.0.0.1:8443\"}\nstorage: /tmp/gatehouse-docker-config-test\n"
	c, err := Parse("/etc/gatehouse/gatehouse.yaml", []byte(head+"docker: {allowed_hosts: [\"*.localhost\"]}\n"))
	if err != nil {
		t.Fatalf("Parse: a docker block and no sites: %v", err)
	}
	if c.Docker.Endpoint != DefaultDockerEndpoint || c.Docker.ExposedByDefault {
		t.Errorf("defaults: got %+v", *c.Docker)
	}
	for _, tc := range []struct{ docker, want string }{
		{`{endpoint: "unix:///run/d.sock"}`, "docker.allowed_hosts: is required"},
		{`{allowed_hosts: ["*"]}`, `docker.allowed_hosts[0]: "*" would allow every host`},
		{`{allowed_hosts: ["a.*.com"]}`, "docker.allowed_hosts[0]: \"a.*.com\": a wildcard must be the whole leftmost label"},
		{`{endpoint: "unix://run/d.sock", allowed_hosts: [a.test]}`, "docker.endpoint: \"unix://run/d.sock\": a unix socket endpoint is unix:///absolute/path.sock"},
		{`{endpoint: "tcp://proxy", allowed_hosts: [a.test]}`, "docker.endpoint: \"tcp://proxy\": a tcp endpoint is tcp://host:port"},
		{`{endpoint: "http://proxy:2375", allowed_hosts: [a.test]}`, "must be a unix:// or tcp:// URL"},
		{`{endpoint: "tcp://proxy:2376", tls: {ca: certs/ca.pem}, allowed_hosts: [a.test]}`, "docker.tls.ca: /etc/gatehouse/certs/ca.pem does not exist"},
		{`{allowed_hosts: [a.test], tls: {cert: c.pem}}`, "docker.tls: tls is only used with a tcp:// endpoint"},
		{`{allowed_hosts: [a.test], upstream_tls: {ca: certs/apps.pem}}`, "docker.upstream_tls.ca: /etc/gatehouse/certs/apps.pem does not exist"},
		{`{allowed_hosts: [a.test], upstream_tls: {server_name: "a b"}}`, `docker.upstream_tls.server_name: "a b" is not a host name`},
		{`{allowed_hosts: [a.test], upstream_tls: {server_name: app.internal, insecure_skip_verify: true}}`, "docker.upstream_tls.insecure_skip_verify: ca and server_name are ignored when verification is off"},
		{`{allowed_hosts: [a.test], upstream_tls: {verify: false}}`, "upstream_tls"},
	} {
		_, err := Parse("/etc/gatehouse/gatehouse.yaml", []byte(head+"docker: "+tc.docker+"\n"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("docker: %s: got %v, want %q", tc.docker, err, tc.want)
		}
	}
}

func TestCheckSites(t *testing.T) {
	c, err := Parse("test", []byte("listen: {http: \"off\", https: \"127.0.0.1:8443\"}\nstorage: /tmp/x\nsites: [{hosts: [a.localhost], routes: [{respond: {body: a}}]}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	good := []Site{{Hosts: []string{"B.localhost."}, Routes: []Route{{Upstreams: []string{"http://10.0.0.1:80"}}}}}
	if ps := c.CheckSites(good); len(ps) != 0 {
		t.Errorf("CheckSites(good): %v", ps)
	}
	if good[0].Hosts[0] != "b.localhost" || good[0].Routes[0].Path != "/" {
		t.Errorf("CheckSites did not apply the defaults: %+v", good[0])
	}
	bad := []Site{{Hosts: []string{"b.localhost"}, TLS: SiteTLS{Issuer: "nope"}, Routes: []Route{{Path: "api", Upstreams: []string{"http://10.0.0.1:80"}}}}}
	ps := c.CheckSites(bad)
	got := ps.Error()
	for _, want := range []string{`sites[0].tls.issuer: must be "acme" or "internal", not "nope"`, `sites[0].routes[0].path: "api" must start with /`} {
		if !strings.Contains(got, want) {
			t.Errorf("CheckSites(bad): got %q, want %q in it", got, want)
		}
	}
	if len(ps) != 2 {
		t.Errorf("CheckSites(bad): %d problems, want 2 (none from the rest of the config): %v", len(ps), ps)
	}
}

// A Site checked again, as the Docker Source checks the Sites it has
// published, is only read: the gateway and the admin API (GET /routes)
// read those Sites meanwhile, and under -race a write of the same value
// is a race all the same.
func TestCheckSitesAgainOnlyReads(t *testing.T) {
	c, err := Parse("test", []byte("listen: {http: \"off\", https: \"127.0.0.1:8443\"}\nstorage: /tmp/x\nsites: [{hosts: [a.localhost], routes: [{respond: {body: a}}]}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	sites := []Site{{Hosts: []string{"B.localhost"}, Routes: []Route{{Upstreams: []string{"http://10.0.0.1:80"}}}}}
	if ps := c.CheckSites(sites); len(ps) != 0 {
		t.Fatal(ps)
	}
	read := make(chan string)
	go func() { read <- strings.Clone(sites[0].Hosts[0]) }()
	if ps := c.CheckSites(sites); len(ps) != 0 {
		t.Fatal(ps)
	}
	if h := <-read; h != "b.localhost" {
		t.Errorf("got host %q, want b.localhost", h)
	}
}
