package config

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/mail"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// validator collects the Problems of one Config.
type validator struct {
	c        *Config
	problems Problems
	// keyPairs remembers which cert/key file pairs were already checked, so
	// many Sites sharing one certificate parse it once.
	keyPairs map[[2]string]bool
	// known marks, by index in c.Sites, the Sites [Config.ValidateChange]
	// knows valid; nil when none is.
	known []bool
}

// isKnown reports whether Site i passed already (see known).
func (v *validator) isKnown(i int) bool { return v.known != nil && v.known[i] }

func (v *validator) addf(path, format string, args ...any) {
	p := v.c.Problemf(path, format, args...)
	// A setting inherited by several entries (acme.profile) is reported
	// once, not once per entry.
	if slices.Contains(v.problems, p) {
		return
	}
	v.problems = append(v.problems, p)
}

// Problemf returns a Problem with the key path (as "sites[0].routes[1].ca"),
// placed where that key, or its nearest parent written in the file, stands
// in c.File. Packages that compile a Config use it to point at the key
// behind an error.
func (c *Config) Problemf(path, format string, args ...any) Problem {
	return Problem{
		File:     c.File,
		Position: c.position(path),
		Path:     path,
		Message:  fmt.Sprintf(format, args...),
	}
}

// Validate checks c as a whole and returns every problem found as
// [Problems], in file order, or nil. It reads the files c names (CA roots,
// certificates, keys, static roots) but changes nothing. Defaults are
// expected to be applied already, as [Load] and [Parse] do.
func (c *Config) Validate() error {
	if ps := c.validate(&validator{c: c}); len(ps) > 0 {
		return ps
	}
	return nil
}

// ValidateChange is [Config.Validate] for c replacing prev, which passed
// Validate (or ValidateChange): when both agree outside their Sites, a Site
// of c equal to prev's Site of the same first host ([Site.Equal]) is not
// checked again, except for what spans Sites (a host served twice); a Site
// that names files ([Site.NamesFiles]) always is. The result is Validate's,
// at the cost of what changed. A nil prev checks everything.
func (c *Config) ValidateChange(prev *Config) error {
	v := &validator{c: c}
	if prev != nil && sameOutsideSites(c, prev) {
		v.known = knownSites(prev.Sites, c.Sites)
	}
	if ps := c.validate(v); len(ps) > 0 {
		return ps
	}
	return nil
}

// sameOutsideSites reports whether a and b are equal but for their Sites.
func sameOutsideSites(a, b *Config) bool {
	x, y := *a, *b
	x.Sites, y.Sites = nil, nil
	return reflect.DeepEqual(&x, &y)
}

// knownSites marks the Sites of sites that prev has, unchanged and naming
// no files. prev is valid, so its first hosts are unique.
func knownSites(prev, sites []Site) []bool {
	known := make([]bool, len(sites))
	var byHost map[string]*Site
	for i := range sites {
		s := &sites[i]
		if len(s.Hosts) == 0 || s.NamesFiles() {
			continue
		}
		// Sites keep their order from one config to the next, mostly.
		var p *Site
		if i < len(prev) && len(prev[i].Hosts) > 0 && prev[i].Hosts[0] == s.Hosts[0] {
			p = &prev[i]
		} else {
			if byHost == nil {
				byHost = make(map[string]*Site, len(prev))
				for j := range prev {
					if ps := &prev[j]; len(ps.Hosts) > 0 {
						byHost[ps.Hosts[0]] = ps
					}
				}
			}
			p = byHost[s.Hosts[0]]
		}
		known[i] = p != nil && p.Equal(s)
	}
	return known
}

// validate returns every problem of c, in file order.
func (c *Config) validate(v *validator) Problems {
	v.listen()
	v.log()
	v.storage()
	v.listenExtras()
	v.acme()
	v.acmeIssuance()
	for i, p := range c.TrustedProxies {
		if _, err := netip.ParsePrefix(p); err == nil {
			continue
		}
		if _, err := netip.ParseAddr(p); err != nil {
			v.addf(fmt.Sprintf("trusted_proxies[%d]", i), "%q is neither an IP address nor a CIDR like 10.0.0.0/8", p)
		}
	}
	v.timeouts()
	if c.Limits.HeaderBytes < 0 {
		v.addf("limits.header_bytes", "must not be negative")
	}
	if c.Limits.Headers < 0 {
		v.addf("limits.headers", "must not be negative")
	}
	if c.Limits.URIBytes < 0 {
		v.addf("limits.uri_bytes", "must not be negative")
	}
	if c.Limits.Streams < 0 || c.Limits.Streams > maxStreams {
		v.addf("limits.streams", "must be between 1 and %d", maxStreams)
	}
	v.sites()
	v.upstreams()
	v.shapingAll()
	v.onDemand()
	v.events()
	v.docker()
	v.fleet()
	v.acmeServer()
	sortProblems(v.problems)
	return v.problems
}

func (v *validator) listen() {
	l := v.c.Listen
	if l.HTTP == "" && l.HTTPS == "" {
		v.addf("listen", "listen.http and listen.https are both off; at least one is needed")
	}
	if msg := checkAddr(l.HTTP, DefaultHTTP); l.HTTP != "" && msg != "" {
		v.addf("listen.http", "%s", msg)
	}
	if msg := checkAddr(l.HTTPS, DefaultHTTPS); l.HTTPS != "" && msg != "" {
		v.addf("listen.https", "%s", msg)
	}
	if l.HTTP != "" && l.HTTP == l.HTTPS {
		v.addf("listen.https", "same address as listen.http")
	}
	switch a := v.c.Admin; {
	case a == Off:
	case checkAddr(a, DefaultAdmin) != "":
		v.addf("admin", "%s, or %q", checkAddr(a, DefaultAdmin), Off)
	case a == l.HTTP || a == l.HTTPS:
		v.addf("admin", "same address as a listener")
	}
}

