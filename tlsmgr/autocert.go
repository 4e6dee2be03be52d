package tlsmgr

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// autocertEngine is the minimal engine: x/crypto's autocert with a host
// policy that admits only the configured ACME hosts. It has no DNS-01, no
// ARI and no Stop (golang/go#63706): its renewal timers live as long as
// the process, even for hosts removed from the config, and renewals skip
// the host policy, so orderGuard refuses their orders before they leave.
type autocertEngine struct {
	m *autocert.Manager
	// hosts is the current set of ACME hosts, read by the host policy.
	hosts atomic.Pointer[map[string]bool]
	// http answers HTTP-01 challenges; nil when HTTP-01 is off.
	http http.Handler
	obt  *obtainer
	// closing cancels every request to the CA (see closingTransport).
	closing context.CancelFunc
}

func newAutocertEngine(s acmeSettings, opts options, logger *slog.Logger) (*autocertEngine, error) {
	e := &autocertEngine{}
	empty := map[string]bool{}
	e.hosts.Store(&empty)
	life, closing := context.WithCancelCause(context.Background())
	e.closing = func() { closing(errEngineClosed) }
	e.m = &autocert.Manager{
		Prompt:     autocert.AcceptTOS,
		Cache:      autocert.DirCache(autocertDir(s.storage)),
		HostPolicy: e.hostPolicy,
		Email:      s.acme.Email,
		Client: &acme.Client{
			DirectoryURL: config.CADirectory(s.acme.CA),
			HTTPClient: &http.Client{Transport: &orderGuard{allow: e.hostPolicy, logger: logger, base: &closingTransport{life: life, base: &http.Transport{
				Proxy:           http.ProxyFromEnvironment,
				TLSClientConfig: &tls.Config{RootCAs: s.roots},
			}}}},
		},
	}
	if e.m.Client.DirectoryURL == "" {
		e.m.Client.DirectoryURL = autocert.DefaultACMEDirectory
	}
	if eab := s.acme.EAB; eab != nil {
		if eab.APIKey != "" {
			return nil, errors.New("creating the autocert engine: acme.eab.api_key needs engine certmagic")
		}
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
// autocert bounds the call at 5 minutes and does not take a context: ctx
// is only checked first, and close ends an order in flight through the
// HTTP client instead.
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

// close cancels the requests to the CA in flight, which ends the orders
// of the obtain loops at once, then stops the loops. autocert itself
// cannot be stopped: its renewal timers still fire, and fail without
// reaching the CA.
func (e *autocertEngine) close() error {
	e.closing()
	e.obt.stop()
	return nil
}

// errEngineClosed is why the requests of a closed engine fail.
var errEngineClosed = errors.New("ACME engine closed")

// closingTransport ties every request to the CA to the engine's life.
// autocert gives its requests a context of its own, bounded at 5 minutes,
// so an order in flight (a CA slow to validate, say) would hold Close,
// and so a user's Ctrl-C, for that long; this is what cancels it.
type closingTransport struct {
	life context.Context // cancelled by close
	base http.RoundTripper
}

func (t *closingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	// Checked first: AfterFunc on a context already done cancels from a
	// goroutine of its own, after the request may have left, and a closed
	// engine must send nothing (autocert's renewal timers outlive it).
	if t.life.Err() != nil {
		if req.Body != nil {
			req.Body.Close() // a RoundTripper closes it, even on error
		}
		return nil, context.Cause(t.life)
	}
	ctx, cancel := context.WithCancelCause(req.Context())
	stop := context.AfterFunc(t.life, func() { cancel(context.Cause(t.life)) })
	release := func() {
		stop()
		cancel(nil)
	}
	resp, err := t.base.RoundTrip(req.WithContext(ctx))
	if err != nil {
		release()
		return nil, err
	}
	// The body is read after RoundTrip returns, so the request's context
	// lives until it is closed; the acme package closes every body.
	resp.Body = &releasingBody{ReadCloser: resp.Body, release: release}
	return resp, nil
}

// orderGuard refuses, before it is sent, an order for a name the host
// policy no longer admits. autocert checks the policy when a certificate
// is first asked for, not when its renewal timer fires, so without this a
// host removed from the config would be renewed for as long as the
// process runs: issuance the config does not allow, and failed
// authorizations counted against the account once its DNS points away.
type orderGuard struct {
	allow  func(ctx context.Context, host string) error
	logger *slog.Logger
	base   http.RoundTripper
}

// errOrderRefused is why an order for a host no longer configured fails.
var errOrderRefused = errors.New("refusing an ACME order for a host no longer configured")

func (g *orderGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodPost || req.Body == nil || req.GetBody == nil {
		return g.base.RoundTrip(req)
	}
	// The acme package sets GetBody, so the body can be read here and
	// sent again from a fresh copy.
	body, err := req.GetBody()
	if err != nil {
		return g.base.RoundTrip(req)
	}
	ids := orderIdentifiers(body)
	body.Close()
	for _, host := range ids {
		if err := g.allow(req.Context(), host); err != nil {
			req.Body.Close() // a RoundTripper closes it, even on error
			// autocert retries every 30 to 60 minutes until a restart.
			g.logger.Info("refused an ACME order for a host removed from the config; a restart stops its renewal", "host", host, "engine", "autocert")
			return nil, fmt.Errorf("%w: %s", errOrderRefused, host)
		}
	}
	return g.base.RoundTrip(req)
}

// orderIdentifiers returns the DNS names of a JWS-signed new-order (or
// new-authorization) request, and nothing for any other ACME request.
func orderIdentifiers(body io.Reader) []string {
	var jws struct {
		Payload string `json:"payload"`
	}
	if err := json.NewDecoder(io.LimitReader(body, 1<<20)).Decode(&jws); err != nil || jws.Payload == "" {
		return nil
	}
	payload, err := base64.RawURLEncoding.DecodeString(jws.Payload)
	if err != nil {
		return nil
	}
	var order struct {
		Identifiers []acme.AuthzID `json:"identifiers"`
		Identifier  *acme.AuthzID  `json:"identifier"`
	}
	if json.Unmarshal(payload, &order) != nil {
		return nil
	}
	if order.Identifier != nil {
		order.Identifiers = append(order.Identifiers, *order.Identifier)
	}
	var hosts []string
	for _, id := range order.Identifiers {
		if id.Type == "dns" {
			hosts = append(hosts, id.Value)
		}
	}
	return hosts
}

// releasingBody calls release once, when the body is closed.
type releasingBody struct {
	io.ReadCloser
	once    sync.Once
	release func()
}

func (b *releasingBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.release)
	return err
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
