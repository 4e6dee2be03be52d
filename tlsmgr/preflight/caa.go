package preflight

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/miekg/dns"

	"github.com/gatehouse-proxy/gatehouse/config"
)

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
	if k, ok := config.LookupCA(directory); ok {
		return k.CAA
	}
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
	add := func(level Level, format string, args ...any) { c.add(CheckCAA, level, h.name, format, args...) }
	name := h.name
	wildcard := strings.HasPrefix(name, "*.")
	if wildcard {
		name = name[2:]
	}
	rrs, at, err := c.closestCAA(ctx, name)
	if err != nil {
		add(Fail, "CAA: %v (a CA refuses to issue when the lookup fails)", err)
		return
	}
	if len(rrs) == 0 {
		add(OK, "CAA: no records up to the top-level domain, so any CA may issue")
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
			add(Fail, "CAA at %s has a critical %q property no CA understands, so none will issue", at, r.Tag)
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
		add(OK, "CAA at %s has no %s property, so any CA may issue", at, tags[0])
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
		add(Fail, "CAA at %s allows only %s; gatehouse does not know which name the CA at %s uses (say it with -caa-identity)", at, allows, strings.Join(unknown, ", "))
	case len(allowed) == 0:
		add(Fail, "CAA at %s allows only %s, not %s", at, allows, strings.Join(refused, ", "))
	case len(refused) > 0:
		add(Note, "CAA at %s allows %s but refuses %s; issuance fails over past it", at, strings.Join(allowed, ", "), strings.Join(refused, ", "))
	default:
		add(OK, "CAA at %s allows %s", at, strings.Join(allowed, ", "))
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
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeCAA)
	m.SetEdns0(4096, false)
	client := &dns.Client{Timeout: probeTimeout}
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
