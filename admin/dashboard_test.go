package admin

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"html"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode"

	"github.com/gatehouse-proxy/gatehouse/tlsmgr"
)

// fixedCerts serves a fixed inventory and refuses lifecycle calls, for
// rendering tests that need certificates in states a real manager reaches
// only after weeks.
type fixedCerts []tlsmgr.CertificateInfo

func (f fixedCerts) Certificates() []tlsmgr.CertificateInfo {
	return append([]tlsmgr.CertificateInfo(nil), f...)
}
func (fixedCerts) Renew(context.Context, string, bool) error { return tlsmgr.ErrUnknownCertificate }
func (fixedCerts) Revoke(context.Context, string, string) error {
	return tlsmgr.ErrUnknownCertificate
}

func getPage(t *testing.T, url string) (http.Header, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	return resp.Header, string(body)
}

// TestDashboardTimeline checks where the marks land on each bar, that the
// most urgent certificates lead, and that text from a CA's error cannot
// inject markup.
func TestDashboardTimeline(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	issued := now.Add(-10 * day)
	certs := fixedCerts{
		{Names: []string{"ok.example.com", "www.example.com"}, Source: "acme", Issuer: "R13", Status: tlsmgr.StatusValid,
			NotBefore: issued, NotAfter: issued.Add(90 * day), NextRenewal: issued.Add(60 * day), RenewalReason: "ari"},
		{Names: []string{"bad.example.com"}, Source: "acme", Status: tlsmgr.StatusFailing, Failures: 2,
			LastError: `<script>alert("x")</script> CAA forbids`, LastAttempt: now.Add(-time.Hour)},
		{Names: []string{"old.example.com"}, Source: "acme", Issuer: "R13", Status: tlsmgr.StatusExpired,
			NotBefore: now.Add(-100 * day), NotAfter: now.Add(-10 * day)},
		{Names: []string{"quiet.internal"}, Source: "internal", Status: tlsmgr.StatusPending},
	}
	srv := newServer(t, Options{Certificates: certs, now: func() time.Time { return now }})
	header, page := getPage(t, srv.URL+"/")

	if ct := header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	if csp := header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
	if strings.Contains(page, "<script") {
		t.Error("the page carries a script (or an unescaped one from a CA error)")
	}
	if !strings.Contains(page, "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; CAA forbids") {
		t.Error("the failing certificate's error is not shown escaped")
	}

	rows := regexp.MustCompile(`(?s)<tr class="cert ([a-z]+)"[^>]*>(.*?)</tr>`).FindAllStringSubmatch(page, -1)
	var order []string
	for _, r := range rows {
		order = append(order, r[1])
	}
	if strings.Join(order, ",") != "expired,failing,pending,valid" {
		t.Fatalf("row order: got %v, want expired, failing, pending, valid", order)
	}
	ok := rows[3][2]
	for _, want := range []string{
		`<span class="mark today" style="left: 11.1%"`,
		`<span class="mark renewal" style="left: 66.7%"`,
		`<span class="elapsed" style="width: 11.1%"`,
		`aria-label="issued 2026-11-18 12:00, expires 2027-02-16 12:00, renewal due 2027-01-17 12:00; today is 11.1% of the way through its lifetime"`,
		`renews 2027-01-17 12:00 (ari)`,
		`in 80 days`,
		`also www.example.com`,
	} {
		if !strings.Contains(ok, want) {
			t.Errorf("ok.example.com row lacks %s\n%s", want, ok)
		}
	}
	if bad := rows[1][2]; !strings.Contains(bad, ">failing<") || !strings.Contains(bad, "2 failed attempts in a row") || !strings.Contains(bad, "not issued yet") {
		t.Errorf("bad.example.com row:\n%s", bad)
	}
	if old := rows[0][2]; !strings.Contains(old, `style="left: 100.0%"`) || !strings.Contains(old, "expired 10 days ago") {
		t.Errorf("old.example.com row: want today at the end of the bar and the days since expiry\n%s", old)
	}
	if pending := rows[2][2]; !strings.Contains(pending, `<span class="badge status-pending">pending</span>`) || !strings.Contains(pending, "not issued yet") {
		t.Errorf("quiet.internal row: want a pending badge and no timeline\n%s", pending)
	}
	for _, s := range []tlsmgr.Status{tlsmgr.StatusFailing, tlsmgr.StatusPending} {
		if !strings.Contains(page, `<strong>1</strong><span class="badge status-`+string(s)+`">`+string(s)+`</span>`) {
			t.Errorf("no summary count of %s certificates", s)
		}
	}
}

