package tlsmgr

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// acmeTLS1 is the ALPN protocol of the TLS-ALPN-01 challenge (RFC 8737).
const acmeTLS1 = "acme-tls/1"

// sourceKind says where the certificate of a host comes from.
type sourceKind int

const (
	sourceStatic   sourceKind = iota // files named by tls.cert and tls.key
	sourceInternal                   // the local CA
	sourceACME                       // the ACME engine
	sourceOnDemand                   // ACME at the first handshake (ondemand.go)
)

func (k sourceKind) String() string {
	switch k {
	case sourceStatic:
		return "static"
	case sourceInternal:
		return "internal"
	case sourceOnDemand:
		return "on_demand"
	default:
		return "acme"
	}
}

// source is what serves one configured host. It is immutable once built, so
// handshakes read it without locks.
type source struct {
	kind sourceKind
	// cert is the loaded certificate of a static source.
	cert *tls.Certificate
	// name is the configured host, normalised: the name an internal leaf
	// is issued for ("*.app.internal" for a wildcard site, so one leaf
	// serves every label) and the name the ACME engine manages.
	name string
}

// table maps hosts to sources. It is built whole by buildTable and then
// never changed: Apply swaps in a new one, so a handshake always sees one
// consistent configuration.
type table struct {
	// exact holds exact names and IP addresses.
	exact map[string]*source
	// wild holds one-label wildcards, keyed by parent ("app.test" for
	// "*.app.test").
	wild map[string]*source
	// any is the catch-all site "*", or nil.
	any *source
	// acmeHosts lists the hosts the ACME engine manages, sorted.
	acmeHosts []string
	// internalNames lists the names the local CA issues leaves for.
	internalNames []string
	// hasOnDemand says some Site is on demand; onDemand is then the
	// compiled on_demand policy.
	hasOnDemand bool
	onDemand    *onDemandPolicy
}

// mayBeAddr reports whether host may be an IP address: IPv4 starts with a
// digit, IPv6 has a colon.
func mayBeAddr(host string) bool {
	return host != "" && ('0' <= host[0] && host[0] <= '9' || strings.Contains(host, ":"))
}

// normalizeHost lowercases host, drops a trailing dot and IPv6 brackets, and
// writes IP addresses in canonical form, so config hosts, SNI values and
// local addresses compare equal.
func normalizeHost(host string) string {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	// Only what may be an address is parsed: a failed parse allocates, on
	// every host at every reload.
	if mayBeAddr(host) {
		if a, err := netip.ParseAddr(host); err == nil {
			return a.Unmap().WithZone("").String()
		}
	}
	return host
}

// buildTable turns the Sites of cfg into a table, loading every static
// certificate. It touches no state, so Apply can throw the result away on
// error.
func buildTable(cfg *config.Config) (*table, error) {
	t := &table{exact: make(map[string]*source, len(cfg.Sites)), wild: map[string]*source{}}
	var errs []error
	seen := make(map[string]bool, len(cfg.Sites))
	// Sites sharing one certificate share one parsed copy: a 10,000-Site
	// config with one wildcard certificate loads it once, not 10,000 times.
	loaded := map[[2]string]*tls.Certificate{}
	for i, site := range cfg.Sites {
		var static *tls.Certificate
		if site.TLS.Cert != "" {
			pair := [2]string{site.TLS.Cert, site.TLS.Key}
			c, ok := loaded[pair]
			if !ok {
				var err error
				if c, err = loadStatic(site.TLS.Cert, site.TLS.Key); err != nil {
					errs = append(errs, fmt.Errorf("sites[%d].tls: %w", i, err))
					continue
				}
				loaded[pair] = c
			}
			static = c
		}
		for _, raw := range site.Hosts {
			host := normalizeHost(raw)
			if seen[host] {
				errs = append(errs, fmt.Errorf("sites[%d].hosts: host %q is listed twice", i, raw))
				continue
			}
			seen[host] = true
			src := &source{name: host}
			switch site.TLS.IssuerFor(host) {
			case "":
				src.kind, src.cert = sourceStatic, static
			case config.IssuerInternal:
				src.kind = sourceInternal
			case config.IssuerACME:
				src.kind = sourceACME
			default:
				errs = append(errs, fmt.Errorf("sites[%d].tls.issuer: unknown issuer %q", i, site.TLS.Issuer))
				continue
			}
			if site.TLS.OnDemand {
				src.kind = sourceOnDemand
				t.hasOnDemand = true
			}
			switch {
			case host == "*":
				if src.kind != sourceStatic && src.kind != sourceOnDemand {
					errs = append(errs, fmt.Errorf("sites[%d]: catch-all host \"*\" needs tls.cert and tls.key", i))
					continue
				}
				t.any = src
			case strings.HasPrefix(host, "*."):
				if src.kind == sourceACME && cfg.DNSFor(&cfg.Sites[i]) == nil {
					errs = append(errs, fmt.Errorf("sites[%d]: wildcard host %q needs DNS-01 (tls.dns or acme.dns) for an ACME certificate", i, raw))
					continue
				}
				t.wild[host[2:]] = src
			default:
				t.exact[host] = src
			}
			switch src.kind {
			case sourceACME:
				t.acmeHosts = append(t.acmeHosts, host)
			case sourceInternal:
				t.internalNames = append(t.internalNames, host)
			}
		}
	}
	// The ACME server's host serves a local CA certificate: its clients
	// trust the local CA anyway, since it issues theirs.
	if as := cfg.ACMEServer; as != nil && as.Host != "" {
		host := normalizeHost(as.Host)
		if seen[host] {
			errs = append(errs, fmt.Errorf("acme_server.host %q is also a Site's host", as.Host))
		} else {
			t.exact[host] = &source{name: host, kind: sourceInternal}
			t.internalNames = append(t.internalNames, host)
		}
	}
	if err := t.compileOnDemand(cfg); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	slices.Sort(t.acmeHosts)
	slices.Sort(t.internalNames)
	return t, nil
}

