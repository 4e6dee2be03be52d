package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestUpstreamSettings(t *testing.T) {
	file := filepath.Join(t.TempDir(), "gatehouse.yaml")
	yaml := `
listen: {http: ":80", https: ":443"}
sites:
  - hosts: [app.example.com]
    routes:
      - path: /
        upstreams: [http://127.0.0.1:9000, unix:///run/app.sock]
        lb: {retry_status: [502]}
        health: {}
        passive_health: {}
        keepalive: {}
      - path: /sticky/
        upstreams: [http://127.0.0.1:9001]
        lb: {policy: cookie}
      - path: /static/
        respond: {body: hi}
`
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(file)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	r := c.Sites[0].Routes[0]
	checks := []struct {
		name      string
		got, want any
	}{
		{"lb.policy", r.LB.Policy, "round_robin"},
		{"lb.cookie", r.LB.Cookie, ""},
		{"health.path", r.Health.Path, "/"},
		{"health.interval", r.Health.Interval, 10 * time.Second},
		{"health.timeout", r.Health.Timeout, 5 * time.Second},
		{"passive_health.max_fails", r.PassiveHealth.MaxFails, 3},
		{"passive_health.fail_window", r.PassiveHealth.FailWindow, 30 * time.Second},
		{"keepalive.max_idle", r.KeepAlive.MaxIdle, 512},
		{"keepalive.idle_timeout", r.KeepAlive.IdleTimeout, 90 * time.Second},
		{"max_response_header", r.MaxResponseHeader, ByteSize(1 << 20)},
		{"cookie policy's cookie", c.Sites[0].Routes[1].LB.Cookie, "gatehouse_upstream"},
		{"respond route's max_response_header", c.Sites[0].Routes[2].MaxResponseHeader, ByteSize(0)},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
}

func TestUpstreamTLSPathsResolved(t *testing.T) {
	dir := t.TempDir()
	cert, err := os.ReadFile("testdata/bad/files/example.crt")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "client.pem"), cert, 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "gatehouse.yaml")
	yaml := `
listen: {http: ":80", https: ":443"}
sites:
  - hosts: [app.example.com]
    routes:
      - upstreams: [https://127.0.0.1:9443]
        upstream_tls: {client_cert: client.pem, client_key: client.key}
`
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(file)
	// The key is missing: the problem names it by its resolved path.
	want := filepath.Join(dir, "client.key") + " does not exist"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Load error = %v, want it to say %q", err, want)
	}
}
