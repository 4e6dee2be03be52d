package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// checkTimeout bounds each network probe of `gatehouse check`.
const checkTimeout = 5 * time.Second

// cmdCheck is the ACME preflight: it finds what would make the CA refuse
// or fail an order before gatehouse asks it for one.
func cmdCheck(ctx context.Context, args []string, env *environment) error {
	fs := newFlags("check", "check [-config FILE] [-resolver HOST:PORT] [-caa-identity NAME]", env)
	path := configFlag(fs, env)
	resolver := fs.String("resolver", "", "DNS server `HOST:PORT` for the address and CAA lookups (default: the system's)")
	caaIdentity := fs.String("caa-identity", "", "the CAA issuer `NAME` of a CA gatehouse does not know (it knows Let's Encrypt, ZeroSSL, Google Trust Services)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		printProblems(env.stderr, err)
		return exitError(1)
	}
	c, err := newChecker(cfg, *resolver, *caaIdentity, env.stdout)
	if err != nil {
		return err
	}
	c.run(ctx)
	switch c.failures {
	case 0:
		fmt.Fprintln(env.stdout, "ok: nothing found that would make the CA refuse an order")
		return nil
	case 1:
		fmt.Fprintln(env.stdout, "1 problem would make obtaining certificates fail")
	default:
		fmt.Fprintf(env.stdout, "%d problems would make obtaining certificates fail\n", c.failures)
	}
	return exitError(1)
}

// checker runs the preflight checks of one config and prints each result.
type checker struct {
	cfg      *config.Config
	out      io.Writer
	failures int

	// resolver looks up A and AAAA records; dnsServer answers CAA queries.
	resolver  *net.Resolver
	dnsServer string
	// caaIdentity overrides the CAA identity of every CA.
	caaIdentity string
	// local holds this machine's interface addresses.
	local []netip.Addr
	// token is the random name of the probe challenge file.
	token string
	// natted holds the hosts that resolve only to addresses this machine
	// does not have, whose probes may fail for want of hairpin NAT.
	natted map[string]bool
}

func newChecker(cfg *config.Config, resolverAddr, caaIdentity string, out io.Writer) (*checker, error) {
	c := &checker{cfg: cfg, out: out, caaIdentity: caaIdentity, resolver: net.DefaultResolver, natted: map[string]bool{}}
	if resolverAddr != "" {
		if _, _, err := net.SplitHostPort(resolverAddr); err != nil {
			return nil, fmt.Errorf("-resolver: want HOST:PORT: %w", err)
		}
		d := &net.Dialer{Timeout: checkTimeout}
		c.resolver = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, resolverAddr)
		}}
		c.dnsServer = resolverAddr
	} else {
		conf, err := dns.ClientConfigFromFile("/etc/resolv.conf")
		if err != nil || len(conf.Servers) == 0 {
			return nil, fmt.Errorf("reading the system's DNS servers (give one with -resolver): %v", err)
		}
		c.dnsServer = net.JoinHostPort(conf.Servers[0], conf.Port)
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("listing this machine's addresses: %w", err)
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			c.local = append(c.local, p.Addr().Unmap())
		}
	}
	b := make([]byte, 16)
	rand.Read(b)
	c.token = "gatehouse-check-" + hex.EncodeToString(b)
	return c, nil
}

func (c *checker) ok(subject, format string, args ...any) {
	fmt.Fprintf(c.out, "ok    %s: %s\n", subject, fmt.Sprintf(format, args...))
}

func (c *checker) note(subject, format string, args ...any) {
	fmt.Fprintf(c.out, "note  %s: %s\n", subject, fmt.Sprintf(format, args...))
}

func (c *checker) fail(subject, format string, args ...any) {
	c.failures++
	fmt.Fprintf(c.out, "FAIL  %s: %s\n", subject, fmt.Sprintf(format, args...))
}

