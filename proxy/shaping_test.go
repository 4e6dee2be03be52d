package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"io"
	"maps"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/websocket"

	"github.com/gatehouse-proxy/gatehouse/config"
)

var generatedID = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestRequestID(t *testing.T) {
	// The backend echoes the request ID back, as many apps do; the client
	// must still see it once.
	backend := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Request-Id", r.Header.Get("X-Request-Id"))
		echoHandler("b").ServeHTTP(w, r)
	}))
	f := newFrontend(t, proxyConfig(proxyTo("/", backend.URL), respond("/fixed", "ok")))

	tests := []struct {
		name, sent string
		keep       bool
	}{
		{"none sent", "", false},
		{"sane one kept", "req-42_abc:1", true},
		{"with a space replaced", "two words", false},
		{"too long replaced", strings.Repeat("a", 129), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := f.request(t, http.MethodGet, host, "/x", nil)
			if tt.sent != "" {
				req.Header.Set("X-Request-ID", tt.sent)
			}
			res, body := doRes(t, f.client(host), req)
			got := res.Header.Values("X-Request-Id")
			if len(got) != 1 {
				t.Fatalf("response X-Request-Id = %q, want exactly one", got)
			}
			id := got[0]
			if tt.keep && id != tt.sent {
				t.Errorf("X-Request-Id = %q, want the client's %q", id, tt.sent)
			}
			if !tt.keep && !generatedID.MatchString(id) {
				t.Errorf("X-Request-Id = %q, want 32 fresh hex digits", id)
			}
			if up := decodeSeen(t, body).Header.Values("X-Request-Id"); len(up) != 1 || up[0] != id {
				t.Errorf("Upstream saw X-Request-Id %q, want [%q]", up, id)
			}
			accessLine(t, f, func(l map[string]any) bool { return l["request_id"] == id })
		})
	}

	// Fixed responses carry one too, and two requests never share one.
	res1, _ := f.getRes(t, host, "/fixed")
	res2, _ := f.getRes(t, host, "/fixed")
	a, b := res1.Header.Get("X-Request-Id"), res2.Header.Get("X-Request-Id")
	if !generatedID.MatchString(a) || a == b {
		t.Errorf("fixed responses got request IDs %q and %q, want two different fresh ones", a, b)
	}
}

func TestRequestHeaders(t *testing.T) {
	backend := newEcho(t, "b")
	r := proxyTo("/", backend.URL)
	r.RequestHeaders = &config.Headers{
		Set: map[string]string{
			"X-Client":          "{client_ip}",
			"X-Where":           "{scheme}://{host}",
			"X-Trace":           "id={request_id}",
			"X-Static":          "plain {Value} stays",
			"X-Forwarded-Proto": "wss",
			"Host":              "internal.example",
		},
		Add:    map[string]string{"X-Multi": "second"},
		Remove: []string{"X-Secret", "Cookie"},
	}
	f := newFrontend(t, proxyConfig(r))
	req := f.request(t, http.MethodGet, host, "/x", nil)
	req.Header.Set("X-Multi", "first")
	req.Header.Set("X-Secret", "s3cret")
	req.Header.Set("Cookie", "a=b")
	req.Header.Set("X-Client", "1.2.3.4")
	res, body := doRes(t, f.client(host), req)
	s := decodeSeen(t, body)
	id := res.Header.Get("X-Request-Id")
	for name, want := range map[string]string{
		"X-Client":          "127.0.0.1",
		"X-Where":           "https://" + host,
		"X-Trace":           "id=" + id,
		"X-Static":          "plain {Value} stays",
		"X-Forwarded-Proto": "wss",
		"X-Multi":           "first,second",
		"X-Secret":          "",
		"Cookie":            "",
	} {
		if got := strings.Join(s.Header.Values(name), ","); got != want {
			t.Errorf("Upstream saw %s: %q, want %q", name, got, want)
		}
	}
	if s.Host != "internal.example" {
		t.Errorf("Upstream saw Host %q, want internal.example", s.Host)
	}
}