func TestDashboardUpstreams(t *testing.T) {
	srv := newServer(t, Options{Upstreams: func() []Upstream {
		return []Upstream{
			{Site: "a.example.com", Route: "/", URL: "http://10.0.0.1:80", Healthy: true},
			{Site: "b.example.com", Route: "/api/", URL: "http://10.0.0.2:80", Reason: "health check: status 503", Failures: 4},
		}
	}})
	_, page := getPage(t, srv.URL+"/")
	a := strings.Index(page, "a.example.com")
	b := strings.Index(page, "b.example.com")
	if a < 0 || b < 0 || b > a {
		t.Errorf("want the Site with an Upstream down (b) before the healthy one (a): b at %d, a at %d", b, a)
	}
	if !regexp.MustCompile(`(?s)http://10.0.0.2:80</code>.*?health-down">down</span><div class="meta">health check: status 503</div>`).MatchString(page) {
		t.Error("the down Upstream is not marked down with its reason")
	}
	if !strings.Contains(page, "Certificate management is not running.") {
		t.Error("without certificate management the page should say so")
	}
}

// TestDashboardFleet checks the fleet table: every instance with its state,
// the one behind and the one gone flagged (issue 11).
func TestDashboardFleet(t *testing.T) {
	h := Handler(Options{Addr: "127.0.0.1:2019", Fleet: func(context.Context) (FleetStatus, error) {
		return FleetStatus{ConfigRevision: 9, Instances: []FleetInstance{
			{Name: "edge-1", ConfigRevision: 9, Certificates: 3, State: FleetUp},
			{Name: "edge-2", ConfigRevision: 7, LastError: "fleet config revision 9 refused", State: FleetBehind},
			{Name: "edge-3", ConfigRevision: 9, State: FleetGone},
		}}, nil
	}})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "http://127.0.0.1:2019/", nil))
	body := w.Body.String()
	for _, want := range []string{
		"Shared config revision 9",
		`<tr class="instance up" data-state="up">`,
		`<td class="name">edge-2`,
		`<span class="badge state-behind">behind</span><div class="error" role="note"><span class="visually-hidden">Last error: </span>fleet config revision 9 refused</div>`,
		`<tr class="instance gone" data-state="gone">`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the dashboard lacks %q", want)
		}
	}

	// /fleet answers the same, as JSON.
	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "http://127.0.0.1:2019/fleet", nil))
	var st FleetStatus
	if err := json.Unmarshal(w.Body.Bytes(), &st); err != nil || len(st.Instances) != 3 || st.Instances[1].State != FleetBehind {
		t.Errorf("GET /fleet: %d %s (%v)", w.Code, w.Body.String(), err)
	}
}

