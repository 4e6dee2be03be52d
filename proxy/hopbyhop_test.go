package proxy

import (
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"testing"
)

// hopBackend answers like an Upstream that marks headers hop-by-hop in
// every answer it can give: a 103 Early Hints before its 200, a 101 to a
// WebSocket upgrade, and a final answer. Each answer carries
// Connection-named headers and the fixed hop-by-hop ones, which must not
// reach the client. It reports in Saw-* which request headers arrived.
func hopBackend(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") == "websocket" {
			c, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Errorf("hijacking: %v", err)
				return
			}
			defer c.Close()
			_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\n" +
				"Upgrade: websocket\r\nConnection: Upgrade, X-Ws-Secret\r\nX-Ws-Secret: 1\r\n" +
				"Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nX-Ws-Plain: p\r\n\r\n")
			_ = brw.Flush()
			return
		}
		h := w.Header()
		h.Set("Link", "</a.css>; rel=preload")
		h.Set("Connection", "X-Early-Secret")
		h.Set("X-Early-Secret", "1")
		h.Set("Keep-Alive", "timeout=5")
		w.WriteHeader(http.StatusEarlyHints)
		clear(h)
		for _, k := range []string{"X-Secret", "X-Conn-Named", "Keep-Alive", "Proxy-Connection", "Proxy-Authorization", "Te", "X-Plain"} {
			h.Set("Saw-"+k, strings.Join(r.Header[k], ","))
		}
		h.Set("Connection", "X-Back-Secret")
		h.Set("X-Back-Secret", "s")
		h.Set("Proxy-Connection", "keep-alive")
		h.Set("X-Back-Plain", "p")
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestHopByHopEveryAnswer checks RFC 9110, section 7.6.1 through a real
// listener: the headers a Connection header names, and the fixed
// hop-by-hop list, are removed from the request to the Upstream and from
// every answer to the client, 1xx and 101 included, over HTTP/1.1 and
// HTTP/2 alike.
func TestHopByHopEveryAnswer(t *testing.T) {
	f := newFrontend(t, proxyConfig(proxyTo("/", hopBackend(t).URL)))

	for _, proto := range []string{"HTTP/1.1", "HTTP/2.0"} {
		t.Run(proto, func(t *testing.T) {
			c := f.client(host)
			if proto == "HTTP/1.1" {
				c = f.client1()
			}
			var early []textproto.MIMEHeader
			trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
				if code == http.StatusEarlyHints {
					early = append(early, h)
				}
				return nil
			}}
			req := f.request(t, http.MethodGet, host, "/", nil)
			req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
			req.Header.Set("X-Plain", "p")
			if proto == "HTTP/1.1" {
				// HTTP/2 has no Connection header (a client may not send
				// one): these are HTTP/1.1's.
				req.Header.Set("Connection", "X-Secret, x-conn-named")
				req.Header.Set("X-Secret", "s")
				req.Header.Set("X-Conn-Named", "c")
				req.Header.Set("Keep-Alive", "timeout=5")
				req.Header.Set("Proxy-Connection", "keep-alive")
				req.Header.Set("Te", "trailers, deflate")
			} else {
				req.Header.Set("Te", "trailers")
			}
			req.Header.Set("Proxy-Authorization", "Basic Zm9vOmJhcg==")
			res, _ := doRes(t, c, req)
			if res.Proto != proto {
				t.Fatalf("spoke %s, want %s", res.Proto, proto)
			}
			want := map[string]string{
				"Saw-X-Secret": "", "Saw-X-Conn-Named": "", "Saw-Keep-Alive": "", "Saw-Proxy-Connection": "",
				"Saw-Proxy-Authorization": "", "Saw-X-Plain": "p",
				"X-Back-Secret": "", "Proxy-Connection": "", "Connection": "", "X-Back-Plain": "p",
			}
			// TE: only trailers may pass, as ReverseProxy itself asks for them.
			want["Saw-Te"] = "trailers"
			for k, v := range want {
				if got := res.Header.Get(k); got != v {
					t.Errorf("final answer: %s = %q, want %q", k, got, v)
				}
			}
			if len(early) != 1 {
				t.Fatalf("got %d 103 answers, want 1", len(early))
			}
			for k, v := range map[string]string{"Link": "</a.css>; rel=preload", "X-Early-Secret": "", "Keep-Alive": "", "Connection": ""} {
				if got := early[0].Get(k); got != v {
					t.Errorf("103: %s = %q, want %q", k, got, v)
				}
			}
		})
	}

	t.Run("101 to a WebSocket upgrade", func(t *testing.T) {
		req := f.request(t, http.MethodGet, host, "/", nil)
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "websocket")
		req.Header.Set("Sec-WebSocket-Version", "13")
		req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		res, err := f.client1().Do(req)
		if err != nil {
			t.Fatalf("upgrading: %v", err)
		}
		defer res.Body.Close()
		if res.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("status = %v, want 101", res.StatusCode)
		}
		for k, v := range map[string]string{
			"Connection": "Upgrade", "Upgrade": "websocket", "X-Ws-Secret": "", "Keep-Alive": "",
			"Proxy-Connection": "", "X-Ws-Plain": "p",
		} {
			if got := strings.Join(res.Header.Values(k), ","); got != v {
				t.Errorf("101: %s = %q, want %q", k, got, v)
			}
		}
	})
}
