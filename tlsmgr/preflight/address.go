package preflight

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
)

// checkAddress reports whether name resolves only to this machine, which is
// where the CA must reach to validate HTTP-01 and TLS-ALPN-01.
func (c *checker) checkAddress(ctx context.Context, name string) bool {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	ips, err := c.resolver.LookupNetIP(ctx, "ip", name)
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		c.add(CheckAddress, Fail, name, "has no A or AAAA record: the CA cannot reach it")
		return false
	case err != nil:
		c.add(CheckAddress, Fail, name, "looking up its address: %v", err)
		return false
	}
	for i, ip := range ips {
		ips[i] = ip.Unmap()
	}
	slices.SortFunc(ips, netip.Addr.Compare)
	var shown, foreign []string
	for _, ip := range ips {
		shown = append(shown, ip.String())
		if !slices.Contains(c.local, ip) {
			foreign = append(foreign, ip.String())
		}
	}
	if len(foreign) == 0 {
		c.add(CheckAddress, OK, name, "resolves to %s (this machine)", strings.Join(shown, ", "))
		return true
	}
	if len(foreign) < len(shown) {
		// A stale AAAA or A record: the CA picks one address (Let's
		// Encrypt prefers IPv6), so validation fails whenever it picks it.
		c.add(CheckAddress, Fail, name, "resolves to %s, and %s is not an address of this machine (this machine has %s): the CA may validate there",
			strings.Join(shown, ", "), strings.Join(foreign, ", "), c.localList())
		return false
	}
	// Behind NAT the public address is not an interface address, so the
	// port probe that follows decides; say what was found either way.
	c.add(CheckAddress, Note, name, "resolves to %s; not an address of this machine: %s (this machine has %s); fine only if those forward to it",
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
