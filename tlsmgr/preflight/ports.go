package preflight

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// checkPorts checks, for each enabled challenge, that its Listener can be
// bound or is gatehouse's, and that each host reaches it by name.
func (c *checker) checkPorts(ctx context.Context, hosts []acmeHost) {
	challenges := c.cfg.ACME.Challenges
	http01 := slices.Contains(challenges, config.ChallengeHTTP01) && c.cfg.Listen.HTTP != ""
	alpn := slices.Contains(challenges, config.ChallengeTLSALPN01) && c.cfg.Listen.HTTPS != ""
	if !http01 && !alpn {
		for _, h := range hosts {
			c.add(CheckPorts, Fail, h.name, "no challenge can work: http-01 needs listen.http, tls-alpn-01 needs listen.https, anything else a DNS provider")
		}
		return
	}
	// The CA always validates on ports 80 and 443; other Listener ports
	// work only behind a forward, which the probes cannot see.
	for _, l := range []struct {
		on          bool
		key, addr   string
		challenge   string
		defaultPort string
	}{
		{http01, "listen.http", c.cfg.Listen.HTTP, "http-01", "80"},
		{alpn, "listen.https", c.cfg.Listen.HTTPS, "tls-alpn-01", "443"},
	} {
		if _, port, err := net.SplitHostPort(l.addr); l.on && err == nil && port != l.defaultPort {
			c.add(CheckPorts, Note, l.key, "the CA validates %s on port %s, not %s: it must be forwarded there", l.challenge, l.defaultPort, port)
		}
	}
	var results []map[string]probeResult
	if http01 {
		results = append(results, c.probeHTTP(ctx, hosts))
	}
	if alpn {
		results = append(results, c.probeTLS(ctx, hosts))
	}
	// certmagic tries every enabled challenge, so one that cannot work is
	// a failure only when no other can.
	for _, h := range hosts {
		passed := slices.ContainsFunc(results, func(r map[string]probeResult) bool { return r[h.name].ok })
		for _, r := range results {
			res := r[h.name]
			if !res.ok && c.natted[h.name] {
				res.msg += " (behind NAT the router may not loop the probe back; the CA comes from outside)"
			}
			switch {
			case res.ok:
				c.add(CheckPorts, OK, h.name, "%s", res.msg)
			case passed:
				c.add(CheckPorts, Note, h.name, "%s (another challenge type works)", res.msg)
			default:
				c.add(CheckPorts, Fail, h.name, "%s", res.msg)
			}
		}
	}
}

// probeResult is the outcome of one challenge type's probe for one host.
type probeResult struct {
	ok  bool
	msg string
}

// bindOrRunning binds addr, or finds gatehouse already serving on it. A
// nil listener with a nil error means gatehouse holds the port.
func (c *checker) bindOrRunning(ctx context.Context, key, addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		return ln, nil
	}
	switch {
	case errors.Is(err, syscall.EACCES):
		return nil, fmt.Errorf("cannot bind %s (%s): permission denied; run as root or grant CAP_NET_BIND_SERVICE", addr, key)
	case errors.Is(err, syscall.EADDRINUSE):
		if c.gatehouseRunning(ctx) {
			return nil, nil
		}
		return nil, fmt.Errorf("%s (%s) is held by another program, not a running gatehouse: challenges sent there would not reach gatehouse", addr, key)
	default:
		return nil, fmt.Errorf("cannot bind %s (%s): %v", addr, key, err)
	}
}

