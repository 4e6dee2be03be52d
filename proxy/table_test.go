package proxy

import (
	"strings"
	"testing"

	"github.com/gatehouse-proxy/gatehouse/config"
)

func routingConfig() *config.Config {
	return &config.Config{
		Sites: []config.Site{
			cfgSite([]string{"app.example.com", "www.example.com"},
				respond("/", "root"),
				respond("/api", "api"),
				respond("/api/v2/", "v2"),
				respond("/static/", "static"),
			),
			cfgSite([]string{"*.example.net"}, respond("/", "wild")),
			cfgSite([]string{"exact.example.net"}, respond("/", "exact")),
			cfgSite([]string{"*"}, respond("/only/", "catch-all")),
			cfgSite([]string{"::1", "10.0.0.1"}, respond("/", "ip")),
		},
	}
}

func mustCompile(t testing.TB, cfg *config.Config) *Table {
	t.Helper()
	table, err := Compile(cfg, Options{})
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return table
}

func TestSiteLookup(t *testing.T) {
	table := mustCompile(t, routingConfig())
	tests := []struct {
		name string
		host string
		want string // first host of the Site, "" for none
	}{
		{"exact", "app.example.com", "app.example.com"},
		{"second host", "www.example.com", "app.example.com"},
		{"port stripped", "app.example.com:8443", "app.example.com"},
		{"case-insensitive", "APP.Example.COM", "app.example.com"},
		{"trailing dot", "app.example.com.", "app.example.com"},
		{"trailing dot and port", "app.example.com.:443", "app.example.com"},
		{"wildcard", "a.example.net", "*.example.net"},
		{"exact beats wildcard", "exact.example.net", "exact.example.net"},
		{"wildcard is one label", "a.b.example.net", "*"},
		{"wildcard needs a label", "example.net", "*"},
		{"empty label", ".example.net", "*"},
		{"unknown goes to catch-all", "other.org", "*"},
		{"empty host", "", "*"},
		{"IPv4", "10.0.0.1:443", "::1"},
		{"IPv6 bracketed", "[::1]:443", "::1"},
		{"IPv6 no port", "[::1]", "::1"},
		{"too long", strings.Repeat("a", 300) + ".example.net", "*"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ""
			if s := table.site(tt.host); s != nil {
				got = s.name
			}
			if got != tt.want {
				t.Errorf("site(%q) = %v, want %v", tt.host, got, tt.want)
			}
		})
	}
}

func TestSiteLookupWithoutCatchAll(t *testing.T) {
	table := mustCompile(t, &config.Config{Sites: []config.Site{cfgSite([]string{"app.example.com"}, respond("/", "x"))}})
	for _, host := range []string{"other.example.com", "", "example.com"} {
		if s := table.site(host); s != nil {
			t.Errorf("site(%q) = %v, want nil", host, s.name)
		}
	}
}

func TestRouteLookup(t *testing.T) {
	table := mustCompile(t, routingConfig())
	tests := []struct {
		path string
		want string // route path, "" for none
	}{
		{"/", "/"},
		{"/x", "/"},
		{"/api", "/api"},
		{"/api/", "/api"},
		{"/api/x", "/api"},
		{"/apix", "/"},
		{"/api/v2", "/api/v2/"},
		{"/api/v2/", "/api/v2/"},
		{"/api/v2/users", "/api/v2/"},
		{"/api/v20", "/api"},
		{"/static", "/static/"},
		{"/staticfile", "/"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			_, r := table.lookup("app.example.com", tt.path)
			got := ""
			if r != nil {
				got = r.path
			}
			if got != tt.want {
				t.Errorf("route for %q = %v, want %v", tt.path, got, tt.want)
			}
		})
	}
	t.Run("no route", func(t *testing.T) {
		if _, r := table.lookup("other.org", "/elsewhere"); r != nil {
			t.Errorf("route = %v, want none", r.path)
		}
	})
}

