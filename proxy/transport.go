package proxy

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
)

// Pooling and handshake settings shared by every Upstream transport. The
// idle pool size and timeout are the defaults of a Route's keepalive. The
// idle pool is sized for the requests in flight at a peak, not for the
// client connections: 32 HTTP/2 connections of 10 streams each keep 320
// requests in flight, and a pool of 64 closed and redialed the other 256
// Upstream connections continuously (about 3,600 dials/s in bench case 2).
const (
	defaultMaxIdlePerHost    = 512
	maxIdleConns             = 1024
	defaultIdleConnTimeout   = 90 * time.Second
	defaultMaxResponseHeader = 1 << 20
	tlsHandshakeTimeout      = 10 * time.Second
	expectContinueTimeout    = 1 * time.Second
	tcpKeepAlive             = 30 * time.Second
)

// unixHost is the host requests to a unix socket Upstream carry in their
// URL. The socket's transport dials its path whatever the host says; the
// host only names the connection pool, which is the socket's own.
const unixHost = "localhost"

// upstreamKind is how gatehouse speaks to an Upstream.
type upstreamKind uint8

const (
	kindHTTP  upstreamKind = iota // HTTP/1.1 over TCP
	kindHTTPS                     // HTTP/2 or HTTP/1.1 by ALPN over TLS
	kindH2C                       // HTTP/2 over TCP with prior knowledge
	kindUnix                      // HTTP/1.1 over a unix socket
)

// transportKey identifies transports that can share connections: same
// protocol, same TLS settings, same timeouts and pool sizes. Every field is
// a value, so a reload that compiles the same settings gets the same
// transport and its warm connections.
type transportKey struct {
	kind upstreamKind
	// ca is the SHA-256 of the route's CA file, zero for system roots. The
	// file's content rather than its pool pointer is the identity, so a
	// reload that rereads an unchanged file reuses the same transport.
	ca             [32]byte
	dial           time.Duration
	responseHeader time.Duration
	// serverName, clientCert (SHA-256 of the certificate and key files)
	// and insecure are the route's upstream_tls.
	serverName string
	clientCert [32]byte
	insecure   bool
	// maxIdle and idleTimeout are the route's keepalive.
	maxIdle     int
	idleTimeout time.Duration
	// maxResponseHeader bounds an Upstream's response header block.
	maxResponseHeader int64
	// socket is the path of a unix socket Upstream.
	socket string
}

// transportTLS is what a transport needs for TLS beyond its key: the
// parsed roots and client certificate the key only fingerprints.
type transportTLS struct {
	roots      *x509.CertPool
	clientCert *tls.Certificate
}

// Transports is a pool of Upstream HTTP transports, one per protocol, TLS
// setting, timeout and pool size combination. It outlives Tables: pass the
// same Transports to every Compile so a reload keeps Upstream connections
// warm. It is safe for concurrent use.
type Transports struct {
	mu   sync.Mutex // guards pool and h1
	pool map[transportKey]*http.Transport
	// h1 holds the synchronous HTTP/1.1 pools of plain and unix socket
	// Upstreams, one per Upstream host, each falling back to its key's
	// transport (see h1Pool).
	h1 map[h1Key]*h1Pool

	// override, when set, replaces every transport. Tests use it for an
	// in-memory Upstream.
	override http.RoundTripper
}

// NewTransports returns an empty pool; transports are created as Compile
// asks for them.
func NewTransports() *Transports {
	return &Transports{pool: make(map[transportKey]*http.Transport), h1: make(map[h1Key]*h1Pool)}
}

// h1Key identifies an h1Pool: an Upstream host reached with one
// transport's settings.
type h1Key struct {
	transportKey
	host string
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
	for _, p := range ts.h1 {
		p.closeIdle()
	}
}

