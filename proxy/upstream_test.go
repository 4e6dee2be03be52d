package proxy

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/config"
	"golang.org/x/net/websocket"
)

const host = "app.example.com"

func proxyConfig(routes ...config.Route) *config.Config {
	return &config.Config{Sites: []config.Site{cfgSite([]string{host}, routes...)}}
}

func TestProxyPassesRequest(t *testing.T) {
	backend := newEcho(t, "b")
	f := newFrontend(t, proxyConfig(proxyTo("/", backend.URL)))
	req := f.request(t, http.MethodPost, host+":443", "/x/y?q=1&r=2", strings.NewReader("hello"))
	code, body := do(t, f.client(host), req)
	if code != http.StatusOK {
		t.Fatalf("status = %v, want %v", code, http.StatusOK)
	}
	s := decodeSeen(t, body)
	checks := []struct{ name, got, want string }{
		{"method", s.Method, "POST"},
		{"host", s.Host, host + ":443"},
		{"path", s.Path, "/x/y"},
		{"query", s.Query, "q=1&r=2"},
		{"body", s.Body, "hello"},
		{"user agent", s.Header.Get("User-Agent"), "Go-http-client/2.0"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestForwardedHeaders(t *testing.T) {
	backend := newEcho(t, "b")
	spoofed := map[string]string{
		"X-Forwarded-For":   "203.0.113.9",
		"X-Forwarded-Proto": "http",
		"X-Forwarded-Host":  "evil.example",
		"Forwarded":         "for=203.0.113.9",
	}
	tests := []struct {
		name    string
		trusted []string
		send    bool
		want    map[string]string
	}{
		{
			name: "set from the connection",
			want: map[string]string{
				"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "https",
				"X-Forwarded-Host": host, "Forwarded": "",
			},
		},
		{
			name:    "untrusted peer's headers replaced",
			trusted: []string{"10.0.0.0/8"},
			send:    true,
			want: map[string]string{
				"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "https",
				"X-Forwarded-Host": host, "Forwarded": "",
			},
		},
		{
			name:    "trusted peer's headers kept",
			trusted: []string{"127.0.0.1"},
			send:    true,
			want: map[string]string{
				"X-Forwarded-For": "203.0.113.9, 127.0.0.1", "X-Forwarded-Proto": "http",
				"X-Forwarded-Host": "evil.example", "Forwarded": "for=203.0.113.9",
			},
		},
		{
			name:    "trusted peer without headers",
			trusted: []string{"127.0.0.0/8"},
			want: map[string]string{
				"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "https",
				"X-Forwarded-Host": host, "Forwarded": "",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := proxyConfig(proxyTo("/", backend.URL))
			cfg.TrustedProxies = tt.trusted
			f := newFrontend(t, cfg)
			req := f.request(t, http.MethodGet, host, "/", nil)
			if tt.send {
				for k, v := range spoofed {
					req.Header.Set(k, v)
				}
			}
			_, body := do(t, f.client(host), req)
			s := decodeSeen(t, body)
			for k, want := range tt.want {
				if got := strings.Join(s.Header[k], ","); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
		})
	}

	// The per-request values go into the array the proxy path hands in
	// (one per request, with the upstream request), not a new one.
	t.Run("values in the caller's array", func(t *testing.T) {
		in := httptest.NewRequest(http.MethodGet, "/", nil)
		in.RemoteAddr = "203.0.113.1:1234"
		out := in.Clone(t.Context())
		tr := mustCompile(t, &config.Config{}).trust
		var vals [2]string
		given := testing.AllocsPerRun(100, func() { tr.setForwarded(in, out, &vals) })
		fresh := testing.AllocsPerRun(100, func() { tr.setForwarded(in, out, nil) })
		if given >= fresh {
			t.Errorf("setForwarded allocates %v times with an array given, %v without; want fewer with", given, fresh)
		}
		if got := out.Header.Get("X-Forwarded-For"); got != "203.0.113.1" {
			t.Errorf("X-Forwarded-For = %q, want the peer", got)
		}
	})
}

func TestClientIP(t *testing.T) {
	table := mustCompile(t, &config.Config{TrustedProxies: []string{"10.0.0.0/8", "192.168.1.1"}})
	tests := []struct {
		name   string
		remote string
		xff    []string
		want   string
	}{
		{"untrusted peer", "203.0.113.1:1234", []string{"1.1.1.1"}, "203.0.113.1"},
		{"trusted peer without header", "10.0.0.1:1234", nil, "10.0.0.1"},
		{"trusted peer", "10.0.0.1:1234", []string{"1.1.1.1"}, "1.1.1.1"},
		{"rightmost untrusted", "10.0.0.1:1234", []string{"6.6.6.6, 1.1.1.1, 192.168.1.1"}, "1.1.1.1"},
		{"several header lines", "10.0.0.1:1234", []string{"6.6.6.6", "1.1.1.1", "10.2.2.2"}, "1.1.1.1"},
		{"all trusted", "10.0.0.1:1234", []string{"10.9.9.9, 192.168.1.1"}, "10.9.9.9"},
		{"garbage stops the walk", "10.0.0.1:1234", []string{"1.1.1.1, nonsense, 10.3.3.3"}, "10.3.3.3"},
		{"IPv4-mapped peer", "[::ffff:10.0.0.1]:1234", []string{"2001:db8::1"}, "2001:db8::1"},
		{"entry with port", "10.0.0.1:1234", []string{"1.1.1.1:5555"}, "1.1.1.1"},
		// A proxy that appends to an empty header sends ", client".
		{"empty entry left of the client", "10.0.0.1:1234", []string{", 1.1.1.1"}, "1.1.1.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = tt.remote
			r.Header["X-Forwarded-For"] = tt.xff
			if got := table.clientIP(r).String(); got != tt.want {
				t.Errorf("clientIP = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestHopByHopHeaders(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		for _, k := range []string{"X-Secret", "Keep-Alive", "X-Conn-Named", "Upgrade", "Http2-Settings", "X-Plain"} {
			h.Set("Saw-"+k, fmt.Sprint(r.Header[k] != nil))
		}
		h.Set("Saw-Connection", strings.Join(r.Header["Connection"], ","))
		h.Set("Connection", "X-Back-Secret")
		h.Set("X-Back-Secret", "s")
		h.Set("X-Back-Plain", "p")
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(backend.Close)
	f := newFrontend(t, proxyConfig(proxyTo("/", backend.URL)))

	t.Run("headers named in Connection both ways", func(t *testing.T) {
		req := f.request(t, http.MethodGet, host, "/", nil)
		req.Header.Set("Connection", "X-Secret, X-Conn-Named")
		req.Header.Set("X-Secret", "s")
		req.Header.Set("X-Conn-Named", "c")
		req.Header.Set("Keep-Alive", "timeout=5")
		req.Header.Set("X-Plain", "p")
		res, _ := doRes(t, f.client1(), req)
		want := map[string]string{
			"Saw-X-Secret": "false", "Saw-X-Conn-Named": "false", "Saw-Keep-Alive": "false",
			"Saw-X-Plain": "true", "X-Back-Secret": "", "X-Back-Plain": "p",
		}
		for k, v := range want {
			if got := res.Header.Get(k); got != v {
				t.Errorf("%s = %q, want %q", k, got, v)
			}
		}
	})

	t.Run("non-websocket upgrade dropped", func(t *testing.T) {
		req := f.request(t, http.MethodGet, host, "/", nil)
		req.Header.Set("Connection", "Upgrade, HTTP2-Settings")
		req.Header.Set("Upgrade", "h2c")
		req.Header.Set("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA")
		res, _ := doRes(t, f.client1(), req)
		if res.StatusCode != http.StatusOK {
			t.Errorf("status = %v, want %v", res.StatusCode, http.StatusOK)
		}
		for k, want := range map[string]string{"Saw-Upgrade": "false", "Saw-Http2-Settings": "false", "Saw-Connection": ""} {
			if got := res.Header.Get(k); got != want {
				t.Errorf("%s = %q, want %q", k, got, want)
			}
		}
	})
}

func TestWebSocket(t *testing.T) {
	backend := httptest.NewServer(websocket.Handler(func(ws *websocket.Conn) {
		_, _ = io.Copy(ws, ws)
	}))
	t.Cleanup(backend.Close)
	// The x/net/websocket client sends the URL's host as Host, so the Site
	// is the catch-all.
	cfg := &config.Config{Sites: []config.Site{cfgSite([]string{"*"}, proxyTo("/ws", backend.URL))}}
	f := newFrontend(t, cfg)

	wsURL := "wss" + strings.TrimPrefix(f.srv.URL, "https") + "/ws"
	wcfg, err := websocket.NewConfig(wsURL, "https://app.example.com/")
	if err != nil {
		t.Fatalf("NewConfig: %v", err)
	}
	wcfg.TlsConfig = f.tlsConfig()
	ws, err := websocket.DialConfig(wcfg)
	if err != nil {
		t.Fatalf("dialing WebSocket through the proxy: %v", err)
	}
	defer ws.Close()

	wsEcho(t, ws, "hello")

	// A reload that drops the route must not touch the open connection.
	f.handler.Swap(f.compile(t, &config.Config{Sites: []config.Site{cfgSite([]string{"*"}, respond("/", "gone"))}}))
	wsEcho(t, ws, "still here")
	if code, body := f.get(t, "127.0.0.1", "/ws"); code != http.StatusOK || body != "gone" {
		t.Errorf("after swap: %v %q, want 200 \"gone\"", code, body)
	}
}

func TestServerSentEventsFlushAtOnce(t *testing.T) {
	release := make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "data: second\n\n")
	}))
	t.Cleanup(backend.Close)
	t.Cleanup(func() { close(release) })
	f := newFrontend(t, proxyConfig(proxyTo("/", backend.URL)))

	res, err := f.client(host).Do(f.request(t, http.MethodGet, host, "/events", nil))
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	defer res.Body.Close()
	got := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(res.Body).ReadString('\n')
		got <- line
	}()
	select {
	case line := <-got:
		if line != "data: first\n" {
			t.Errorf("first line = %q, want %q", line, "data: first\n")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("first event not received while the upstream is still streaming")
	}
}

func TestUpstreamErrors(t *testing.T) {
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(release) })
	cfg := proxyConfig(
		proxyTo("/closed", "http://"+closedAddr(t)),
		proxyTo("/slow", slow.URL),
	)
	cfg.Timeouts.ResponseHeader = 100 * time.Millisecond
	f := newFrontend(t, cfg)
	tests := []struct {
		path string
		code int
		body string
	}{
		{"/closed", http.StatusBadGateway, "502 Bad Gateway\n"},
		{"/slow", http.StatusGatewayTimeout, "504 Gateway Timeout\n"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			code, body := f.get(t, host, tt.path)
			if code != tt.code || body != tt.body {
				t.Errorf("got %v %q, want %v %q", code, body, tt.code, tt.body)
			}
		})
	}
}

