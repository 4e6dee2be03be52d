package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/gatehouse-proxy/gatehouse/gateway/gatewaytest"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr/pebbletest"
)

// The harness is gatewaytest's; these names keep the tests short.
type (
	instance    = gatewaytest.Instance
	ports       = gatewaytest.Ports
	adminClient = gatewaytest.AdminClient
)

var (
	newPorts           = gatewaytest.NewPorts
	freePort           = gatewaytest.FreePort
	writeConfig        = gatewaytest.WriteConfig
	clientFor          = gatewaytest.ClientFor
	get                = gatewaytest.Get
	waitFor            = gatewaytest.WaitFor
	waitForCertificate = gatewaytest.WaitForCertificate
	newAppUpstream     = gatewaytest.NewAppUpstream
	grepLines          = gatewaytest.GrepLines
)

// runGateway runs a Gateway on the config file, as `gatehouse run` does:
// the file is its first Source (SIGHUP from env.Reload), extra follow, and
// env.Reopen is its SIGUSR1. Each Gateway it makes is sent on made, when
// not nil.
func runGateway(made chan<- *Gateway, extra ...Source) gatewaytest.RunFunc {
	return func(ctx context.Context, cfgPath string, env gatewaytest.Env) error {
		cfg, err := config.Load(cfgPath)
		if err != nil {
			return err
		}
		sources := append([]Source{&File{Path: cfgPath, Signals: env.Reload}}, extra...)
		g, err := New(Options{Config: cfg, Sources: sources, Log: env.Stderr, Reopen: env.Reopen})
		if err != nil {
			return err
		}
		if made != nil {
			made <- g
		}
		return g.Run(ctx)
	}
}

// start runs a Gateway on body as its config file and waits until the
// HTTPS Listener completes a handshake for localhost.
func start(t *testing.T, p ports, body string) *instance {
	t.Helper()
	return gatewaytest.Start(t, p, body, runGateway(nil))
}

// startStuckOrder is [gatewaytest.StartStuckOrder] for a Gateway.
func startStuckOrder(t *testing.T, p ports, format string, args ...any) (*instance, *pebbletest.CA) {
	t.Helper()
	return gatewaytest.StartStuckOrder(t, p, runGateway(nil), format, args...)
}

// startSources is start with further Sources after the file; it also
// returns the Gateway.
func startSources(t *testing.T, p ports, body string, extra ...Source) (*instance, *Gateway) {
	t.Helper()
	made := make(chan *Gateway, 1)
	in := gatewaytest.Start(t, p, body, runGateway(made, extra...))
	return in, <-made
}

// startProxy starts a Gateway whose one Site, localhost, proxies / to
// upstream. listen adds keys to the listen block (`, http3: true`), top
// adds top-level YAML, route adds keys to the Route (`, max_body: 1KiB`).
func startProxy(t *testing.T, upstream, listen, top, route string) *instance {
	t.Helper()
	return start(t, newPorts(t), fmt.Sprintf(`listen: {http: "127.0.0.1:{{HTTP}}", https: "127.0.0.1:{{HTTPS}}"%s}
admin: "off"
storage: {{STORAGE}}
%s
sites:
  - hosts: [localhost]
    routes: [{path: /, upstreams: [%s]%s}]
`, listen, top, upstream, route))
}

// h3Client speaks HTTP/3 to in's HTTPS Listener, trusting roots; the
// test's end closes it.
func h3Client(t *testing.T, in *instance, roots *x509.CertPool) *http.Client {
	tr := &http3.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		Dial: func(ctx context.Context, _ string, tlsCfg *tls.Config, cfg *quic.Config) (*quic.Conn, error) {
			return quic.DialAddrEarly(ctx, in.HTTPS, tlsCfg, cfg)
		},
	}
	t.Cleanup(func() { tr.Close() })
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}