// gatehouseRunning reports whether a gatehouse answers on the config's
// admin address.
func (c *checker) gatehouseRunning(ctx context.Context) bool {
	if c.cfg.Admin == config.Off || c.cfg.Admin == "" {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.cfg.Admin+"/healthz", nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// dialer connects by name through the checker's resolver, as the CA would
// through public DNS.
func (c *checker) dialer() *net.Dialer {
	return &net.Dialer{Timeout: probeTimeout, Resolver: c.resolver}
}

// probeURL is the URL of the probe file on host, through the port of the
// Listener at addr (80 in production, which the CA always uses).
func probeURL(scheme, host, addr, path string) string {
	_, port, _ := net.SplitHostPort(addr)
	if (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
		port = ""
	}
	u := url.URL{Scheme: scheme, Host: host, Path: path}
	if port != "" {
		u.Host = net.JoinHostPort(host, port)
	}
	return u.String()
}

// failAll gives every host the same failed probe.
func failAll(hosts []acmeHost, format string, args ...any) map[string]probeResult {
	result := map[string]probeResult{}
	for _, h := range hosts {
		result[h.name] = probeResult{msg: fmt.Sprintf(format, args...)}
	}
	return result
}

// probeHTTP serves the probe token on the HTTP Listener's address (unless
// gatehouse holds it) and fetches it through each host's name.
func (c *checker) probeHTTP(ctx context.Context, hosts []acmeHost) map[string]probeResult {
	addr := c.cfg.Listen.HTTP
	ln, err := c.bindOrRunning(ctx, "listen.http", addr)
	if err != nil {
		return failAll(hosts, "http-01: %v", err)
	}
	path := "/.well-known/acme-challenge/" + c.token
	if ln != nil {
		srv := &http.Server{ReadHeaderTimeout: probeTimeout, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == path {
				io.WriteString(w, c.token)
				return
			}
			http.NotFound(w, r)
		})}
		var wg sync.WaitGroup
		wg.Go(func() { srv.Serve(ln) })
		defer wg.Wait()
		defer srv.Close()
	}
	client := &http.Client{
		Timeout:   probeTimeout,
		Transport: &http.Transport{DialContext: c.dialer().DialContext},
		// The CA follows redirects, but a probe that is redirected did
		// not reach the temporary handler.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	defer client.CloseIdleConnections()
	result := map[string]probeResult{}
	for _, h := range hosts {
		u := probeURL("http", h.name, addr, path)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			result[h.name] = probeResult{msg: fmt.Sprintf("http-01: %v", err)}
			continue
		}
		resp, err := client.Do(req)
		if err != nil {
			result[h.name] = probeResult{msg: fmt.Sprintf("http-01: fetching %s: %v", u, err)}
			continue
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		switch {
		case ln == nil:
			// gatehouse answers for real; any HTTP answer shows the port
			// reaches it.
			result[h.name] = probeResult{ok: true, msg: fmt.Sprintf("http-01: %s reaches the running gatehouse (%s)", u, resp.Status)}
		case resp.StatusCode == http.StatusOK && string(body) == c.token:
			result[h.name] = probeResult{ok: true, msg: fmt.Sprintf("http-01: fetched %s from a temporary handler on %s", u, addr)}
		default:
			result[h.name] = probeResult{msg: fmt.Sprintf("http-01: %s answered %s, not the probe: another server answers for this name", u, resp.Status)}
		}
	}
	return result
}

// probeTLS serves a throwaway certificate on the HTTPS Listener's address
// (unless gatehouse holds it) and handshakes with it through each host's
// name, as TLS-ALPN-01 validation does.
func (c *checker) probeTLS(ctx context.Context, hosts []acmeHost) map[string]probeResult {
	addr := c.cfg.Listen.HTTPS
	ln, err := c.bindOrRunning(ctx, "listen.https", addr)
	if err != nil {
		return failAll(hosts, "tls-alpn-01: %v", err)
	}
	var probe *tls.Certificate
	if ln != nil {
		probe, err = throwawayCertificate()
		if err != nil {
			ln.Close()
			return failAll(hosts, "tls-alpn-01: %v", err)
		}
		tlsLn := tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{*probe}, NextProtos: []string{"acme-tls/1"}})
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				conn, err := tlsLn.Accept()
				if err != nil {
					return
				}
				wg.Go(func() {
					conn.SetDeadline(time.Now().Add(probeTimeout))
					conn.(*tls.Conn).Handshake()
					conn.Close()
				})
			}
		})
		defer wg.Wait()
		defer tlsLn.Close()
	}
	_, port, _ := net.SplitHostPort(addr)
	result := map[string]probeResult{}
	for _, h := range hosts {
		target := net.JoinHostPort(h.name, port)
		dctx, cancel := context.WithTimeout(ctx, probeTimeout)
		raw, err := c.dialer().DialContext(dctx, "tcp", target)
		cancel()
		if err != nil {
			result[h.name] = probeResult{msg: fmt.Sprintf("tls-alpn-01: connecting to %s: %v", target, err)}
			continue
		}
		if ln == nil {
			raw.Close()
			result[h.name] = probeResult{ok: true, msg: fmt.Sprintf("tls-alpn-01: %s reaches the running gatehouse", target)}
			continue
		}
		conn := tls.Client(raw, &tls.Config{ServerName: h.name, InsecureSkipVerify: true, NextProtos: []string{"acme-tls/1"}})
		conn.SetDeadline(time.Now().Add(probeTimeout))
		err = conn.Handshake()
		var same bool
		if err == nil {
			peer := conn.ConnectionState().PeerCertificates
			same = len(peer) > 0 && string(peer[0].Raw) == string(probe.Certificate[0])
		}
		conn.Close()
		switch {
		case err != nil:
			result[h.name] = probeResult{msg: fmt.Sprintf("tls-alpn-01: handshake with %s: %v", target, err)}
		case !same:
			result[h.name] = probeResult{msg: fmt.Sprintf("tls-alpn-01: %s is answered by another TLS server, not this machine's %s", target, addr)}
		default:
			result[h.name] = probeResult{ok: true, msg: fmt.Sprintf("tls-alpn-01: %s reaches a temporary TLS listener on %s", target, addr)}
		}
	}
	return result
}

// throwawayCertificate makes a self-signed certificate that identifies the
// temporary TLS listener.
func throwawayCertificate() (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating a probe key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return nil, fmt.Errorf("generating a probe serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "gatehouse check probe"},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("creating a probe certificate: %w", err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
