package gateway

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// TestHopByHopOverHTTP3 checks that an HTTP/1 Upstream's hop-by-hop
// headers, those its Connection header names included, reach no HTTP/3
// client, neither in a 103 Early Hints nor in the final answer (a 103
// carrying Connection makes quic-go's client fail the whole request), and
// that the hop-by-hop headers an HTTP/3 request may carry do not reach the
// Upstream, but for TE: trailers (issue 13, defect 1). The fields HTTP/3
// forbids (Connection and the like) are TestMalformedHTTP2And3NeverProxied's.
func TestHopByHopOverHTTP3(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Link", "</a.css>; rel=preload")
		h.Set("Connection", "X-Early-Secret")
		h.Set("X-Early-Secret", "1")
		w.WriteHeader(http.StatusEarlyHints)
		clear(h)
		for _, k := range []string{"Proxy-Authorization", "Te", "X-Plain"} {
			h.Set("Saw-"+k, strings.Join(r.Header[k], ","))
		}
		h.Set("Connection", "X-Back-Secret")
		h.Set("Proxy-Authenticate", "Basic")
		h.Set("Upgrade", "h2c")
		h.Set("X-Back-Secret", "s")
		h.Set("Keep-Alive", "timeout=5")
		h.Set("X-Back-Plain", "p")
		fmt.Fprint(w, "app")
	}))
	defer up.Close()
	in := startProxy(t, up.URL, ", http3: true", "", "")
	tr := &http3.Transport{
		TLSClientConfig: &tls.Config{RootCAs: in.LocalRoots(t)},
		Dial: func(ctx context.Context, _ string, tlsCfg *tls.Config, cfg *quic.Config) (*quic.Conn, error) {
			return quic.DialAddrEarly(ctx, in.HTTPS, tlsCfg, cfg)
		},
	}
	defer tr.Close()
	var early []textproto.MIMEHeader
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		early = append(early, h)
		return nil
	}}
	ctx, cancel := context.WithTimeout(httptrace.WithClientTrace(t.Context(), trace), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://localhost/", nil)
	req.Header.Set("Proxy-Authorization", "Basic Zm9vOmJhcg==")
	req.Header.Set("Te", "trailers")
	req.Header.Set("X-Plain", "p")
	res, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatalf("GET over HTTP/3: %v\n%s", err, in.Stderr)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.Proto != "HTTP/3.0" || string(body) != "app" {
		t.Fatalf("got %s %q, want HTTP/3.0 %q", res.Proto, body, "app")
	}
	for k, v := range map[string]string{
		"X-Back-Secret": "", "Keep-Alive": "", "Connection": "", "Proxy-Authenticate": "", "Upgrade": "", "X-Back-Plain": "p",
		"Saw-Proxy-Authorization": "", "Saw-Te": "trailers", "Saw-X-Plain": "p",
	} {
		if got := res.Header.Get(k); got != v {
			t.Errorf("final answer: %s = %q, want %q", k, got, v)
		}
	}
	if len(early) != 1 {
		t.Fatalf("got %d 1xx answers, want one 103", len(early))
	}
	for k, v := range map[string]string{"Link": "</a.css>; rel=preload", "X-Early-Secret": "", "Connection": ""} {
		if got := early[0].Get(k); got != v {
			t.Errorf("103: %s = %q, want %q", k, got, v)
		}
	}
}
