package gateway

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/gateway/gatewaytest"
	"golang.org/x/net/websocket"
)

const siteConfig = `listen: {http: "127.0.0.1:{{HTTP}}", https: "127.0.0.1:{{HTTPS}}"}
admin: "127.0.0.1:{{ADMIN}}"
storage: {{STORAGE}}
timeouts: {shutdown: 5s}
sites:
  - hosts: [localhost, app.localhost]
    routes:
      - path: /
        respond: {body: "%s"}
      - path: /app/
        upstreams: [%s]
      - path: /ws/
        upstreams: [%s]
`

func TestRunServesRedirectsAndDrainsOnShutdown(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/app/slow" {
			arrived <- struct{}{}
			<-release
		}
		fmt.Fprintf(w, "upstream saw %s %s", r.Host, r.URL.Path)
	}))
	defer upstream.Close()

	p := newPorts(t)
	in := start(t, p, fmt.Sprintf(siteConfig, "hello", upstream.URL, upstream.URL))
	c := in.Client(t)

	if status, body := get(t, c, "https://localhost/"); status != 200 || body != "hello" {
		t.Errorf("respond route: got %d %q, want 200 hello", status, body)
	}
	if status, body := get(t, c, "https://app.localhost/app/x?q=1"); status != 200 || body != "upstream saw app.localhost /app/x" {
		t.Errorf("proxied route: got %d %q", status, body)
	}
	// A Host no Site serves, over a connection whose SNI is served: never a
	// default backend.
	req, _ := http.NewRequest("GET", "https://localhost/", nil)
	req.Host = "unknown.localhost"
	if resp, err := c.Do(req); err != nil {
		t.Fatal(err)
	} else if resp.Body.Close(); resp.StatusCode != 404 && resp.StatusCode != 421 {
		t.Errorf("unknown Host: got %d, want 404 or 421", resp.StatusCode)
	}

	// An SNI no Site lists gets a TLS alert, not another Site's certificate.
	conn, err := tls.Dial("tcp", in.HTTPS, &tls.Config{ServerName: "other.example", InsecureSkipVerify: true})
	if err == nil {
		conn.Close()
		t.Error("handshake for an unconfigured SNI succeeded")
	}

	// The HTTP Listener redirects to HTTPS, keeping path and query.
	plain := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := plain.Get(fmt.Sprintf("http://localhost:%d/a/b?c=d", p.HTTP))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	wantLoc := fmt.Sprintf("https://localhost:%d/a/b?c=d", p.HTTPS)
	if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != wantLoc {
		t.Errorf("redirect: got %d %q, want 308 %q", resp.StatusCode, resp.Header.Get("Location"), wantLoc)
	}

	// The admin endpoint answers health checks.
	if status, body := get(t, plain, fmt.Sprintf("http://127.0.0.1:%d/healthz", p.Admin)); status != 200 || body != "ok\n" {
		t.Errorf("admin /healthz: got %d %q", status, body)
	}

	// SIGTERM while a request is in flight: it completes, then run returns nil.
	result := make(chan string, 1)
	go func() {
		resp, err := c.Get("https://localhost/app/slow")
		if err != nil {
			result <- "error: " + err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		result <- fmt.Sprintf("%d %s", resp.StatusCode, b)
	}()
	<-arrived
	stopped := make(chan error, 1)
	go func() { stopped <- in.Stop() }()
	// New connections are refused once shutdown has begun.
	waitFor(t, 5*time.Second, func() bool {
		_, err := c.Get("https://localhost/")
		return err != nil
	})
	close(release)
	if got := <-result; got != "200 upstream saw localhost /app/slow" {
		t.Errorf("in-flight request during shutdown: got %q", got)
	}
	if err := <-stopped; err != nil {
		t.Errorf("run after shutdown: got %v, want nil (exit 0)", err)
	}
}

func TestReloadUnderLoadLosesNoRequest(t *testing.T) {
	upstream := httptest.NewServer(websocket.Handler(func(ws *websocket.Conn) { io.Copy(ws, ws) }))
	defer upstream.Close()
	plainUp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "up") }))
	defer plainUp.Close()

	p := newPorts(t)
	in := start(t, p, fmt.Sprintf(siteConfig, "v0", plainUp.URL, upstream.URL))
	c := in.Client(t)

	// A WebSocket on a route the reloads do not change.
	wsCfg, err := websocket.NewConfig("wss://localhost/ws/echo", "https://localhost/")
	if err != nil {
		t.Fatal(err)
	}
	wsCfg.TlsConfig = c.Transport.(*http.Transport).TLSClientConfig.Clone()
	wsCfg.TlsConfig.ServerName = "localhost"
	raw, err := tls.Dial("tcp", in.HTTPS, wsCfg.TlsConfig)
	if err != nil {
		t.Fatal(err)
	}
	ws, err := websocket.NewClient(wsCfg, raw)
	if err != nil {
		t.Fatalf("websocket through gatehouse: %v", err)
	}
	defer ws.Close()
	echo := func(msg string) {
		t.Helper()
		if _, err := ws.Write([]byte(msg)); err != nil {
			t.Fatalf("websocket write: %v", err)
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(ws, buf); err != nil || string(buf) != msg {
			t.Fatalf("websocket echo: got %q, %v; want %q", buf, err, msg)
		}
	}
	echo("before")

	// Load: 8 clients request until told to stop; every answer must be 200.
	load := gatewaytest.StartLoad(c, 8, "https://localhost/")

	const reloads = 10
	for i := 1; i <= reloads; i++ {
		writeConfig(t, in.CfgPath, p, in.Storage, fmt.Sprintf(siteConfig, fmt.Sprintf("v%d", i), plainUp.URL, upstream.URL))
		if i%2 == 0 {
			in.Reload <- nil // SIGHUP as well as the file watch
		}
		want := fmt.Sprintf("v%d", i)
		waitFor(t, 5*time.Second, func() bool {
			_, body := get(t, c, "https://localhost/")
			return body == want
		})
	}
	failures, total, first := load.Stop()
	if failures > 0 {
		t.Errorf("%d of %d requests failed during %d reloads; first: %v", failures, total, reloads, first)
	}
	if total < 50 {
		t.Errorf("only %d requests ran during the reloads; the load did not overlap them", total)
	}
	echo("after reloads")

	// An invalid file is logged with its position and the running config stays.
	writeConfig(t, in.CfgPath, p, in.Storage, strings.Replace(fmt.Sprintf(siteConfig, "broken", plainUp.URL, upstream.URL), "routes:", "routez:", 1))
	in.Reload <- nil
	bad := filepath.Base(in.CfgPath)
	waitFor(t, 5*time.Second, func() bool { return strings.Contains(in.Stderr.String(), "keeping the running one") })
	if log := in.Stderr.String(); !strings.Contains(log, bad+":") || !strings.Contains(log, `routez`) {
		t.Errorf("invalid reload log does not point at the file and key:\n%s", log)
	}
	if _, body := get(t, c, "https://localhost/"); body != fmt.Sprintf("v%d", reloads) {
		t.Errorf("after an invalid reload: got %q, want the running config's v%d", body, reloads)
	}
	echo("after invalid reload")
}
