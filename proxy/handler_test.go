package proxy

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/config"
)

func TestHostRouting(t *testing.T) {
	f := newFrontend(t, &config.Config{Sites: []config.Site{
		cfgSite([]string{"app.example.com"}, respond("/", "exact")),
		cfgSite([]string{"*.example.com"}, respond("/", "wildcard")),
	}})
	tests := []struct {
		name string
		host string
		code int
		body string
	}{
		{"exact", "app.example.com", 200, "exact"},
		{"exact with port and case", "APP.example.com:443", 200, "exact"},
		{"wildcard", "other.example.com", 200, "wildcard"},
		{"wildcard is one label", "a.b.example.com", 404, "404 Not Found\n"},
		{"unknown host", "example.com", 404, "404 Not Found\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// No TLS server name: this is about the Host header alone.
			code, body := do(t, f.client(""), f.request(t, http.MethodGet, tt.host, "/", nil))
			if code != tt.code || body != tt.body {
				t.Errorf("got %v %q, want %v %q", code, body, tt.code, tt.body)
			}
		})
	}
}

func TestCatchAll(t *testing.T) {
	f := newFrontend(t, &config.Config{Sites: []config.Site{
		cfgSite([]string{"app.example.com"}, respond("/", "app")),
		cfgSite([]string{"*"}, respond("/", "catch-all")),
	}})
	if code, body := f.get(t, "unknown.example.com", "/"); code != 200 || body != "catch-all" {
		t.Errorf("got %v %q, want 200 %q", code, body, "catch-all")
	}
}

func TestMisdirectedRequest(t *testing.T) {
	f := newFrontend(t, &config.Config{Sites: []config.Site{
		cfgSite([]string{"a.example.com", "alias.example.com"}, respond("/", "a")),
		cfgSite([]string{"b.example.com"}, respond("/", "b")),
	}})
	tests := []struct {
		name, sni, host string
		code            int
	}{
		{"same host", "a.example.com", "a.example.com", 200},
		{"other host of the same site", "a.example.com", "alias.example.com", 200},
		{"host of another site", "a.example.com", "b.example.com", 421},
		{"sni of no site", "x.example.com", "a.example.com", 421},
		{"no sni", "", "b.example.com", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _ := do(t, f.client(tt.sni), f.request(t, http.MethodGet, tt.host, "/", nil))
			if code != tt.code {
				t.Errorf("status = %v, want %v", code, tt.code)
			}
		})
	}
}

func TestPathCleaning(t *testing.T) {
	backend := newEcho(t, "b")
	f := newFrontend(t, proxyConfig(
		respond("/public/", "public"),
		respond("/admin", "admin"),
		proxyTo("/up/", backend.URL),
	))
	tests := []struct {
		target string
		body   string
	}{
		{"/public/x", "public"},
		{"/public/../admin", "admin"},
		{"/public/%2e%2e/admin", "admin"},
		{"/public/%2E%2E/admin/x", "admin"},
		{"/public/./../admin", "admin"},
		{"//admin", "admin"},
		{"/public//x", "public"},
		{"/admin/../public/", "public"},
		{"/../../public/", "public"},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			code, body := f.get(t, host, tt.target)
			if code != 200 || body != tt.body {
				t.Errorf("got %v %q, want 200 %q", code, body, tt.body)
			}
		})
	}

	forwarded := []struct {
		target, path, rawPath string
	}{
		{"/up/a/../b", "/up/b", ""},
		{"/up//a/./b/", "/up/a/b/", ""},
		{"/up/x/%2e%2e/y", "/up/y", ""},
		{"/up/a%2Fb", "/up/a/b", "/up/a%2Fb"},
		{"/up/a%2F..%2F..%2Fadmin", "/admin", ""}, // routed to /admin, never to the Upstream
	}
	for _, tt := range forwarded {
		t.Run("forwarded "+tt.target, func(t *testing.T) {
			code, body := f.get(t, host, tt.target)
			if tt.path == "/admin" {
				if body != "admin" {
					t.Errorf("got %v %q, want 200 %q", code, body, "admin")
				}
				return
			}
			s := decodeSeen(t, body)
			if s.Path != tt.path || s.RawPath != tt.rawPath {
				t.Errorf("upstream saw path %q raw %q, want %q raw %q", s.Path, s.RawPath, tt.path, tt.rawPath)
			}
		})
	}
}

