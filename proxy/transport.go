package proxy

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"
)

// Pooling and handshake settings shared by every Upstream transport.
const (
	maxIdleConnsPerHost   = 64
	maxIdleConns          = 1024
	idleConnTimeout       = 90 * time.Second
	tlsHandshakeTimeout   = 10 * time.Second
	expectContinueTimeout = 1 * time.Second
	tcpKeepAlive          = 30 * time.Second
)

// upstreamKind is how gatehouse speaks to an Upstream.
type upstreamKind uint8

const (
	kindHTTP  upstreamKind = iota // HTTP/1.1 over TCP
	kindHTTPS                     // HTTP/2 or HTTP/1.1 by ALPN over TLS
	kindH2C                       // HTTP/2 over TCP with prior knowledge
)

// transportKey identifies transports that can share connections: same
// protocol, same trusted roots, same timeouts.
type transportKey struct {
	kind upstreamKind
	// ca is the SHA-256 of the route's CA file, zero for system roots. The
	// file's content rather than its pool pointer is the identity, so a
	// reload that rereads an unchanged file reuses the same transport.
	ca             [32]byte
	dial           time.Duration
	responseHeader time.Duration
}

// Transports is a pool of Upstream HTTP transports, one per protocol, CA
// and timeout combination. It outlives Tables: pass the same Transports to
// every Compile so a reload keeps Upstream connections warm. It is safe for
// concurrent use.
type Transports struct {
	mu   sync.Mutex // guards pool
	pool map[transportKey]*http.Transport

	// override, when set, replaces every transport. Tests use it for an
	// in-memory Upstream.
	override http.RoundTripper
}

// NewTransports returns an empty pool; transports are created as Compile
// asks for them.
func NewTransports() *Transports {
	return &Transports{pool: make(map[transportKey]*http.Transport)}
}

// Close closes the idle connections of every pooled transport. Connections
// in use are closed when their requests end. The pool stays usable, so
// Close belongs after the servers have shut down.
func (ts *Transports) Close() {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for _, t := range ts.pool {
		t.CloseIdleConnections()
	}
}

// get returns the pooled transport for k, creating it with roots (nil for
// the system roots) on first use. Transports a new Table no longer asks for
// stay pooled; their idle connections expire after idleConnTimeout.
func (ts *Transports) get(k transportKey, roots *x509.CertPool) http.RoundTripper {
	if ts.override != nil {
		return ts.override
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if t, ok := ts.pool[k]; ok {
		return t
	}
	t := newTransport(k, roots)
	ts.pool[k] = t
	return t
}

func newTransport(k transportKey, roots *x509.CertPool) *http.Transport {
	dialer := &net.Dialer{Timeout: k.dial, KeepAlive: tcpKeepAlive}
	t := &http.Transport{
		// Upstreams are reached directly: an HTTP_PROXY meant for the
		// process's own outbound calls must not capture proxied traffic.
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots},
		TLSHandshakeTimeout:   tlsHandshakeTimeout,
		ResponseHeaderTimeout: k.responseHeader,
		ExpectContinueTimeout: expectContinueTimeout,
		MaxIdleConns:          maxIdleConns,
		MaxIdleConnsPerHost:   maxIdleConnsPerHost,
		IdleConnTimeout:       idleConnTimeout,
		// The client's Accept-Encoding goes through untouched and the
		// Upstream's encoding comes back untouched; transparent gzip would
		// change both.
		DisableCompression: true,
		Protocols:          new(http.Protocols),
	}
	switch k.kind {
	case kindHTTP:
		t.Protocols.SetHTTP1(true)
	case kindHTTPS:
		t.Protocols.SetHTTP1(true)
		t.Protocols.SetHTTP2(true)
	case kindH2C:
		// UnencryptedHTTP2 without HTTP1 makes http:// URLs speak HTTP/2
		// with prior knowledge.
		t.Protocols.SetUnencryptedHTTP2(true)
	}
	return t
}

// parseUpstream splits a configured Upstream URL into its kind and the
// scheme and host requests are sent to (h2c:// is sent as http:// over the
// h2c transport).
func parseUpstream(raw string) (upstreamKind, *url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return 0, nil, err
	}
	if u.Host == "" {
		return 0, nil, fmt.Errorf("checking upstream %q: missing host", raw)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return 0, nil, fmt.Errorf("checking upstream %q: only scheme, host and port are allowed", raw)
	}
	var kind upstreamKind
	switch u.Scheme {
	case "http":
		kind = kindHTTP
	case "https":
		kind = kindHTTPS
	case "h2c":
		kind = kindH2C
		u.Scheme = "http"
	default:
		return 0, nil, fmt.Errorf("checking upstream %q: scheme must be http, https or h2c", raw)
	}
	return kind, &url.URL{Scheme: u.Scheme, Host: u.Host}, nil
}

// loadCertPool reads a PEM file of roots and returns the pool and the
// file's SHA-256, which identifies the pool across reloads.
func loadCertPool(file string) (*x509.CertPool, [32]byte, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, [32]byte{}, fmt.Errorf("reading ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, [32]byte{}, fmt.Errorf("reading ca %q: no PEM certificates found", file)
	}
	return pool, sha256.Sum256(data), nil
}
