package tlsmgr_test

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr"
)

// Example shows the wiring the command does: bind both Listeners first, so
// certmagic finds the challenge ports busy and relies on them, then New,
// then serve, and Close after the servers are shut down.
func Example() {
	ctx := context.Background()
	cfg := &config.Config{
		Listen:  config.Listen{HTTP: ":80", HTTPS: ":443"},
		Storage: "/var/lib/gatehouse",
		ACME:    config.ACME{Email: "ops@example.com"},
		Sites:   []config.Site{{Hosts: []string{"app.example.com"}}},
	}
	httpLn, err := net.Listen("tcp", cfg.Listen.HTTP)
	if err != nil {
		return
	}
	httpsLn, err := net.Listen("tcp", cfg.Listen.HTTPS)
	if err != nil {
		return
	}
	m, err := tlsmgr.New(ctx, cfg, slog.Default())
	if err != nil {
		return
	}
	app := http.NotFoundHandler() // the proxy's router
	httpSrv := &http.Server{Handler: m.HTTPHandler(nil), ReadHeaderTimeout: 10 * time.Second}
	httpsSrv := &http.Server{Handler: app, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = httpSrv.Serve(httpLn) }()
	go func() { _ = httpsSrv.Serve(tls.NewListener(httpsLn, m.TLSConfig())) }()

	// On SIGHUP: m.Apply(ctx, newCfg); on error keep the old config.
	// On shutdown: Shutdown both servers, then Close.
	_ = httpSrv.Shutdown(ctx)
	_ = httpsSrv.Shutdown(ctx)
	_ = m.Close()
}

// WriteCertificates prints the inventory as `gatehouse certs list` does:
// one row a Certificate, "-" where there is nothing to show.
func ExampleWriteCertificates() {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	certs := []tlsmgr.CertificateInfo{
		{Names: []string{"app.example.com", "www.example.com"}, Source: tlsmgr.SourceACME, Status: tlsmgr.StatusExpiring,
			Issuer: "letsencrypt", NotAfter: now.Add(20 * 24 * time.Hour), NextRenewal: now.Add(time.Hour), RenewalReason: "ari",
			LastError: "urn:ietf:params:acme:error:rateLimited", Failures: 1},
		{Names: []string{"static.example.com"}, Source: tlsmgr.SourceFile, Status: tlsmgr.StatusValid, NotAfter: now.Add(90 * 24 * time.Hour)},
	}
	tlsmgr.WriteCertificates(os.Stdout, certs, now, false)
	// Output:
	// STATUS    EXPIRES IN  NAMES                            SOURCE  ISSUER       NEXT RENEWAL                LAST ERROR
	// expiring  20d         app.example.com,www.example.com  acme    letsencrypt  2026-06-01T13:00:00Z (ari)  urn:ietf:params:acme:error:rateLimited
	// valid     90d         static.example.com               file    -            -
}
