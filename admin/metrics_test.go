package admin

import (
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/tlsmgr"
)

// fixedInventory is an inventory read from a slice, for the collector's
// edge cases (retired and duplicate entries) that a real manager only
// reaches after days.
type fixedInventory []tlsmgr.CertificateInfo

func (f fixedInventory) Certificates() []tlsmgr.CertificateInfo { return f }

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	srv := newServer(t, Options{Metrics: m})
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %d %s", resp.StatusCode, body)
	}
	return string(body)
}

func TestCertificateMetrics(t *testing.T) {
	notAfter := time.Date(2027, 2, 1, 12, 0, 0, 500e6, time.UTC)
	renewal := time.Date(2027, 1, 2, 0, 0, 0, 0, time.UTC)
	m := NewMetrics(MetricsOptions{Inventory: fixedInventory{
		{Names: []string{"app.example.com", "www.example.com"}, Issuer: "R13", Status: tlsmgr.StatusFailing, Failures: 3, NotAfter: notAfter, NextRenewal: renewal},
		// The replacement of the same name from the same Issuer, less
		// urgent: the first entry wins.
		{Names: []string{"app.example.com"}, Issuer: "R13", Status: tlsmgr.StatusValid, NotAfter: notAfter.Add(time.Hour)},
		{Names: []string{"old.example.com"}, Issuer: "R13", Status: tlsmgr.StatusRetired, NotAfter: notAfter},
		// No certificate yet: no expiry to report.
		{Names: []string{"new.example.com"}, Status: tlsmgr.StatusPending},
	}})
	out := scrape(t, m)
	for _, want := range []string{
		`gatehouse_certificate_not_after_seconds{issuer="R13",name="app.example.com"} 1.8014832005e+09`,
		`gatehouse_certificate_next_renewal_seconds{issuer="R13",name="app.example.com"} 1.798848e+09`,
		`gatehouse_certificate_failures{issuer="R13",name="app.example.com"} 3`,
		`gatehouse_certificate_status{issuer="R13",name="app.example.com",status="failing"} 1`,
		`gatehouse_certificate_status{issuer="R13",name="app.example.com",status="valid"} 0`,
		`gatehouse_certificate_status{issuer="",name="new.example.com",status="pending"} 1`,
		`gatehouse_certificate_status{issuer="",name="new.example.com",status="renewing"} 0`,
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("missing %s", want)
		}
	}
	if strings.Contains(out, "old.example.com") {
		t.Error("a retired certificate is exported")
	}
	for _, unknown := range []string{"next_renewal", "not_after"} {
		if strings.Contains(out, `gatehouse_certificate_`+unknown+`_seconds{issuer="",name="new.example.com"}`) {
			t.Errorf("the pending certificate's unknown %s is exported as a timestamp", unknown)
		}
	}
	if n := strings.Count(out, `gatehouse_certificate_status{issuer="R13",name="app.example.com",status="failing"}`); n != 1 {
		t.Errorf("app.example.com's status exported %d times, want once", n)
	}
}

func TestRequestMetrics(t *testing.T) {
	m := NewMetrics(MetricsOptions{})
	m.ObserveRequest("app.example.com", 200, 30*time.Millisecond)
	m.ObserveRequest("app.example.com", 204, 2*time.Second)
	m.ObserveRequest("app.example.com", 502, time.Millisecond)
	m.ObserveRequest("", 404, time.Millisecond)
	out := scrape(t, m)
	for _, want := range []string{
		`gatehouse_http_requests_total{code="2xx",site="app.example.com"} 2`,
		`gatehouse_http_requests_total{code="5xx",site="app.example.com"} 1`,
		`gatehouse_http_requests_total{code="4xx",site=""} 1`,
		`gatehouse_http_request_duration_seconds_bucket{code="2xx",site="app.example.com",le="0.05"} 1`,
		`gatehouse_http_request_duration_seconds_bucket{code="2xx",site="app.example.com",le="2.5"} 2`,
		`gatehouse_http_request_duration_seconds_count{code="2xx",site="app.example.com"} 2`,
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("missing %s", want)
		}
	}
	for _, re := range []string{`(?m)^go_goroutines \d+`, `(?m)^process_cpu_seconds_total `, `(?m)^go_build_info\{`} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("no match for %s: Go runtime, build or process metrics missing", re)
		}
	}
}