// acmeHost is a configured name whose Certificate comes from an ACME CA.
type acmeHost struct {
	name string
	// dns01 is set when the name is solved through DNS (a wildcard or a
	// Site with a DNS provider): no address or port is needed.
	dns01 bool
	// cas are the ACME directories that may issue for it, in order.
	cas []caRef
}

// caRef is one ACME CA of the config.
type caRef struct {
	url, root string
	eab       bool
}

// acmeHosts lists the names gatehouse would order Certificates for.
func (c *checker) acmeHosts() (hosts []acmeHost, onDemand []string) {
	global := c.globalCAs()
	for _, s := range c.cfg.Sites {
		cas := global
		if len(s.TLS.Issuers) > 0 {
			cas = issuerRefs(s.TLS.Issuers)
		}
		dnsProvider := s.TLS.DNS != nil || c.cfg.ACME.DNS != nil
		for _, h := range s.Hosts {
			if s.TLS.IssuerFor(h) != config.IssuerACME {
				continue
			}
			if s.TLS.OnDemand || h == "*" {
				onDemand = append(onDemand, h)
				continue
			}
			hosts = append(hosts, acmeHost{name: strings.ToLower(h), dns01: dnsProvider || strings.HasPrefix(h, "*."), cas: cas})
		}
	}
	return hosts, onDemand
}

func (c *checker) globalCAs() []caRef {
	if len(c.cfg.ACME.Issuers) > 0 {
		return issuerRefs(c.cfg.ACME.Issuers)
	}
	return []caRef{{url: c.cfg.ACME.CA, root: c.cfg.ACME.CARoot, eab: c.cfg.ACME.EAB != nil}}
}

func issuerRefs(issuers []config.Issuer) []caRef {
	var refs []caRef
	for _, is := range issuers {
		refs = append(refs, caRef{url: is.CA, root: is.CARoot, eab: is.EAB != nil})
	}
	return refs
}

// run performs every check.
func (c *checker) run(ctx context.Context) {
	hosts, onDemand := c.acmeHosts()
	if len(onDemand) > 0 {
		c.note(strings.Join(onDemand, ", "), "on-demand names are checked by the on_demand policy at their first handshake, not here")
	}
	if len(hosts) == 0 {
		c.note("config", "no Site gets its Certificate from an ACME CA; nothing to check")
		return
	}
	var cas []caRef
	for _, h := range hosts {
		for _, ca := range h.cas {
			if !slices.ContainsFunc(cas, func(x caRef) bool { return x.url == ca.url }) {
				cas = append(cas, ca)
			}
		}
	}
	for _, ca := range cas {
		c.checkDirectory(ctx, ca)
	}
	var reachable []acmeHost
	for _, h := range hosts {
		if h.dns01 {
			c.ok(h.name, "solved with DNS-01: no address or open port needed")
		} else if c.checkAddress(ctx, h.name) {
			reachable = append(reachable, h)
		}
	}
	if len(reachable) > 0 {
		c.checkPorts(ctx, reachable)
	}
	for _, h := range hosts {
		c.checkCAA(ctx, h)
	}
}

// checkDirectory fetches the CA's ACME directory.
func (c *checker) checkDirectory(ctx context.Context, ca caRef) {
	subject := "CA " + ca.url
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	if ca.root != "" {
		pemBytes, err := os.ReadFile(ca.root)
		if err != nil {
			c.fail(subject, "reading its ca_root: %v", err)
			return
		}
		roots.AppendCertsFromPEM(pemBytes)
	}
	client := &http.Client{Timeout: checkTimeout, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		Proxy:           http.ProxyFromEnvironment,
	}}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ca.url, nil)
	if err != nil {
		c.fail(subject, "not a URL: %v", err)
		return
	}
	resp, err := client.Do(req)
	if err != nil {
		c.fail(subject, "the ACME directory does not answer: %v", err)
		return
	}
	defer resp.Body.Close()
	var dir struct {
		NewOrder string `json:"newOrder"`
		Meta     struct {
			ExternalAccountRequired bool `json:"externalAccountRequired"`
		} `json:"meta"`
	}
	if resp.StatusCode != http.StatusOK {
		c.fail(subject, "the ACME directory answers %s", resp.Status)
		return
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&dir); err != nil || dir.NewOrder == "" {
		c.fail(subject, "the answer is not an ACME directory (no newOrder)")
		return
	}
	if dir.Meta.ExternalAccountRequired && !ca.eab {
		c.fail(subject, "the CA requires an external account binding: set its eab (key_id and mac_key)")
		return
	}
	c.ok(subject, "the ACME directory answers")
}

