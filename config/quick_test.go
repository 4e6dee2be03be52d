package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestQuick checks the config `gatehouse proxy` serves: its Listeners and
// challenges follow the port, the issuer the -internal flag, and bad
// flags are the validation's problems.
func TestQuick(t *testing.T) {
	storage := t.TempDir()
	for _, tc := range []struct {
		name        string
		o           QuickOptions
		host        string
		http, https string
		challenges  []string
		issuer      string
		err         string
	}{
		{name: "port 443", o: QuickOptions{From: "app.example.com", To: []string{"http://127.0.0.1:8080"}},
			host: "app.example.com", http: ":80", https: ":443", challenges: []string{ChallengeHTTP01, ChallengeTLSALPN01}},
		{name: "scheme dropped", o: QuickOptions{From: "https://app.example.com", To: []string{"http://127.0.0.1:8080"}},
			host: "app.example.com", http: ":80", https: ":443", challenges: []string{ChallengeHTTP01, ChallengeTLSALPN01}},
		{name: "scheme and port", o: QuickOptions{From: "http://app.example.com:8443", To: []string{"http://127.0.0.1:8080"}},
			host: "app.example.com", http: "", https: ":8443", challenges: []string{ChallengeTLSALPN01}},
		// Another port: :80 is most likely not ours either.
		{name: "other port", o: QuickOptions{From: "app.example.com:8443", To: []string{"http://127.0.0.1:8080"}},
			host: "app.example.com", http: "", https: ":8443", challenges: []string{ChallengeTLSALPN01}},
		{name: "internal", o: QuickOptions{From: "app.internal", To: []string{"http://127.0.0.1:8080"}, Internal: true},
			host: "app.internal", http: ":80", https: ":443", challenges: []string{ChallengeHTTP01, ChallengeTLSALPN01}, issuer: IssuerInternal},
		{name: "bad upstream", o: QuickOptions{From: "app.example.com", To: []string{"ftp://x"}}, err: "sites[0].routes[0].upstreams[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Storage = storage
			cfg, err := Quick(tc.o)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %v, want a problem naming %s", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Admin != Off || cfg.Storage != storage || cfg.Listen.HTTP != tc.http || cfg.Listen.HTTPS != tc.https {
				t.Errorf("got admin %q, storage %q, listen %+v; want off, %q, http %q, https %q", cfg.Admin, cfg.Storage, cfg.Listen, storage, tc.http, tc.https)
			}
			if !slices.Equal(cfg.ACME.Challenges, tc.challenges) {
				t.Errorf("challenges: got %v, want %v", cfg.ACME.Challenges, tc.challenges)
			}
			if len(cfg.Sites) != 1 || !slices.Equal(cfg.Sites[0].Hosts, []string{tc.host}) || cfg.Sites[0].TLS.Issuer != tc.issuer {
				t.Fatalf("sites: got %+v, want one for %s with issuer %q", cfg.Sites, tc.host, tc.issuer)
			}
			if r := cfg.Sites[0].Routes; len(r) != 1 || r[0].Path != "/" || !slices.Equal(r[0].Upstreams, tc.o.To) {
				t.Errorf("routes: got %+v, want / to %v", r, tc.o.To)
			}
		})
	}
}

func TestQuickStorage(t *testing.T) {
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			if i := slices.Index(kv, k); i >= 0 {
				return kv[i+1]
			}
			return ""
		}
	}
	if got := QuickStorage(env("GATEHOUSE_STORAGE", "/data", "XDG_DATA_HOME", "/xdg")); got != "/data" {
		t.Errorf("with $GATEHOUSE_STORAGE: got %q, want /data", got)
	}
	want := filepath.Join("/xdg", "gatehouse")
	if os.Geteuid() == 0 {
		want = DefaultStorage
	}
	if got := QuickStorage(env("XDG_DATA_HOME", "/xdg")); got != want {
		t.Errorf("with $XDG_DATA_HOME only: got %q, want %q", got, want)
	}
}
