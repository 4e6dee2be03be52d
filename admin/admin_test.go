package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr"
)

// newServer serves h on a real loopback listener whose address is the
// admin's configured one, as cmd wires it.
func newServer(t *testing.T, opts Options) *httptest.Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opts.Addr = ln.Addr().String()
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: Handler(opts)}}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// call sends a request and returns status and body.
func call(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestHealthz(t *testing.T) {
	srv := newServer(t, Options{})
	for _, tc := range []struct {
		name, method, path string
		status             int
		body               string
	}{
		{"healthz answers ok", "GET", "/healthz", 200, "ok\n"},
		{"other paths are not found", "GET", "/nope", 404, ""},
		{"healthz is read-only", "POST", "/healthz", 405, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
			status, body := call(t, req)
			if status != tc.status {
				t.Errorf("status: got %d, want %d", status, tc.status)
			}
			if tc.body != "" && body != tc.body {
				t.Errorf("body: got %q, want %q", body, tc.body)
			}
		})
	}
}

func TestReadyz(t *testing.T) {
	var ready atomic.Bool
	srv := newServer(t, Options{Ready: ready.Load})
	get := func() int {
		req, _ := http.NewRequest("GET", srv.URL+"/readyz", nil)
		status, _ := call(t, req)
		return status
	}
	if got := get(); got != 503 {
		t.Errorf("before ready: got %d, want 503", got)
	}
	ready.Store(true)
	if got := get(); got != 200 {
		t.Errorf("once ready: got %d, want 200", got)
	}
}

// TestCrossOrigin sends POST /reload as browsers and tools would: only
// calls that cannot come from another site's page reach Reload.
func TestCrossOrigin(t *testing.T) {
	var reloads atomic.Int32
	srv := newServer(t, Options{Reload: func(context.Context) error { reloads.Add(1); return nil }})
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	own := "http://127.0.0.1:" + port
	for _, tc := range []struct {
		name    string
		host    string // Host header; "" is the listener address
		header  map[string]string
		body    string
		status  int
		message string
	}{
		{name: "command line: no Origin, no body", status: 200},
		{name: "own origin", header: map[string]string{"Origin": own}, status: 200},
		{name: "own origin by localhost", host: "localhost:" + port, header: map[string]string{"Origin": "http://localhost:" + port}, status: 200},
		{name: "JSON body", header: map[string]string{"Content-Type": "application/json"}, body: "{}", status: 200},
		{name: "browser same-origin", header: map[string]string{"Origin": own, "Sec-Fetch-Site": "same-origin"}, status: 200},
		{name: "other site's page", header: map[string]string{"Origin": "https://evil.example"}, status: 403, message: "cross-origin"},
		{name: "other port on localhost", header: map[string]string{"Origin": "http://127.0.0.1:8080"}, status: 403, message: "cross-origin"},
		{name: "https origin", header: map[string]string{"Origin": "https://127.0.0.1:" + port}, status: 403, message: "cross-origin"},
		{name: "sandboxed page", header: map[string]string{"Origin": "null"}, status: 403, message: "cross-origin"},
		{name: "fetch metadata cross-site", header: map[string]string{"Sec-Fetch-Site": "cross-site"}, status: 403, message: "another site"},
		{name: "fetch metadata same-site", header: map[string]string{"Sec-Fetch-Site": "same-site"}, status: 403, message: "another site"},
		{name: "HTML form", header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, body: "a=b", status: 415, message: "application/json"},
		{name: "text/plain form", header: map[string]string{"Content-Type": "text/plain"}, body: "{}", status: 415, message: "application/json"},
		{name: "body without type", body: "{}", status: 415, message: "application/json"},
		{name: "DNS rebinding", host: "rebind.example:" + port, header: map[string]string{"Origin": "http://rebind.example:" + port}, status: 403, message: "loopback"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := reloads.Load()
			req, _ := http.NewRequest("POST", srv.URL+"/reload", strings.NewReader(tc.body))
			if tc.body == "" {
				req.Body = nil
				req.ContentLength = 0
			}
			if tc.host != "" {
				req.Host = tc.host
			}
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			status, body := call(t, req)
			if status != tc.status || !strings.Contains(body, tc.message) {
				t.Errorf("got %d %q, want %d containing %q", status, body, tc.status, tc.message)
			}
			reloaded := reloads.Load() != before
			if reloaded != (tc.status == 200) {
				t.Errorf("reloaded: got %v, want %v", reloaded, tc.status == 200)
			}
		})
	}
	// A rebinding page cannot read the inventory either.
	req, _ := http.NewRequest("GET", srv.URL+"/certs", nil)
	req.Host = "rebind.example:" + port
	if status, _ := call(t, req); status != 403 {
		t.Errorf("GET /certs with a foreign Host: got %d, want 403", status)
	}
}