func TestResponseHeaders(t *testing.T) {
	backend := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Server", "app/1.2.3")
		w.Header().Set("X-Powered-By", "PHP/5")
		w.Header().Set("Cache-Control", "no-store")
		w.Write([]byte("hi"))
	}))
	r := proxyTo("/", backend.URL)
	r.ResponseHeaders = &config.Headers{
		Set:    map[string]string{"Server": "gatehouse", "X-Served-For": "{client_ip} over {scheme}"},
		Add:    map[string]string{"Cache-Control": "private"},
		Remove: []string{"X-Powered-By"},
	}
	denied := respond("/denied", "no")
	denied.DenyIPs = []string{"127.0.0.1"}
	denied.ResponseHeaders = &config.Headers{Set: map[string]string{"Access-Control-Allow-Origin": "*"}}
	f := newFrontend(t, proxyConfig(r, denied))

	res, body := f.getRes(t, host, "/")
	if body != "hi" {
		t.Fatalf("body = %q", body)
	}
	for name, want := range map[string]string{
		"Server":        "gatehouse",
		"X-Served-For":  "127.0.0.1 over https",
		"Cache-Control": "no-store,private",
		"X-Powered-By":  "",
	} {
		if got := strings.Join(res.Header.Values(name), ","); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	// A 403 of the Route's own access control carries them too.
	res, _ = f.getRes(t, host, "/denied")
	if res.StatusCode != 403 || res.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("denied: got %d with Access-Control-Allow-Origin %q, want 403 with *", res.StatusCode, res.Header.Get("Access-Control-Allow-Origin"))
	}
}

func TestSecurityHeaders(t *testing.T) {
	framed := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The app knows it may be framed by its own origin.
		w.Header().Set("X-Frame-Options", "SAMEORIGIN")
		w.Header().Set("Strict-Transport-Security", "max-age=1")
		w.Write([]byte("app"))
	}))
	custom := respond("/custom", "custom")
	custom.ResponseHeaders = &config.Headers{
		Set:    map[string]string{"Referrer-Policy": "no-referrer"},
		Remove: []string{"X-Frame-Options", "Strict-Transport-Security"},
	}
	cfg := &config.Config{Sites: []config.Site{
		{Hosts: []string{host}, SecurityHeaders: true, Routes: []config.Route{respond("/", "home"), proxyTo("/app/", framed.URL), custom}},
		{Hosts: []string{"hsts.example.com"}, SecurityHeaders: true, HSTS: &config.HSTS{MaxAge: 3600e9, Preload: true}, Routes: []config.Route{respond("/", "x")}},
		{Hosts: []string{"plain.example.com"}, Routes: []config.Route{respond("/", "x")}},
	}}
	f := newFrontend(t, cfg)
	tests := []struct {
		name, host, path string
		change           map[string]string
	}{
		{"preset", host, "/", nil},
		{"the app's own values win, but HSTS is the Site's", host, "/app/", map[string]string{"X-Frame-Options": "SAMEORIGIN"}},
		{"route overrides and removes", host, "/custom", map[string]string{"Referrer-Policy": "no-referrer", "X-Frame-Options": "", "Strict-Transport-Security": ""}},
		{"site hsts kept", "hsts.example.com", "/", map[string]string{"Strict-Transport-Security": "max-age=3600; preload"}},
		{"off", "plain.example.com", "/", map[string]string{"Strict-Transport-Security": "", "X-Content-Type-Options": "", "X-Frame-Options": "", "Referrer-Policy": ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, _ := doRes(t, f.client(tt.host), f.request(t, http.MethodGet, tt.host, tt.path, nil))
			if res.StatusCode != 200 {
				t.Fatalf("status %d", res.StatusCode)
			}
			for name, want := range securityPreset {
				if v, ok := tt.change[name]; ok {
					want = v
				}
				if got := strings.Join(res.Header.Values(name), ","); got != want {
					t.Errorf("%s = %q, want %q", name, got, want)
				}
			}
		})
	}
}

// securityPreset is what security_headers: true sends, HSTS at its default.
var securityPreset = map[string]string{
	"Strict-Transport-Security": "max-age=31536000",
	"X-Content-Type-Options":    "nosniff",
	"X-Frame-Options":           "DENY",
	"Referrer-Policy":           "strict-origin-when-cross-origin",
}