func TestUnknownPath(t *testing.T) {
	f := newFrontend(t, proxyConfig(respond("/api", "api")))
	for _, target := range []string{"/", "/apix", "/other"} {
		if code, body := f.get(t, host, target); code != 404 || body != "404 Not Found\n" {
			t.Errorf("%s: got %v %q, want 404", target, code, body)
		}
	}
}

func TestStripPrefix(t *testing.T) {
	backend := newEcho(t, "b")
	f := newFrontend(t, proxyConfig(
		config.Route{Path: "/api", Upstreams: []string{backend.URL}, StripPrefix: true},
		config.Route{Path: "/v2/", Upstreams: []string{backend.URL}, StripPrefix: true},
	))
	tests := []struct {
		target, path, rawPath, query string
	}{
		{"/api/users", "/users", "", ""},
		{"/api", "/", "", ""},
		{"/api/", "/", "", ""},
		{"/api/x?q=1", "/x", "", "q=1"},
		{"/api/a%2Fb", "/a/b", "/a%2Fb", ""},
		{"/v2/users/", "/users/", "", ""},
		{"/v2", "/", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			_, body := f.get(t, host, tt.target)
			s := decodeSeen(t, body)
			if s.Path != tt.path || s.RawPath != tt.rawPath || s.Query != tt.query {
				t.Errorf("upstream saw %q raw %q query %q, want %q raw %q query %q",
					s.Path, s.RawPath, s.Query, tt.path, tt.rawPath, tt.query)
			}
		})
	}
}

func TestRespond(t *testing.T) {
	f := newFrontend(t, proxyConfig(
		respond("/text", "hello\n"),
		respond("/html", "<h1>hi</h1>"),
		config.Route{Path: "/teapot", Respond: &config.Respond{Status: 418, Body: "short and stout"}},
		config.Route{Path: "/empty", Respond: &config.Respond{Status: 204}},
	))
	tests := []struct {
		target, ctype string
		code          int
		body          string
	}{
		{"/text", "text/plain; charset=utf-8", 200, "hello\n"},
		{"/html", "text/html; charset=utf-8", 200, "<h1>hi</h1>"},
		{"/teapot", "text/plain; charset=utf-8", 418, "short and stout"},
		{"/empty", "", 204, ""},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			res, body := f.getRes(t, host, tt.target)
			if res.StatusCode != tt.code || body != tt.body || res.Header.Get("Content-Type") != tt.ctype {
				t.Errorf("got %v %q %q, want %v %q %q", res.StatusCode, res.Header.Get("Content-Type"), body,
					tt.code, tt.ctype, tt.body)
			}
		})
	}
}