// lookup finds the source for a normalised name: exact, then one-label
// wildcard, then the catch-all. It returns nil when no site lists name.
func (t *table) lookup(name string) *source {
	if s := t.exact[name]; s != nil {
		return s
	}
	if i := strings.IndexByte(name, '.'); i > 0 {
		if s := t.wild[name[i+1:]]; s != nil {
			return s
		}
	}
	return t.any
}

// sniName is the name a hello asks for: its normalised SNI, or, when the
// client sent none (clients never send IP addresses as SNI), the local IP
// the connection came in on if a site lists that IP. An SNI that is no host
// name is errBadSNI.
func (t *table) sniName(hello *tls.ClientHelloInfo) (string, error) {
	if hello.ServerName != "" {
		name, ok := sniHost(hello.ServerName)
		if !ok {
			return "", fmt.Errorf("reading server name %q: %w", hello.ServerName, errBadSNI)
		}
		return name, nil
	}
	if hello.Conn == nil {
		return "", nil
	}
	addr, ok := hello.Conn.LocalAddr().(*net.TCPAddr)
	if !ok {
		return "", nil
	}
	ip := normalizeHost(addr.AddrPort().Addr().String())
	if t.exact[ip] != nil {
		return ip, nil
	}
	return "", nil
}

// errUnknownHost is returned for a hello naming a host no site lists; the
// handshake then fails with an alert rather than getting another site's
// certificate.
var errUnknownHost = errors.New("no site for this server name")

// errBadSNI refuses a hello whose server name is not a host name.
var errBadSNI = errors.New("server name is not a host name")

// sniHost normalises an SNI value and reports whether it names a host: a
// DNS name (letters, digits, hyphens and underscores in dot-separated
// labels of at most 63 bytes, 253 in all) or an IP address. Some load tools
// send "host:port" (the Host header's form); the port is dropped when the
// rest is a host, as the name is plainly meant.
func sniHost(sni string) (string, bool) {
	if _, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(sni, "["), "]")); err != nil {
		if host, port, err := net.SplitHostPort(sni); err == nil && validPort(port) {
			sni = host
		}
	}
	name := normalizeHost(sni)
	if _, err := netip.ParseAddr(name); err == nil {
		return name, true
	}
	return name, validHostName(name)
}

// validPort reports whether p is a decimal port number, 1 to 65535.
func validPort(p string) bool {
	if p == "" || len(p) > 5 {
		return false
	}
	n := 0
	for _, c := range []byte(p) {
		if c < '0' || c > '9' {
			return false
		}
		n = n*10 + int(c-'0')
	}
	return n >= 1 && n <= 65535
}

// validHostName reports whether name, lowercased, is a DNS host name.
// Underscores are allowed: internal names carry them, and they harm
// nothing here.
func validHostName(name string) bool {
	if name == "" || len(name) > 253 {
		return false
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range []byte(label) {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// getCertificate is the tls.Config hook: it dispatches a hello by SNI to the
// source of the matching site. It never starts issuance for an unlisted
// name.
func (m *Manager) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	t := m.table.Load()
	name, err := t.sniName(hello)
	if err != nil {
		return nil, fmt.Errorf("getting certificate: %w", err)
	}
	if slices.Contains(hello.SupportedProtos, acmeTLS1) {
		// A TLS-ALPN-01 validation: only the engine can answer it, and
		// only for a host it manages.
		if !m.tlsALPN {
			return nil, fmt.Errorf("answering %s for %q: tls-alpn-01 challenge is disabled", acmeTLS1, name)
		}
		if s := t.exact[name]; (s == nil || s.kind != sourceACME) && !t.isOnDemand(name) {
			return nil, fmt.Errorf("answering %s for %q: %w", acmeTLS1, name, errUnknownHost)
		}
		return m.engine.getCertificate(withServerName(hello, name))
	}
	src := t.lookup(name)
	if src == nil {
		return nil, fmt.Errorf("getting certificate for %q: %w", name, errUnknownHost)
	}
	switch src.kind {
	case sourceStatic:
		return src.cert, nil
	case sourceInternal:
		return m.ca.leaf(src.name)
	case sourceOnDemand:
		return m.onDemandCertificate(hello, name)
	default:
		return m.engine.getCertificate(withServerName(hello, name))
	}
}

// withServerName returns a copy of hello asking for name, so the engines
// see the normalised host they manage.
func withServerName(hello *tls.ClientHelloInfo, name string) *tls.ClientHelloInfo {
	if hello.ServerName == name {
		return hello
	}
	h := *hello
	h.ServerName = name
	return &h
}
