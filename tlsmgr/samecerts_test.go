package tlsmgr

import (
	"slices"
	"testing"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// Issue 12: an Apply keeps the running table only when no host, no
// Site's TLS and no certificate setting changed, and no file is to be
// read again.
func TestSameCertificates(t *testing.T) {
	base := func() *config.Config {
		return &config.Config{Sites: []config.Site{
			{Hosts: []string{"a.localhost"}, Routes: []config.Route{{Path: "/", Upstreams: []string{"http://10.0.0.1:80"}}}},
			{Hosts: []string{"b.example.com", "c.example.com"}, Routes: []config.Route{{Path: "/"}}},
		}}
	}
	for _, tc := range []struct {
		name   string
		change func(c *config.Config)
		same   bool
	}{
		{"unchanged", func(*config.Config) {}, true},
		{"a Route's Upstream", func(c *config.Config) {
			c.Sites[0].Routes = []config.Route{{Path: "/", Upstreams: []string{"http://10.0.0.2:80"}}}
		}, true},
		{"a host", func(c *config.Config) { c.Sites[1].Hosts = []string{"b.example.com", "d.example.com"} }, false},
		{"a Site more", func(c *config.Config) { c.Sites = append(c.Sites, config.Site{Hosts: []string{"e.localhost"}}) }, false},
		{"Sites in another order", func(c *config.Config) { slices.Reverse(c.Sites) }, false},
		{"an issuer", func(c *config.Config) { c.Sites[0].TLS.Issuer = config.IssuerACME }, false},
		{"a Certificate from files", func(c *config.Config) { c.Sites[0].TLS.Cert, c.Sites[0].TLS.Key = "c.pem", "k.pem" }, false},
		{"acme", func(c *config.Config) { c.ACME.Email = "ops@example.com" }, false},
		{"on_demand", func(c *config.Config) { c.OnDemand = &config.OnDemand{Allow: []string{"*.example.com"}} }, false},
		{"retire_after", func(c *config.Config) { c.RetireAfter = 1 }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := base(), base()
			tc.change(b)
			if got := sameCertificates(a, b); got != tc.same {
				t.Errorf("got %v, want %v", got, tc.same)
			}
		})
	}
	// An allow_file is read again at every Apply.
	a, b := base(), base()
	a.OnDemand = &config.OnDemand{AllowFile: "names.txt"}
	b.OnDemand = &config.OnDemand{AllowFile: "names.txt"}
	if sameCertificates(a, b) {
		t.Error("got true with an on_demand.allow_file, want false")
	}
}