// withHeaders returns base with change applied; "" means absent.
func withHeaders(base, change map[string]string) map[string]string {
	out := maps.Clone(base)
	maps.Copy(out, change)
	return out
}

// checkHeaders reports every header of h that is not as want says, its
// values joined by ",".
func checkHeaders(t *testing.T, h http.Header, want map[string]string) {
	t.Helper()
	for name, w := range want {
		if got := strings.Join(h.Values(name), ","); got != w {
			t.Errorf("%s = %q, want %q", name, got, w)
		}
	}
}

// TestSiteAnswersShaped checks the answers the Handler gives before any
// Route handler runs: the Site's own 404 for a path no Route matches, and
// its 400 for a request with no path, carry the security_headers preset;
// a 413 for a Content-Length over max_body carries the Route's
// response_headers, like the Route's other answers.
func TestSiteAnswersShaped(t *testing.T) {
	upload := respond("/upload", "ok")
	upload.MaxBody = 10
	upload.ResponseHeaders = &config.Headers{
		Set:    map[string]string{"Access-Control-Allow-Origin": "*"},
		Remove: []string{"X-Frame-Options"},
	}
	cfg := &config.Config{Sites: []config.Site{
		{Hosts: []string{host}, SecurityHeaders: true, Routes: []config.Route{respond("/app/", "app"), upload}},
		{Hosts: []string{"plain.example.com"}, Routes: []config.Route{respond("/app/", "app")}},
	}}
	f := newFrontend(t, cfg)
	tests := []struct {
		name, host, method, target, body string
		code                             int
		want                             map[string]string
	}{
		{"404 for a path no route matches", host, http.MethodGet, "/missing", "", http.StatusNotFound, securityPreset},
		{"404 below a route's prefix", host, http.MethodGet, "/apps", "", http.StatusNotFound, securityPreset},
		{"413 over max_body", host, http.MethodPost, "/upload", "0123456789A", http.StatusRequestEntityTooLarge,
			withHeaders(securityPreset, map[string]string{"Access-Control-Allow-Origin": "*", "X-Frame-Options": ""})},
		{"404 without security_headers", "plain.example.com", http.MethodGet, "/missing", "", http.StatusNotFound,
			map[string]string{"Strict-Transport-Security": "", "X-Frame-Options": "", "Referrer-Policy": ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, c := range []struct {
				name   string
				client *http.Client
			}{{"h2", f.client(tt.host)}, {"h1", f.client1()}} {
				var body io.Reader
				if tt.body != "" {
					body = strings.NewReader(tt.body)
				}
				res, got := doRes(t, c.client, f.request(t, tt.method, tt.host, tt.target, body))
				if want := http.StatusText(tt.code); res.StatusCode != tt.code || !strings.Contains(got, want) {
					t.Fatalf("%s: got %d %q, want %d %s", c.name, res.StatusCode, got, tt.code, want)
				}
				checkHeaders(t, res.Header, tt.want)
				if id := res.Header.Values("X-Request-Id"); len(id) != 1 || !generatedID.MatchString(id[0]) {
					t.Errorf("%s: X-Request-Id = %q, want one fresh ID", c.name, id)
				}
			}
		})
	}
	t.Run("400 for a request without a path", func(t *testing.T) {
		conn, err := tls.Dial("tcp", f.srv.Listener.Addr().String(), &tls.Config{ServerName: host, RootCAs: f.tlsConfig().RootCAs})
		if err != nil {
			t.Fatalf("dialing: %v", err)
		}
		defer conn.Close()
		if _, err := io.WriteString(conn, "CONNECT "+host+":443 HTTP/1.1\r\nHost: "+host+"\r\n\r\n"); err != nil {
			t.Fatalf("writing CONNECT: %v", err)
		}
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("reading response: %v", err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest {
			t.Fatalf("status = %d, want 400", res.StatusCode)
		}
		checkHeaders(t, res.Header, securityPreset)
	})
}

// readRecorder records what is read through a connection, so a test can
// read the handshake response a WebSocket client consumed.
type readRecorder struct {
	net.Conn
	read bytes.Buffer
}

func (c *readRecorder) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Write(p[:n])
	return n, err
}

