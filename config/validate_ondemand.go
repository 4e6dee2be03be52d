package config

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Defaults of on_demand.rate: a burst of 10 new Certificates, then one a
// minute, which stays inside Let's Encrypt's 300 new orders per 3 hours per
// account with room for renewals and the configured hosts.
const (
	DefaultOnDemandBurst = 10
	DefaultOnDemandPer   = time.Minute
)

// onDemandDefaults fills on_demand.rate and normalises the allow patterns
// (lowercase, no trailing dot) so that they compare equal to SNI names.
func (c *Config) onDemandDefaults() {
	od := c.OnDemand
	if od == nil {
		return
	}
	if od.Rate == nil {
		od.Rate = &Rate{}
	}
	setDefault(&od.Rate.Burst, DefaultOnDemandBurst)
	setDefault(&od.Rate.Per, DefaultOnDemandPer)
	for i, p := range od.Allow {
		od.Allow[i] = NormalizeAllowPattern(p)
	}
}

// NormalizeAllowPattern lowercases an on_demand allow pattern and drops a
// trailing dot; a "~regexp" is left as written.
func NormalizeAllowPattern(p string) string {
	p = strings.TrimSpace(p)
	if strings.HasPrefix(p, "~") {
		return p
	}
	return strings.TrimSuffix(strings.ToLower(p), ".")
}

// CheckAllowPattern says what is wrong with a normalised on_demand allow
// pattern, or returns "". Patterns are exact DNS names, one-label wildcards
// ("*.example.com") or "~regexp" matched against the whole name.
func CheckAllowPattern(p string) string {
	if re, ok := strings.CutPrefix(p, "~"); ok {
		if re == "" {
			return "the regexp after ~ is empty"
		}
		if _, err := regexp.Compile(re); err != nil {
			return fmt.Sprintf("%q is not a valid regexp: %v", re, err)
		}
		return ""
	}
	switch {
	case p == "":
		return "pattern is empty"
	case p == "*":
		return `"*" would allow every name, which is what the policy is there to prevent; list names, one-label wildcards like *.customers.example.com, or use ask`
	}
	if _, err := netip.ParseAddr(p); err == nil {
		return fmt.Sprintf("%q is an IP address; on-demand certificates are for DNS names", p)
	}
	name := strings.TrimPrefix(p, "*.")
	if strings.Contains(name, "*") {
		return fmt.Sprintf("%q: a wildcard must be the whole leftmost label, as in *.example.com (use ~regexp for more)", p)
	}
	if !isDNSName(name) {
		return fmt.Sprintf("%q is not a DNS name, a one-label wildcard or a ~regexp", p)
	}
	return ""
}

// CompileAllowRegexp compiles the regexp of a "~regexp" allow pattern so
// that it must match the whole name.
func CompileAllowRegexp(re string) (*regexp.Regexp, error) {
	return regexp.Compile(`^(?:` + re + `)$`)
}

// AllowFileError is a bad line of an on_demand allow_file.
type AllowFileError struct {
	Line int
	Msg  string
}

func (e AllowFileError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Msg) }

// ParseAllowFile returns the normalised patterns of an allow_file's
// contents, one a line; blank lines and lines starting with # are skipped.
// It reports every bad line.
func ParseAllowFile(data []byte) ([]string, []AllowFileError) {
	var pats []string
	var errs []AllowFileError
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		p := NormalizeAllowPattern(line)
		if msg := CheckAllowPattern(p); msg != "" {
			errs = append(errs, AllowFileError{Line: n, Msg: msg})
			continue
		}
		pats = append(pats, p)
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, AllowFileError{Line: n + 1, Msg: err.Error()})
	}
	return pats, errs
}

// onDemand checks the on_demand policy and the Sites that use it.
func (v *validator) onDemand() {
	c := v.c
	first := -1 // the first Site with tls.on_demand
	for i, s := range c.Sites {
		if !s.TLS.OnDemand {
			continue
		}
		if first < 0 {
			first = i
		}
		sp := fmt.Sprintf("sites[%d]", i)
		tp := sp + ".tls"
		if s.TLS.Cert != "" || s.TLS.Key != "" {
			v.addf(tp+".on_demand", "on_demand obtains certificates from ACME; it cannot be combined with tls.cert and tls.key")
		}
		if s.TLS.Issuer == IssuerInternal {
			v.addf(tp+".issuer", "on_demand certificates come from ACME, not the local CA; drop tls.issuer or tls.on_demand")
		}
		if s.TLS.DNS != nil {
			v.addf(tp+".dns", "on_demand certificates are obtained with http-01 or tls-alpn-01, one per name; tls.dns cannot be combined with on_demand")
		}
		if len(s.TLS.Issuers) > 0 {
			v.addf(tp+".issuers", "on_demand certificates come from acme's issuers; tls.issuers cannot be combined with on_demand")
		}
		for j, h := range s.Hosts {
			if h != "*" && h != "" && IsInternalName(strings.TrimPrefix(h, "*.")) {
				v.addf(fmt.Sprintf("%s.hosts[%d]", sp, j), "%q is a name no public CA certifies, and on_demand certificates come from ACME; put it in a site without on_demand", h)
			}
		}
		if c.OnDemand == nil {
			v.addf(tp+".on_demand", "needs the top-level on_demand policy, with allow, allow_file or ask saying which names may get a certificate")
		}
	}
	if first >= 0 {
		if c.ACME.Engine == EngineAutocert {
			v.addf("acme.engine", "sites[%d].tls.on_demand needs engine certmagic; engine autocert cannot decide per name at handshake time", first)
		}
		if c.Listen.HTTPS == "" {
			v.addf(fmt.Sprintf("sites[%d].tls.on_demand", first), "needs listen.https: on-demand certificates are obtained during TLS handshakes")
		}
	}

	od := c.OnDemand
	if od == nil {
		return
	}
	if len(od.Allow) == 0 && od.AllowFile == "" && od.Ask == "" {
		v.addf("on_demand", "needs allow, allow_file or ask: without one, anyone could make gatehouse order certificates for made-up names until the CA's rate limits lock it out")
	}
	for i, p := range od.Allow {
		if msg := CheckAllowPattern(p); msg != "" {
			v.addf(fmt.Sprintf("on_demand.allow[%d]", i), "%s", msg)
		}
	}
	if od.AllowFile != "" {
		data, msg := readFile(od.AllowFile)
		if msg != "" {
			v.addf("on_demand.allow_file", "%s", msg)
		} else {
			_, errs := ParseAllowFile(data)
			for _, e := range errs {
				v.addf("on_demand.allow_file", "%s:%d: %s", od.AllowFile, e.Line, e.Msg)
			}
		}
	}
	if od.Ask != "" {
		u, err := url.Parse(od.Ask)
		switch {
		case err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https"):
			v.addf("on_demand.ask", "%q is not an absolute http:// or https:// URL", od.Ask)
		case u.Fragment != "":
			v.addf("on_demand.ask", "%q has a fragment", od.Ask)
		case u.Query().Has("domain"):
			v.addf("on_demand.ask", "%q already has a domain parameter; gatehouse adds ?domain=NAME itself", od.Ask)
		}
	}
	if od.BudgetShare != "" {
		if _, err := parseShare(od.BudgetShare); err != nil {
			v.addf("on_demand.budget_share", "%v", err)
		}
	}
	if r := od.Rate; r != nil {
		if r.Burst < 1 {
			v.addf("on_demand.rate.burst", "must be at least 1")
		}
		if r.Per <= 0 {
			v.addf("on_demand.rate.per", "must be positive, like 1m")
		}
	}
}
