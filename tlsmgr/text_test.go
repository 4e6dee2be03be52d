package tlsmgr

import (
	"strings"
	"testing"
	"time"
)

// TestCertsTableColours checks days left are coloured by urgency when
// asked (on a terminal) and never otherwise; moved from cmd/gatehouse
// with WriteCertificates.
func TestCertsTableColours(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	certs := []CertificateInfo{
		{Names: []string{"valid.test"}, Source: "acme", Status: StatusValid, NotAfter: now.Add(60 * 24 * time.Hour)},
		{Names: []string{"expiring.test"}, Source: "acme", Status: StatusExpiring, NotAfter: now.Add(20 * 24 * time.Hour)},
		{Names: []string{"expired.test"}, Source: "acme", Status: StatusExpired, NotAfter: now.Add(-36 * time.Hour)},
		{Names: []string{"leafless.internal"}, Source: "internal", Status: StatusValid},
	}
	var b strings.Builder
	WriteCertificates(&b, certs, now, true)
	for _, want := range []string{green + "60" + reset, yellow + "20" + reset, red + "-2" + reset} {
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