func TestStrip(t *testing.T) {
	tests := []struct {
		route, path, want string
	}{
		{"/api", "/api/x", "/x"},
		{"/api", "/api", "/"},
		{"/api/", "/api/x/", "/x/"},
		{"/api/", "/api", "/"},
		{"/", "/x", "/x"},
	}
	for _, tt := range tests {
		t.Run(tt.route+" "+tt.path, func(t *testing.T) {
			r := &route{path: tt.route, prefix: strings.TrimSuffix(tt.route, "/")}
			if got := r.strip(tt.path); got != tt.want {
				t.Errorf("strip(%q) = %v, want %v", tt.path, got, tt.want)
			}
		})
	}
}

func TestCleanPath(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"/", "/"},
		{"/a/b", "/a/b"},
		{"/a/b/", "/a/b/"},
		{"/public/../admin", "/admin"},
		{"/public/../admin/", "/admin/"},
		{"//a//b", "/a/b"},
		{"/a/./b", "/a/b"},
		{"/a/.", "/a"},
		{"/a/..", "/"},
		{"/..", "/"},
		{"/../../etc/passwd", "/etc/passwd"},
		{"/a/.../b", "/a/.../b"},
		{"/a/.b/..c", "/a/.b/..c"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := cleanPath(tt.in); got != tt.want {
				t.Errorf("cleanPath(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  config.Config
		want string
	}{
		{
			name: "duplicate host",
			cfg: config.Config{Sites: []config.Site{
				cfgSite([]string{"a.example.com"}, respond("/", "1")),
				cfgSite([]string{"A.example.com."}, respond("/", "2")),
			}},
			want: "sites[1].hosts[0]: host \"a.example.com\" already served by sites[0]",
		},
		{
			name: "same prefix twice",
			cfg: config.Config{Sites: []config.Site{
				cfgSite([]string{"a.example.com"}, respond("/api", "1"), respond("/api/", "2")),
			}},
			want: "sites[0].routes[1]: path \"/api/\" matches the same requests as routes[0]",
		},
		{
			name: "bad upstream scheme",
			cfg:  config.Config{Sites: []config.Site{cfgSite([]string{"a.example.com"}, proxyTo("/", "ftp://x"))}},
			want: "scheme must be http, https, h2c or unix",
		},
		{
			name: "missing root",
			cfg: config.Config{Sites: []config.Site{cfgSite([]string{"a.example.com"},
				config.Route{Path: "/", Root: "/nonexistent/gatehouse"})}},
			want: "checking root",
		},
		{
			name: "missing ca",
			cfg: config.Config{Sites: []config.Site{cfgSite([]string{"a.example.com"},
				config.Route{Path: "/", Upstreams: []string{"https://x"}, CA: "/nonexistent/ca.pem"})}},
			want: "reading ca",
		},
		{
			name: "bad trusted proxy",
			cfg:  config.Config{TrustedProxies: []string{"10.0.0.0/33"}},
			want: "parsing trusted_proxies[0]",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile(&tt.cfg, Options{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Compile error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestLookupDoesNotAllocate(t *testing.T) {
	table := mustCompile(t, routingConfig())
	for _, host := range []string{"app.example.com", "APP.example.com:443", "a.example.net", "unknown.org"} {
		allocs := testing.AllocsPerRun(100, func() {
			table.lookup(host, "/api/v2/users")
			cleanPath("/api/v2/users/")
		})
		if allocs != 0 {
			t.Errorf("lookup(%q) allocs = %v, want 0", host, allocs)
		}
	}
}

// BenchmarkLookup measures routing a request: Host normalization, Site and
// Route lookup and the clean-path check. It must report 0 allocs/op.
func BenchmarkLookup(b *testing.B) {
	table := mustCompile(b, routingConfig())
	cases := []struct{ name, host, path string }{
		{"exact", "app.example.com", "/api/v2/users"},
		{"mixed-case-port", "App.Example.com:443", "/static/app.js"},
		{"wildcard", "x.example.net", "/"},
		{"catch-all", "unknown.org", "/only/here"},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p := cleanPath(c.path)
				if _, r := table.lookup(c.host, p); r == nil {
					b.Fatal("no route")
				}
			}
		})
	}
}