func TestHSTS(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Strict-Transport-Security", "max-age=1")
	}))
	t.Cleanup(backend.Close)
	cfg := &config.Config{Sites: []config.Site{
		{Hosts: []string{"a.example.com"}, HSTS: &config.HSTS{MaxAge: 48 * time.Hour, IncludeSubdomains: true, Preload: true},
			Routes: []config.Route{respond("/", "a"), proxyTo("/up", backend.URL)}},
		{Hosts: []string{"b.example.com"}, HSTS: &config.HSTS{},
			Routes: []config.Route{respond("/", "b")}},
		{Hosts: []string{"c.example.com"}, Routes: []config.Route{respond("/", "c")}},
	}}
	f := newFrontend(t, cfg)
	tests := []struct {
		host, target, want string
	}{
		{"a.example.com", "/", "max-age=172800; includeSubDomains; preload"},
		{"a.example.com", "/up", "max-age=172800; includeSubDomains; preload"},
		{"a.example.com", "/missing", "max-age=172800; includeSubDomains; preload"},
		{"b.example.com", "/", "max-age=31536000"},
		{"c.example.com", "/", ""},
	}
	for _, tt := range tests {
		t.Run(tt.host+tt.target, func(t *testing.T) {
			res, _ := f.getRes(t, tt.host, tt.target)
			if got := strings.Join(res.Header.Values("Strict-Transport-Security"), " | "); got != tt.want {
				t.Errorf("Strict-Transport-Security = %q, want %q", got, tt.want)
			}
		})
	}
	t.Run("not on the redirect", func(t *testing.T) {
		w := httptest.NewRecorder()
		f.handler.RedirectHandler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "http://a.example.com/", nil))
		if got := w.Header().Get("Strict-Transport-Security"); got != "" {
			t.Errorf("Strict-Transport-Security = %q, want none over HTTP", got)
		}
	})
}

func TestRedirect(t *testing.T) {
	cfg := &config.Config{Sites: []config.Site{
		cfgSite([]string{"app.example.com"}, respond("/", "app")),
		cfgSite([]string{"*.example.net"}, respond("/", "wild")),
		cfgSite([]string{"::1"}, respond("/", "ip")),
	}}
	tests := []struct {
		name, port, target, host string
		code                     int
		location                 string
	}{
		{"path and query kept", "", "/a/b?x=1&y=%20", "app.example.com", 308, "https://app.example.com/a/b?x=1&y=%20"},
		{"port 443 left out", "443", "/", "app.example.com:80", 308, "https://app.example.com/"},
		{"other port added", "8443", "/p", "app.example.com:8080", 308, "https://app.example.com:8443/p"},
		{"host normalized", "", "/", "APP.Example.com.", 308, "https://app.example.com/"},
		{"wildcard", "", "/", "x.example.net", 308, "https://x.example.net/"},
		{"IPv6", "8443", "/", "[::1]:80", 308, "https://[::1]:8443/"},
		{"escaped path kept", "", "/a%2Fb/../c", "app.example.com", 308, "https://app.example.com/a%2Fb/../c"},
		{"unknown host", "", "/", "other.example.com", 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			table, err := Compile(cfg, Options{HTTPSPort: tt.port})
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			srv := httptest.NewServer(NewHandler(table, nil).RedirectHandler())
			t.Cleanup(srv.Close)
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+tt.target, nil)
			if err != nil {
				t.Fatalf("NewRequest: %v", err)
			}
			req.Host = tt.host
			res, err := (&http.Client{CheckRedirect: noRedirect}).Do(req)
			if err != nil {
				t.Fatalf("POST: %v", err)
			}
			res.Body.Close()
			if res.StatusCode != tt.code || res.Header.Get("Location") != tt.location {
				t.Errorf("got %v %q, want %v %q", res.StatusCode, res.Header.Get("Location"), tt.code, tt.location)
			}
		})
	}
}

func TestSwapUnderLoad(t *testing.T) {
	a, b := newEcho(t, "a"), newEcho(t, "b")
	cfgA := proxyConfig(proxyTo("/", a.URL))
	cfgB := proxyConfig(proxyTo("/", b.URL), respond("/fixed", "fixed"))
	f := newFrontend(t, cfgA)
	tables := []*Table{f.compile(t, cfgA), f.compile(t, cfgB)}
	client := f.client(host)

	const workers, perWorker = 8, 40
	var wg sync.WaitGroup
	errs := make(chan string, workers*perWorker)
	done := make(chan struct{})
	for range workers {
		wg.Go(func() {
			for range perWorker {
				res, err := client.Do(f.request(t, http.MethodGet, host, "/", nil))
				if err != nil {
					errs <- err.Error()
					continue
				}
				var body bytes.Buffer
				_, _ = body.ReadFrom(res.Body)
				res.Body.Close()
				if res.StatusCode != http.StatusOK || !strings.Contains(body.String(), `"Backend"`) {
					errs <- res.Status + " " + body.String()
				}
			}
		})
	}
	go func() {
		wg.Wait()
		close(done)
	}()
	swaps := 0
	for running := true; running; swaps++ {
		select {
		case <-done:
			running = false
		default:
			f.handler.Swap(tables[swaps%2])
		}
	}
	close(errs)
	for e := range errs {
		t.Errorf("request failed during swaps: %s", e)
	}
	if swaps < 2 {
		t.Errorf("swaps = %v, want several during the load", swaps)
	}
}

