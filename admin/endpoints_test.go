package admin

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestEndpoints checks each Endpoint's method and path, and that Handler
// routes every one of them: the client calls what the server serves.
func TestEndpoints(t *testing.T) {
	h := Handler(Options{Addr: "127.0.0.1:2019"})
	for _, tc := range []struct {
		e            Endpoint
		method, path string
	}{
		{EndpointHealthz, "GET", "/healthz"},
		{EndpointReadyz, "GET", "/readyz"},
		{EndpointCertificates, "GET", "/certs"},
		{EndpointCertificate, "GET", "/certs/a%2Fb.example"},
		{EndpointRenew, "POST", "/certs/a%2Fb.example/renew"},
		{EndpointRevoke, "POST", "/certs/a%2Fb.example/revoke"},
		{EndpointReload, "POST", "/reload"},
		{EndpointRoutes, "GET", "/routes"},
		{EndpointFleet, "GET", "/fleet"},
		{EndpointBudget, "GET", "/budget"},
		{EndpointMetrics, "GET", "/metrics"},
		{EndpointDashboard, "GET", "/"},
	} {
		if m, p := tc.e.Method(), tc.e.Path("a/b.example"); m != tc.method || p != tc.path {
			t.Errorf("%s: got %s %s, want %s %s", tc.e, m, p, tc.method, tc.path)
			continue
		}
		// Unwired, the routes answer 503 or their page; an unrouted
		// call gets the mux's 404 or 405.
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(tc.method, "http://127.0.0.1:2019"+tc.path, nil))
		if w.Code == http.StatusMethodNotAllowed || w.Body.String() == "404 page not found\n" {
			t.Errorf("%s %s: not routed (%d %q)", tc.method, tc.path, w.Code, w.Body.String())
		}
	}
}