func TestOriginPolicy(t *testing.T) {
	for _, tc := range []struct {
		addr, origin string
		want         bool
	}{
		{"127.0.0.1:2019", "http://127.0.0.1:2019", true},
		{"127.0.0.1:2019", "http://[::1]:2019", true},
		{"127.0.0.1:2019", "http://localhost:2019", true},
		{"127.0.0.1:2019", "http://localhost:2020", false},
		{"127.0.0.1:2019", "http://evil.example:2019", false},
		{"10.0.0.5:2019", "http://10.0.0.5:2019", true},
		{"10.0.0.5:2019", "http://10.0.0.6:2019", false},
		{":2019", "http://192.0.2.7:2019", true},
		{":2019", "http://rebind.example:2019", false},
		{"gw.internal:2019", "http://gw.internal:2019", true},
	} {
		if got := newOriginPolicy(tc.addr).originAllowed(tc.origin); got != tc.want {
			t.Errorf("admin %s, Origin %s: got %v, want %v", tc.addr, tc.origin, got, tc.want)
		}
	}
}

func TestReloadError(t *testing.T) {
	srv := newServer(t, Options{Reload: func(context.Context) error { return errors.New("gatehouse.yaml:3:5: sites[0].hosts: bad") }})
	req, _ := http.NewRequest("POST", srv.URL+"/reload", nil)
	status, body := call(t, req)
	var answer ErrorAnswer
	if err := json.Unmarshal([]byte(body), &answer); err != nil {
		t.Fatalf("decoding %q: %v", body, err)
	}
	if status != 422 || !strings.Contains(answer.Error, "gatehouse.yaml:3:5") {
		t.Errorf("got %d %q, want 422 with the problem", status, body)
	}
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
	cfg, err := config.Parse(filepath.Join(dir, "gatehouse.yaml"), []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	m, err := tlsmgr.New(t.Context(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// TestCertificatesAPI lists, shows and renews local CA certificates
// through a real certificate manager.
func TestCertificatesAPI(t *testing.T) {
	m := newLocalManager(t, "localhost", "app.internal")
	srv := newServer(t, Options{Certificates: m})

	// The local CA issues at the first handshake or in the background;
	// the inventory lists both names either way.
	var list []tlsmgr.CertificateInfo
	getJSON(t, srv.URL+"/certs", 200, &list)
	names := map[string]bool{}
	for _, c := range list {
		for _, n := range c.Names {
			names[n] = true
		}
		if c.Source != tlsmgr.SourceInternal {
			t.Errorf("%v: source %q, want internal", c.Names, c.Source)
		}
	}
	if !names["localhost"] || !names["app.internal"] {
		t.Fatalf("GET /certs: got %+v, want localhost and app.internal", list)
	}

	var before tlsmgr.CertificateInfo
	getJSON(t, srv.URL+"/certs/app.internal", 200, &before)
	var missing ErrorAnswer
	getJSON(t, srv.URL+"/certs/nope.example", 404, &missing)
	if !strings.Contains(missing.Error, "nope.example") {
		t.Errorf("404 body: got %q", missing.Error)
	}

	req, _ := http.NewRequest("POST", srv.URL+"/certs/app.internal/renew?force=1", nil)
	status, body := call(t, req)
	var after tlsmgr.CertificateInfo
	if err := json.Unmarshal([]byte(body), &after); err != nil || status != 200 {
		t.Fatalf("renew: got %d %q (%v)", status, body, err)
	}
	if after.Serial == "" || after.Serial == before.Serial {
		t.Errorf("renew: serial %q before, %q after; want a new one", before.Serial, after.Serial)
	}

	// Names are matched as hosts are: in any case.
	req, _ = http.NewRequest("POST", srv.URL+"/certs/App.Internal/renew?force=1", nil)
	if status, body := call(t, req); status != 200 || !strings.Contains(body, `"app.internal"`) {
		t.Errorf("renewing App.Internal: got %d %s", status, body)
	}
	req, _ = http.NewRequest("POST", srv.URL+"/certs/app.internal/revoke", strings.NewReader(`{"reason": "because"}`))
	req.Header.Set("Content-Type", "application/json")
	if status, body := call(t, req); status != 400 || !strings.Contains(body, "because") {
		t.Errorf("revoking with an unknown reason: got %d %s, want 400", status, body)
	}

	req, _ = http.NewRequest("POST", srv.URL+"/certs/nope.example/renew", nil)
	if status, _ := call(t, req); status != 404 {
		t.Errorf("renewing an unknown name: got %d, want 404", status)
	}
}

func getJSON(t *testing.T, url string, wantStatus int, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("GET %s: Content-Type %q", url, ct)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != wantStatus {
		t.Fatalf("GET %s: got %d %s, want %d", url, resp.StatusCode, body, wantStatus)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: decoding %q: %v", url, body, err)
	}
}

// TestUnwired checks that an endpoint whose source is not wired says so
// instead of answering something made up.
func TestUnwired(t *testing.T) {
	srv := newServer(t, Options{})
	for _, path := range []string{"/certs", "/certs/x", "/metrics"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 503 {
			t.Errorf("GET %s: got %d, want 503", path, resp.StatusCode)
		}
	}
	req, _ := http.NewRequest("POST", srv.URL+"/reload", nil)
	if status, _ := call(t, req); status != 503 {
		t.Errorf("POST /reload: got %d, want 503", status)
	}
}
