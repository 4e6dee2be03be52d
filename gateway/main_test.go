package gateway

import (
	"os"
	"testing"

	"github.com/caddyserver/certmagic"
)

// TestMain lifts certmagic's own throttle (10 orders per 10 s for each CA
// and account, process-wide) for this package's tests: their CAs are
// in-process Pebbles, and TestMigrate's hundred orders would otherwise take
// a minute and a half at one a second. It is set before any test starts, as
// certmagic reads it when an issuer first orders.
func TestMain(m *testing.M) {
	certmagic.RateLimitEventsWindow = 0
	os.Exit(m.Run())
}
