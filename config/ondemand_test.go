package config

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestOnDemandLoads checks a good on-demand config: the allow patterns are
// normalised, allow_file is resolved against the config's directory and
// the rate gets its defaults.
func TestOnDemandLoads(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "allowed.txt"), []byte("# customers\nshop.example.com\n\n*.Tenants.example.com.\n~[a-z]+\\.example\\.org\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "gatehouse.yaml")
	data := []byte(`
storage: ` + dir + `
on_demand:
  allow: [Shop.Example.COM., "*.customers.example.com", "~^x[0-9]+\\.example\\.net$"]
  allow_file: allowed.txt
  ask: http://127.0.0.1:9999/check?token=abc
sites:
  - hosts: ["*"]
    tls: {on_demand: true}
    routes: [{respond: {body: ok}}]
`)
	cfg, err := Parse(file, data)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	od := cfg.OnDemand
	if want := []string{"shop.example.com", "*.customers.example.com", `~^x[0-9]+\.example\.net$`}; !slices.Equal(od.Allow, want) {
		t.Errorf("allow: got %q, want %q", od.Allow, want)
	}
	if want := filepath.Join(dir, "allowed.txt"); od.AllowFile != want {
		t.Errorf("allow_file: got %q, want %q", od.AllowFile, want)
	}
	if od.Rate == nil || od.Rate.Burst != DefaultOnDemandBurst || od.Rate.Per != DefaultOnDemandPer {
		t.Errorf("rate: got %+v, want burst %d per %v", od.Rate, DefaultOnDemandBurst, DefaultOnDemandPer)
	}
	if got := cfg.Sites[0].TLS.IssuerFor("anything.example.com"); got != IssuerACME {
		t.Errorf("IssuerFor on an on-demand site: got %q, want %q", got, IssuerACME)
	}

	raw, err := os.ReadFile(od.AllowFile)
	if err != nil {
		t.Fatal(err)
	}
	pats, errs := ParseAllowFile(raw)
	if len(errs) > 0 {
		t.Fatalf("ParseAllowFile: %v", errs)
	}
	if want := []string{"shop.example.com", "*.tenants.example.com", `~[a-z]+\.example\.org`}; !slices.Equal(pats, want) {
		t.Errorf("allow_file patterns: got %q, want %q", pats, want)
	}
}

// TestOnDemandRateKept checks a rate written in full is kept as written.
func TestOnDemandRateKept(t *testing.T) {
	cfg, err := Parse("", []byte(`
storage: /tmp/x
on_demand: {allow: [a.example.com], rate: {burst: 3, per: 10s}}
sites:
  - hosts: ["*.example.com"]
    tls: {on_demand: true}
    routes: [{respond: {body: ok}}]
`))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if r := cfg.OnDemand.Rate; r.Burst != 3 || r.Per != 10*time.Second {
		t.Errorf("rate: got %+v, want burst 3 per 10s", r)
	}
}

// TestCompileAllowRegexpWhole checks a ~regexp must match the whole name,
// so "~shop" never allows "shop.attacker.example".
func TestCompileAllowRegexpWhole(t *testing.T) {
	re, err := CompileAllowRegexp(`shop|store`)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{"shop": true, "store": true, "shop.attacker.example": false, "xstore": false} {
		if got := re.MatchString(name); got != want {
			t.Errorf("match %q: got %v, want %v", name, got, want)
		}
	}
}
