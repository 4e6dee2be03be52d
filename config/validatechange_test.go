package config

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// Issue 12: ValidateChange skips the Sites a valid config had unchanged,
// and finds what Validate finds.
func TestValidateChangeAgreesWithValidate(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	certPEM, err := os.ReadFile("../examples/certs/static.example.com.crt")
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile("../examples/certs/static.example.com.key")
	if err != nil {
		t.Fatal(err)
	}
	for f, data := range map[string][]byte{cert: certPEM, key: keyPEM} {
		if err := os.WriteFile(f, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	prev, err := Parse("prev.yaml", []byte(`listen: {https: ":8443"}
admin: "off"
sites:
  - hosts: [a.localhost]
    routes: [{upstreams: ["http://10.0.0.1:80"]}]
  - hosts: [b.localhost, c.localhost]
    routes: [{respond: {body: b}}, {path: /api, upstreams: ["http://10.0.0.2:80"], health: {path: /h}}]
  - hosts: [static.localhost]
    tls: {cert: `+cert+`, key: `+key+`}
    routes: [{respond: {body: s}}]
`))
	if err != nil {
		t.Fatal(err)
	}
	clone := func() *Config {
		c := *prev
		c.Sites = slices.Clone(prev.Sites)
		return &c
	}
	for _, tc := range []struct {
		name   string
		change func(c *Config)
		bad    bool
	}{{
		name:   "unchanged",
		change: func(*Config) {},
	}, {
		name:   "a changed Site's problem",
		change: func(c *Config) { c.Sites[1].Routes = []Route{{Path: "api", Respond: &Respond{Status: 200}}} },
		bad:    true,
	}, {
		name: "a new Site on an unchanged Site's host, after it",
		change: func(c *Config) {
			c.Sites = append(c.Sites, c.Sites[0])
			c.Sites[3].Routes = []Route{{Path: "/", Respond: &Respond{Status: 200}}}
		},
		bad: true,
	}, {
		name: "a new Site on an unchanged Site's host, before it",
		change: func(c *Config) {
			s := c.Sites[1]
			s.Hosts = []string{"c.localhost"}
			s.Routes = []Route{{Path: "/", Respond: &Respond{Status: 200}}}
			c.Sites = append([]Site{s}, c.Sites...)
		},
		bad: true,
	}, {
		name:   "an unchanged Site whose key file is gone",
		change: func(*Config) { _ = os.Remove(key) },
		bad:    true,
	}, {
		name:   "a change outside the Sites",
		change: func(c *Config) { c.Timeouts.Dial = -1 },
		bad:    true,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			c := clone()
			tc.change(c)
			want, got := c.Validate(), c.ValidateChange(prev)
			if (want != nil) != tc.bad {
				t.Fatalf("Validate: %v, want problems: %v", want, tc.bad)
			}
			if errString(got) != errString(want) {
				t.Errorf("ValidateChange:\n%v\nwant as Validate:\n%v", got, want)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}