func TestClientGoneIsLogged499(t *testing.T) {
	arrived := make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-r.Context().Done()
	}))
	t.Cleanup(backend.Close)
	f := newFrontend(t, proxyConfig(proxyTo("/", backend.URL)))

	ctx, cancel := context.WithCancel(t.Context())
	req := f.request(t, http.MethodGet, host, "/", nil).WithContext(ctx)
	errc := make(chan error, 1)
	go func() {
		res, err := f.client(host).Do(req)
		if err == nil {
			res.Body.Close()
		}
		errc <- err
	}()
	<-arrived
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("client error = %v, want context.Canceled", err)
	}
	deadline := time.After(5 * time.Second)
	for {
		for _, l := range f.log.lines(t) {
			if l["msg"] == "request" {
				if l["status"] != float64(statusClientClosedRequest) {
					t.Errorf("access line status = %v, want 499", l["status"])
				}
				return
			}
		}
		select {
		case <-f.log.written:
		case <-deadline:
			t.Fatalf("no access line after the client left:\n%s", f.log.String())
		}
	}
}

func TestErrorStatus(t *testing.T) {
	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	dialErr := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	tests := []struct {
		name string
		ctx  context.Context
		err  error
		want int
	}{
		{"body too large", t.Context(), fmt.Errorf("writing body: %w", &http.MaxBytesError{Limit: 1}), http.StatusRequestEntityTooLarge},
		{"client gone", canceled, context.Canceled, statusClientClosedRequest},
		{"dial failure", t.Context(), dialErr, http.StatusBadGateway},
		{"timeout", t.Context(), &net.OpError{Op: "read", Err: timeoutError{}}, http.StatusGatewayTimeout},
		{"deadline", t.Context(), context.DeadlineExceeded, http.StatusGatewayTimeout},
		{"anything else", t.Context(), io.ErrUnexpectedEOF, http.StatusBadGateway},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := errorStatus(tt.ctx, tt.err); got != tt.want {
				t.Errorf("errorStatus = %v, want %v", got, tt.want)
			}
		})
	}
}

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func TestRoundRobin(t *testing.T) {
	a, b := newEcho(t, "a"), newEcho(t, "b")
	f := newFrontend(t, proxyConfig(proxyTo("/", a.URL, b.URL)))
	var got []string
	for range 4 {
		_, body := f.get(t, host, "/")
		got = append(got, decodeSeen(t, body).Backend)
	}
	if want := "a b a b"; strings.Join(got, " ") != want {
		t.Errorf("backends = %v, want %v", strings.Join(got, " "), want)
	}
}

