package tlsmgr

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"

	"github.com/caddyserver/certmagic"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// acmeEngine is what Manager needs from an ACME client library. certmagic is
// the default; autocert is the minimal alternative.
type acmeEngine interface {
	// getCertificate returns the certificate of a managed host, or the
	// TLS-ALPN-01 challenge certificate for a hello offering acme-tls/1.
	// It must never start issuance for a host outside the managed set
	// (autocert may issue in the handshake for a managed host whose
	// certificate is still missing; certmagic, with no on-demand, never).
	getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error)
	// handleHTTP answers an HTTP-01 challenge request and reports whether
	// it did.
	handleHTTP(w http.ResponseWriter, r *http.Request) bool
	// manage makes hosts the managed set: new hosts are obtained in the
	// background, removed ones are no longer renewed (storage is kept).
	manage(hosts []string)
	// close stops every background goroutine of the engine and waits.
	close() error
}

var (
	_ acmeEngine = (*certmagicEngine)(nil)
	_ acmeEngine = (*autocertEngine)(nil)
)

// acmeSettings is what both engines are built from, derived once from the
// Config at New.
type acmeSettings struct {
	storage             string
	store               certmagic.Storage // the Storage of storage; nil: a FileStorage on it
	acme                config.ACME
	roots               *x509.CertPool // system roots plus acme.ca_root
	listenHost          string         // host of the HTTP or HTTPS Listener, "" for all
	httpPort, httpsPort int            // 0 when that Listener is off
	http01, tlsALPN01   bool           // challenges enabled and reachable
	zeroSSLAPI          string         // ZeroSSL's API for eab.api_key; "" is the real one
}

// newACMESettings derives the settings of the ACME engines from cfg.
func newACMESettings(cfg *config.Config) (acmeSettings, error) {
	s := acmeSettings{storage: cfg.Storage, acme: cfg.ACME}
	var err error
	if s.roots, err = trustedRoots(cfg.ACME.CARoot); err != nil {
		return s, err
	}
	if cfg.Listen.HTTP != "" {
		if s.listenHost, s.httpPort, err = splitListen(cfg.Listen.HTTP); err != nil {
			return s, fmt.Errorf("parsing listen.http: %w", err)
		}
	}
	if cfg.Listen.HTTPS != "" {
		var host string
		if host, s.httpsPort, err = splitListen(cfg.Listen.HTTPS); err != nil {
			return s, fmt.Errorf("parsing listen.https: %w", err)
		}
		if s.listenHost == "" {
			s.listenHost = host
		}
	}
	challenges := cfg.ACME.Challenges
	if len(challenges) == 0 {
		challenges = []string{config.ChallengeHTTP01, config.ChallengeTLSALPN01}
	}
	s.http01 = slices.Contains(challenges, config.ChallengeHTTP01) && s.httpPort != 0
	s.tlsALPN01 = slices.Contains(challenges, config.ChallengeTLSALPN01) && s.httpsPort != 0
	return s, nil
}

// splitListen splits a Listener address such as ":443" or "127.0.0.1:8443".
func splitListen(addr string) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		if p, err = net.LookupPort("tcp", port); err != nil {
			return "", 0, err
		}
	}
	return host, p, nil
}

// trustedRoots returns the system roots plus the PEM roots in caRoot, used
// to reach the ACME directory (private or test CAs such as Pebble).
func trustedRoots(caRoot string) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if caRoot == "" {
		return pool, nil
	}
	pemBytes, err := os.ReadFile(caRoot)
	if err != nil {
		return nil, fmt.Errorf("reading acme.ca_root: %w", err)
	}
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, fmt.Errorf("reading acme.ca_root %s: no PEM certificate found", caRoot)
	}
	return pool, nil
}
