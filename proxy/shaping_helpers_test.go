package proxy

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// tlsState marks a hand-built request as received over TLS.
var tlsState tls.ConnectionState

// newServer starts a real HTTP server running h, closed at the test's end.
func newServer(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// accessLine waits for an access line for which match is true and
// returns it. The line is written as the handler returns, which may be
// just after the client has the response.
func accessLine(t *testing.T, f *frontend, match func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		for _, l := range f.log.lines(t) {
			if l["msg"] == "request" && match(l) {
				return l
			}
		}
		select {
		case <-f.log.written:
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			t.Fatalf("no matching access line within 5s; log:\n%s", f.log.String())
		}
	}
}