// TestDashboardLocalCA checks the local CA section: the fingerprint, and
// with a share URL a QR code (a PNG data: URL the page's CSP allows) that
// decodes back to that URL.
func TestDashboardLocalCA(t *testing.T) {
	const url = "http://nas.home.arpa/.well-known/gatehouse/root.crt"
	ca := LocalCA{Subject: "gatehouse local CA root", Fingerprint: "AB:CD", ShareURL: url}
	srv := newServer(t, Options{LocalCA: func() LocalCA { return ca }})
	header, page := getPage(t, srv.URL+"/")
	if csp := header.Get("Content-Security-Policy"); !strings.Contains(csp, "img-src data:") {
		t.Errorf("Content-Security-Policy %q does not allow the QR code's data: URL", csp)
	}
	if !strings.Contains(page, `<code id="root-fingerprint" class="fingerprint">AB:CD</code>`) {
		t.Error("no fingerprint")
	}
	m := regexp.MustCompile(`<img id="root-qr" src="data:image/png;base64,([^"]+)"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no QR code image:\n%s", page)
	}
	data, err := base64.StdEncoding.DecodeString(html.UnescapeString(m[1]))
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		t.Fatal(err)
	}
	res, err := qrcode.NewQRCodeReader().Decode(bmp, nil)
	if err != nil || res.GetText() != url {
		t.Errorf("QR code decodes to %v (%v), want %q", res, err, url)
	}

	ca.ShareURL = ""
	_, page = getPage(t, srv.URL+"/")
	if strings.Contains(page, `id="root-qr"`) || !strings.Contains(page, "local_ca: {share: true}") {
		t.Error("without a share URL: want no QR code and the hint to share")
	}
}

// TestDashboardBudget checks the rate-limit budget table: spent limits
// first and flagged, limits without a maximum shown only when used, and a
// budget that cannot be read said so.
func TestDashboardBudget(t *testing.T) {
	frees := time.Date(2026, 12, 8, 12, 0, 0, 0, time.UTC)
	lines := []tlsmgr.BudgetLine{
		{Issuer: "https://acme.test/dir", Limit: tlsmgr.LimitOrders, Window: "3h", Key: "ops@example.org", Max: 300, Used: 12, OnDemandUsed: 4, Remaining: 288, OnDemandRemaining: 146},
		{Issuer: "https://acme.test/dir", Limit: tlsmgr.LimitCertificatesPerDomain, Window: "7d", Key: "example.com", Max: 50, Used: 50, Remaining: 0, OnDemandRemaining: 0, FreesAt: frees},
		{Issuer: "https://private.test/dir", Limit: tlsmgr.LimitAccounts, Window: "3h", Key: "all accounts", Remaining: -1, OnDemandRemaining: -1},
	}
	srv := newServer(t, Options{Budget: func(context.Context) ([]tlsmgr.BudgetLine, error) { return lines, nil }})
	_, page := getPage(t, srv.URL+"/")
	spent, orders := strings.Index(page, `data-limit="certificates_per_domain"`), strings.Index(page, `data-limit="orders_per_account"`)
	if spent < 0 || orders < 0 || spent > orders {
		t.Errorf("want the spent limit before the others: spent at %d, orders at %d", spent, orders)
	}
	if !regexp.MustCompile(`(?s)class="budget failing spent" data-limit="certificates_per_domain">.*?example.com.*?50 per 7d.*?status-failing">0</span>.*?2026-12-08 12:00 UTC`).MatchString(page) {
		t.Error("the spent per-domain limit is not flagged with its maximum and when it frees")
	}
	if !strings.Contains(page, "4 on demand") || !strings.Contains(page, "<td>146</td>") {
		t.Error("the orders line lacks its on-demand use and share")
	}
	if strings.Contains(page, "private.test") {
		t.Error("a limit without a maximum and without use is shown")
	}

	srv = newServer(t, Options{Budget: func(context.Context) ([]tlsmgr.BudgetLine, error) { return nil, errors.New("etcd is down") }})
	if _, page := getPage(t, srv.URL+"/"); !strings.Contains(page, "The budget cannot be read: etcd is down") {
		t.Error("a budget that cannot be read is not said so")
	}
	if _, page := getPage(t, newServer(t, Options{}).URL+"/"); !strings.Contains(page, "The rate-limit budget is not available.") {
		t.Error("without a budget the page should say so")
	}
}
