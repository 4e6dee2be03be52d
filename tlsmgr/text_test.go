package tlsmgr

import (
	"strings"
	"testing"
	"time"
)

// TestCertsTableColours checks the time to expiry is coloured by the
// status when asked (on a terminal) and never otherwise: a 6-day
// certificate with 3 days left, not yet at its renewal point, is green,
// not flagged as urgent (traefik#12946 flags every one); a 24-hour one
// shows its hours rather than "0" days.
func TestCertsTableColours(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	certs := []CertificateInfo{
		{Names: []string{"valid.test"}, Source: "acme", Status: StatusValid, NotAfter: now.Add(60 * 24 * time.Hour)},
		{Names: []string{"short.test"}, Source: "acme", Status: StatusValid, NotBefore: now.Add(-3 * 24 * time.Hour), NotAfter: now.Add(3 * 24 * time.Hour)},
		{Names: []string{"day.internal"}, Source: "internal", Status: StatusValid, NotAfter: now.Add(23*time.Hour + 30*time.Minute)},
		{Names: []string{"expiring.test"}, Source: "acme", Status: StatusExpiring, NotAfter: now.Add(20 * 24 * time.Hour)},
		{Names: []string{"expired.test"}, Source: "acme", Status: StatusExpired, NotAfter: now.Add(-36 * time.Hour)},
		{Names: []string{"leafless.internal"}, Source: "internal", Status: StatusValid},
	}
	var b strings.Builder
	WriteCertificates(&b, certs, now, true)
	for _, want := range []string{green + "60d" + reset, green + "3d" + reset, green + "23h" + reset, yellow + "20d" + reset, red + "-36h" + reset} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("coloured table lacks %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	WriteCertificates(&b, certs, now, false)
	if strings.Contains(b.String(), "\x1b[") || !strings.Contains(b.String(), "expired.test") {
		t.Errorf("plain table:\n%s", b.String())
	}
}