func TestAccessLog(t *testing.T) {
	backend := newEcho(t, "b")
	f := newFrontend(t, proxyConfig(proxyTo("/api/", backend.URL), respond("/", "home")))
	req := f.request(t, http.MethodGet, host, "/api/users?token=s3cret", nil)
	req.Header.Set("Authorization", "Bearer s3cret")
	req.Header.Set("Cookie", "session=s3cret")
	if code, _ := do(t, f.client(host), req); code != 200 {
		t.Fatalf("status = %v, want 200", code)
	}
	f.get(t, host, "/")
	f.get(t, "unknown.example.com", "/")

	var access []map[string]any
	for _, l := range f.log.lines(t) {
		if l["msg"] == "request" {
			access = append(access, l)
		}
	}
	if len(access) != 3 {
		t.Fatalf("access lines = %v, want 3:\n%s", len(access), f.log.String())
	}
	want := map[string]any{
		"level": "INFO", "method": "GET", "host": host, "path": "/api/users", "proto": "HTTP/2.0",
		"status": float64(200), "client_ip": "127.0.0.1", "site": host, "route": "/api/", "upstream": backend.URL,
	}
	for k, v := range want {
		if access[0][k] != v {
			t.Errorf("%s = %v, want %v", k, access[0][k], v)
		}
	}
	for _, k := range []string{"time", "bytes_in", "bytes_out", "duration_ms", "retries", "tls_version"} {
		if _, ok := access[0][k]; !ok {
			t.Errorf("key %s missing from %v", k, access[0])
		}
	}
	if b, _ := access[0]["bytes_out"].(float64); b <= 0 {
		t.Errorf("bytes_out = %v, want > 0", access[0]["bytes_out"])
	}
	if strings.Contains(f.log.String(), "s3cret") {
		t.Errorf("log holds a secret from the query string or headers:\n%s", f.log.String())
	}
	if _, ok := access[1]["upstream"]; ok || access[1]["route"] != "/" {
		t.Errorf("respond line = %v, want route / and no upstream", access[1])
	}
	if access[2]["status"] != float64(404) || access[2]["site"] != nil {
		t.Errorf("unknown host line = %v, want status 404 and no site", access[2])
	}
}

func TestAccessLogOff(t *testing.T) {
	off := false
	cfg := proxyConfig(respond("/", "x"))
	cfg.Log.Access = &off
	f := newFrontend(t, cfg)
	f.get(t, host, "/")
	if strings.Contains(f.log.String(), `"msg":"request"`) {
		t.Errorf("access line written with log.access off:\n%s", f.log.String())
	}
}

func TestNoPathToRoute(t *testing.T) {
	table := mustCompile(t, proxyConfig(respond("/", "x")))
	h := NewHandler(table, nil)
	for _, req := range []*http.Request{
		httptest.NewRequest(http.MethodOptions, "*", nil),
		httptest.NewRequest(http.MethodConnect, host+":443", nil),
	} {
		req.Host = host
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusBadRequest {
			t.Errorf("%s %s: status = %v, want %v", req.Method, req.RequestURI, w.Code, http.StatusBadRequest)
		}
	}
}
