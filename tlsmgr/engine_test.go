package tlsmgr

import (
	"log/slog"
	"slices"
	"testing"

	"github.com/gatehouse-proxy/gatehouse/config"
)

func TestACMESettings(t *testing.T) {
	for _, tt := range []struct {
		name                string
		listen              config.Listen
		challenges          []string
		wantHost            string
		wantHTTP, wantHTTPS int
		wantHTTP01, wantALP bool
	}{
		{name: "defaults", listen: config.Listen{HTTP: ":80", HTTPS: ":443"}, wantHTTP: 80, wantHTTPS: 443, wantHTTP01: true, wantALP: true},
		{name: "loopback ports", listen: config.Listen{HTTP: "127.0.0.1:8080", HTTPS: "127.0.0.1:8443"}, wantHost: "127.0.0.1", wantHTTP: 8080, wantHTTPS: 8443, wantHTTP01: true, wantALP: true},
		{name: "http off", listen: config.Listen{HTTPS: "[::1]:443"}, wantHost: "::1", wantHTTPS: 443, wantALP: true},
		{name: "only http-01", listen: config.Listen{HTTP: ":80", HTTPS: ":443"}, challenges: []string{config.ChallengeHTTP01}, wantHTTP: 80, wantHTTPS: 443, wantHTTP01: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, err := newACMESettings(&config.Config{Listen: tt.listen, ACME: config.ACME{Challenges: tt.challenges}})
			if err != nil {
				t.Fatal(err)
			}
			got := []any{s.listenHost, s.httpPort, s.httpsPort, s.http01, s.tlsALPN01}
			want := []any{tt.wantHost, tt.wantHTTP, tt.wantHTTPS, tt.wantHTTP01, tt.wantALP}
			if !slices.Equal(got, want) {
				t.Errorf("host, ports, http-01, tls-alpn-01: got %v, want %v", got, want)
			}
		})
	}
	if _, err := newACMESettings(&config.Config{ACME: config.ACME{CARoot: "/nonexistent.pem"}}); err == nil {
		t.Error("missing acme.ca_root: got nil error, want one")
	}
}

func TestAutocertHostPolicy(t *testing.T) {
	e, err := newAutocertEngine(offlineSettings(t), fastOptions(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer e.close()
	e.manage([]string{"a.test"})
	for host, ok := range map[string]bool{"a.test": true, "A.test": true, "a.test:8080": true, "b.test": false} {
		if err := e.hostPolicy(t.Context(), host); (err == nil) != ok {
			t.Errorf("hostPolicy(%q): got %v, want allowed %v", host, err, ok)
		}
	}
	e.manage(nil)
	if err := e.hostPolicy(t.Context(), "a.test"); err == nil {
		t.Error("hostPolicy(a.test) after removal: got nil, want refused")
	}
}

func TestDecodeEABKey(t *testing.T) {
	for _, k := range []string{"aGVsbG8_d29ybGQ", "aGVsbG8_d29ybGQ="} {
		if b, err := decodeEABKey(k); err != nil || string(b) != "hello?world" {
			t.Errorf("decodeEABKey(%q): got %q, %v", k, b, err)
		}
	}
	if _, err := decodeEABKey("not base64!"); err == nil {
		t.Error("decodeEABKey of garbage: got nil error")
	}
}