func TestDialFailureSkipsUpstream(t *testing.T) {
	live := newEcho(t, "live")
	f := newFrontend(t, proxyConfig(proxyTo("/", "http://"+closedAddr(t), live.URL)))
	for i := range 6 {
		// A body proves the retry resends what the failed attempt never sent.
		req := f.request(t, http.MethodPost, host, "/", strings.NewReader("payload"))
		code, body := do(t, f.client(host), req)
		if code != http.StatusOK {
			t.Fatalf("request %d: status = %v, want %v", i, code, http.StatusOK)
		}
		if s := decodeSeen(t, body); s.Backend != "live" || s.Body != "payload" {
			t.Errorf("request %d: backend %q body %q, want live payload", i, s.Backend, s.Body)
		}
	}
	if n := strings.Count(f.log.String(), "upstream unreachable"); n != 1 {
		t.Errorf("dead upstream dialed %d times, want 1 (then cooled down)", n)
	}
}

func TestH2CUpstream(t *testing.T) {
	backend := httptest.NewUnstartedServer(echoHandler("h2c"))
	backend.Config.Protocols = new(http.Protocols)
	backend.Config.Protocols.SetHTTP1(true)
	backend.Config.Protocols.SetUnencryptedHTTP2(true)
	backend.Start()
	t.Cleanup(backend.Close)
	f := newFrontend(t, proxyConfig(proxyTo("/", "h2c://"+backend.Listener.Addr().String())))
	code, body := f.get(t, host, "/")
	if code != http.StatusOK {
		t.Fatalf("status = %v, want %v", code, http.StatusOK)
	}
	if got := decodeSeen(t, body).ProtoMajor; got != 2 {
		t.Errorf("upstream ProtoMajor = %v, want 2", got)
	}
}