// get returns the RoundTripper for requests to host with k's settings,
// creating it with tc on first use: an h1Pool in front of the pooled
// transport for plain HTTP/1.1 and unix socket Upstreams, the transport
// itself otherwise. RoundTrippers a new Table no longer asks for stay
// pooled; their idle connections expire after their idle timeout.
func (ts *Transports) get(k transportKey, tc transportTLS, host string) http.RoundTripper {
	if ts.override != nil {
		return ts.override
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	t := ts.transportLocked(k, tc)
	if k.kind != kindHTTP && k.kind != kindUnix {
		return t
	}
	hk := h1Key{k, host}
	p, ok := ts.h1[hk]
	if !ok {
		p = newH1Pool(t, k, host)
		ts.h1[hk] = p
	}
	return p
}

// transport returns the pooled http.Transport for k itself, without an
// h1Pool in front: for requests an h1Pool would never take, such as the
// WebSocket upgrades to an h2c:// Upstream.
func (ts *Transports) transport(k transportKey, tc transportTLS) http.RoundTripper {
	if ts.override != nil {
		return ts.override
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.transportLocked(k, tc)
}

// transportLocked returns the pooled http.Transport for k, creating it
// with tc on first use. ts.mu is held.
func (ts *Transports) transportLocked(k transportKey, tc transportTLS) *http.Transport {
	t, ok := ts.pool[k]
	if !ok {
		t = newTransport(k, tc)
		ts.pool[k] = t
	}
	return t
}

func newTransport(k transportKey, tc transportTLS) *http.Transport {
	dialer := newDialer(k)
	tlsConfig := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		RootCAs:            tc.roots,
		ServerName:         k.serverName,
		InsecureSkipVerify: k.insecure, //nolint:gosec // only when the config says so, with a warning at compile
	}
	if tc.clientCert != nil {
		tlsConfig.Certificates = []tls.Certificate{*tc.clientCert}
	}
	maxIdle := cmp.Or(k.maxIdle, defaultMaxIdlePerHost)
	t := &http.Transport{
		// Upstreams are reached directly: an HTTP_PROXY meant for the
		// process's own outbound calls must not capture proxied traffic.
		Proxy:                  nil,
		DialContext:            dialer.DialContext,
		TLSClientConfig:        tlsConfig,
		TLSHandshakeTimeout:    tlsHandshakeTimeout,
		ResponseHeaderTimeout:  k.responseHeader,
		ExpectContinueTimeout:  expectContinueTimeout,
		MaxIdleConns:           max(maxIdleConns, maxIdle),
		MaxIdleConnsPerHost:    maxIdle,
		IdleConnTimeout:        cmp.Or(k.idleTimeout, defaultIdleConnTimeout),
		MaxResponseHeaderBytes: cmp.Or(k.maxResponseHeader, defaultMaxResponseHeader),
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
	case kindUnix:
		t.Protocols.SetHTTP1(true)
		socket := k.socket
		t.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, "unix", socket)
		}
	}
	return t
}

// newH1Pool returns the synchronous HTTP/1.1 pool for host with k's
// settings, falling back to t for the requests it does not take.
func newH1Pool(t *http.Transport, k transportKey, host string) *h1Pool {
	dialer := newDialer(k)
	network, addr := "tcp", host
	if k.kind == kindUnix {
		network, addr = "unix", k.socket
	}
	return &h1Pool{
		fallback: t,
		dial: func(ctx context.Context) (net.Conn, error) {
			return dialer.DialContext(ctx, network, addr)
		},
		responseHeaderTimeout: k.responseHeader,
		maxResponseHeader:     cmp.Or(k.maxResponseHeader, defaultMaxResponseHeader),
		maxIdle:               cmp.Or(k.maxIdle, defaultMaxIdlePerHost),
		idleTimeout:           cmp.Or(k.idleTimeout, defaultIdleConnTimeout),
	}
}

func newDialer(k transportKey) *net.Dialer {
	return &net.Dialer{Timeout: k.dial, KeepAlive: tcpKeepAlive}
}

// parseUpstream splits a configured Upstream URL into its kind, the scheme
// and host requests are sent to (h2c:// is sent as http:// over the h2c
// transport, unix:// as http://localhost over the socket's transport) and,
// for unix://, the socket path.
func parseUpstream(raw string) (kind upstreamKind, target *url.URL, socket string, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return 0, nil, "", err
	}
	if u.Scheme == "unix" {
		if u.Host != "" || !strings.HasPrefix(u.Path, "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return 0, nil, "", fmt.Errorf("checking upstream %q: a unix socket is unix:///absolute/path", raw)
		}
		return kindUnix, &url.URL{Scheme: "http", Host: unixHost}, u.Path, nil
	}
	if u.Host == "" {
		return 0, nil, "", fmt.Errorf("checking upstream %q: missing host", raw)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return 0, nil, "", fmt.Errorf("checking upstream %q: only scheme, host and port are allowed", raw)
	}
	switch u.Scheme {
	case "http":
		kind = kindHTTP
	case "https":
		kind = kindHTTPS
	case "h2c":
		kind = kindH2C
		u.Scheme = "http"
	default:
		return 0, nil, "", fmt.Errorf("checking upstream %q: scheme must be http, https, h2c or unix", raw)
	}
	return kind, &url.URL{Scheme: u.Scheme, Host: u.Host}, "", nil
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

// loadClientCert reads the client certificate and key an Upstream asks
// for, and returns them with the SHA-256 of both files, which identifies
// them across reloads.
func loadClientCert(certFile, keyFile string) (*tls.Certificate, [32]byte, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, [32]byte{}, fmt.Errorf("reading upstream_tls.client_cert: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, [32]byte{}, fmt.Errorf("reading upstream_tls.client_key: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, [32]byte{}, fmt.Errorf("loading upstream_tls client certificate: %w", err)
	}
	h := sha256.New()
	h.Write(certPEM)
	h.Write([]byte{0})
	h.Write(keyPEM)
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return &cert, sum, nil
}
