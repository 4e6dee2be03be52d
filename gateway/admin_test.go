package gateway

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/tlsmgr"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr/pebbletest"
)

const adminConfig = `listen: {http: "127.0.0.1:{{HTTP}}", https: "127.0.0.1:{{HTTPS}}"}
admin: "127.0.0.1:{{ADMIN}}"
storage: {{STORAGE}}
acme:
  ca: %s
  ca_root: %s
sites:
  - hosts: [localhost]
    routes: [{respond: {body: %s}}]
  - hosts: [ok.test]
    routes: [{upstreams: [%s, %s], health: {path: /, interval: 1s}}]
  - hosts: [fail.test]
    routes: [{respond: {body: never}}]
`

// servedSerial returns the serial of the certificate the HTTPS Listener
// serves for name, verified against roots.
func servedSerial(t *testing.T, in *instance, ca *pebbletest.CA, name string) *big.Int {
	t.Helper()
	conn, err := tls.Dial("tcp", in.HTTPS, &tls.Config{ServerName: name, RootCAs: ca.IssuerRoots()})
	if err != nil {
		t.Fatalf("handshake for %s: %v", name, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber
}

// TestAdminEndpoint runs gatehouse with a real ACME CA, a host whose
// validation fails (its name does not resolve for the CA), the local CA and
// a dead Upstream (found by its health check), and uses every admin call as an operator would: the
// inventory, metrics, the dashboard in a real browser, renew, revoke and
// reload, and a cross-origin call that is refused.
func TestAdminEndpoint(t *testing.T) {
	if testing.Short() {
		t.Skip("issues certificates from an in-process Pebble and runs chromium")
	}
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is needed to test the dashboard: apt-get install -y chromium (.ci/run does)")
	}
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "app")
	}))
	defer upstream.Close()
	dead := fmt.Sprintf("http://127.0.0.1:%d", pebbletest.FreePort(t))

	p := newPorts(t)
	// The CA's DNS (a real BIND) knows ok.test only, so validating
	// fail.test fails.
	z := pebbletest.StartBIND(t, "ok.test")
	ca := pebbletest.Start(t, pebbletest.Options{HTTPPort: p.HTTP, TLSPort: p.HTTPS, Resolver: z.Addr})
	cfg := func(body string) string {
		return fmt.Sprintf(adminConfig, ca.DirectoryURL(), ca.ClientRootFile(), body, upstream.URL, dead)
	}
	in := start(t, p, cfg("local"))
	a := adminClient{T: t, Base: fmt.Sprintf("http://127.0.0.1:%d", p.Admin)}

	if status, body := a.Do("GET", "/readyz", "", ""); status != 200 {
		t.Errorf("GET /readyz: got %d %q, want 200", status, body)
	}

	// The inventory: ok.test obtained from Pebble, fail.test failing,
	// localhost from the local CA.
	var certs map[string]tlsmgr.CertificateInfo
	deadline := time.Now().Add(60 * time.Second)
	for {
		certs = a.Certs()
		if certs["ok.test"].Status == tlsmgr.StatusValid && certs["fail.test"].Status == tlsmgr.StatusFailing {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("inventory did not settle: %+v\n%s", certs, in.Stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	okCert := certs["ok.test"]
	if okCert.Source != tlsmgr.SourceACME || okCert.CA != ca.DirectoryURL() || !strings.HasPrefix(okCert.Issuer, "Pebble Intermediate") {
		t.Errorf("ok.test: got source %q, CA %q, issuer %q", okCert.Source, okCert.CA, okCert.Issuer)
	}
	if fail := certs["fail.test"]; fail.Failures < 1 || fail.LastError == "" {
		t.Errorf("fail.test: got %d failures, error %q; want the failure recorded", fail.Failures, fail.LastError)
	}
	if status, body := a.Do("GET", "/certs/fail.test", "", ""); status != 200 || !strings.Contains(body, `"status": "failing"`) {
		t.Errorf("GET /certs/fail.test: got %d %s", status, body)
	}
	waitFor(t, 10*time.Second, func() bool { return a.Certs()["localhost"].Source == tlsmgr.SourceInternal })

	// Proxy traffic; the active health check finds the dead Upstream.
	client := clientFor(in.HTTPS, ca.IssuerRoots())
	for range 4 {
		get(t, client, "https://ok.test/")
	}
	metrics := func() string {
		status, body := a.Do("GET", "/metrics", "", "")
		if status != 200 {
			t.Fatalf("GET /metrics: %d", status)
		}
		return body
	}
	deadDown := regexp.MustCompile(`(?m)^gatehouse_upstream_healthy\{route="/",site="ok.test",upstream="` + regexp.QuoteMeta(dead) + `"\} 0$`)
	var m string
	waitFor(t, 20*time.Second, func() bool { m = metrics(); return deadDown.MatchString(m) })
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^gatehouse_certificate_not_after_seconds\{issuer="Pebble Intermediate[^"]*",name="ok.test"\} ` +
			regexp.QuoteMeta(fmt.Sprint(float64(okCert.NotAfter.UnixMilli())/1000))),
		regexp.MustCompile(`(?m)^gatehouse_certificate_next_renewal_seconds\{issuer="Pebble Intermediate[^"]*",name="ok.test"\} \d`),
		regexp.MustCompile(`(?m)^gatehouse_certificate_status\{issuer="[^"]*",name="fail.test",status="failing"\} 1$`),
		regexp.MustCompile(`(?m)^gatehouse_certificate_status\{issuer="[^"]*",name="fail.test",status="valid"\} 0$`),
		regexp.MustCompile(`(?m)^gatehouse_certificate_status\{issuer="[^"]*",name="ok.test",status="valid"\} 1$`),
		regexp.MustCompile(`(?m)^gatehouse_certificate_status\{issuer="[^"]*",name="localhost",status="valid"\} 1$`),
		regexp.MustCompile(`(?m)^gatehouse_certificate_issuance_attempts_total\{challenge="http-01,tls-alpn-01",issuer="` + regexp.QuoteMeta(ca.DirectoryURL()) + `"\} [1-9]`),
		regexp.MustCompile(`(?m)^gatehouse_certificate_issuance_failures_total\{challenge="http-01,tls-alpn-01",issuer="` + regexp.QuoteMeta(ca.DirectoryURL()) + `"\} [1-9]`),
		regexp.MustCompile(`(?m)^gatehouse_acme_order_duration_seconds_count\{issuer="` + regexp.QuoteMeta(ca.DirectoryURL()) + `"\} [1-9]`),
		regexp.MustCompile(`(?m)^gatehouse_http_requests_total\{code="2xx",site="ok.test"\} [1-9]`),
		regexp.MustCompile(`(?m)^gatehouse_http_request_duration_seconds_count\{code="2xx",site="ok.test"\} [1-9]`),
		regexp.MustCompile(`(?m)^gatehouse_upstream_healthy\{route="/",site="ok.test",upstream="` + regexp.QuoteMeta(upstream.URL) + `"\} 1$`),
		regexp.MustCompile(`(?m)^go_goroutines \d`),
		regexp.MustCompile(`(?m)^process_open_fds \d`),
	} {
		if !want.MatchString(m) {
			t.Errorf("metrics: no match for %s", want)
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", grepLines(m, "gatehouse_"))
	}

	// The dashboard, rendered by a real browser.
	dom := dumpDOM(t, chromium, a.Base+"/")
	rows := regexp.MustCompile(`(?s)<tr class="cert ([a-z]+)"[^>]*>(.*?)</tr>`).FindAllStringSubmatch(dom, -1)
	order := map[string]int{}
	for i, r := range rows {
		for _, name := range []string{"ok.test", "fail.test", "localhost"} {
			if strings.Contains(r[2], ">"+name+"<") {
				order[name] = i
				if name == "fail.test" && (r[1] != "failing" || !strings.Contains(r[2], ">failing<")) {
					t.Errorf("fail.test row is not marked failing: class %q\n%s", r[1], r[2])
				}
				if name == "ok.test" && (r[1] != "valid" || !strings.Contains(r[2], `class="mark today"`) || !strings.Contains(r[2], `class="mark renewal"`)) {
					t.Errorf("ok.test row: want valid with today and renewal marked on its timeline\n%s", r[2])
				}
			}
		}
	}
	if len(order) != 3 {
		t.Fatalf("dashboard rows: found %v of ok.test, fail.test, localhost\n%s", order, dom)
	}
	if order["fail.test"] != 0 {
		t.Errorf("fail.test is row %d; failing certificates come first", order["fail.test"])
	}
	if !regexp.MustCompile(`(?s)<code>` + regexp.QuoteMeta(dead) + `</code>.*?health-down">down<`).MatchString(dom) {
		t.Errorf("dashboard does not show the dead upstream down")
	}

	// Renew: a new serial is served.
	before := servedSerial(t, in, ca, "ok.test")
	status, body := a.Do("POST", "/certs/ok.test/renew?force=1", "", "")
	if status != 200 {
		t.Fatalf("renew: %d %s", status, body)
	}
	waitFor(t, 10*time.Second, func() bool { return servedSerial(t, in, ca, "ok.test").Cmp(before) != 0 })

	// Revoke: Pebble reports the old certificate revoked, a new one is
	// served.
	revoked := servedSerial(t, in, ca, "ok.test")
	status, body = a.Do("POST", "/certs/ok.test/revoke", "application/json", `{"reason": "keyCompromise"}`)
	if status != 200 {
		t.Fatalf("revoke: %d %s", status, body)
	}
	if !ca.Revoked(revoked) {
		t.Errorf("Pebble does not report serial %x revoked", revoked)
	}
	waitFor(t, 10*time.Second, func() bool { return servedSerial(t, in, ca, "ok.test").Cmp(revoked) != 0 })
	if status, body := a.Do("POST", "/certs/ok.test/revoke", "application/json", `{"reason": "because"}`); status != 400 || !strings.Contains(body, "because") {
		t.Errorf("revoke with an unknown reason: got %d %s", status, body)
	}

	// A web page cannot make the same calls.
	if status, _ := a.Do("POST", "/certs/ok.test/renew", "", "", "Origin", "https://evil.example"); status != 403 {
		t.Errorf("cross-origin renew: got %d, want 403", status)
	}

	// Reload: a bad file is refused with its problem, a good one applied.
	os.WriteFile(in.CfgPath, []byte("sites: [{hosts: [localhost], routes: [{respond: {statuz: 200}}]}]\n"), 0o644)
	status, body = a.Do("POST", "/reload", "", "")
	if status != 422 || !strings.Contains(body, "gatehouse.yaml:1:") || !strings.Contains(body, "statuz") {
		t.Errorf("reloading a bad file: got %d %s, want 422 with the problem's line", status, body)
	}
	writeConfig(t, in.CfgPath, p, in.Storage, cfg("reloaded"))
	status, body = a.Do("POST", "/reload", "", "")
	if status != 200 {
		t.Fatalf("reload: got %d %s", status, body)
	}
	if status, body := get(t, in.Client(t), "https://localhost/"); status != 200 || body != "reloaded" {
		t.Errorf("after POST /reload: got %d %q, want the new body", status, body)
	}
}

// dumpDOM loads url in headless chromium (with extra flags) and returns
// the DOM it rendered. A chromium that exits having printed nothing, as it
// now and then does on a loaded machine without ever asking for the page,
// is started again, twice at most; anything it rendered is returned as is.
func dumpDOM(t *testing.T, chromium, url string, extra ...string) string {
	t.Helper()
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		cmd := exec.CommandContext(ctx, chromium, append(append(chromiumFlags(t), extra...), "--dump-dom", url)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		cancel()
		if err != nil {
			t.Fatalf("chromium --dump-dom: %v\n%s", err, stderr.String())
		}
		if len(out) > 0 || attempt == 3 {
			return string(out)
		}
		t.Logf("chromium --dump-dom printed nothing (attempt %d); again:\n%s", attempt, stderr.String())
	}
}

// chromiumFlags keep chromium headless, offline and out of the user's
// profile.
func chromiumFlags(t *testing.T) []string {
	return []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--user-data-dir=" + t.TempDir(),
	}
}
