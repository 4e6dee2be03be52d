package client_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/admin"
	"github.com/gatehouse-proxy/gatehouse/admin/client"
	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr/pebbletest"
)

// serve serves admin.Handler(opts) on a real loopback listener whose
// address is the admin's configured one, as the command wires it, and
// returns a Client for it.
func serve(t *testing.T, opts admin.Options) (*client.Client, *httptest.Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opts.Addr = ln.Addr().String()
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: admin.Handler(opts), ReadHeaderTimeout: 10 * time.Second}}
	srv.Start()
	t.Cleanup(srv.Close)
	base, err := client.BaseURL(opts.Addr)
	if err != nil {
		t.Fatal(err)
	}
	return client.New(base, srv.Client()), srv
}

// parseConfig parses yaml as a config file in dir.
func parseConfig(t *testing.T, dir, yaml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse(filepath.Join(dir, "gatehouse.yaml"), []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// newLocalManager starts a real certificate manager serving local CA
// certificates for hosts.
func newLocalManager(t *testing.T, hosts ...string) *tlsmgr.Manager {
	t.Helper()
	dir := t.TempDir()
	// The manager binds nothing; the port only has to be valid.
	yaml := fmt.Sprintf("listen: {http: off, https: \"127.0.0.1:8443\"}\nadmin: off\nstorage: %s\nsites:\n", filepath.Join(dir, "storage"))
	for _, h := range hosts {
		yaml += fmt.Sprintf("  - hosts: [%s]\n    routes: [{respond: {body: ok}}]\n", h)
	}
	m, err := tlsmgr.New(t.Context(), parseConfig(t, dir, yaml), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// wantError checks that err is an *client.Error with status whose message
// contains msg, and returns it.
func wantError(t *testing.T, what string, err error, status int, msg string) *client.Error {
	t.Helper()
	e, ok := errors.AsType[*client.Error](err)
	if !ok {
		t.Fatalf("%s: got %v (%T), want a *client.Error with status %d", what, err, err, status)
	}
	if e.Status != status || !strings.Contains(e.Message, msg) || e.Error() != e.Message {
		t.Errorf("%s: got status %d, message %q, Error() %q; want %d with the message containing %q", what, e.Status, e.Message, e.Error(), status, msg)
	}
	return e
}

func hasName(ci tlsmgr.CertificateInfo, name string) bool { return slices.Contains(ci.Names, name) }

// TestLocalCertificates lists, shows, renews and tries to revoke local CA
// certificates of a real certificate manager through the client.
func TestLocalCertificates(t *testing.T) {
	ctx := t.Context()
	var ready atomic.Bool
	c, _ := serve(t, admin.Options{Certificates: newLocalManager(t, "localhost", "app.internal"), Ready: ready.Load})

	if err := c.Health(ctx); err != nil {
		t.Errorf("Health: %v", err)
	}
	if ok, err := c.Ready(ctx); ok || err != nil {
		t.Errorf("Ready before ready: got %v, %v; want false, nil", ok, err)
	}
	ready.Store(true)
	if ok, err := c.Ready(ctx); !ok || err != nil {
		t.Errorf("Ready once ready: got %v, %v; want true, nil", ok, err)
	}

	certs, err := c.Certificates(ctx)
	if err != nil {
		t.Fatalf("Certificates: %v", err)
	}
	for _, name := range []string{"localhost", "app.internal"} {
		i := slices.IndexFunc(certs, func(ci tlsmgr.CertificateInfo) bool { return hasName(ci, name) })
		if i < 0 || certs[i].Source != tlsmgr.SourceInternal {
			t.Errorf("Certificates: got %+v, want an internal one for %s", certs, name)
		}
	}

	before, err := c.Certificate(ctx, "app.internal")
	if err != nil || !hasName(before, "app.internal") {
		t.Fatalf("Certificate(app.internal): got %+v, %v", before, err)
	}
	_, err = c.Certificate(ctx, "nope.example")
	wantError(t, "Certificate(nope.example)", err, http.StatusNotFound, `"nope.example"`)
	// A name is one path segment: a slash in it reaches the endpoint
	// escaped, not as another path.
	_, err = c.Certificate(ctx, "a/b")
	wantError(t, "Certificate(a/b)", err, http.StatusNotFound, `"a/b"`)

	after, err := c.Renew(ctx, "App.Internal", false)
	if err != nil || !hasName(after, "app.internal") || after.Serial == "" || after.Serial == before.Serial {
		t.Errorf("Renew(App.Internal): got %+v, %v; want app.internal with a serial other than %q", after, err, before.Serial)
	}
	_, err = c.Renew(ctx, "nope.example", true)
	wantError(t, "Renew(nope.example)", err, http.StatusNotFound, "nope.example")

	_, err = c.Revoke(ctx, "localhost", "superseded")
	wantError(t, "Revoke(localhost)", err, http.StatusConflict, "it comes from the local CA")
	_, err = c.Revoke(ctx, "localhost", "bored")
	wantError(t, "Revoke with an unknown reason", err, http.StatusBadRequest, "bored")
}

// TestReload reloads through the client, and sees a config that does not
// load as a 422 with its problem.
func TestReload(t *testing.T) {
	var reloads atomic.Int32
	var problem atomic.Pointer[string]
	c, _ := serve(t, admin.Options{Reload: func(context.Context) error {
		if p := problem.Load(); p != nil {
			return errors.New(*p)
		}
		reloads.Add(1)
		return nil
	}})
	if err := c.Reload(t.Context()); err != nil || reloads.Load() != 1 {
		t.Errorf("Reload: got %v after %d reloads, want nil after 1", err, reloads.Load())
	}
	p := "gatehouse.yaml:3:5: sites[0].hosts: bad"
	problem.Store(&p)
	err := c.Reload(t.Context())
	wantError(t, "Reload of a bad config", err, http.StatusUnprocessableEntity, p)
	if reloads.Load() != 1 {
		t.Errorf("a failed reload counted")
	}
}

// TestUnwired checks a part the gatehouse does not run is a 503, not an
// empty answer.
func TestUnwired(t *testing.T) {
	c, _ := serve(t, admin.Options{})
	_, err := c.Certificates(t.Context())
	wantError(t, "Certificates", err, http.StatusServiceUnavailable, "certificate management is not running")
	_, err = c.Renew(t.Context(), "app.example.com", false)
	wantError(t, "Renew", err, http.StatusServiceUnavailable, "certificate management is not running")
	err = c.Reload(t.Context())
	wantError(t, "Reload", err, http.StatusServiceUnavailable, "reloading is not available")
}

// TestErrorWithoutMessage calls a base URL where no admin API is (a path
// below it): the answer has no message, so the error names the call and
// the status.
func TestErrorWithoutMessage(t *testing.T) {
	_, srv := serve(t, admin.Options{})
	c := client.New(srv.URL+"/elsewhere/", srv.Client())
	_, err := c.Certificates(t.Context())
	e, ok := errors.AsType[*client.Error](err)
	if !ok || e.Status != http.StatusNotFound || e.Message != "" || e.Error() != "GET /certs: 404 Not Found" {
		t.Fatalf("got %v (%T), want a *client.Error 404 without message saying %q", err, err, "GET /certs: 404 Not Found")
	}
	_, err = c.Renew(t.Context(), "app.example.com", true)
	if want := "POST /certs/app.example.com/renew?force=1: 404 Not Found"; err == nil || err.Error() != want {
		t.Errorf("Renew: got %v, want %q", err, want)
	}
}

// TestUnreachable checks that an endpoint nobody serves is a failure to
// call it, not an answer.
func TestUnreachable(t *testing.T) {
	c, srv := serve(t, admin.Options{})
	srv.Close()
	err := c.Health(t.Context())
	if _, ok := errors.AsType[*client.Error](err); ok || err == nil {
		t.Fatalf("Health of a closed endpoint: got %v, want a failure to call", err)
	}
	if _, ok := errors.AsType[*url.Error](err); !ok || !strings.HasPrefix(err.Error(), "calling the admin endpoint: ") {
		t.Errorf("Health of a closed endpoint: got %q, want it to name the call and wrap the *url.Error", err)
	}
	if ok, err := c.Ready(t.Context()); ok || err == nil {
		t.Errorf("Ready of a closed endpoint: got %v, %v; want false and an error", ok, err)
	}
}

// TestDial checks that Dial hands back a working Client where a gatehouse
// answers, and ErrNoInstance with the reason where none does.
func TestDial(t *testing.T) {
	c, srv := serve(t, admin.Options{})
	addr := srv.Listener.Addr().String()
	got, err := client.Dial(t.Context(), addr, srv.Client())
	if err != nil {
		t.Fatalf("Dial(%s) of a serving endpoint: %v", addr, err)
	}
	if got.BaseURL() != c.BaseURL() {
		t.Errorf("Dial(%s) calls %s, want %s", addr, got.BaseURL(), c.BaseURL())
	}
	srv.Close()
	for _, tc := range []struct{ addr, why string }{
		{addr, "no gatehouse answers at " + addr + ": Get"},
		{"off", "no gatehouse answers: the admin endpoint is off"},
		{"", "no gatehouse answers: the admin endpoint is off"},
	} {
		_, err := client.Dial(t.Context(), tc.addr, nil)
		if !errors.Is(err, client.ErrNoInstance) || !strings.HasPrefix(fmt.Sprint(err), tc.why) {
			t.Errorf("Dial(%q): got %v, want ErrNoInstance saying %q", tc.addr, err, tc.why)
		}
	}
}

func TestBaseURL(t *testing.T) {
	for _, tc := range []struct {
		addr, want, err string
	}{
		{"127.0.0.1:2019", "http://127.0.0.1:2019", ""},
		{"localhost:2019", "http://localhost:2019", ""},
		{"[::1]:2019", "http://[::1]:2019", ""},
		// Listening on every address is dialled on loopback.
		{":2019", "http://127.0.0.1:2019", ""},
		{"0.0.0.0:2019", "http://127.0.0.1:2019", ""},
		{"[::]:2019", "http://127.0.0.1:2019", ""},
		{"http://gw.internal:2019/", "http://gw.internal:2019", ""},
		{"https://gw.internal/admin", "https://gw.internal/admin", ""},
		{"2019", "", `parsing admin address "2019"`},
		{"http://[::1", "", "parsing admin URL"},
	} {
		got, err := client.BaseURL(tc.addr)
		if got != tc.want || (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("BaseURL(%q): got %q, %v; want %q, error %q", tc.addr, got, err, tc.want, tc.err)
		}
	}
}

// TestACMELifecycle renews and revokes a certificate from a real ACME CA
// through the client, and sees a CA that is down as a 502.
func TestACMELifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("issues certificates from an in-process Pebble")
	}
	ctx := t.Context()
	// The Listeners are bound before the manager starts, as the command
	// does, so the CA's validations wait for them.
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ca := pebbletest.Start(t, pebbletest.Options{
		HTTPPort: httpLn.Addr().(*net.TCPAddr).Port,
		TLSPort:  httpsLn.Addr().(*net.TCPAddr).Port,
	})
	dir := t.TempDir()
	cfgYAML := fmt.Sprintf(`listen: {http: %q, https: %q}
admin: off
storage: %s
acme: {ca: %s, ca_root: %s, limits: {orders_per_3_hours: 10, certificates_per_domain_week: 20, duplicates_per_week: 5}}
sites:
  - hosts: [app.test]
    routes: [{respond: {body: ok}}]
`, httpLn.Addr(), httpsLn.Addr(), filepath.Join(dir, "storage"), ca.DirectoryURL(), ca.ClientRootFile())
	cfg := parseConfig(t, dir, cfgYAML)
	m, err := tlsmgr.New(ctx, cfg, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	quiet := slog.NewLogLogger(slog.DiscardHandler, slog.LevelError)
	httpSrv := &http.Server{Handler: m.HTTPHandler(nil), ReadHeaderTimeout: 10 * time.Second, ErrorLog: quiet}
	httpsSrv := &http.Server{Handler: http.NotFoundHandler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: quiet}
	go httpSrv.Serve(httpLn)
	go httpsSrv.Serve(tls.NewListener(httpsLn, m.TLSConfig()))
	t.Cleanup(func() { httpSrv.Close(); httpsSrv.Close() })

	metrics := admin.NewMetrics(admin.MetricsOptions{Budget: m.Budget})
	c, srv := serve(t, admin.Options{Certificates: m, Budget: m.Budget, Metrics: metrics})
	// The first certificate is obtained in the background.
	var first tlsmgr.CertificateInfo
	deadline := time.Now().Add(30 * time.Second)
	for first.Status != tlsmgr.StatusValid {
		if time.Now().After(deadline) {
			t.Fatalf("no valid certificate for app.test within 30s: last %+v", first)
		}
		time.Sleep(100 * time.Millisecond)
		first, err = c.Certificate(ctx, "app.test")
		if e, ok := errors.AsType[*client.Error](err); err != nil && !(ok && e.Status == http.StatusNotFound) {
			t.Fatalf("Certificate(app.test): %v", err)
		}
	}

	// Not due, without force: nothing is ordered.
	orders := ca.Orders()
	same, err := c.Renew(ctx, "app.test", false)
	if err != nil || same.Serial != first.Serial || ca.Orders() != orders {
		t.Errorf("Renew(app.test, not forced): got serial %q, %v, %d orders; want %q and no order", same.Serial, err, ca.Orders()-orders, first.Serial)
	}
	renewed, err := c.Renew(ctx, "app.test", true)
	if err != nil || renewed.Serial == first.Serial || renewed.Status != tlsmgr.StatusValid {
		t.Fatalf("Renew(app.test, forced): got %+v, %v; want a new valid certificate", renewed, err)
	}

	replaced, err := c.Revoke(ctx, "app.test", "superseded")
	old, _ := new(big.Int).SetString(renewed.Serial, 16)
	if err != nil || !ca.Revoked(old) || replaced.Serial == renewed.Serial || replaced.Serial == "" {
		t.Fatalf("Revoke(app.test): got serial %q, %v, revoked at the CA %v; want a replacement of %s", replaced.Serial, err, ca.Revoked(old), renewed.Serial)
	}

	// Three orders: the first certificate, the forced renewal and the
	// replacement. The budget counts them, as the CA does; the renewal is
	// exempt from the per-domain limit, the replacement of the revoked
	// (and deleted) certificate is not.
	lines, err := c.Budget(ctx)
	if err != nil {
		t.Fatalf("Budget: %v", err)
	}
	remaining := map[tlsmgr.Limit]int{}
	for _, l := range lines {
		if l.Issuer != ca.DirectoryURL() {
			t.Errorf("budget line of issuer %q, want only %q", l.Issuer, ca.DirectoryURL())
		}
		remaining[l.Limit] = l.Remaining
		if l.Limit == tlsmgr.LimitOrders && l.Used != ca.Orders() {
			t.Errorf("orders in the budget: %d, orders at the CA: %d", l.Used, ca.Orders())
		}
	}
	if remaining[tlsmgr.LimitOrders] != 7 || remaining[tlsmgr.LimitCertificatesPerDomain] != 18 || remaining[tlsmgr.LimitDuplicates] != 2 {
		t.Errorf("remaining: got %v, want 7 orders, 18 certificates for app.test and 2 more duplicates of it; lines %+v", remaining, lines)
	}
	resp, err := srv.Client().Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		fmt.Sprintf(`gatehouse_acme_budget_remaining{domain="app.test",issuer=%q,limit="certificates_per_domain"} 18`, ca.DirectoryURL()),
		fmt.Sprintf(`gatehouse_acme_budget_remaining{domain="(no email)",issuer=%q,limit="orders_per_account"} 7`, ca.DirectoryURL()),
	} {
		if !strings.Contains(string(body), want+"\n") {
			t.Errorf("metrics lack %s", want)
		}
	}
	// A series per set of names would be one per on-demand host.
	if strings.Contains(string(body), `limit="duplicate_certificates"`) {
		t.Errorf("metrics export the per-names duplicate_certificates limit:\n%s", body)
	}

	// With the gatehouse stopped, Reach falls back to the storage, where
	// renew, retire and revoke go on.
	httpSrv.Close()
	httpsSrv.Close()
	m.Close()
	srv.Close()
	off := testOffline(t, ctx, srv.Listener.Addr().String(), cfg)
	certs, err := off.Certificates(ctx)
	if stored, _ := tlsmgr.FindCertificate(certs, "app.test"); err != nil || stored.Serial != replaced.Serial {
		t.Fatalf("offline Certificates: got %+v, %v; want app.test with serial %s", certs, err, replaced.Serial)
	}
	renewed, err = off.Renew(ctx, "app.test", true)
	if err != nil || renewed.Serial == replaced.Serial || renewed.Status != tlsmgr.StatusValid {
		t.Fatalf("offline Renew(app.test, forced): got %+v, %v; want a new valid certificate", renewed, err)
	}
	// The offline renewal drew on the same budget, read back from storage.
	lines, err = off.Budget(ctx)
	if i := slices.IndexFunc(lines, func(l tlsmgr.BudgetLine) bool { return l.Limit == tlsmgr.LimitOrders }); err != nil || i < 0 || lines[i].Used != ca.Orders() {
		t.Errorf("offline Budget: got %+v, %v; want the %d orders the CA saw", lines, err, ca.Orders())
	}
	gone := parseConfig(t, dir, strings.Replace(cfgYAML, "app.test", "other.test", 1))
	if names, err := (&tlsmgr.Offline{Config: gone}).Retire(ctx); err != nil || !slices.Equal(names, []string{"app.test"}) {
		t.Errorf("offline Retire without app.test in the config: got %v, %v; want [app.test]", names, err)
	}
	answer, err := (&tlsmgr.Offline{Config: gone}).Revoke(ctx, "app.test", "cessationOfOperation")
	old.SetString(renewed.Serial, 16)
	if err != nil || !ca.Revoked(old) || answer.Serial != "" || !hasName(answer, "app.test") {
		t.Errorf("offline Revoke of the retired app.test: got %+v, %v, revoked at the CA %v; want its name only", answer, err, ca.Revoked(old))
	}

	// A CA that is down fails an offline renewal, saying where the
	// challenges were answered (online it is a 502: see the command's
	// TestCertsRefused).
	ca.Close()
	_, err = off.Renew(ctx, "app.test", true)
	if err == nil || !strings.Contains(err.Error(), "offline renewal answers the CA's challenges") {
		t.Errorf("offline Renew with the CA down: got %v, want the failure and where challenges are answered", err)
	}
}