// TestWebSocketUpgradeShaped checks the 101 Switching Protocols of a
// WebSocket upgrade: it carries the security_headers preset and the
// Route's response_headers like every other response of the Route, with
// the Upstream's own values merged as usual, but the Sec-WebSocket-*
// handshake headers are never changed, so the handshake still holds.
func TestWebSocketUpgradeShaped(t *testing.T) {
	backend := newServer(t, websocket.Server{
		Handshake: func(c *websocket.Config, _ *http.Request) error {
			c.Header = http.Header{"X-Powered-By": {"app/1.0"}, "X-Frame-Options": {"SAMEORIGIN"}}
			return nil
		},
		Handler: func(ws *websocket.Conn) { _, _ = io.Copy(ws, ws) },
	})
	r := proxyTo("/ws", backend.URL)
	r.ResponseHeaders = &config.Headers{
		Set: map[string]string{"Server": "gatehouse", "Referrer-Policy": "no-referrer"},
		Add: map[string]string{"X-Via": "gatehouse {scheme}"},
		// Removing Sec-WebSocket-Accept would fail every handshake; it is
		// left alone on the 101.
		Remove: []string{"X-Powered-By", "Sec-WebSocket-Accept"},
	}
	f := newFrontend(t, &config.Config{Sites: []config.Site{{Hosts: []string{"*"}, SecurityHeaders: true, Routes: []config.Route{r}}}})

	addr := f.srv.Listener.Addr().String()
	conn, err := tls.Dial("tcp", addr, f.tlsConfig())
	if err != nil {
		t.Fatalf("dialing: %v", err)
	}
	rec := &readRecorder{Conn: conn}
	wcfg, err := websocket.NewConfig("wss://"+addr+"/ws", "https://app.example.com/")
	if err != nil {
		t.Fatal(err)
	}
	ws, err := websocket.NewClient(wcfg, rec)
	if err != nil {
		conn.Close()
		t.Fatalf("WebSocket handshake through the shaped Route: %v", err)
	}
	defer ws.Close()
	res, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(rec.read.Bytes())), nil)
	if err != nil {
		t.Fatalf("reading the recorded handshake response: %v", err)
	}
	if res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status = %d, want 101", res.StatusCode)
	}
	checkHeaders(t, res.Header, withHeaders(securityPreset, map[string]string{
		"X-Frame-Options": "SAMEORIGIN", // the app's own wins over the preset
		"Referrer-Policy": "no-referrer",
		"Server":          "gatehouse",
		"X-Via":           "gatehouse https",
		"X-Powered-By":    "",
		"Upgrade":         "websocket",
	}))
	if v := res.Header.Values("Sec-WebSocket-Accept"); len(v) != 1 {
		t.Errorf("Sec-WebSocket-Accept = %q, want the Upstream's one value", v)
	}
	if id := res.Header.Values("X-Request-Id"); len(id) != 1 || !generatedID.MatchString(id[0]) {
		t.Errorf("X-Request-Id = %q, want one fresh ID", id)
	}
	wsEcho(t, ws, "hello")
}

func TestPathShaping(t *testing.T) {
	backend := newEcho(t, "b")
	api := proxyTo("/api/", backend.URL)
	api.StripPrefix = true
	api.AddPrefix = "/v2/"
	old := proxyTo("/old/", backend.URL)
	old.Rewrite = &config.Rewrite{Match: `^/old/([^/]+)/(.*)$`, To: "/new/$2/${1}x"}
	both := proxyTo("/both/", backend.URL)
	both.AddPrefix = "/pre"
	both.Rewrite = &config.Rewrite{Match: `^/pre/both`, To: "/rewritten"}
	f := newFrontend(t, proxyConfig(api, old, both))
	tests := []struct {
		target, path, rawPath, query string
	}{
		{"/api/users?x=1", "/v2/users", "", "x=1"},
		{"/api", "/v2/", "", ""},
		{"/api/a%2Fb", "/v2/a/b", "/v2/a%2Fb", ""},
		{"/old/one/two/three", "/new/two/three/onex", "", ""},
		{"/old/nomatch", "/old/nomatch", "", ""},
		{"/both/x", "/rewritten/x", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			code, body := f.get(t, host, tt.target)
			if code != 200 {
				t.Fatalf("status %d: %s", code, body)
			}
			s := decodeSeen(t, body)
			if s.Path != tt.path || s.RawPath != tt.rawPath || s.Query != tt.query {
				t.Errorf("Upstream saw path %q raw %q query %q, want %q %q %q", s.Path, s.RawPath, s.Query, tt.path, tt.rawPath, tt.query)
			}
		})
	}
}

