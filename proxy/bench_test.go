package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// memoryUpstream answers every round trip in memory, so BenchmarkHandler
// measures gatehouse and ReverseProxy rather than the loopback.
type memoryUpstream struct{}

func (memoryUpstream) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode:    http.StatusOK,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{"Content-Type": {"text/plain"}},
		Body:          io.NopCloser(strings.NewReader("hello")),
		ContentLength: 5,
		Request:       r,
	}, nil
}

// discardWriter is a ResponseWriter that keeps nothing but its header map.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}

// WriteString mirrors net/http's response, which has it too.
func (w *discardWriter) WriteString(s string) (int, error) { return len(s), nil }

// BenchmarkHandler measures a whole request through Handler.ServeHTTP:
// routing, the proxy (Rewrite, forwarded headers, balancer) and response
// copying, against an in-memory Upstream, with two Upstreams (a retry may
// follow) and with one (the only attempt, as in bench/run.sh); and a fixed
// response for comparison.
func BenchmarkHandler(b *testing.B) {
	ts := NewTransports()
	ts.override = memoryUpstream{}
	cfg := &config.Config{
		TrustedProxies: []string{"10.0.0.0/8"},
		Sites: []config.Site{cfgSite([]string{host},
			proxyTo("/api/", "http://a.internal:8080", "http://b.internal:8080"),
			proxyTo("/one/", "http://a.internal:8080"),
			respond("/", "home"),
		)},
	}
	table, err := Compile(cfg, Options{Transports: ts})
	if err != nil {
		b.Fatalf("Compile: %v", err)
	}
	h := NewHandler(table, nil)
	for _, bc := range []struct{ name, target string }{{"proxy", "/api/users?id=1"}, {"proxy-one", "/one/users?id=1"}, {"respond", "/"}} {
		b.Run(bc.name, func(b *testing.B) { serveLoop(b, h, bc.target) })
	}
}

// serveLoop measures h serving GET target from a trusted proxy that
// forwards for 203.0.113.7.
func serveLoop(b *testing.B, h http.Handler, target string) {
	req := httptest.NewRequest(http.MethodGet, "https://"+host+target, nil)
	req.RemoteAddr = "10.1.2.3:5555"
	req.Header.Set("X-Forwarded-For", "203.0.113.7")
	w := &discardWriter{h: make(http.Header)}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		h.ServeHTTP(w, req)
	}
}

// BenchmarkReverseProxy is the floor BenchmarkHandler's proxy cases are
// held to: a bare httputil.ReverseProxy with the same in-memory Upstream,
// setting the URL and X-Forwarded-* as every proxy must. gatehouse's
// handler should allocate no more than this plus its own routing.
func BenchmarkReverseProxy(b *testing.B) {
	target, err := url.Parse("http://a.internal:8080")
	if err != nil {
		b.Fatal(err)
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
		},
		Transport: memoryUpstream{},
	}
	serveLoop(b, rp, "/one/users?id=1")
}

// BenchmarkUpstreamRoundTrip sends GETs for 1 KiB to a loopback origin
// through http.Transport and through the h1Pool that replaces it for
// bodiless requests, in the same run, so their ratio shows what the pool
// saves per request.
func BenchmarkUpstreamRoundTrip(b *testing.B) {
	body := strings.Repeat("a", 1<<10)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, body)
	}))
	defer origin.Close()
	k := transportKey{kind: kindHTTP}
	tr := newTransport(k, transportTLS{})
	defer tr.CloseIdleConnections()
	target := strings.TrimPrefix(origin.URL, "http://")
	pool := newH1Pool(tr, k, target)
	defer pool.closeIdle()
	for _, bc := range []struct {
		name string
		rt   http.RoundTripper
	}{{"transport", tr}, {"h1pool", pool}} {
		b.Run(bc.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, origin.URL+"/", nil)
			req.RequestURI = ""
			buf := make([]byte, 4<<10)
			b.ReportAllocs()
			for b.Loop() {
				res, err := bc.rt.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				for {
					if _, err := res.Body.Read(buf); err != nil {
						break
					}
				}
				res.Body.Close()
			}
		})
	}
}
