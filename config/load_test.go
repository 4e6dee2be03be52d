package config

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

var update = flag.Bool("update", false, "rewrite testdata/bad/*.errors from the current output")

// TestBad loads every testdata/bad/*.yaml and compares the problems with
// the matching .errors file. Absolute paths of testdata/bad are printed
// relative to it, so the files do not depend on where the checkout is.
func TestBad(t *testing.T) {
	for _, name := range []string{"GATEHOUSE_TEST_NOT_SET", "GATEHOUSE_TEST_NOT_SET_EITHER", "GATEHOUSE_TEST_DOMAIN"} {
		t.Setenv(name, "") // restored after the test
		os.Unsetenv(name)
	}
	files, err := filepath.Glob("testdata/bad/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("got %d files (%v), want some testdata/bad/*.yaml", len(files), err)
	}
	dir, err := filepath.Abs("testdata/bad")
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			_, err := Load(file)
			if err == nil {
				t.Fatal("got no error, want problems")
			}
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("got %T, want Problems", err)
			}
			got := strings.ReplaceAll(err.Error(), dir+string(filepath.Separator), "") + "\n"
			golden := strings.TrimSuffix(file, ".yaml") + ".errors"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("reading golden file (run with -update to create it): %v", err)
			}
			if got != string(want) {
				t.Errorf("got:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

func TestProblemsUnwrap(t *testing.T) {
	_, err := Parse("x.yaml", []byte("sites:\n  - host: [a.example]\n"))
	var p Problem
	if !errors.As(err, &p) {
		t.Fatalf("got %v, want a Problem inside", err)
	}
	want := Problem{File: "x.yaml", Position: Position{Line: 2, Col: 5}, Path: "sites[0].host",
		Message: `unknown key "host"; did you mean "hosts"?`}
	if p != want {
		t.Errorf("got %+v, want %+v", p, want)
	}
}

func TestDefaults(t *testing.T) {
	cfg, err := Parse("", []byte(`
sites:
  - hosts: [Example.COM., localhost]
    hsts: {}
    routes:
      - respond: {body: hi}
`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		got, want any
	}{
		{"listen.http", cfg.Listen.HTTP, ":80"},
		{"listen.https", cfg.Listen.HTTPS, ":443"},
		{"storage", cfg.Storage, "/var/lib/gatehouse"},
		{"admin", cfg.Admin, "127.0.0.1:2019"},
		{"log.format", cfg.Log.Format, "text"},
		{"log.level", cfg.Log.Level, "info"},
		{"log.access", *cfg.Log.Access, true},
		{"acme.ca", cfg.ACME.CA, "https://acme-v02.api.letsencrypt.org/directory"},
		{"acme.challenges", cfg.ACME.Challenges, []string{"http-01", "tls-alpn-01"}},
		{"acme.engine", cfg.ACME.Engine, "certmagic"},
		{"timeouts.read_header", cfg.Timeouts.ReadHeader, 10 * time.Second},
		{"timeouts.idle", cfg.Timeouts.Idle, 2 * time.Minute},
		{"timeouts.dial", cfg.Timeouts.Dial, 5 * time.Second},
		{"timeouts.response_header", cfg.Timeouts.ResponseHeader, 60 * time.Second},
		{"timeouts.shutdown", cfg.Timeouts.Shutdown, 10 * time.Second},
		{"timeouts.write", cfg.Timeouts.Write, 60 * time.Second},
		{"limits.header_bytes", cfg.Limits.HeaderBytes, ByteSize(64 << 10)},
		{"limits.headers", cfg.Limits.Headers, 100},
		{"limits.uri_bytes", cfg.Limits.URIBytes, ByteSize(8 << 10)},
		{"limits.streams", cfg.Limits.Streams, 100},
		{"hosts", cfg.Sites[0].Hosts, []string{"example.com", "localhost"}},
		{"hsts.max_age", cfg.Sites[0].HSTS.MaxAge, 8760 * time.Hour},
		{"route.path", cfg.Sites[0].Routes[0].Path, "/"},
		{"respond.status", cfg.Sites[0].Routes[0].Respond.Status, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !reflect.DeepEqual(tt.got, tt.want) {
				t.Errorf("got %v, want %v", tt.got, tt.want)
			}
		})
	}
}

func TestListenOff(t *testing.T) {
	tests := []struct {
		name, listen    string
		wantHTTP, wantS string
	}{
		{"absent", "", ":80", ":443"},
		{"off", "listen: {http: off}", "", ":443"},
		{"empty", `listen: {https: ""}`, ":80", ""},
		{"null", "listen: {http: }", "", ":443"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := tt.listen + "\nsites: [{hosts: [localhost], routes: [{respond: {}}]}]\n"
			cfg, err := Parse("", []byte(data))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Listen.HTTP != tt.wantHTTP || cfg.Listen.HTTPS != tt.wantS {
				t.Errorf("got %q %q, want %q %q", cfg.Listen.HTTP, cfg.Listen.HTTPS, tt.wantHTTP, tt.wantS)
			}
		})
	}
}

func TestComplete(t *testing.T) {
	cfg := &Config{
		Listen: Listen{HTTPS: ":8443"},
		Sites:  []Site{{Hosts: []string{"Localhost."}, Routes: []Route{{Respond: &Respond{}}}}},
	}
	if err := Complete(cfg); err != nil {
		t.Fatal(err)
	}
	r := cfg.Sites[0].Routes[0]
	if cfg.Listen.HTTP != "" || cfg.Storage != DefaultStorage || cfg.Sites[0].Hosts[0] != "localhost" || r.Path != "/" || r.Respond.Status != 200 {
		t.Errorf("got %+v, want http off and the defaults applied", cfg)
	}

	cfg = &Config{Sites: []Site{{Hosts: []string{"localhost"}}}}
	err := Complete(cfg)
	want := "listen: listen.http and listen.https are both off; at least one is needed\n" +
		"sites[0].routes: a site needs at least one route"
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %v", err, want)
	}
}

func TestProblemf(t *testing.T) {
	cfg, err := Parse("g.yaml", []byte("sites:\n  - hosts: [localhost]\n    routes:\n      - respond: {}\n"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path, want string
	}{
		{"sites[0].hosts[0]", "g.yaml:2:13: sites[0].hosts[0]: boom"},
		{"sites[0].routes[0].respond.status", "g.yaml:4:18: sites[0].routes[0].respond.status: boom"},
		{"sites[0].tls.cert", "g.yaml:2:5: sites[0].tls.cert: boom"},
		{"storage", "g.yaml:1:1: storage: boom"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			if got := cfg.Problemf(tt.path, "%s", "boom").Error(); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseEnv(t *testing.T) {
	t.Setenv("GH_TEST_PORT", "9443")
	t.Setenv("GH_TEST_STATUS", "404")
	t.Setenv("GH_TEST_HOST", "App.Example.com")
	t.Setenv("GH_TEST_EMPTY", "")
	cfg, err := Parse("", []byte(`
listen:
  https: ":${GH_TEST_PORT}"
log:
  access: ${GH_TEST_ACCESS_UNSET:-false}
acme:
  email: ${GH_TEST_EMPTY:-ops@example.com}
sites:
  - hosts: ["${GH_TEST_HOST}"]
    routes:
      - respond:
          status: ${GH_TEST_STATUS}
          body: "price: $${PRICE} at ${GH_TEST_PORT}"
`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		got, want any
	}{
		{"https", cfg.Listen.HTTPS, ":9443"},
		{"access", *cfg.Log.Access, false},
		{"email", cfg.ACME.Email, "ops@example.com"},
		{"host", cfg.Sites[0].Hosts[0], "app.example.com"},
		{"status", cfg.Sites[0].Routes[0].Respond.Status, 404},
		{"body", cfg.Sites[0].Routes[0].Respond.Body, "price: ${PRICE} at 9443"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !reflect.DeepEqual(tt.got, tt.want) {
				t.Errorf("got %v, want %v", tt.got, tt.want)
			}
		})
	}
}

func TestExpandEnv(t *testing.T) {
	env := map[string]string{"A": "alpha", "EMPTY": ""}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	tests := []struct {
		in, want, wantErr string
	}{
		{in: "plain", want: "plain"},
		{in: "$A and $", want: "$A and $"},
		{in: "${A}", want: "alpha"},
		{in: "x${A}y${A}", want: "xalphayalpha"},
		{in: "${EMPTY}", want: ""},
		{in: "${EMPTY:-d}", want: "d"},
		{in: "${UNSET:-d}", want: "d"},
		{in: "${UNSET:-}", want: ""},
		{in: "${A:-d}", want: "alpha"},
		{in: "${UNSET:-a:-b}", want: "a:-b"},
		{in: "$${A}", want: "${A}"},
		{in: "$${A} ${A}", want: "${A} alpha"},
		{in: "${UNSET}", wantErr: "environment variable UNSET is not set"},
		{in: "${A", wantErr: `unterminated "${" (write "$${" for a literal "${")`},
		{in: "${}", wantErr: `invalid environment variable name "" in "${}"`},
		{in: "${A-B}", wantErr: `invalid environment variable name "A-B" in "${A-B}"`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := expandEnv(tt.in, lookup)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Errorf("got error %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("got %q (%v), want %q", got, err, tt.want)
			}
		})
	}
}

func TestRelativePaths(t *testing.T) {
	certs, err := filepath.Abs("../examples/certs")
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	sub := filepath.Join(root, "etc")
	for _, dir := range []string{"www", "pki"} {
		if err := os.MkdirAll(filepath.Join(sub, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"internal-ca.crt", "static.example.com.crt", "static.example.com.key"} {
		data, err := os.ReadFile(filepath.Join(certs, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(sub, "pki", name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	data := []byte(`
storage: state
acme: {ca_root: pki/internal-ca.crt}
sites:
  - hosts: [static.example.com]
    tls: {cert: pki/static.example.com.crt, key: ./pki/static.example.com.key}
    routes:
      - root: www
      - path: /api/
        upstreams: [https://10.0.0.1]
        ca: pki/internal-ca.crt
      - path: /abs/
        root: ` + root + `
`)
	if err := os.WriteFile(filepath.Join(sub, "gatehouse.yaml"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(root) // the file is named relative to the working directory
	cfg, err := Load(filepath.Join("etc", "gatehouse.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Sites[0]
	tests := []struct {
		name, got, want string
	}{
		{"storage", cfg.Storage, filepath.Join(sub, "state")},
		{"acme.ca_root", cfg.ACME.CARoot, filepath.Join(sub, "pki", "internal-ca.crt")},
		{"tls.cert", s.TLS.Cert, filepath.Join(sub, "pki", "static.example.com.crt")},
		{"tls.key", s.TLS.Key, filepath.Join(sub, "pki", "static.example.com.key")},
		{"root", s.Routes[0].Root, filepath.Join(sub, "www")},
		{"ca", s.Routes[1].CA, filepath.Join(sub, "pki", "internal-ca.crt")},
		{"absolute root", s.Routes[2].Root, root},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %v, want %v", tt.got, tt.want)
			}
		})
	}
}

func TestUnknownKey(t *testing.T) {
	fields := yamlFields(reflect.TypeFor[Route]())
	tests := []struct {
		key, want string
	}{
		{"upstream", `unknown key "upstream"; did you mean "upstreams"?`},
		{"Path", `unknown key "Path"; did you mean "path"?`},
		{"stripprefix", `unknown key "stripprefix"; did you mean "strip_prefix"?`},
		{"maxbody", `unknown key "maxbody"; did you mean "max_body"?`},
		{"roto", `unknown key "roto"; did you mean "root"?`},
		{"foo", `unknown key "foo"; known keys are add_prefix, allow_ips, basic_auth, ca, compress, deny_ips, forward_auth, health, keepalive, lb, max_body, max_response_header, passive_health, path, rate_limit, redirect, request_headers, respond, response_headers, rewrite, root, strip_prefix, upstream_tls, upstreams`},
		{"backend", `unknown key "backend"; known keys are add_prefix, allow_ips, basic_auth, ca, compress, deny_ips, forward_auth, health, keepalive, lb, max_body, max_response_header, passive_health, path, rate_limit, redirect, request_headers, respond, response_headers, rewrite, root, strip_prefix, upstream_tls, upstreams`},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			if got := unknownKey(tt.key, fields); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// TestRoundTrip parses a config using every key, writes it back as YAML and
// parses that again: nothing may be lost or changed on the way.
func TestRoundTrip(t *testing.T) {
	cfg, err := Load("testdata/good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Parse("", out)
	if err != nil {
		t.Fatalf("parsing the marshalled config: %v\n%s", err, out)
	}
	cfg.File, cfg.positions, cfg.top = "", nil, Position{}
	again.positions, again.top = nil, Position{}
	if !reflect.DeepEqual(cfg, again) {
		t.Errorf("got %+v, want %+v", again, cfg)
	}
	want, err := filepath.Abs("testdata/state")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Storage != want || cfg.Admin != Off || cfg.Listen.HTTP != "127.0.0.1:8080" {
		t.Errorf("got storage %q, admin %q, http %q; want %q, off, 127.0.0.1:8080", cfg.Storage, cfg.Admin, cfg.Listen.HTTP, want)
	}
	if r := cfg.Sites[0].Routes[0]; !r.StripPrefix || len(r.Upstreams) != 2 || r.MaxBody != 10_000_000 {
		t.Errorf("got route %+v, want the merged x-upstream keys and max_body 10MB", r)
	}
}

// TestExamples keeps examples/ from going stale: every one must load and
// validate.
func TestExamples(t *testing.T) {
	files, err := filepath.Glob("../examples/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("got %d examples (%v), want some ../examples/*.yaml", len(files), err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			if _, err := Load(file); err != nil {
				t.Errorf("got %v, want no error", err)
			}
		})
	}
	// A fleet's example is a directory: an instance's own gatehouse.yaml
	// and the shared.yaml pushed to etcd, which must merge into a valid
	// config.
	fleets, _ := filepath.Glob("../examples/*/shared.yaml")
	if len(fleets) == 0 {
		t.Fatal("no ../examples/*/shared.yaml: the fleet example is not checked")
	}
	for _, shared := range fleets {
		t.Run(filepath.Base(filepath.Dir(shared)), func(t *testing.T) {
			local, err := Load(filepath.Join(filepath.Dir(shared), "gatehouse.yaml"))
			if err != nil {
				t.Fatalf("the instance's own file: %v", err)
			}
			if _, err := LoadShared(shared, local); err != nil {
				t.Errorf("the shared document: %v", err)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("got %v, want an error wrapping os.ErrNotExist", err)
	}
}
