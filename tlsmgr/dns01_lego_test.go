package tlsmgr

import (
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// TestLegoEnvProviderCredentials builds PowerDNS's provider, one of those
// built from lego's environment variables: its api_key reaches the API
// (PowerDNS's provider asks the API's version as it is built; an HTTP
// server here answers as PowerDNS's /api does), and the variables are put
// back as they were once it is built.
func TestLegoEnvProviderCredentials(t *testing.T) {
	var gotKey atomic.Value
	gotKey.Store("")
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api" {
			gotKey.Store(r.Header.Get("X-API-Key"))
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`[{"version": 1, "url": "/api/v1"}]`))
	}))
	t.Cleanup(api.Close)
	t.Setenv("PDNS_TTL", "99") // the operator's own environment
	os.Unsetenv("PDNS_API_KEY")

	d := &config.DNS{Provider: "pdns", PropagationTimeout: time.Minute,
		Credentials: map[string]string{"api_key": "secret-key", "api_url": api.URL, "ttl": "300"}}
	p, interval, err := newDNSProvider(d)
	if err != nil || p == nil {
		t.Fatalf("newDNSProvider(pdns): %v", err)
	}
	if got := gotKey.Load(); got != "secret-key" {
		t.Errorf("X-API-Key at PowerDNS's API: got %q, want the api_key credential", got)
	}
	if interval <= 0 {
		t.Errorf("polling interval: got %v, want the provider's", interval)
	}
	if v, set := os.LookupEnv("PDNS_API_KEY"); set {
		t.Errorf("PDNS_API_KEY after building: %q, want it unset again", v)
	}
	if got := os.Getenv("PDNS_TTL"); got != "99" {
		t.Errorf("PDNS_TTL after building: got %q, want the environment's 99 back", got)
	}
}

// TestLegoEnvProviderErrors builds each default lego provider without the
// credentials it needs: the error names credentials keys, as the config
// has them, rather than lego's environment variables. gcloud is left out:
// without credentials it asks the cloud metadata server.
func TestLegoEnvProviderErrors(t *testing.T) {
	for _, name := range config.DefaultLegoDNSProviders {
		if name == "gcloud" {
			continue
		}
		t.Run(name, func(t *testing.T) {
			creds, _ := config.LookupDNSProvider(name)
			for _, c := range creds {
				if _, set := os.LookupEnv(c.Env); set {
					t.Setenv(c.Env, "")
					os.Unsetenv(c.Env)
				}
			}
			_, _, err := newDNSProvider(&config.DNS{Provider: name})
			if err == nil {
				t.Fatalf("newDNSProvider(%s) without credentials: no error", name)
			}
			t.Log(err)
			for _, c := range creds {
				if strings.Contains(err.Error(), c.Env) {
					t.Errorf("error %q names lego's variable %s, want credentials.%s", err, c.Env, c.Key)
				}
			}
		})
	}
}
