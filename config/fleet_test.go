package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const fleetLocal = `listen: {http: "127.0.0.1:8080", https: off}
storage:
  etcd: {endpoints: ["127.0.0.1:2379"]}
  cache: cache
fleet: {name: edge-1, shared_config: true}
`

// TestFleetLocalFile checks the misuses of fleet.shared_config in an
// instance's own file, each reported at its line (issue 11).
func TestFleetLocalFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "local.yaml")
	cfg, err := Parse(file, []byte(fleetLocal))
	if err != nil {
		t.Fatalf("a local file with no Sites: %v", err)
	}
	if cfg.Fleet.Name != "edge-1" || !cfg.Fleet.SharedConfig {
		t.Errorf("got fleet %+v", cfg.Fleet)
	}

	for _, tc := range []struct{ name, body, want string }{
		{"sites in the local file", fleetLocal + "sites:\n  - hosts: [a.test]\n    routes: [{respond: {status: 200}}]\n",
			file + ":7:3: sites: with fleet.shared_config, sites comes from the fleet's shared document"},
		{"acme in the local file", fleetLocal + "acme: {email: ops@example.com}\n",
			file + ":6:7: acme: with fleet.shared_config"},
		{"no etcd", "listen: {http: \"127.0.0.1:8080\", https: off}\nfleet:\n  shared_config: true\n",
			file + ":3:18: fleet.shared_config: needs storage.etcd"},
		{"a name that is no key", "fleet: {name: a/b}\nsites: [{hosts: [a.test], routes: [{respond: {}}]}]\n",
			file + ":1:15: fleet.name: \"a/b\": use letters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(file, []byte(tc.body))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want a problem %q", err, tc.want)
			}
		})
	}
}

// TestParseShared checks the shared document: merged with the local file's
// own keys, refused with its place for a local key, an unknown key or an
// invalid value (issue 11).
func TestParseShared(t *testing.T) {
	dir := t.TempDir()
	local, err := Parse(filepath.Join(dir, "local.yaml"), []byte(fleetLocal))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "allowed.txt"), []byte("a.test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	doc := `acme: {email: ops@example.com}
on_demand: {allow_file: allowed.txt}
sites:
  - hosts: [a.test]
    routes: [{respond: {status: 201}}]
`
	cfg, err := ParseShared("/gatehouse/config@7", []byte(doc), local)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen.HTTP != "127.0.0.1:8080" || cfg.Listen.HTTPS != "" {
		t.Errorf("got listen %+v, want the local file's", cfg.Listen)
	}
	if cfg.StorageEtcd == nil || cfg.Storage != filepath.Join(dir, "cache") {
		t.Errorf("got storage %q, etcd %v; want the local file's", cfg.Storage, cfg.StorageEtcd)
	}
	if len(cfg.Sites) != 1 || cfg.ACME.Email != "ops@example.com" {
		t.Errorf("got sites %v, acme %+v; want the document's", cfg.Sites, cfg.ACME)
	}
	if got, want := cfg.OnDemand.AllowFile, filepath.Join(dir, "allowed.txt"); got != want {
		t.Errorf("got on_demand.allow_file %q, want %q (beside the local file)", got, want)
	}

	for _, tc := range []struct{ name, doc, want string }{
		{"a local key", "listen: {http: \":80\"}\n" + doc, "/gatehouse/config@7:1:9: listen: listen belongs to each instance's own file"},
		{"an unknown key", doc + "sitez: []\n", "/gatehouse/config@7:6:1: sitez: unknown key"},
		{"an invalid value", "sites:\n  - hosts: [a.test]\n    routes: [{upstreams: [\"ftp://x\"]}]\n", "/gatehouse/config@7:3:"},
		{"no sites", "acme: {email: ops@example.com}\n", "sites: at least one site is needed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseShared("/gatehouse/config@7", []byte(tc.doc), local)
			var ps Problems
			if !errors.As(err, &ps) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want a problem %q", err, tc.want)
			}
		})
	}
}
