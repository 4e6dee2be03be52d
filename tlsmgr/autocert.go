package tlsmgr

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// autocertEngine is the minimal engine: x/crypto's autocert with a host
// policy that admits only the configured ACME hosts. It has no DNS-01, no
// ARI and no Stop (golang/go#63706): its renewal timers live as long as
// the process, even for hosts removed from the config.
type autocertEngine struct {
	m *autocert.Manager
	// hosts is the current set of ACME hosts, read by the host policy.
	hosts atomic.Pointer[map[string]bool]
	// http answers HTTP-01 challenges; nil when HTTP-01 is off.
	http http.Handler
	obt  *obtainer
}

func newAutocertEngine(s acmeSettings, opts options, logger *slog.Logger) (*autocertEngine, error) {
	e := &autocertEngine{}
	empty := map[string]bool{}
	e.hosts.Store(&empty)
	e.m = &autocert.Manager{
		Prompt:     autocert.AcceptTOS,
		Cache:      autocert.DirCache(autocertDir(s.storage)),
		HostPolicy: e.hostPolicy,
		Email:      s.acme.Email,
		Client: &acme.Client{
			DirectoryURL: s.acme.CA,
			HTTPClient: &http.Client{Transport: &http.Transport{
				Proxy:           http.ProxyFromEnvironment,
				TLSClientConfig: &tls.Config{RootCAs: s.roots},
			}},
		},
	}
	if e.m.Client.DirectoryURL == "" {
		e.m.Client.DirectoryURL = autocert.DefaultACMEDirectory
	}
	if eab := s.acme.EAB; eab != nil {
		key, err := decodeEABKey(eab.MACKey)
		if err != nil {
			return nil, err
		}
		e.m.ExternalAccountBinding = &acme.ExternalAccountBinding{KID: eab.KeyID, Key: key}
	}
	if s.http01 {
		// Calling HTTPHandler is what turns HTTP-01 on in autocert.
		e.http = e.m.HTTPHandler(http.NotFoundHandler())
	}
	e.obt = newObtainer(logger, opts.backoffBase, opts.backoffMax, e.obtain, func([]string) {})
	return e, nil
}

// hostPolicy admits the configured ACME hosts only, so no client can make
// autocert issue for a name of its choosing. HTTP-01 requests carry a port
// in Host when the HTTP Listener is not on 80; it is stripped.
func (e *autocertEngine) hostPolicy(_ context.Context, host string) error {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if (*e.hosts.Load())[strings.ToLower(host)] {
		return nil
	}
	return fmt.Errorf("host %q is not configured for ACME", host)
}

// obtain asks autocert for the certificate of host, which loads it from the
// cache or obtains it. The hello advertises ECDSA, as every modern client
// does, so the certificate obtained is the one handshakes will ask for.
// autocert bounds the call at 5 minutes and does not take a context.
func (e *autocertEngine) obtain(ctx context.Context, host string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	_, err := e.m.GetCertificate(&tls.ClientHelloInfo{
		ServerName:        host,
		CipherSuites:      []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
		SignatureSchemes:  []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256},
		SupportedCurves:   []tls.CurveID{tls.CurveP256},
		SupportedVersions: []uint16{tls.VersionTLS13, tls.VersionTLS12},
	})
	if err != nil {
		return fmt.Errorf("obtaining certificate for %s: %w", host, err)
	}
	return nil
}

func (e *autocertEngine) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return e.m.GetCertificate(hello)
}

func (e *autocertEngine) handleHTTP(w http.ResponseWriter, r *http.Request) bool {
	if e.http == nil {
		return false
	}
	e.http.ServeHTTP(w, r)
	return true
}

func (e *autocertEngine) manage(hosts []string) {
	set := make(map[string]bool, len(hosts))
	for _, h := range hosts {
		set[h] = true
	}
	e.hosts.Store(&set)
	e.obt.set(slices.Clone(hosts))
}

// close stops the obtain loops; autocert itself cannot be stopped.
func (e *autocertEngine) close() error {
	e.obt.stop()
	return nil
}

// decodeEABKey decodes an EAB MAC key, which CAs hand out base64url encoded
// (sometimes padded).
func decodeEABKey(k string) ([]byte, error) {
	if b, err := base64.RawURLEncoding.DecodeString(k); err == nil {
		return b, nil
	}
	b, err := base64.URLEncoding.DecodeString(k)
	if err != nil {
		return nil, errors.New("decoding acme.eab.mac_key: not base64url")
	}
	return b, nil
}

// autocertDir is where the autocert engine keeps its cache.
func autocertDir(storage string) string { return filepath.Join(storage, "autocert") }
