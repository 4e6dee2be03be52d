package config

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// ACMEServer serves RFC 8555 on the HTTPS Listener for Host, issuing
// certificates from the local CA's intermediate to the ACME clients of the
// network (a NAS, Home Assistant, certbot on another machine). Host gets a
// local CA certificate itself; it must not be a Site's host. Changing any
// of it needs a restart.
type ACMEServer struct {
	// Host is the name clients reach the server by: the directory is
	// https://HOST/acme/directory (with the HTTPS Listener's port when it
	// is not 443). Required.
	Host string `yaml:"host"`
	// AllowedNames lists what the server certifies: exact names
	// ("nas.home.arpa"), IP addresses, or "*.D", which allows every name
	// under D at any depth (and wildcard names under D), not D itself. An
	// order for any other name is refused with rejectedIdentifier.
	// Required.
	AllowedNames []string `yaml:"allowed_names"`
	// AllowedClients lists the CIDRs (or single IPs) that may use the
	// server; any other client gets unauthorized. Default loopback only
	// (127.0.0.0/8 and ::1).
	AllowedClients []string `yaml:"allowed_clients,omitempty"`
	// Lifetime is the validity of an issued certificate. Default 7d;
	// between 1h and 90d, so the local CA's intermediate (rotated with four
	// months left) always outlives it.
	Lifetime Lifetime `yaml:"lifetime,omitempty"`
	// Resolvers are the DNS servers (host:port) asked for the names to
	// validate (HTTP-01 and TLS-ALPN-01 dial the address they find, DNS-01
	// reads the TXT record). Default acme.dns.resolvers, else the system's.
	// Names under .localhost resolve to loopback without DNS (RFC 6761).
	Resolvers []string `yaml:"resolvers,omitempty"`
	// EABKeys, when set, require External Account Binding: a client
	// registers with one of these key IDs and its HMAC key (base64url, at
	// least 32 bytes decoded, as `openssl rand -base64 32 | tr +/ -_`
	// makes). A key may bind several accounts. Default none: any allowed
	// client may register.
	EABKeys map[string]string `yaml:"eab_keys,omitempty"`
}

// The defaults and bounds of acme_server.
const (
	DefaultACMEServerLifetime = Lifetime(7 * 24 * time.Hour)
	MinACMEServerLifetime     = Lifetime(time.Hour)
	MaxACMEServerLifetime     = Lifetime(90 * 24 * time.Hour)
	// ACMEServerPath is the path prefix of the ACME server's endpoints on
	// its host.
	ACMEServerPath = "/acme/"
)

// DefaultACMEServerClients are the clients acme_server allows by default.
var DefaultACMEServerClients = []string{"127.0.0.0/8", "::1/128"}

// Lifetime is a duration written as Go writes one ("36h", "90m") or as a
// whole number of days ("7d").
type Lifetime time.Duration

// ParseLifetime parses "7d" (days) or a Go duration ("36h").
func ParseLifetime(s string) (Lifetime, error) {
	s = strings.TrimSpace(s)
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 0 || n > 100*365 {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		return Lifetime(time.Duration(n) * 24 * time.Hour), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q", s)
	}
	return Lifetime(d), nil
}

