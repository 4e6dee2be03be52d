package config

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const storageSite = `
sites:
  - hosts: [a.test]
    routes:
      - respond: {status: 200}
`

// TestStorageForms checks both forms of the storage key: a directory, and
// the mapping naming etcd and a cache directory (issue 11).
func TestStorageForms(t *testing.T) {
	t.Setenv("GH_TEST_ETCD_PASSWORD", "s3cret")
	dir := t.TempDir()
	file := filepath.Join(dir, "g.yaml")

	cfg, err := Parse(file, []byte("storage: state\n"+storageSite))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Storage != filepath.Join(dir, "state") || cfg.StorageEtcd != nil {
		t.Errorf("plain form: got storage %q, etcd %+v; want %q, nil", cfg.Storage, cfg.StorageEtcd, filepath.Join(dir, "state"))
	}

	cfg, err = Parse(file, []byte(`
storage:
  etcd:
    endpoints: [https://10.0.0.1:2379, "10.0.0.2:2379"]
    tls: {ca: etcd-ca.pem, cert: etcd.pem, key: etcd.key}
    username: gatehouse
    password: ${GH_TEST_ETCD_PASSWORD}
    encryption_key_file: storage.key
  cache: cache
`+storageSite))
	if err != nil {
		t.Fatal(err)
	}
	want := &EtcdStorage{
		Endpoints:         []string{"https://10.0.0.1:2379", "10.0.0.2:2379"},
		Prefix:            "/gatehouse/",
		TLS:               &EtcdTLS{CA: filepath.Join(dir, "etcd-ca.pem"), Cert: filepath.Join(dir, "etcd.pem"), Key: filepath.Join(dir, "etcd.key")},
		Username:          "gatehouse",
		Password:          "s3cret",
		DialTimeout:       5 * time.Second,
		EncryptionKeyFile: filepath.Join(dir, "storage.key"),
	}
	if diff := cmp.Diff(want, cfg.StorageEtcd); diff != "" {
		t.Errorf("storage.etcd (-want +got):\n%s", diff)
	}
	if cfg.Storage != filepath.Join(dir, "cache") {
		t.Errorf("got cache %q, want %q", cfg.Storage, filepath.Join(dir, "cache"))
	}

	cfg, err = Parse(file, []byte("storage: {etcd: {endpoints: [\"127.0.0.1:2379\"]}}\n"+storageSite))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Storage != DefaultStorage {
		t.Errorf("got cache %q, want the default %q", cfg.Storage, DefaultStorage)
	}
}

// TestStorageProblems checks mistakes in the mapping form are reported
// with their line, like those of any other key.
func TestStorageProblems(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown key", "storage:\n  etcd:\n    endpoints: [\"a:1\"]\n    prefx: /x/\n", `g.yaml:4:5: storage.etcd.prefx: unknown key "prefx"; did you mean "prefix"?`},
		{"no etcd", "storage:\n  cache: /tmp/x\n", "g.yaml:2:3: storage: the mapping form of storage needs etcd; write storage: DIR for a directory"},
		{"no endpoints", "storage:\n  etcd: {prefix: /x/}\n", "g.yaml:2:9: storage.etcd.endpoints: at least one etcd endpoint is needed"},
		{"bad endpoint", "storage:\n  etcd:\n    endpoints:\n      - etcd1\n", `g.yaml:4:9: storage.etcd.endpoints[0]: "etcd1": want host:port or a URL like https://10.0.0.1:2379`},
		{"http with tls", "storage:\n  etcd:\n    endpoints: [\"http://a:1\"]\n    tls: {ca: ca.pem}\n", `g.yaml:3:17: storage.etcd.endpoints[0]: "http://a:1" is plain http but storage.etcd.tls is set; write https://`},
		{"prefix", "storage:\n  etcd: {endpoints: [\"a:1\"], prefix: /gh}\n", `g.yaml:2:38: storage.etcd.prefix: must end in "/", so that "/gh" does not also cover "/gh2/"`},
		{"password alone", "storage:\n  etcd: {endpoints: [\"a:1\"], password: x}\n", "g.yaml:2:9: storage.etcd.username: username and password go together"},
		{"autocert", "acme: {engine: autocert}\nstorage:\n  etcd: {endpoints: [\"a:1\"]}\n", "g.yaml:3:9: storage.etcd: needs acme.engine certmagic: autocert keeps its cache in files"},
		{"list", "storage: [a]\n", "g.yaml:1:10: storage: expected a string, got a list"},
		{"wrong type", "storage:\n  etcd: {endpoints: [\"a:1\"], dial_timeout: 5}\n", `g.yaml:2:44: storage.etcd.dial_timeout: expected a duration like "30s", got 5`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("g.yaml", []byte(tt.yaml+storageSite))
			if err == nil {
				t.Fatalf("got no error, want %s", tt.want)
			}
			if got := strings.Split(err.Error(), "\n")[0]; got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// TestStorageFromEnvironment checks that $GATEHOUSE_STORAGE is the
// storage directory of a config without a storage key (the container
// image's /data volume), and that the key wins over it.
func TestStorageFromEnvironment(t *testing.T) {
	t.Setenv("GATEHOUSE_STORAGE", "/data")
	for _, tc := range []struct{ yaml, want string }{
		{"sites: [{hosts: [a.test], routes: [{respond: {body: x}}]}]\n", "/data"},
		{"storage: /srv/certs\nsites: [{hosts: [a.test], routes: [{respond: {body: x}}]}]\n", "/srv/certs"},
	} {
		cfg, err := Parse("", []byte(tc.yaml))
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Storage != tc.want {
			t.Errorf("%q: got storage %q, want %q", tc.yaml, cfg.Storage, tc.want)
		}
	}
}