// checkAddr says what is wrong with a listen address, or returns "".
// example is a good address for the same key.
func checkAddr(addr, example string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Sprintf("%q is not host:port, like %q", addr, example)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Sprintf("port %q in %q is not a number from 1 to 65535", port, addr)
	}
	if strings.ContainsAny(host, "/ ") {
		return fmt.Sprintf("host %q in %q is not a host name or IP address", host, addr)
	}
	return ""
}

func (v *validator) log() {
	switch v.c.Log.Format {
	case "text", "json":
	default:
		v.addf("log.format", `must be "text" or "json", not %q`, v.c.Log.Format)
	}
	switch v.c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		v.addf("log.level", `must be "debug", "info", "warn" or "error", not %q`, v.c.Log.Level)
	}
}

func (v *validator) acme() {
	a := v.c.ACME
	if len(a.Issuers) == 0 {
		// With an issuers list acme.ca is unused (setting it is an error
		// of its own); its default must not be checked against the
		// list's needs.
		v.checkCA(caIssuer{ca: a.CA, eab: a.EAB, profile: a.Profile}, "acme", "acme.profile")
	}
	if a.Email != "" {
		if addr, err := mail.ParseAddress(a.Email); err != nil || addr.Address != a.Email {
			v.addf("acme.email", "%q is not an email address", a.Email)
		}
	}
	if a.CARoot != "" {
		if msg := checkRoots(a.CARoot); msg != "" {
			v.addf("acme.ca_root", "%s", msg)
		}
	}

	if len(a.Challenges) == 0 {
		v.addf("acme.challenges", "must list at least one of %s, %s", ChallengeHTTP01, ChallengeTLSALPN01)
	}
	for i, ch := range a.Challenges {
		path := fmt.Sprintf("acme.challenges[%d]", i)
		switch {
		case ch != ChallengeHTTP01 && ch != ChallengeTLSALPN01:
			v.addf(path, "unknown challenge %q; gatehouse supports %s and %s", ch, ChallengeHTTP01, ChallengeTLSALPN01)
		case slices.Index(a.Challenges, ch) < i:
			v.addf(path, "%s is listed twice", ch)
		case ch == ChallengeHTTP01 && v.c.Listen.HTTP == "" && v.usesACME():
			v.addf(path, "%s needs listen.http (the CA connects to port 80); turn listen.http on or drop %s", ch, ch)
		}
	}

	switch a.Engine {
	case EngineCertmagic:
	case EngineAutocert:
		if len(a.Challenges) > 0 && !slices.Contains(a.Challenges, ChallengeTLSALPN01) {
			v.addf("acme.challenges", "engine autocert always tries %s first and cannot turn it off; add %s or use engine certmagic", ChallengeTLSALPN01, ChallengeTLSALPN01)
		}
	default:
		v.addf("acme.engine", "must be %q or %q, not %q", EngineCertmagic, EngineAutocert, a.Engine)
	}

}

// usesACME reports whether any host of any Site gets its Certificate from
// ACME through a Listener's challenge (HTTP-01, TLS-ALPN-01), not DNS-01.
func (v *validator) usesACME() bool {
	for i, s := range v.c.Sites {
		if v.c.DNSFor(&v.c.Sites[i]) != nil {
			continue
		}
		for _, h := range s.Hosts {
			if s.TLS.IssuerFor(h) == IssuerACME {
				return true
			}
		}
	}
	return false
}

func isBase64URL(s string) bool {
	_, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	return err == nil
}

func isLoopback(host string) bool {
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

func (v *validator) timeouts() {
	t := v.c.Timeouts
	for _, d := range []struct {
		key string
		d   time.Duration
	}{
		{"read_header", t.ReadHeader},
		{"idle", t.Idle},
		{"dial", t.Dial},
		{"response_header", t.ResponseHeader},
		{"write", t.Write},
		{"shutdown", t.Shutdown},
	} {
		if d.d < 0 {
			v.addf("timeouts."+d.key, "must not be negative")
		}
	}
}

// readFile reads a file a config names, saying what went wrong if it
// could not.
func readFile(path string) ([]byte, string) {
	data, err := os.ReadFile(path)
	var pe *fs.PathError
	switch {
	case err == nil:
		return data, ""
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Sprintf("%s does not exist", path)
	case errors.As(err, &pe):
		return nil, fmt.Sprintf("reading %s: %v", path, pe.Err)
	default:
		return nil, fmt.Sprintf("reading %s: %v", path, err)
	}
}

// checkRoots says what is wrong with a PEM file of CA roots, or returns "".
func checkRoots(path string) string {
	data, msg := readFile(path)
	if msg != "" {
		return msg
	}
	n := 0
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return fmt.Sprintf("parsing certificate %d in %s: %v", n+1, path, err)
		}
		n++
	}
	if n == 0 {
		return fmt.Sprintf("%s holds no PEM certificate", path)
	}
	return ""
}

// maxStreams bounds limits.streams: more requests in flight on one
// connection than this would only let one client hold more of gatehouse.
const maxStreams = 10000