// checkAddress reports whether name resolves only to this machine, which is
// where the CA must reach to validate HTTP-01 and TLS-ALPN-01.
func (c *checker) checkAddress(ctx context.Context, name string) bool {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	ips, err := c.resolver.LookupNetIP(ctx, "ip", name)
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		c.fail(name, "has no A or AAAA record: the CA cannot reach it")
		return false
	case err != nil:
		c.fail(name, "looking up its address: %v", err)
		return false
	}
	for i, ip := range ips {
		ips[i] = ip.Unmap()
	}
	slices.SortFunc(ips, netip.Addr.Compare)
	var shown, foreign []string
	for _, ip := range ips {
		ip = ip.Unmap()
		shown = append(shown, ip.String())
		if !slices.Contains(c.local, ip) {
			foreign = append(foreign, ip.String())
		}
	}
	if len(foreign) == 0 {
		c.ok(name, "resolves to %s (this machine)", strings.Join(shown, ", "))
		return true
	}
	if len(foreign) < len(shown) {
		// A stale AAAA or A record: the CA picks one address (Let's
		// Encrypt prefers IPv6), so validation fails whenever it picks it.
		c.fail(name, "resolves to %s, and %s is not an address of this machine (this machine has %s): the CA may validate there",
			strings.Join(shown, ", "), strings.Join(foreign, ", "), c.localList())
		return false
	}
	// Behind NAT the public address is not an interface address, so the
	// port probe that follows decides; say what was found either way.
	c.note(name, "resolves to %s; not an address of this machine: %s (this machine has %s); fine only if those forward to it",
		strings.Join(shown, ", "), strings.Join(foreign, ", "), c.localList())
	c.natted[name] = true
	return true
}

func (c *checker) localList() string {
	var s []string
	for _, a := range c.local {
		s = append(s, a.String())
	}
	return strings.Join(s, ", ")
}