// TestH2CUpstreamWebSocket opens a WebSocket through an h2c:// Upstream.
// HTTP/2 has no Upgrade, so the upgrade goes over HTTP/1.1, which a
// prior-knowledge h2c server speaks on the same port; other requests stay
// on HTTP/2.
func TestH2CUpstreamWebSocket(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle("/ws", websocket.Handler(func(ws *websocket.Conn) {
		_, _ = io.Copy(ws, ws)
	}))
	mux.Handle("/", echoHandler("h2c"))
	backend := httptest.NewUnstartedServer(mux)
	backend.Config.Protocols = new(http.Protocols)
	backend.Config.Protocols.SetHTTP1(true)
	backend.Config.Protocols.SetUnencryptedHTTP2(true)
	backend.Start()
	t.Cleanup(backend.Close)
	f := newFrontend(t, &config.Config{Sites: []config.Site{cfgSite([]string{"*"}, proxyTo("/", "h2c://"+backend.Listener.Addr().String()))}})

	wsURL := "wss" + strings.TrimPrefix(f.srv.URL, "https") + "/ws"
	wcfg, err := websocket.NewConfig(wsURL, "https://app.example.com/")
	if err != nil {
		t.Fatalf("NewConfig: %v", err)
	}
	wcfg.TlsConfig = f.tlsConfig()
	for i := range 2 {
		ws, err := websocket.DialConfig(wcfg)
		if err != nil {
			t.Fatalf("WebSocket %d through the h2c Upstream: %v", i, err)
		}
		wsEcho(t, ws, fmt.Sprintf("hello %d", i))
		ws.Close()
	}
	code, body := f.get(t, "127.0.0.1", "/")
	if code != http.StatusOK {
		t.Fatalf("plain request: status = %v, want 200", code)
	}
	if got := decodeSeen(t, body).ProtoMajor; got != 2 {
		t.Errorf("plain request reached the Upstream over HTTP/%d, want HTTP/2", got)
	}
}