// TestObserveRequestAllocs guards the hot path: once a Site has been seen,
// counting a request allocates nothing.
func TestObserveRequestAllocs(t *testing.T) {
	m := NewMetrics(MetricsOptions{})
	m.ObserveRequest("app.example.com", 200, time.Millisecond)
	if n := testing.AllocsPerRun(1000, func() {
		m.ObserveRequest("app.example.com", 200, time.Millisecond)
		m.ObserveRequest("app.example.com", 503, time.Millisecond)
	}); n != 0 {
		t.Errorf("got %v allocations per request, want 0", n)
	}
}

func BenchmarkObserveRequest(b *testing.B) {
	m := NewMetrics(MetricsOptions{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.ObserveRequest("app.example.com", 200, time.Millisecond)
		}
	})
}

func TestEventMetrics(t *testing.T) {
	m := NewMetrics(MetricsOptions{Challenge: func(host string) string {
		if strings.HasPrefix(host, "*.") {
			return "dns-01"
		}
		return "http-01,tls-alpn-01"
	}})
	const le = "https://acme-v02.api.letsencrypt.org/directory"
	for _, e := range []tlsmgr.Event{
		{Type: tlsmgr.EventObtained, Names: []string{"a.example.com"}, Issuer: le, Duration: 3 * time.Second},
		{Type: tlsmgr.EventObtainFailed, Names: []string{"*.example.com"}, Issuer: le, Duration: 40 * time.Second},
		{Type: tlsmgr.EventRenewed, Names: []string{"a.example.com"}, Issuer: le},
		{Type: tlsmgr.EventRenewalFailed, Names: []string{"a.example.com"}, Issuer: le},
		{Type: tlsmgr.EventExpiring, Names: []string{"a.example.com"}, Issuer: le},
	} {
		m.ObserveEvent(e)
	}
	out := scrape(t, m)
	for _, want := range []string{
		`gatehouse_certificate_issuance_attempts_total{challenge="http-01,tls-alpn-01",issuer="` + le + `"} 1`,
		`gatehouse_certificate_issuance_attempts_total{challenge="dns-01",issuer="` + le + `"} 1`,
		`gatehouse_certificate_issuance_failures_total{challenge="dns-01",issuer="` + le + `"} 1`,
		`gatehouse_certificate_renewal_attempts_total{challenge="http-01,tls-alpn-01",issuer="` + le + `"} 2`,
		`gatehouse_certificate_renewal_failures_total{challenge="http-01,tls-alpn-01",issuer="` + le + `"} 1`,
		`gatehouse_acme_order_duration_seconds_count{issuer="` + le + `"} 2`,
		`gatehouse_acme_order_duration_seconds_bucket{issuer="` + le + `",le="5"} 1`,
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("missing %s", want)
		}
	}
	if strings.Contains(out, `gatehouse_certificate_issuance_failures_total{challenge="http-01,tls-alpn-01"`) {
		t.Error("a successful issuance counted as a failure")
	}
}

// TestHandshakeFailureMetrics checks gatehouse_tls_handshake_failures_total:
// every tlsmgr reason is exported from zero, and each failure counts once
// under its reason.
func TestHandshakeFailureMetrics(t *testing.T) {
	m := NewMetrics(MetricsOptions{})
	var counter tlsmgr.HandshakeCounter = m
	for range 2 {
		counter.HandshakeFailed(tlsmgr.ReasonUnknownName)
	}
	counter.HandshakeFailed(tlsmgr.ReasonEOF)
	counter.HandshakeFailed("made_up")
	out := scrape(t, m)
	for _, want := range []string{
		`gatehouse_tls_handshake_failures_total{reason="unknown_name"} 2`,
		`gatehouse_tls_handshake_failures_total{reason="eof"} 1`,
		`gatehouse_tls_handshake_failures_total{reason="made_up"} 1`,
		`gatehouse_tls_handshake_failures_total{reason="bad_sni"} 0`,
		`gatehouse_tls_handshake_failures_total{reason="timeout"} 0`,
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("missing %s", want)
		}
	}
}
