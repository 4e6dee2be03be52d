package gateway

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// forwardedRecorder is an Upstream that answers with the X-Forwarded-For
// it received and remembers every value.
type forwardedRecorder struct {
	*httptest.Server
	mu   sync.Mutex // guards seen
	seen []string
}

func newForwardedRecorder(t *testing.T) *forwardedRecorder {
	f := &forwardedRecorder{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		xff := r.Header.Get("X-Forwarded-For")
		f.mu.Lock()
		f.seen = append(f.seen, xff)
		f.mu.Unlock()
		io.WriteString(w, xff)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *forwardedRecorder) sawAny(sub string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.seen {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// accessLines returns the JSON access lines ("msg":"request") in log.
func accessLines(t *testing.T, log string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for _, l := range strings.Split(log, "\n") {
		if !strings.Contains(l, `"msg":"request"`) {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("access line is not JSON: %v\n%s", err, l)
		}
		lines = append(lines, m)
	}
	return lines
}

// proxyClient is an HTTPS client that connects from the loopback address
// from (a load balancer) and opens each connection with header, written by
// writeHeader (nil: no PROXY header at all).
func proxyClient(in *instance, roots *x509.CertPool, from string, writeHeader func(io.Writer) error) *http.Client {
	dialer := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, in.HTTPS)
			if err != nil || writeHeader == nil {
				return c, err
			}
			if err := writeHeader(c); err != nil {
				c.Close()
				return nil, err
			}
			return c, nil
		},
		DisableKeepAlives: true,
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func v1Header(src string) func(io.Writer) error {
	return func(w io.Writer) error {
		_, err := fmt.Fprintf(w, "PROXY TCP4 %s 127.0.0.1 40000 443\r\n", src)
		return err
	}
}

func v2Header(src string) func(io.Writer) error {
	return func(w io.Writer) error {
		h := &proxyproto.Header{
			Version:           2,
			Command:           proxyproto.PROXY,
			TransportProtocol: proxyproto.TCPv4,
			SourceAddr:        &net.TCPAddr{IP: net.ParseIP(src), Port: 40001},
			DestinationAddr:   &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 443},
		}
		_, err := h.WriteTo(w)
		return err
	}
}

// TestProxyProtocol: a load balancer at 127.0.0.2 (trusted) sends PROXY v1
// and v2 headers; the client address in them is what the Upstream sees in
// X-Forwarded-For and what the access log says. 127.0.0.1 is not trusted:
// it is served as itself, and a header from it is never believed.
func TestProxyProtocol(t *testing.T) {
	up := newForwardedRecorder(t)
	p := newPorts(t)
	const body = `listen: {http: "127.0.0.1:{{HTTP}}", https: "127.0.0.1:{{HTTPS}}", proxy_protocol: true}
admin: "127.0.0.1:{{ADMIN}}"
storage: {{STORAGE}}
log: {format: json}
trusted_proxies: [%s]
sites:
  - hosts: [localhost]
    routes:
      - {path: /, upstreams: [%[2]s]}
      - {path: /admin/, upstreams: [%[2]s], allow_ips: [203.0.113.0/24]}
`
	in := start(t, p, fmt.Sprintf(body, "127.0.0.2", up.URL))
	roots := in.LocalRoots(t)

	for _, tc := range []struct {
		name   string
		header func(io.Writer) error
		client string
	}{
		{"v1", v1Header("203.0.113.7"), "203.0.113.7"},
		{"v2", v2Header("198.51.100.9"), "198.51.100.9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := proxyClient(in, roots, "127.0.0.2", tc.header)
			req, _ := http.NewRequest("GET", "https://localhost/"+tc.name, nil)
			// What the client behind the balancer claims is not believed:
			// its address (from the header) is not a trusted proxy.
			req.Header.Set("X-Forwarded-For", "6.6.6.6")
			resp, err := c.Do(req)
			if err != nil {
				t.Fatalf("GET through the balancer: %v\n%s", err, in.Stderr)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != tc.client {
				t.Errorf("Upstream saw X-Forwarded-For %q (status %d), want %q", body, resp.StatusCode, tc.client)
			}
			var line map[string]any
			waitFor(t, 5*time.Second, func() bool {
				for _, l := range accessLines(t, in.Stderr.String()) {
					if l["path"] == "/"+tc.name {
						line = l
						return true
					}
				}
				return false
			})
			if line["client_ip"] != tc.client {
				t.Errorf("access log client_ip = %v, want %s", line["client_ip"], tc.client)
			}
		})
	}

	// allow_ips judges the client from the header, not the balancer.
	t.Run("allow_ips", func(t *testing.T) {
		c := proxyClient(in, roots, "127.0.0.2", v1Header("203.0.113.7"))
		resp, err := c.Get("https://localhost/admin/x")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("allowed client through the balancer: status %d, want 200", resp.StatusCode)
		}
		c = proxyClient(in, roots, "127.0.0.2", v2Header("198.51.100.9"))
		resp, err = c.Get("https://localhost/admin/x")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("client outside allow_ips through the balancer: status %d, want 403", resp.StatusCode)
		}
	})

	t.Run("http listener", func(t *testing.T) {
		dialer := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
		c, err := dialer.Dial("tcp", in.HTTP)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := v1Header("192.0.2.44")(c); err != nil {
			t.Fatal(err)
		}
		fmt.Fprint(c, "GET /plain HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusPermanentRedirect {
			t.Errorf("status = %d, want 308", resp.StatusCode)
		}
		waitFor(t, 5*time.Second, func() bool {
			for _, l := range accessLines(t, in.Stderr.String()) {
				if l["path"] == "/plain" {
					return l["client_ip"] == "192.0.2.44"
				}
			}
			return false
		})
	})

	t.Run("trusted peer without header", func(t *testing.T) {
		c := proxyClient(in, roots, "127.0.0.2", nil)
		if resp, err := c.Get("https://localhost/noheader"); err == nil {
			resp.Body.Close()
			t.Errorf("a trusted peer without a PROXY header was served: %d", resp.StatusCode)
		}
		if up.sawAny("127.0.0.2") {
			t.Error("the Upstream saw the balancer's own address as the client")
		}
	})

	t.Run("untrusted peer", func(t *testing.T) {
		c := proxyClient(in, roots, "127.0.0.1", v1Header("203.0.113.66"))
		if resp, err := c.Get("https://localhost/spoof"); err == nil {
			resp.Body.Close()
			t.Errorf("an untrusted peer's PROXY header was accepted: %d", resp.StatusCode)
		}
		if up.sawAny("203.0.113.66") {
			t.Error("the Upstream saw the address from an untrusted peer's PROXY header")
		}
		// Without a header, the untrusted peer is served as itself.
		direct := proxyClient(in, roots, "127.0.0.1", nil)
		resp, err := direct.Get("https://localhost/direct")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "127.0.0.1" {
			t.Errorf("direct client: Upstream saw X-Forwarded-For %q, want 127.0.0.1", body)
		}
	})

	// trusted_proxies changes on reload, and the Listeners follow it.
	t.Run("reload", func(t *testing.T) {
		writeConfig(t, in.CfgPath, p, in.Storage, fmt.Sprintf(body, "127.0.0.3", up.URL))
		in.Reload <- syscall.SIGHUP
		waitFor(t, 10*time.Second, func() bool { return strings.Contains(in.Stderr.String(), "config reloaded") })
		c := proxyClient(in, roots, "127.0.0.2", v1Header("203.0.113.77"))
		if resp, err := c.Get("https://localhost/after-reload"); err == nil {
			resp.Body.Close()
			t.Errorf("a PROXY header from a peer no longer trusted was accepted: %d", resp.StatusCode)
		}
		c = proxyClient(in, roots, "127.0.0.3", v1Header("203.0.113.78"))
		resp, err := c.Get("https://localhost/after-reload")
		if err != nil {
			t.Fatalf("GET through the newly trusted balancer: %v", err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(got) != "203.0.113.78" {
			t.Errorf("Upstream saw X-Forwarded-For %q, want 203.0.113.78", got)
		}
		if up.sawAny("203.0.113.77") {
			t.Error("the Upstream saw the address from a no longer trusted peer's header")
		}
	})
}

// TestHTTP3 fetches a proxied Route over HTTP/3 with quic-go's client,
// after finding it advertised in Alt-Svc over TCP, then checks that a
// shutdown lets an HTTP/3 request in flight finish.
func TestHTTP3(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			arrived <- struct{}{}
			<-release
		}
		fmt.Fprintf(w, "upstream saw %s", r.URL.Path)
	}))
	defer up.Close()
	p := newPorts(t)
	in := start(t, p, fmt.Sprintf(`listen: {http: "127.0.0.1:{{HTTP}}", https: "127.0.0.1:{{HTTPS}}", http3: true}
admin: "127.0.0.1:{{ADMIN}}"
storage: {{STORAGE}}
log: {format: json}
timeouts: {shutdown: 10s}
sites:
  - hosts: [localhost]
    routes: [{path: /, upstreams: [%s]}]
`, up.URL))
	roots := in.LocalRoots(t)

	resp, err := clientFor(in.HTTPS, roots).Get("https://localhost/tcp")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	wantAltSvc := fmt.Sprintf(`h3=":%d"; ma=86400`, p.HTTPS)
	if got := resp.Header.Get("Alt-Svc"); got != wantAltSvc {
		t.Errorf("Alt-Svc over TCP = %q, want %q", got, wantAltSvc)
	}

	tr := &http3.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		Dial: func(ctx context.Context, _ string, tlsCfg *tls.Config, cfg *quic.Config) (*quic.Conn, error) {
			return quic.DialAddrEarly(ctx, in.HTTPS, tlsCfg, cfg)
		},
	}
	defer tr.Close()
	h3 := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err = h3.Get("https://localhost/h3?q=1")
	if err != nil {
		t.Fatalf("GET over HTTP/3: %v\n%s", err, in.Stderr)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Proto != "HTTP/3.0" || resp.StatusCode != 200 || string(body) != "upstream saw /h3" {
		t.Errorf("got %s %d %q, want HTTP/3.0 200 %q", resp.Proto, resp.StatusCode, body, "upstream saw /h3")
	}
	waitFor(t, 5*time.Second, func() bool {
		for _, l := range accessLines(t, in.Stderr.String()) {
			if l["path"] == "/h3" {
				return l["proto"] == "HTTP/3.0" && l["tls_version"] == "1.3" && l["upstream"] == up.URL
			}
		}
		return false
	})

	// Graceful shutdown: a request in flight over HTTP/3 finishes.
	type result struct {
		body string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := h3.Get("https://localhost/slow")
		if err != nil {
			done <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		done <- result{string(b), err}
	}()
	select {
	case <-arrived:
	case r := <-done:
		t.Fatalf("slow request ended before the Upstream saw it: %q, %v", r.body, r.err)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- in.Stop() }()
	// The UDP socket stays open until requests in flight are done; wait
	// until the shutdown has begun (the TCP Listener is closed), then let
	// the Upstream answer.
	waitFor(t, 5*time.Second, func() bool {
		c, err := net.Dial("tcp", in.HTTPS)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	// While requests drain, the admin endpoint still answers, and says
	// not ready, so a load balancer takes this instance out of rotation.
	resp, err = http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", p.Admin))
	if err != nil {
		t.Errorf("GET /readyz during the drain: %v, want 503", err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("GET /readyz during the drain: %d, want 503", resp.StatusCode)
		}
	}
	close(release)
	r := <-done
	if r.err != nil || r.body != "upstream saw /slow" {
		t.Errorf("request in flight during shutdown: got %q, %v", r.body, r.err)
	}
	if err := <-stopped; err != nil {
		t.Errorf("run returned %v, want nil", err)
	}
}

// TestPublicHTTPSPort runs the HTTPS Listener on an arbitrary port published
// as 443 (a container's port mapping): redirects and Alt-Svc must send
// clients to 443, where they can reach it, not to the port inside.
func TestPublicHTTPSPort(t *testing.T) {
	p := newPorts(t)
	in := start(t, p, `listen: {http: "127.0.0.1:{{HTTP}}", https: "127.0.0.1:{{HTTPS}}", http3: true, public_https_port: 443}
admin: "127.0.0.1:{{ADMIN}}"
storage: {{STORAGE}}
sites:
  - hosts: [localhost]
    routes: [{path: /, respond: {body: hi}}]
`)
	plain := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := plain.Get(fmt.Sprintf("http://localhost:%d/a?b=c", p.HTTP))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got, want := resp.Header.Get("Location"), "https://localhost/a?b=c"; resp.StatusCode != http.StatusPermanentRedirect || got != want {
		t.Errorf("redirect: got %d %q, want 308 %q", resp.StatusCode, got, want)
	}

	resp, err = clientFor(in.HTTPS, in.LocalRoots(t)).Get("https://localhost/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got, want := resp.Header.Get("Alt-Svc"), `h3=":443"; ma=86400`; got != want {
		t.Errorf("Alt-Svc = %q, want %q", got, want)
	}
}

// TestHTTP3Refuses0RTT resumes a QUIC session with a ticket from an
// earlier connection and sends its request as early data: gatehouse must
// not accept it, since 0-RTT requests can be replayed to the Upstream.
func TestHTTP3Refuses0RTT(t *testing.T) {
	p := newPorts(t)
	in := start(t, p, `listen: {http: "127.0.0.1:{{HTTP}}", https: "127.0.0.1:{{HTTPS}}", http3: true}
admin: off
storage: {{STORAGE}}
sites:
  - hosts: [localhost]
    routes: [{respond: {body: ok}}]
`)
	tickets := tls.NewLRUClientSessionCache(4)
	get := func() (resumed, early bool) {
		t.Helper()
		var conn *quic.Conn
		tr := &http3.Transport{
			TLSClientConfig: &tls.Config{RootCAs: in.LocalRoots(t), ClientSessionCache: tickets},
			Dial: func(ctx context.Context, _ string, tlsCfg *tls.Config, cfg *quic.Config) (*quic.Conn, error) {
				c, err := quic.DialAddrEarly(ctx, in.HTTPS, tlsCfg, cfg)
				conn = c
				return c, err
			},
		}
		defer tr.Close()
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://localhost/")
		if err != nil {
			t.Fatalf("GET over HTTP/3: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "ok" {
			t.Fatalf("GET over HTTP/3: got %q, want ok", body)
		}
		st := conn.ConnectionState()
		return st.TLS.DidResume, st.Used0RTT
	}
	get() // gets a session ticket
	resumed, early := get()
	if !resumed {
		t.Fatal("the second connection did not resume the session; the test cannot offer 0-RTT")
	}
	if early {
		t.Error("a resumed HTTP/3 connection had its 0-RTT request accepted; 0-RTT must stay off")
	}
}
