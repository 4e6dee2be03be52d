package tlsmgr

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr/pebbletest"
)

// TestZeroSSLAPIKeyEAB registers with a CA that requires an external
// account binding (Pebble, as ZeroSSL does) from eab.api_key alone: the
// binding comes from the API ZeroSSL runs for that (an HTTP server here
// that answers as ZeroSSL's /acme/eab-credentials does, since ZeroSSL's
// cannot run offline), the certificate is issued, and a restart on the
// same storage does not ask the API again. A key the API refuses makes New
// fail, saying so.
func TestZeroSSLAPIKeyEAB(t *testing.T) {
	skipShort(t)
	t.Parallel()
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	mac := base64.RawURLEncoding.EncodeToString(b)
	var calls atomic.Int32
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.Method != http.MethodPost || r.URL.Path != "/acme/eab-credentials" {
			http.NotFound(w, r)
			return
		}
		if r.Header.Get("Authorization") != "ApiKey good-key" {
			// ZeroSSL answers errors with 200 and success false.
			_ = json.NewEncoder(w).Encode(map[string]any{"success": false, "error": map[string]any{"code": 101, "type": "invalid_access_key"}})
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"success": true, "eab_kid": "kid-from-api", "eab_hmac_key": mac})
	}))
	t.Cleanup(api.Close)

	g := startPebbleGatehouse(t, pebbletest.Options{EAB: map[string]string{"kid-from-api": mac}})
	g.acme.EAB = &config.EAB{APIKey: "good-key"}
	opts := fastOptions()
	opts.zeroSSLAPI = api.URL
	m := g.start(t, g.acmeConfig("zerossl-key.test"), opts)
	g.waitForCert(t, "zerossl-key.test", "", 30*time.Second)
	if got := calls.Load(); got != 1 {
		t.Errorf("API calls: got %d, want 1", got)
	}
	_ = m.Close()

	api.Close() // the binding is in storage now
	g.start(t, g.acmeConfig("zerossl-key.test", "second.zerossl-key.test"), opts)
	g.waitForCert(t, "second.zerossl-key.test", "", 30*time.Second)
	if got := calls.Load(); got != 1 {
		t.Errorf("API calls after the restart: got %d, want still 1", got)
	}

	refusing := httptest.NewServer(api.Config.Handler)
	t.Cleanup(refusing.Close)
	opts.zeroSSLAPI = refusing.URL
	g.acme.EAB = &config.EAB{APIKey: "wrong-key"}
	_, err := newManager(t.Context(), g.config(t.TempDir(), g.acme, "refused.zerossl-key.test"), nil, opts)
	if err == nil || !strings.Contains(err.Error(), "eab.api_key") || !strings.Contains(err.Error(), "invalid_access_key") {
		t.Errorf("New with a refused API key: got %v, want an error naming eab.api_key and the API's reason", err)
	}
}
