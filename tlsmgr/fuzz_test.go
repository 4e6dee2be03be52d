package tlsmgr

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// FuzzSNIHost checks SNI normalisation: a name it accepts is lower-case
// ASCII without a trailing dot or port, a host name or a canonical IP,
// and normalising it again gives it back unchanged.
func FuzzSNIHost(f *testing.F) {
	for _, s := range []string{"localhost", "LocalHost.", "localhost:28443", "a.example.com:0", "[::1]:443", "::1", "::ffff:10.0.0.1",
		"10.0.0.1:80", "a..b", "a..", "-a.b", "xn--bcher-kva.example", "bücher.example", "a_b.internal", "a.b.", ":443", "[::1]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sni string) {
		name, ok := sniHost(sni)
		if !ok {
			return
		}
		if a, err := netip.ParseAddr(name); err == nil {
			if a.String() != name || a.Is4In6() || a.Zone() != "" {
				t.Fatalf("sniHost(%q) = %q, not a canonical IP", sni, name)
			}
		} else if !validHostName(name) || strings.HasSuffix(name, ".") || name != strings.ToLower(name) {
			t.Fatalf("sniHost(%q) = %q, not a normalised host name", sni, name)
		}
		if again, ok := sniHost(name); !ok || again != name {
			t.Fatalf("sniHost(%q) = %q; of that: %q %v", sni, name, again, ok)
		}
		if n := normalizeHost(name); n != name {
			t.Fatalf("normalizeHost(%q) = %q, want it unchanged", name, n)
		}
	})
}

// FuzzAllowMatch checks on-demand allow patterns (exact names and
// one-label wildcards) against a plain reading of them, for names as SNI
// brings them (any case, a trailing dot, a port).
func FuzzAllowMatch(f *testing.F) {
	for _, c := range [][2]string{
		{"*.customers.example.com", "a.customers.example.com"}, {"*.customers.example.com", "a.b.customers.example.com"},
		{"*.customers.example.com", "customers.example.com"}, {"Shop.Example.COM.", "shop.example.com"},
		{"shop.example.com", "SHOP.example.com.:443"}, {"*.x.test", ".x.test"}, {"a.test", "a..test"},
	} {
		f.Add(c[0], c[1])
	}
	f.Fuzz(func(t *testing.T, pattern, sni string) {
		if strings.HasPrefix(strings.TrimSpace(pattern), "~") {
			return // regexps are Go's
		}
		set, err := compileAllowSet([]string{pattern})
		if err != nil {
			return
		}
		name, ok := sniHost(sni)
		if !ok {
			return
		}
		p := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(pattern)), ".")
		want := name == p
		if parent, wild := strings.CutPrefix(p, "*."); wild {
			label, rest, found := strings.Cut(name, ".")
			want = found && label != "" && rest == parent
		}
		if got := set.match(name); got != want {
			t.Fatalf("pattern %q (normalised %q), name %q (from SNI %q): match %v, want %v", pattern, config.NormalizeAllowPattern(pattern), name, sni, got, want)
		}
	})
}
