package proxy

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/gatehouse-proxy/gatehouse/config"
)

func TestNegotiateEncoding(t *testing.T) {
	tests := []struct {
		header string
		want   encoding
	}{
		{"", encIdentity},
		{"gzip", encGzip},
		{"zstd", encZstd},
		{"gzip, deflate, br, zstd", encZstd},
		{"gzip;q=1.0, zstd;q=0.5", encGzip},
		{"zstd;q=0, gzip", encGzip},
		{"gzip;q=0", encIdentity},
		{"GZIP ; Q=0.8", encGzip},
		{"x-gzip", encGzip},
		{"br, deflate", encIdentity},
		{"*", encZstd},
		{"*;q=0.5, zstd;q=0", encGzip},
		{"identity", encIdentity},
		{"gzip;q=bogus, zstd;q=0.1", encZstd},
		{"gzip;q=0.5,zstd;q=0.5", encZstd},
	}
	for _, tt := range tests {
		var values []string
		if tt.header != "" {
			// Split over two header lines, as a client may send it.
			values = strings.SplitN(tt.header, ",", 2)
		}
		if got := negotiateEncoding(values); got != tt.want {
			t.Errorf("Accept-Encoding %q: got %v, want %v", tt.header, got, tt.want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { negotiateEncoding([]string{"gzip;q=0.9, zstd;q=1, br"}) }); n != 0 {
		t.Errorf("negotiateEncoding allocates %v times, want 0", n)
	}
}

func TestCompressible(t *testing.T) {
	for ct, want := range map[string]bool{
		"text/html; charset=utf-8":    true,
		"application/json":            true,
		"application/javascript":      true,
		"image/svg+xml":               true,
		"image/png":                   false,
		"video/mp4":                   false,
		"font/woff2":                  false,
		"application/zip":             false,
		"application/octet-stream":    false,
		"application/grpc+proto":      false,
		"":                            false,
		"Text/Plain":                  true,
		"application/vnd.api+json":    true,
		"application/wasm":            true,
		"audio/mpeg":                  false,
		"text/event-stream":           true,
		"application/x-7z-compressed": false,
	} {
		if got := compressible(ct); got != want {
			t.Errorf("compressible(%q) = %v, want %v", ct, got, want)
		}
	}
}

// page is a compressible body well above minCompressSize.
var page = strings.Repeat("<p>gatehouse compresses what is worth compressing</p>\n", 100)

func TestCompress(t *testing.T) {
	release := make(chan struct{})
	backend := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		switch r.URL.Path {
		case "/page":
			h.Set("Content-Type", "text/html; charset=utf-8")
			h.Set("ETag", `"v1"`)
			io.WriteString(w, page)
		case "/chunked":
			// No Content-Length: the length is unknown up front.
			h.Set("Content-Type", "application/json")
			for range 10 {
				io.WriteString(w, page[:len(page)/10])
				http.NewResponseController(w).Flush()
			}
		case "/small":
			h.Set("Content-Type", "text/plain")
			io.WriteString(w, "tiny")
		case "/small-chunked":
			h.Set("Content-Type", "text/plain")
			io.WriteString(w, "tiny")
			http.NewResponseController(w).Flush()
		case "/png":
			h.Set("Content-Type", "image/png")
			io.WriteString(w, page)
		case "/encoded":
			h.Set("Content-Type", "text/html")
			h.Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			io.WriteString(zw, page)
			zw.Close()
		case "/no-transform":
			h.Set("Content-Type", "text/html")
			h.Set("Cache-Control", "public, no-transform")
			io.WriteString(w, page)
		case "/notmodified":
			h.Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusNotModified)
		case "/events":
			h.Set("Content-Type", "text/event-stream")
			io.WriteString(w, "data: first\n\n")
			http.NewResponseController(w).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
			io.WriteString(w, "data: second\n\n")
		}
	}))
	proxied := proxyTo("/", backend.URL)
	proxied.Compress = true
	fixed := config.Route{Path: "/fixed", Respond: &config.Respond{Status: 200, Body: page}, Compress: true}
	plain := proxyTo("/plain/", backend.URL)
	plain.StripPrefix = true
	f := newFrontend(t, proxyConfig(proxied, fixed, plain))
	c := f.client(host)

	get := func(t *testing.T, method, path, accept string) (*http.Response, []byte) {
		t.Helper()
		req := f.request(t, method, host, path, nil)
		if accept != "" {
			req.Header.Set("Accept-Encoding", accept)
		}
		res, body := doRes(t, c, req)
		return res, []byte(body)
	}
	decode := func(t *testing.T, enc string, b []byte) string {
		t.Helper()
		var r io.Reader
		var err error
		switch enc {
		case "gzip":
			r, err = gzip.NewReader(bytes.NewReader(b))
		case "zstd":
			var d *zstd.Decoder
			d, err = zstd.NewReader(bytes.NewReader(b))
			if d != nil {
				defer d.Close()
			}
			r = d
		default:
			return string(b)
		}
		if err != nil {
			t.Fatalf("decoding %s: %v", enc, err)
		}
		out, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("decoding %s: %v", enc, err)
		}
		return string(out)
	}

	tests := []struct {
		name, method, path, accept string
		enc                        string // Content-Encoding expected
		vary                       bool
		body                       string
	}{
		{"gzip", "GET", "/page", "gzip", "gzip", true, page},
		{"zstd preferred", "GET", "/page", "gzip, zstd", "zstd", true, page},
		{"q-values", "GET", "/page", "zstd;q=0.1, gzip;q=0.9", "gzip", true, page},
		{"not accepted", "GET", "/page", "br", "", true, page},
		{"no Accept-Encoding", "GET", "/page", "", "", true, page},
		{"unknown length", "GET", "/chunked", "gzip", "gzip", true, page},
		{"fixed response", "GET", "/fixed", "zstd", "zstd", true, page},
		{"tiny", "GET", "/small", "gzip", "", true, "tiny"},
		{"tiny, unknown length, flushed", "GET", "/small-chunked", "gzip", "gzip", true, "tiny"},
		{"image", "GET", "/png", "gzip", "", false, page},
		{"already encoded", "GET", "/encoded", "gzip", "gzip", false, page},
		{"no-transform", "GET", "/no-transform", "gzip", "", false, page},
		{"HEAD", "HEAD", "/page", "gzip", "", true, ""},
		{"304", "GET", "/notmodified", "gzip", "", false, ""},
		{"route without compress", "GET", "/plain/page", "gzip", "", false, page},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, body := get(t, tt.method, tt.path, tt.accept)
			if got := res.Header.Get("Content-Encoding"); got != tt.enc {
				t.Fatalf("Content-Encoding = %q, want %q", got, tt.enc)
			}
			if got := strings.Contains(strings.Join(res.Header.Values("Vary"), ","), "Accept-Encoding"); got != tt.vary {
				t.Errorf("Vary has Accept-Encoding: %v, want %v (Vary %q)", got, tt.vary, res.Header.Values("Vary"))
			}
			if got := decode(t, tt.enc, body); got != tt.body {
				t.Errorf("body after decoding = %d bytes, want %d", len(got), len(tt.body))
			}
			if tt.enc != "" && tt.path == "/page" {
				if res.ContentLength != -1 {
					t.Errorf("compressed response has Content-Length %d", res.ContentLength)
				}
				if len(body) >= len(page)/4 {
					t.Errorf("compressed body is %d bytes of %d; want it much smaller", len(body), len(page))
				}
				if et := res.Header.Get("ETag"); et != `W/"v1"` {
					t.Errorf("ETag = %q, want the weak W/\"v1\"", et)
				}
			}
		})
	}

	// A server-sent event stream still flows event by event, compressed.
	for _, enc := range []string{"gzip", "zstd"} {
		t.Run("events "+enc, func(t *testing.T) {
			req := f.request(t, http.MethodGet, host, "/events", nil)
			req.Header.Set("Accept-Encoding", enc)
			res, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			if got := res.Header.Get("Content-Encoding"); got != enc {
				t.Fatalf("Content-Encoding = %q, want %q", got, enc)
			}
			lines := make(chan string)
			go func() {
				defer close(lines)
				var r io.Reader
				if enc == "gzip" {
					zr, err := gzip.NewReader(res.Body)
					if err != nil {
						return
					}
					r = zr
				} else {
					zr, err := zstd.NewReader(res.Body)
					if err != nil {
						return
					}
					defer zr.Close()
					r = zr
				}
				br := bufio.NewReader(r)
				for {
					l, err := br.ReadString('\n')
					if err != nil {
						return
					}
					if l != "\n" {
						lines <- l
					}
				}
			}()
			select {
			case l := <-lines:
				if l != "data: first\n" {
					t.Fatalf("first event %q", l)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("first event not delivered while the stream is open: compression held it back")
			}
			release <- struct{}{}
			select {
			case l := <-lines:
				if l != "data: second\n" {
					t.Fatalf("second event %q", l)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("second event not delivered")
			}
		})
	}
}

func BenchmarkCompressGzip(b *testing.B) {
	h := &compressHandler{next: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, page)
	})}
	req, _ := http.NewRequest("GET", "/", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	b.ReportAllocs()
	w := &discardWriter{h: make(http.Header)}
	for b.Loop() {
		clear(w.h)
		h.ServeHTTP(w, req)
	}
}