func TestHTTPSUpstream(t *testing.T) {
	backend := httptest.NewUnstartedServer(echoHandler("tls"))
	backend.EnableHTTP2 = true
	backend.StartTLS()
	t.Cleanup(backend.Close)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	writeCertPEM(t, caFile, backend.Certificate())

	f := newFrontend(t, proxyConfig(
		config.Route{Path: "/verified", Upstreams: []string{backend.URL}, CA: caFile},
		proxyTo("/system-roots", backend.URL),
	))
	t.Run("verified with route ca", func(t *testing.T) {
		code, body := f.get(t, host, "/verified")
		if code != http.StatusOK {
			t.Fatalf("status = %v, want %v (%s)", code, http.StatusOK, body)
		}
		if got := decodeSeen(t, body).ProtoMajor; got != 2 {
			t.Errorf("upstream ProtoMajor = %v, want 2 (h2 by ALPN)", got)
		}
	})
	t.Run("refused without it", func(t *testing.T) {
		if code, _ := f.get(t, host, "/system-roots"); code != http.StatusBadGateway {
			t.Errorf("status = %v, want %v", code, http.StatusBadGateway)
		}
	})
}

func writeCertPEM(t *testing.T, file string, cert *x509.Certificate) {
	t.Helper()
	data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatalf("writing CA: %v", err)
	}
}

func TestMaxBody(t *testing.T) {
	var oversizedHits atomic.Int32
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Case") == "content-length over limit" {
			oversizedHits.Add(1)
		}
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	t.Cleanup(backend.Close)
	f := newFrontend(t, proxyConfig(config.Route{Path: "/", Upstreams: []string{backend.URL}, MaxBody: 10}))
	tests := []struct {
		name   string
		body   func() io.Reader
		length int64 // -1: unknown, streamed
		want   int
	}{
		{"within limit", func() io.Reader { return strings.NewReader("0123456789") }, 10, http.StatusOK},
		{"content-length over limit", func() io.Reader { return strings.NewReader("0123456789A") }, 11, http.StatusRequestEntityTooLarge},
		{"streamed body grows past limit", func() io.Reader {
			return io.MultiReader(strings.NewReader("01234"), strings.NewReader("56789ABCDEF"))
		}, -1, http.StatusRequestEntityTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, c := range []struct {
				name   string
				client *http.Client
			}{{"h2", f.client(host)}, {"h1", f.client1()}} {
				req := f.request(t, http.MethodPost, host, "/", tt.body())
				req.ContentLength = tt.length
				req.Header.Set("X-Case", tt.name)
				if tt.length < 0 {
					req.Body = io.NopCloser(req.Body) // hide the length
				}
				if code, body := do(t, c.client, req); code != tt.want {
					t.Errorf("%s: status = %v %q, want %v", c.name, code, body, tt.want)
				}
			}
		})
	}
	if n := oversizedHits.Load(); n != 0 {
		t.Errorf("backend saw %v requests with an oversized Content-Length, want 0", n)
	}
}

// TestCutOffAnswerLeavesInFlight has an Upstream break its answer off
// mid-body (issue 13): ReverseProxy aborts the handler, and the Upstream
// must still leave the in-flight count that least_conn and random_two
// balance on; it once stayed counted forever, so such an Upstream looked
// ever busier.
func TestCutOffAnswerLeavesInFlight(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("hello"))
		w.(http.Flusher).Flush()
		c, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
	}))
	defer backend.Close()
	f := newFrontend(t, proxyConfig(proxyTo("/", backend.URL)))
	for range 3 {
		res, err := f.client(host).Do(f.request(t, http.MethodGet, host, "/", nil))
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.ReadAll(res.Body)
		res.Body.Close()
		if err == nil {
			t.Fatal("the cut-off answer read as whole")
		}
	}
	for _, u := range f.handler.table.Load().ups.all {
		if n := u.state().inFlight.Load(); n != 0 {
			t.Errorf("%s: %d requests in flight after every answer ended, want 0", u.key, n)
		}
	}
	if !strings.Contains(f.log.String(), `"msg":"upstream answer cut off"`) {
		t.Errorf("no cut-off logged:\n%s", f.log)
	}
}