// checkPorts checks, for each enabled challenge, that its Listener can be
// bound or is gatehouse's, and that each host reaches it by name.
func (c *checker) checkPorts(ctx context.Context, hosts []acmeHost) {
	challenges := c.cfg.ACME.Challenges
	http01 := slices.Contains(challenges, "http-01") && c.cfg.Listen.HTTP != ""
	alpn := slices.Contains(challenges, "tls-alpn-01") && c.cfg.Listen.HTTPS != ""
	if !http01 && !alpn {
		for _, h := range hosts {
			c.fail(h.name, "no challenge can work: http-01 needs listen.http, tls-alpn-01 needs listen.https, anything else a DNS provider")
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
			c.note(l.key, "the CA validates %s on port %s, not %s: it must be forwarded there", l.challenge, l.defaultPort, port)
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
				c.ok(h.name, "%s", res.msg)
			case passed:
				c.note(h.name, "%s (another challenge type works)", res.msg)
			default:
				c.fail(h.name, "%s", res.msg)
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
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
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
	return &net.Dialer{Timeout: checkTimeout, Resolver: c.resolver}
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

// probeHTTP serves the probe token on the HTTP Listener's address (unless
// gatehouse holds it) and fetches it through each host's name.
func (c *checker) probeHTTP(ctx context.Context, hosts []acmeHost) map[string]probeResult {
	addr := c.cfg.Listen.HTTP
	result := map[string]probeResult{}
	ln, err := c.bindOrRunning(ctx, "listen.http", addr)
	if err != nil {
		for _, h := range hosts {
			result[h.name] = probeResult{msg: fmt.Sprintf("http-01: %v", err)}
		}
		return result
	}
	path := "/.well-known/acme-challenge/" + c.token
	if ln != nil {
		srv := &http.Server{ReadHeaderTimeout: checkTimeout, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == path {
				io.WriteString(w, c.token)
				return
			}
			http.NotFound(w, r)
		})}
		go srv.Serve(ln)
		defer srv.Close()
	}
	client := &http.Client{
		Timeout:   checkTimeout,
		Transport: &http.Transport{DialContext: c.dialer().DialContext},
		// The CA follows redirects, but a probe that is redirected did
		// not reach the temporary handler.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	defer client.CloseIdleConnections()
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
	result := map[string]probeResult{}
	ln, err := c.bindOrRunning(ctx, "listen.https", addr)
	if err != nil {
		for _, h := range hosts {
			result[h.name] = probeResult{msg: fmt.Sprintf("tls-alpn-01: %v", err)}
		}
		return result
	}
	var probe *tls.Certificate
	if ln != nil {
		probe, err = throwawayCertificate()
		if err != nil {
			ln.Close()
			for _, h := range hosts {
				result[h.name] = probeResult{msg: fmt.Sprintf("tls-alpn-01: %v", err)}
			}
			return result
		}
		tlsLn := tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{*probe}, NextProtos: []string{"acme-tls/1"}})
		defer tlsLn.Close()
		go func() {
			for {
				conn, err := tlsLn.Accept()
				if err != nil {
					return
				}
				go func() {
					conn.SetDeadline(time.Now().Add(checkTimeout))
					conn.(*tls.Conn).Handshake()
					conn.Close()
				}()
			}
		}()
	}
	_, port, _ := net.SplitHostPort(addr)
	for _, h := range hosts {
		target := net.JoinHostPort(h.name, port)
		dctx, cancel := context.WithTimeout(ctx, checkTimeout)
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
		conn.SetDeadline(time.Now().Add(checkTimeout))
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

// caaIdentities maps an ACME directory's host (or a parent domain of it)
// to the issuer domain its CA looks for in CAA records.
var caaIdentities = []struct{ suffix, identity string }{
	{"letsencrypt.org", "letsencrypt.org"},
	{"zerossl.com", "sectigo.com"},
	{"sectigo.com", "sectigo.com"},
	{"pki.goog", "pki.goog"},
	{"buypass.com", "buypass.com"},
	{"ssl.com", "ssl.com"},
}

// caaIdentity returns the CAA issuer domain of the CA at directory, or ""
// when it is not known.
func caaIdentity(directory string) string {
	u, err := url.Parse(directory)
	if err != nil {
		return ""
	}
	host := strings.ToLower(u.Hostname())
	for _, ci := range caaIdentities {
		if host == ci.suffix || strings.HasSuffix(host, "."+ci.suffix) {
			return ci.identity
		}
	}
	return ""
}

// checkCAA finds the CAA record set that governs h (RFC 8659: the closest
// one up the tree) and checks that it allows h's CAs.
func (c *checker) checkCAA(ctx context.Context, h acmeHost) {
	name := h.name
	wildcard := strings.HasPrefix(name, "*.")
	if wildcard {
		name = name[2:]
	}
	rrs, at, err := c.closestCAA(ctx, name)
	if err != nil {
		c.fail(h.name, "CAA: %v (a CA refuses to issue when the lookup fails)", err)
		return
	}
	if len(rrs) == 0 {
		c.ok(h.name, "CAA: no records up to the top-level domain, so any CA may issue")
		return
	}
	tags := []string{"issue"}
	if wildcard && slices.ContainsFunc(rrs, func(r *dns.CAA) bool { return strings.EqualFold(r.Tag, "issuewild") }) {
		tags = []string{"issuewild"}
	}
	var allowedIDs []string
	for _, r := range rrs {
		tag := strings.ToLower(r.Tag)
		if r.Flag&128 != 0 && tag != "issue" && tag != "issuewild" && tag != "iodef" {
			c.fail(h.name, "CAA at %s has a critical %q property no CA understands, so none will issue", at, r.Tag)
			return
		}
		if slices.Contains(tags, tag) {
			id := strings.ToLower(strings.TrimSpace(strings.SplitN(r.Value, ";", 2)[0]))
			if id != "" {
				allowedIDs = append(allowedIDs, id)
			}
		}
	}
	if !slices.ContainsFunc(rrs, func(r *dns.CAA) bool { return slices.Contains(tags, strings.ToLower(r.Tag)) }) {
		c.ok(h.name, "CAA at %s has no %s property, so any CA may issue", at, tags[0])
		return
	}
	var allowed, refused, unknown []string
	for _, ca := range h.cas {
		id := c.caaIdentity
		if id == "" {
			id = caaIdentity(ca.url)
		}
		switch {
		case id == "":
			unknown = append(unknown, ca.url)
		case slices.Contains(allowedIDs, id):
			allowed = append(allowed, fmt.Sprintf("%s (%s)", id, ca.url))
		default:
			refused = append(refused, fmt.Sprintf("%s (%s)", id, ca.url))
		}
	}
	allows := "nobody"
	if len(allowedIDs) > 0 {
		allows = strings.Join(allowedIDs, ", ")
	}
	switch {
	case len(unknown) > 0 && len(allowed) == 0:
		c.fail(h.name, "CAA at %s allows only %s; gatehouse does not know which name the CA at %s uses (say it with -caa-identity)", at, allows, strings.Join(unknown, ", "))
	case len(allowed) == 0:
		c.fail(h.name, "CAA at %s allows only %s, not %s", at, allows, strings.Join(refused, ", "))
	case len(refused) > 0:
		c.note(h.name, "CAA at %s allows %s but refuses %s; issuance fails over past it", at, strings.Join(allowed, ", "), strings.Join(refused, ", "))
	default:
		c.ok(h.name, "CAA at %s allows %s", at, strings.Join(allowed, ", "))
	}
}

// closestCAA queries CAA for name and then each parent up to (not
// including) the root, and returns the first non-empty set and where it was.
func (c *checker) closestCAA(ctx context.Context, name string) ([]*dns.CAA, string, error) {
	labels := dns.SplitDomainName(name)
	for i := range labels {
		at := strings.Join(labels[i:], ".")
		rrs, err := c.queryCAA(ctx, at)
		if err != nil {
			return nil, at, err
		}
		if len(rrs) > 0 {
			return rrs, at, nil
		}
	}
	return nil, "", nil
}

func (c *checker) queryCAA(ctx context.Context, name string) ([]*dns.CAA, error) {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeCAA)
	m.SetEdns0(4096, false)
	client := &dns.Client{Timeout: checkTimeout}
	r, _, err := client.ExchangeContext(ctx, m, c.dnsServer)
	if err == nil && r.Truncated {
		client.Net = "tcp"
		r, _, err = client.ExchangeContext(ctx, m, c.dnsServer)
	}
	if err != nil {
		return nil, fmt.Errorf("looking up CAA of %s at %s: %w", name, c.dnsServer, err)
	}
	switch r.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
	default:
		return nil, fmt.Errorf("looking up CAA of %s at %s: %s", name, c.dnsServer, dns.RcodeToString[r.Rcode])
	}
	var rrs []*dns.CAA
	for _, rr := range r.Answer {
		if caa, ok := rr.(*dns.CAA); ok {
			rrs = append(rrs, caa)
		}
	}
	return rrs, nil
}
