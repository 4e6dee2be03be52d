package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/pires/go-proxyproto"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// trustedSet is the parsed trusted_proxies, swapped on every reload so the
// PROXY protocol Listeners follow the running config.
type trustedSet struct {
	p atomic.Pointer[[]netip.Prefix]
}

// set parses trusted_proxies, which validation has already checked.
func (s *trustedSet) set(cfg *config.Config) {
	prefixes := make([]netip.Prefix, 0, len(cfg.TrustedProxies))
	for _, v := range cfg.TrustedProxies {
		if p, err := netip.ParsePrefix(v); err == nil {
			prefixes = append(prefixes, p.Masked())
		} else if a, err := netip.ParseAddr(v); err == nil {
			a = a.Unmap()
			prefixes = append(prefixes, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	s.p.Store(&prefixes)
}

// contains reports whether the peer at addr is a trusted proxy.
func (s *trustedSet) contains(addr net.Addr) bool {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return false
	}
	a := tcp.AddrPort().Addr().Unmap()
	ps := s.p.Load()
	if ps == nil {
		return false
	}
	for _, p := range *ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// proxyProtocol wraps a TCP Listener so that it reads a PROXY protocol v1
// or v2 header before anything else. A peer in trusted_proxies must send
// one (its connection is closed otherwise), and the client address in it
// becomes the connection's remote address: what X-Forwarded-For, allow_ips
// and the access log see. Any other peer is served as itself, and a PROXY
// header from it closes its connection: a header is never believed from a
// peer that is not trusted. Reading the header is bounded by readHeader,
// like the request headers that follow.
func proxyProtocol(ln net.Listener, trusted *trustedSet, readHeader time.Duration) net.Listener {
	return &proxyproto.Listener{
		Listener:          ln,
		ReadHeaderTimeout: readHeader,
		ConnPolicy: func(o proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) {
			if trusted.contains(o.Upstream) {
				return proxyproto.REQUIRE, nil
			}
			return proxyproto.REJECT, nil
		},
		ValidateHeader: streamOverIP,
	}
}

// streamOverIP refuses a PROXY header that names a UDP or Unix socket
// client: only TCP over IPv4 or IPv6 (or no address, a balancer's own
// health check) reaches a TCP Listener, and a Request's client address
// must be one (trusted_proxies, allow_ips and the access log read it).
func streamOverIP(h *proxyproto.Header) error {
	tp := h.TransportProtocol
	if tp.IsUnspec() || tp.IsStream() && (tp.IsIPv4() || tp.IsIPv6()) {
		return nil
	}
	return fmt.Errorf("PROXY header for a client that is not TCP over IP (address family and protocol 0x%02x) on a TCP Listener", byte(tp))
}

// altSvcMaxAge is how long clients may remember that HTTP/3 is offered.
const altSvcMaxAge = 86400

// altSvc advertises HTTP/3 on port in every TCP response of next. The
// header value is built once and shared, as the Handler does for HSTS:
// Header.Add copies the slice instead of writing into it.
func altSvc(next http.Handler, port int) http.Handler {
	v := []string{`h3=":` + strconv.Itoa(port) + `"; ma=` + strconv.Itoa(altSvcMaxAge)}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Alt-Svc"] = v
		next.ServeHTTP(w, r)
	})
}

// listenUDP binds the HTTP/3 Listener on the HTTPS address, so a port taken
// fails at start like a TCP one does.
func listenUDP(key, addr string) (net.PacketConn, error) {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: listening on %s (UDP): %w", key, addr, err)
	}
	return pc, nil
}

// http3Listener is the HTTP/3 server on the HTTPS Listener's UDP port.
type http3Listener struct {
	srv  *http3.Server
	conn net.PacketConn
	done chan struct{} // closed when Serve returns
}

// startHTTP3 serves h over HTTP/3 on conn with the certificates of
// tlsConf, which is cloned with ALPN h3. Requests carry tcp, the HTTPS
// Listener's server, as http.ServerContextKey, as they would over TCP:
// ReverseProxy aborts an answer whose Upstream breaks off mid-body (so
// quic-go resets the stream) only under a server it can see there, and
// otherwise ends the stream as if the body were whole.
func (g *Gateway) startHTTP3(conn net.PacketConn, tlsConf *tls.Config, h http.Handler, tcp *http.Server) {
	cfg := g.cfg
	srv := &http3.Server{
		Handler: h,
		ConnContext: func(ctx context.Context, _ *quic.Conn) context.Context {
			return context.WithValue(ctx, http.ServerContextKey, tcp)
		},
		TLSConfig:      http3.ConfigureTLSConfig(tlsConf),
		IdleTimeout:    cfg.Timeouts.Idle,
		MaxHeaderBytes: int(cfg.Limits.HeaderBytes),
		Logger:         g.logger,
		QUICConfig: &quic.Config{
			// 0-RTT requests can be replayed by an attacker, and the
			// Upstreams behind gatehouse cannot tell; one round trip more
			// is the safe price.
			Allow0RTT: false,
			// Bounds the QUIC handshake, as read_header bounds TLS.
			HandshakeIdleTimeout: cfg.Timeouts.ReadHeader,
			// Requests in flight on one connection, as for HTTP/2.
			MaxIncomingStreams: int64(cfg.Limits.Streams),
		},
	}
	l := &http3Listener{srv: srv, conn: conn, done: make(chan struct{})}
	g.h3 = l
	go func() {
		defer close(l.done)
		if err := srv.Serve(conn); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			g.logger.Error("HTTP/3 server stopped", "error", err)
		}
	}()
}

// stopHTTP3 sends GOAWAY, waits for requests in flight until ctx is done,
// then closes what is left and the UDP socket.
func (g *Gateway) stopHTTP3(ctx context.Context) {
	l := g.h3
	if l == nil {
		return
	}
	if err := l.srv.Shutdown(ctx); err != nil {
		g.logger.Warn("HTTP/3 requests still in flight after the shutdown grace period; closing them", "error", err)
	}
	l.conn.Close()
	<-l.done
}

// http2MaxFrameSize is the largest HTTP/2 frame the HTTPS Listener reads:
// the protocol's initial 16 KiB, as nginx advertises, instead of Go's
// 1 MiB. A client then cannot make gatehouse buffer a megabyte before a
// frame can be checked, and a larger HEADERS frame is the FRAME_SIZE_ERROR
// that RFC 9113 §4.2 asks for (h2spec 4.2/3).
const http2MaxFrameSize = 16 << 10

// http2Config is the HTTPS Listener's HTTP/2 settings.
func http2Config(cfg *config.Config) *http.HTTP2Config {
	return &http.HTTP2Config{
		MaxReadFrameSize:     http2MaxFrameSize,
		MaxConcurrentStreams: cfg.Limits.Streams,
	}
}