func TestRedirectRoute(t *testing.T) {
	moved := config.Route{Path: "/", Redirect: &config.Redirect{To: "https://new.example.com{path}?{query}"}}
	old := config.Route{Path: "/old/", StripPrefix: true, Redirect: &config.Redirect{To: "{scheme}://{host}/new{path}", Status: 301}}
	fixed := config.Route{Path: "/fixed", Redirect: &config.Redirect{To: "/elsewhere", Status: 302}}
	f := newFrontend(t, proxyConfig(moved, old, fixed))
	tests := []struct {
		target   string
		status   int
		location string
	}{
		{"/a/b?x=1&y=2", 308, "https://new.example.com/a/b?x=1&y=2"},
		{"/a/b", 308, "https://new.example.com/a/b"},
		{"/a%20b/c", 308, "https://new.example.com/a%20b/c"},
		{"/old/page", 301, "https://" + host + "/new/page"},
		{"/fixed?q", 302, "/elsewhere"},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			res, _ := f.getRes(t, host, tt.target)
			if res.StatusCode != tt.status || res.Header.Get("Location") != tt.location {
				t.Errorf("got %d %q, want %d %q", res.StatusCode, res.Header.Get("Location"), tt.status, tt.location)
			}
		})
	}
}

func TestParseTemplate(t *testing.T) {
	all := []string{"client_ip", "host", "scheme", "request_id", "path", "query"}
	tests := []struct {
		in      string
		static  bool
		err     bool
		render  string
		noQuery string // rendered for a request without a query
	}{
		{in: "plain", static: true, render: "plain", noQuery: "plain"},
		{in: "", static: true, render: "", noQuery: ""},
		{in: "{Host} {x-y} {} {", static: true, render: "{Host} {x-y} {} {", noQuery: "{Host} {x-y} {} {"},
		{in: "{scheme}://{host}{path}?{query}", render: "https://h.example/p%20q?a=1", noQuery: "https://h.example/p%20q"},
		{in: "ip={client_ip};id={request_id}", render: "ip=192.0.2.7;id=rid", noQuery: "ip=192.0.2.7;id=rid"},
		{in: "q={query}", render: "q=a=1", noQuery: "q="},
		{in: "{nope}", err: true},
	}
	tab := &trust{}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			tmpl, err := parseTemplate(tt.in, all)
			if (err != nil) != tt.err {
				t.Fatalf("err = %v, want error %v", err, tt.err)
			}
			if err != nil {
				return
			}
			if (tmpl.static != nil) != tt.static {
				t.Errorf("static = %v, want %v", tmpl.static != nil, tt.static)
			}
			for _, q := range []struct{ target, want string }{{"/p?a=1", tt.render}, {"/p", tt.noQuery}} {
				r, _ := http.NewRequest("GET", "https://h.example"+q.target, nil)
				r.RemoteAddr = "192.0.2.7:1234"
				r.TLS = &tlsState
				v := vars{t: tab, r: r, requestID: "rid", path: "/p%20q"}
				if got := tmpl.value(&v)[0]; got != q.want {
					t.Errorf("%s: rendered %q, want %q", q.target, got, q.want)
				}
			}
		})
	}
}

