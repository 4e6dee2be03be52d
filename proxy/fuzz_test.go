package proxy

import (
	"strings"
	"testing"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// refSites is the config FuzzLookup routes by, as the simple matcher
// below reads it: each Site's hosts and Route paths.
var refSites = []struct{ hosts, paths []string }{
	{[]string{"app.example.com", "WWW.example.com."}, []string{"/", "/api", "/api/v2/", "/static/"}},
	{[]string{"*.example.net"}, []string{"/", "/a/b/"}},
	{[]string{"exact.example.net"}, []string{"/x"}},
	{[]string{"::1", "10.0.0.1"}, []string{"/"}},
	{[]string{"*"}, []string{"/only/"}},
}

// refLookup is routing written as plainly as it can be: the name of the
// Site serving host (its first host, normalised) and the path of the
// Route for the clean path p, "" for none.
func refLookup(host, p string) (site, route string) {
	h := host
	if inner, ok := strings.CutPrefix(h, "["); ok && strings.Contains(inner, "]") {
		h, _, _ = strings.Cut(inner, "]")
		if strings.Count(h, ":") < 2 {
			h = ""
		}
	} else if strings.Count(h, ":") == 1 {
		h, _, _ = strings.Cut(h, ":")
	}
	h = strings.TrimSuffix(h, ".")
	valid := h != "" && len(h) <= maxHostLen && !strings.HasPrefix(h, ".") && !strings.HasSuffix(h, ".") && !strings.Contains(h, "..")
	h = asciiLower(h)
	pick := -1
	for pass := 0; pass < 3 && pick < 0 && valid; pass++ {
		for i, s := range refSites {
			for _, c := range s.hosts {
				c = strings.TrimSuffix(strings.ToLower(c), ".")
				switch {
				case pass == 0 && c == h,
					pass == 1 && strings.HasPrefix(c, "*.") && strings.Contains(h, ".") && !strings.HasPrefix(h, ".") && h[strings.IndexByte(h, '.')+1:] == c[2:]:
					pick = i
				}
			}
			if pick >= 0 {
				break
			}
		}
	}
	if pick < 0 {
		pick = len(refSites) - 1 // the catch-all
	}
	s := refSites[pick]
	best := -1
	for _, rp := range s.paths {
		pre := strings.TrimSuffix(rp, "/")
		if (p == pre || strings.HasPrefix(p, pre+"/")) && len(pre) > best {
			best, route = len(pre), rp
		}
	}
	return strings.TrimSuffix(strings.ToLower(s.hosts[0]), "."), route
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// FuzzLookup checks the compiled Table against refLookup for arbitrary
// Host headers and paths, and that normalising a host twice changes
// nothing.
func FuzzLookup(f *testing.F) {
	for _, h := range []string{"app.example.com", "App.Example.COM:443", "www.example.com.", "x.example.net", "exact.example.net",
		"a.b.example.net", "[::1]:8443", "10.0.0.1", "unknown.org", "a..", "..", ".example.net", "x..example.net", "[a:b]", ""} {
		f.Add(h, "/api/v2/users")
	}
	f.Add("app.example.com", "/apix")
	f.Add("x.example.net", "/a/b")
	cfg := &config.Config{}
	for _, s := range refSites {
		var routes []config.Route
		for _, p := range s.paths {
			routes = append(routes, respond(p, p))
		}
		cfg.Sites = append(cfg.Sites, cfgSite(s.hosts, routes...))
	}
	table := mustCompile(f, cfg)
	f.Fuzz(func(t *testing.T, host, path string) {
		if !strings.HasPrefix(path, "/") {
			return
		}
		p := cleanPath(path)
		s, r := table.lookup(host, p)
		wantSite, wantRoute := refLookup(host, p)
		gotRoute := ""
		if r != nil {
			gotRoute = r.path
		}
		if s == nil || s.name != wantSite || gotRoute != wantRoute {
			name := "<nil>"
			if s != nil {
				name = s.name
			}
			t.Fatalf("lookup(%q, %q): got site %q route %q, want %q %q", host, p, name, gotRoute, wantSite, wantRoute)
		}
		var b1, b2 [maxHostLen]byte
		if n := normalizeHost(b1[:0], host); n != nil {
			if again := normalizeHost(b2[:0], string(n)); string(again) != string(n) {
				t.Fatalf("normalizeHost(%q) = %q, again %q", host, n, again)
			}
		}
	})
}
