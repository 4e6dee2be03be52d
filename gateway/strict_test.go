package gateway

import (
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkKeepAliveGET is bench case 1 in miniature: GETs one after the
// other on one keep-alive HTTP/1.1 TLS connection, served by net/http on
// the *tls.Conn (ServeTLS, before issue 13) and through tlsListener with
// its framing checks. The handler does nothing, so the difference is the
// whole cost of the checks, not diluted by proxying; the README's
// performance section gives the ratio.
func BenchmarkKeepAliveGET(b *testing.B) {
	for _, mode := range []string{"ServeTLS", "framing"} {
		b.Run(mode, func(b *testing.B) {
			cert := httptest.NewUnstartedServer(nil)
			cert.StartTLS() // only for its certificate and client
			defer cert.Close()
			conf := cert.TLS.Clone()
			conf.NextProtos = []string{"h2", "http/1.1"}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			srv := &http.Server{
				Handler:   http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") }),
				TLSConfig: conf,
				ErrorLog:  log.New(io.Discard, "", 0),
			}
			if mode == "ServeTLS" {
				go srv.ServeTLS(ln, "", "")
			} else {
				go srv.Serve(newTLSListener(ln, conf.Clone(), 0, srv.ErrorLog, nil))
			}
			defer srv.Close()
			tr := cert.Client().Transport.(*http.Transport).Clone()
			tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
			tr.ForceAttemptHTTP2 = false
			tr.TLSClientConfig.ServerName = "example.com"
			defer tr.CloseIdleConnections()
			req, _ := http.NewRequest(http.MethodGet, "https://"+ln.Addr().String()+"/index.html", nil)
			req.Header.Set("User-Agent", "wrk")
			for b.Loop() {
				res, err := tr.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.TLS == nil || res.StatusCode != http.StatusOK {
					b.Fatalf("got %d, TLS %v", res.StatusCode, res.TLS != nil)
				}
			}
		})
	}
}