// String writes l in days when it is a whole number of them, else as Go
// does.
func (l Lifetime) String() string {
	const day = Lifetime(24 * time.Hour)
	if l != 0 && l%day == 0 {
		return strconv.FormatInt(int64(l/day), 10) + "d"
	}
	s := time.Duration(l).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// UnmarshalText implements [encoding.TextUnmarshaler]; see [ParseLifetime].
func (l *Lifetime) UnmarshalText(text []byte) error {
	d, err := ParseLifetime(string(text))
	if err != nil {
		return err
	}
	*l = d
	return nil
}

// MarshalText implements [encoding.TextMarshaler]; see [Lifetime.String].
func (l Lifetime) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// ValidationResolvers are the DNS servers the ACME server resolves names
// with: acme_server.resolvers, else acme.dns.resolvers, else nil (the
// system's).
func (s *ACMEServer) ValidationResolvers(c *Config) []string {
	if len(s.Resolvers) > 0 {
		return s.Resolvers
	}
	return c.ACME.DNS.resolvers()
}

func (s *ACMEServer) withDefaults() {
	if s.AllowedClients == nil {
		s.AllowedClients = append([]string(nil), DefaultACMEServerClients...)
	}
	setDefault(&s.Lifetime, DefaultACMEServerLifetime)
}

// acmeServer checks the acme_server block.
func (v *validator) acmeServer() {
	s := v.c.ACMEServer
	if s == nil {
		return
	}
	const p = "acme_server"
	host := strings.TrimSuffix(strings.ToLower(s.Host), ".")
	switch {
	case host == "":
		v.addf(p+".host", `is required: the name clients reach the ACME server by, like "ca.home.arpa"`)
	case strings.Contains(host, "*"):
		v.addf(p+".host", "%q: the ACME server's host cannot be a wildcard", s.Host)
	default:
		if msg := checkHost(host); msg != "" {
			v.addf(p+".host", "%s", msg)
		}
		for i, site := range v.c.Sites {
			for j, h := range site.Hosts {
				if strings.TrimSuffix(strings.ToLower(h), ".") == host {
					v.addf(fmt.Sprintf("sites[%d].hosts[%d]", i, j), "%q is acme_server.host; the ACME server has the host to itself", h)
				}
			}
		}
	}
	if v.c.Listen.HTTPS == "" {
		v.addf(p, "acme_server needs listen.https, where it is served")
	}
	if len(s.AllowedNames) == 0 {
		v.addf(p+".allowed_names", `is required: list what the server may certify (like "*.home.arpa"), so it cannot be made to issue for any name`)
	}
	for i, n := range s.AllowedNames {
		at := fmt.Sprintf("%s.allowed_names[%d]", p, i)
		switch n = strings.TrimSuffix(strings.ToLower(n), "."); {
		case n == "*":
			v.addf(at, `"*" would allow every name; list the domains the server may certify`)
		default:
			if msg := checkHost(n); msg != "" {
				v.addf(at, "%s", msg)
			}
		}
	}
	for i, c := range s.AllowedClients {
		if _, err := netip.ParsePrefix(c); err == nil {
			continue
		}
		if _, err := netip.ParseAddr(c); err != nil {
			v.addf(fmt.Sprintf("%s.allowed_clients[%d]", p, i), "%q is neither an IP address nor a CIDR like 192.168.0.0/16", c)
		}
	}
	if s.AllowedClients != nil && len(s.AllowedClients) == 0 {
		v.addf(p+".allowed_clients", "is empty, so no client could use the server; leave it out for loopback only")
	}
	if s.Lifetime < MinACMEServerLifetime || s.Lifetime > MaxACMEServerLifetime {
		v.addf(p+".lifetime", "%s is outside %s to %s", s.Lifetime, MinACMEServerLifetime, MaxACMEServerLifetime)
	}
	for i, r := range s.Resolvers {
		if host, port, err := net.SplitHostPort(r); err != nil || host == "" || port == "" {
			v.addf(fmt.Sprintf("%s.resolvers[%d]", p, i), "%q is not host:port, like \"192.168.1.1:53\"", r)
		}
	}
	for id, key := range s.EABKeys {
		at := p + ".eab_keys." + id
		if id == "" {
			v.addf(p+".eab_keys", "a key ID is empty")
			continue
		}
		if _, err := DecodeEABKey(key); err != nil {
			v.addf(at, "%v", err)
		}
	}
}

// DecodeEABKey decodes an acme_server.eab_keys HMAC key: base64url, with
// or without padding, at least 32 bytes.
func DecodeEABKey(s string) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		return nil, fmt.Errorf("the HMAC key is not base64url: %w", err)
	}
	if len(b) < 32 {
		return nil, fmt.Errorf("the HMAC key is %d bytes; it needs at least 32 (openssl rand -base64 32 | tr +/ -_)", len(b))
	}
	return b, nil
}