func BenchmarkRequestHeaders(b *testing.B) {
	ops, err := compileHeaders(&config.Headers{
		Set: map[string]string{"X-Client": "{client_ip}", "X-Static": "v"},
		Add: map[string]string{"X-Id": "{request_id}"},
	}, config.HeaderPlaceholders)
	if err != nil {
		b.Fatal(err)
	}
	r, _ := http.NewRequest("GET", "https://h.example/", nil)
	r.RemoteAddr = "192.0.2.7:1234"
	tab := &trust{}
	b.ReportAllocs()
	for b.Loop() {
		h := make(http.Header, 4)
		v := vars{t: tab, r: r, requestID: "0123456789abcdef0123456789abcdef"}
		ops.apply(h, &v)
	}
}

// TestWebSocketThroughShaping opens a WebSocket through a Route with every
// response wrapper and access check on: the upgrade must pass them all.
func TestWebSocketThroughShaping(t *testing.T) {
	backend := newServer(t, websocket.Handler(func(ws *websocket.Conn) {
		_, _ = io.Copy(ws, ws)
	}))
	r := proxyTo("/ws", backend.URL)
	r.Compress = true
	r.ResponseHeaders = &config.Headers{Set: map[string]string{"X-Via": "gatehouse"}}
	r.RequestHeaders = &config.Headers{Set: map[string]string{"X-Client": "{client_ip}"}}
	r.AllowIPs = []string{"127.0.0.0/8"}
	r.RateLimit = &config.RateLimit{Requests: 10, Per: time.Second}
	r.BasicAuth = &config.BasicAuth{Users: map[string]string{"alice": bcryptHash(t, "pw")}}
	f := newFrontend(t, &config.Config{Sites: []config.Site{{Hosts: []string{"*"}, SecurityHeaders: true, Routes: []config.Route{r}}}})

	wsURL := "wss" + strings.TrimPrefix(f.srv.URL, "https") + "/ws"
	wcfg, err := websocket.NewConfig(wsURL, "https://app.example.com/")
	if err != nil {
		t.Fatal(err)
	}
	wcfg.TlsConfig = f.tlsConfig()
	if _, err := websocket.DialConfig(wcfg); err == nil {
		t.Fatal("WebSocket opened without credentials")
	}
	wcfg.Header = http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte("alice:pw"))}}
	ws, err := websocket.DialConfig(wcfg)
	if err != nil {
		t.Fatalf("dialing WebSocket through the shaped Route: %v", err)
	}
	defer ws.Close()
	for _, msg := range []string{"hello", strings.Repeat("long enough to be worth compressing ", 40)} {
		wsEcho(t, ws, msg)
	}
}

// TestRequestHeadersAddToShared adds to the headers whose values are
// shared (X-Forwarded-Proto by every request, X-Forwarded-For and -Host by
// one allocation, X-Request-ID by the response): each Add must copy, so the
// response keeps its one X-Request-ID and the next request its plain
// X-Forwarded-Proto.
func TestRequestHeadersAddToShared(t *testing.T) {
	backend := newEcho(t, "b")
	r := proxyTo("/", backend.URL)
	r.RequestHeaders = &config.Headers{Add: map[string]string{
		"X-Forwarded-For":   "198.51.100.1",
		"X-Forwarded-Host":  "extra.example",
		"X-Forwarded-Proto": "extra",
		"X-Request-Id":      "extra-id",
	}}
	f := newFrontend(t, proxyConfig(r))
	for i := range 2 {
		req := f.request(t, http.MethodGet, host, "/x", nil)
		req.Header.Set("X-Request-Id", "client-id")
		res, body := doRes(t, f.client(host), req)
		s := decodeSeen(t, body)
		for name, want := range map[string]string{
			"X-Forwarded-For":   "127.0.0.1,198.51.100.1",
			"X-Forwarded-Host":  host + ",extra.example",
			"X-Forwarded-Proto": "https,extra",
			"X-Request-Id":      "client-id,extra-id",
		} {
			if got := strings.Join(s.Header.Values(name), ","); got != want {
				t.Errorf("request %d: Upstream saw %s: %q, want %q", i, name, got, want)
			}
		}
		if got := strings.Join(res.Header.Values("X-Request-Id"), ","); got != "client-id" {
			t.Errorf("request %d: response X-Request-Id %q, want %q", i, got, "client-id")
		}
	}
}
