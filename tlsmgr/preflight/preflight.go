// Package preflight finds what would make an ACME CA refuse or fail an
// order before gatehouse asks it for one: a CA directory that does not
// answer, a name that does not resolve to this machine, a challenge port
// that cannot be bound or is not reached through the name, and CAA records
// that forbid the CA. `gatehouse check` prints its findings.
//
// The checks are real: they fetch the CA's directory, resolve names, bind
// the configured Listeners for a moment (or find a running gatehouse on
// them) and fetch a probe through each name, and read CAA records.
package preflight

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// probeTimeout bounds each network probe.
const probeTimeout = 5 * time.Second

// Level says whether a [Finding] would make obtaining certificates fail.
type Level int

const (
	// OK is a check that passed.
	OK Level = iota
	// Note is worth knowing but does not make an order fail by itself.
	Note
	// Fail would make obtaining a certificate fail.
	Fail
)

func (l Level) String() string {
	switch l {
	case OK:
		return "ok"
	case Note:
		return "note"
	case Fail:
		return "fail"
	}
	return fmt.Sprintf("Level(%d)", int(l))
}

// Check names the check a [Finding] comes from.
type Check string

const (
	// CheckConfig is about the config as a whole, such as having no name
	// to check.
	CheckConfig Check = "config"
	// CheckDirectory fetches a CA's ACME directory.
	CheckDirectory Check = "directory"
	// CheckAddress resolves a name and compares its addresses with this
	// machine's.
	CheckAddress Check = "address"
	// CheckPorts binds the challenge Listeners and reaches them through
	// each name, as HTTP-01 and TLS-ALPN-01 validation do.
	CheckPorts Check = "ports"
	// CheckCAA reads the CAA records that govern a name.
	CheckCAA Check = "caa"
)

// Finding is one result of a check.
type Finding struct {
	Check Check
	// Subject is what the finding is about: a host name, "CA " and a
	// directory URL, a config key such as "listen.http", or "config".
	Subject string
	Level   Level
	// Message says what was found, in a sentence fragment without a final
	// period.
	Message string
}

// Report is the outcome of [Run].
type Report struct {
	// Findings are in the order they were made: on-demand names, CA
	// directories, addresses, ports, then CAA.
	Findings []Finding
}

// Failures counts the findings at level [Fail].
func (r Report) Failures() int {
	n := 0
	for _, f := range r.Findings {
		if f.Level == Fail {
			n++
		}
	}
	return n
}

// Options configures [Run]. The zero value uses the system's DNS server.
type Options struct {
	// Resolver is the HOST:PORT of the DNS server for the address and CAA
	// lookups. Empty means the first server of /etc/resolv.conf.
	Resolver string
	// CAAIdentity, when set, is the CAA issuer name of every CA, in place
	// of the one gatehouse knows from the directory URL (Let's Encrypt,
	// ZeroSSL, Google Trust Services and a few more).
	CAAIdentity string
	// Progress, when set, is called with each finding as it is made, on
	// Run's goroutine, so a caller can show progress; the probes may take
	// seconds each.
	Progress func(Finding)
}

// ErrNoSystemResolver is returned by [Run] when Options.Resolver is empty
// and the system names no DNS server.
var ErrNoSystemResolver = errors.New("no DNS server in /etc/resolv.conf")

// Run checks what cfg would ask of the CAs it names. The error is for what
// stops every check (a bad option, no DNS server); anything found is in
// the Report.
func Run(ctx context.Context, cfg *config.Config, opts Options) (Report, error) {
	c, err := newChecker(cfg, opts)
	if err != nil {
		return Report{}, err
	}
	c.run(ctx)
	return c.report, nil
}

// checker runs the checks of one config and collects the findings.
type checker struct {
	cfg      *config.Config
	progress func(Finding)
	report   Report

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

func newChecker(cfg *config.Config, opts Options) (*checker, error) {
	c := &checker{cfg: cfg, progress: opts.Progress, caaIdentity: opts.CAAIdentity, resolver: net.DefaultResolver, natted: map[string]bool{}}
	if opts.Resolver != "" {
		if _, _, err := net.SplitHostPort(opts.Resolver); err != nil {
			return nil, fmt.Errorf("resolver %q: want HOST:PORT: %w", opts.Resolver, err)
		}
		d := &net.Dialer{Timeout: probeTimeout}
		c.resolver = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, opts.Resolver)
		}}
		c.dnsServer = opts.Resolver
	} else {
		conf, err := dns.ClientConfigFromFile("/etc/resolv.conf")
		switch {
		case err != nil:
			return nil, fmt.Errorf("reading the system's DNS servers: %w: %w", ErrNoSystemResolver, err)
		case len(conf.Servers) == 0:
			return nil, ErrNoSystemResolver
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
	c.token = "gatehouse-check-" + hex.EncodeToString(randomBytes(16))
	return c, nil
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand's contract since Go 1.24)
	return b
}

func (c *checker) add(check Check, level Level, subject, format string, args ...any) {
	f := Finding{Check: check, Subject: subject, Level: level, Message: fmt.Sprintf(format, args...)}
	c.report.Findings = append(c.report.Findings, f)
	if c.progress != nil {
		c.progress(f)
	}
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
	// name is the CA's name when the config gave one ("zerossl").
	name string
	eab  bool
}

// newCARef returns the caRef of a ca key: a known CA's name or a URL.
func newCARef(ca, root string, eab *config.EAB) caRef {
	ref := caRef{url: config.CADirectory(ca), root: root, eab: eab != nil}
	if ref.url != ca {
		ref.name = ca
	}
	return ref
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
	return []caRef{newCARef(c.cfg.ACME.CA, c.cfg.ACME.CARoot, c.cfg.ACME.EAB)}
}

func issuerRefs(issuers []config.Issuer) []caRef {
	var refs []caRef
	for _, is := range issuers {
		refs = append(refs, newCARef(is.CA, is.CARoot, is.EAB))
	}
	return refs
}

// run performs every check.
func (c *checker) run(ctx context.Context) {
	hosts, onDemand := c.acmeHosts()
	if len(onDemand) > 0 {
		c.add(CheckConfig, Note, strings.Join(onDemand, ", "), "on-demand names are checked by the on_demand policy at their first handshake, not here")
	}
	if len(hosts) == 0 {
		c.add(CheckConfig, Note, "config", "no Site gets its Certificate from an ACME CA; nothing to check")
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
			c.add(CheckAddress, OK, h.name, "solved with DNS-01: no address or open port needed")
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
