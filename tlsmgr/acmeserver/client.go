package acmeserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/smallstep/certificates/acme"
)

// validationTimeout bounds one validation: a GET, a TLS handshake or a
// TXT lookup.
const validationTimeout = 30 * time.Second

// validationClient is how the CA reaches the names it validates
// (smallstep's acme.Client): names under .localhost are loopback without
// DNS (RFC 6761), other names are resolved through the configured
// resolvers (or the system's), and the address found is dialled.
type validationClient struct {
	resolver *net.Resolver
	dialer   net.Dialer
	http     *http.Client
	ports    *ports
}

var _ acme.Client = (*validationClient)(nil)

func newValidationClient(resolvers []string, p *ports) (*validationClient, error) {
	c := &validationClient{resolver: net.DefaultResolver, dialer: net.Dialer{Timeout: 10 * time.Second}, ports: p}
	if len(resolvers) > 0 {
		for _, r := range resolvers {
			if _, _, err := net.SplitHostPort(r); err != nil {
				return nil, fmt.Errorf("resolver %q is not host:port", r)
			}
		}
		// The next resolver is asked after one fails: net.Resolver
		// retries, and each retry dials again.
		var next atomic.Uint32
		d := net.Dialer{Timeout: 5 * time.Second}
		c.resolver = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, resolvers[int(next.Add(1)-1)%len(resolvers)])
		}}
	}
	c.http = &http.Client{
		Timeout: validationTimeout,
		Transport: &http.Transport{
			DialContext: c.dial,
			// HTTP-01 may redirect to HTTPS (RFC 8555 §8.3), where the
			// certificate is the one being replaced or none yet.
			TLSClientConfig:       &tls.Config{InsecureSkipVerify: true},
			DisableKeepAlives:     true,
			ResponseHeaderTimeout: validationTimeout,
		},
		// As Let's Encrypt does: redirects stay on HTTP and HTTPS's own
		// ports, so a client cannot point the CA at another service.
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 10 {
				return errors.New("stopped after 10 redirects")
			}
			if p := req.URL.Port(); (req.URL.Scheme != "http" && req.URL.Scheme != "https") || (p != "" && p != "80" && p != "443") {
				return fmt.Errorf("redirect to %s refused: only http and https on ports 80 and 443", req.URL.Redacted())
			}
			return nil
		},
	}
	return c, nil
}

// Get fetches an HTTP-01 challenge URL.
func (c *validationClient) Get(url string) (*http.Response, error) {
	return c.http.Get(url)
}

// LookupTxt returns the TXT records of a DNS-01 challenge name.
func (c *validationClient) LookupTxt(name string) ([]string, error) {
	if isLocalhost(name) {
		return nil, fmt.Errorf("%s is under .localhost, which has no DNS (RFC 6761); use http-01 or tls-alpn-01", name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), validationTimeout)
	defer cancel()
	return c.resolver.LookupTXT(ctx, name)
}

// TLSDial connects for a TLS-ALPN-01 validation.
func (c *validationClient) TLSDial(network, addr string, cfg *tls.Config) (*tls.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), validationTimeout)
	defer cancel()
	conn, err := c.dial(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	return tc, nil
}

// dial resolves addr's host as the client does and dials each address
// found until one answers.
func (c *validationClient) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if c.ports != nil {
		switch port {
		case "80":
			port = c.ports.http
		case "443":
			port = c.ports.tls
		}
	}
	ips, err := c.resolve(ctx, host)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, ip := range ips {
		conn, err := c.dialer.DialContext(ctx, network, net.JoinHostPort(ip.String(), port))
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("connecting to %s: %w", host, errors.Join(errs...))
}

// resolve returns host's addresses: host itself when it is an IP address,
// loopback for localhost and the names under it, else what the resolver
// says.
func (c *validationClient) resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip}, nil
	}
	if isLocalhost(host) {
		return []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()}, nil
	}
	ips, err := c.resolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, fmt.Errorf("resolving %s: %w", host, err)
	}
	for i, ip := range ips {
		ips[i] = ip.Unmap()
	}
	return ips, nil
}

// isLocalhost reports whether name is localhost or under it.
func isLocalhost(name string) bool {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	return name == "localhost" || strings.HasSuffix(name, ".localhost")
}
