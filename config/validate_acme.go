package config

import (
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Key types for ACME.KeyType.
const (
	KeyP256    = "p256"
	KeyP384    = "p384"
	KeyRSA2048 = "rsa2048"
	KeyRSA4096 = "rsa4096"
	KeyEd25519 = "ed25519"
)

// KeyTypes lists the accepted ACME.KeyType values, the default first.
var KeyTypes = []string{KeyP256, KeyP384, KeyRSA2048, KeyRSA4096, KeyEd25519}

// DefaultPropagationTimeout bounds the wait for a DNS-01 TXT record to be
// visible when dns.propagation_timeout is unset.
const DefaultPropagationTimeout = 2 * time.Minute

// credKind says how a DNS credential value is checked.
type credKind int

const (
	credString   credKind = iota
	credInt               // a whole number (a TTL, a retry count)
	credBool              // true or false
	credURL               // an absolute http(s) URL
	credHostPort          // host or host:port
)

// DNSCredential describes one key of dns.credentials.
type DNSCredential struct {
	Key      string
	Required bool
	// Env is the lego environment variable the key stands for, for the
	// providers that tlsmgr builds from lego's environment (all but
	// those of DNSProviders); "" for the others.
	Env  string
	kind credKind
}

// DNSProviders lists, per dns.provider, the credentials keys it takes.
// tlsmgr maps each to the field of the lego provider's Config; keys not
// listed are refused, so a typo never passes silently.
var DNSProviders = map[string][]DNSCredential{
	"rfc2136": {
		{Key: "nameserver", Required: true, kind: credHostPort},
		{Key: "tsig_key"}, {Key: "tsig_secret"}, {Key: "tsig_algorithm"}, {Key: "tsig_file"},
		{Key: "zone"}, {Key: "ttl", kind: credInt},
	},
	"cloudflare": {
		{Key: "api_token"}, {Key: "zone_token"}, {Key: "email"}, {Key: "api_key"},
		{Key: "base_url", kind: credURL}, {Key: "ttl", kind: credInt},
	},
	"route53": {
		{Key: "access_key_id"}, {Key: "secret_access_key"}, {Key: "session_token"}, {Key: "region"},
		{Key: "hosted_zone_id"}, {Key: "assume_role_arn"}, {Key: "external_id"},
		{Key: "private_zone", kind: credBool}, {Key: "max_retries", kind: credInt}, {Key: "ttl", kind: credInt},
	},
	"digitalocean": {
		{Key: "auth_token", Required: true}, {Key: "base_url", kind: credURL}, {Key: "ttl", kind: credInt},
	},
	"exec": {
		{Key: "program", Required: true}, {Key: "mode"},
	},
	"httpreq": {
		{Key: "endpoint", Required: true, kind: credURL}, {Key: "mode"}, {Key: "username"}, {Key: "password"},
	},
}

// DNSProviderNames returns the dns.provider values this build has,
// sorted.
func DNSProviderNames() []string {
	names := make([]string, 0, len(DNSProviders)+len(DefaultLegoDNSProviders))
	for n := range DNSProviders {
		names = append(names, n)
	}
	if AllDNSProviders {
		for n, p := range legoDNSProviders {
			if !p.Unavailable {
				names = append(names, n)
			}
		}
	} else {
		names = append(names, DefaultLegoDNSProviders...)
	}
	slices.Sort(names)
	return names
}

// acmeIssuance checks the issuer list, profile, key type and DNS-01
// settings, globally and per Site.
func (v *validator) acmeIssuance() {
	a := v.c.ACME
	if len(a.Issuers) > 0 {
		for _, key := range []string{"ca", "ca_root", "eab", "limits"} {
			if v.c.has("acme." + key) {
				v.addf("acme."+key, "acme.%s cannot be combined with acme.issuers, which replaces it; set %s in the issuer's entry", key, key)
			}
		}
	}
	v.issuers(a.Issuers, "acme.issuers")
	v.rateLimits(a.Limits, "acme.limits")
	v.profile(a.Profile, "acme.profile")
	if a.KeyType != "" && !slices.Contains(KeyTypes, a.KeyType) {
		v.addf("acme.key_type", "must be one of %s, not %q", strings.Join(KeyTypes, ", "), a.KeyType)
	}
	if a.DNS != nil {
		v.dns(a.DNS, "acme.dns")
	}
	autocert := a.Engine == EngineAutocert
	if autocert {
		for key, set := range map[string]bool{
			"issuers": len(a.Issuers) > 0, "profile": a.Profile != "",
			"key_type": a.KeyType != "", "dns": a.DNS != nil, "eab.api_key": a.EAB != nil && a.EAB.APIKey != "",
			"limits": a.Limits != nil,
		} {
			if set {
				v.addf("acme."+key, "engine autocert does not support acme.%s; use engine certmagic", key)
			}
		}
	}
	resolvers := a.DNS.resolvers()
	resolversAt := "acme.dns.resolvers"
	for i, s := range v.c.Sites {
		path := fmt.Sprintf("sites[%d].tls", i)
		t := s.TLS
		if len(t.Issuers) == 0 && t.DNS == nil {
			continue
		}
		acmeHost := slices.ContainsFunc(s.Hosts, func(h string) bool { return t.IssuerFor(h) == IssuerACME })
		if !acmeHost {
			for key, set := range map[string]bool{"issuers": len(t.Issuers) > 0, "dns": t.DNS != nil} {
				if set {
					v.addf(path+"."+key, "tls.%s is only used for certificates from ACME, and no host of this site gets one", key)
				}
			}
		}
		if autocert {
			for key, set := range map[string]bool{"issuers": len(t.Issuers) > 0, "dns": t.DNS != nil} {
				if set {
					v.addf(path+"."+key, "engine autocert does not support tls.%s; use engine certmagic", key)
				}
			}
		}
		v.issuers(t.Issuers, path+".issuers")
		if t.DNS != nil {
			v.dns(t.DNS, path+".dns")
			// lego finds zones and follows CNAMEs through one
			// process-wide client, so every resolvers list must agree.
			if r := t.DNS.resolvers(); len(r) > 0 {
				if len(resolvers) == 0 {
					resolvers, resolversAt = r, path+".dns.resolvers"
				} else if !slices.Equal(r, resolvers) {
					v.addf(path+".dns.resolvers", "differs from %s; gatehouse uses one resolvers list for every DNS-01 check", resolversAt)
				}
			}
		}
	}
}

// resolvers returns d's resolvers, or nil for a nil d.
func (d *DNS) resolvers() []string {
	if d == nil {
		return nil
	}
	return d.Resolvers
}

// resolvePaths resolves the file paths among d's credentials (an rfc2136
// tsig_file) with resolve.
func (d *DNS) resolvePaths(resolve func(*string)) {
	if d == nil || d.Credentials["tsig_file"] == "" {
		return
	}
	p := d.Credentials["tsig_file"]
	resolve(&p)
	d.Credentials["tsig_file"] = p
}

// DNSFor returns the DNS-01 settings for a Site: its own, else acme.dns,
// else nil (HTTP-01 and TLS-ALPN-01).
func (c *Config) DNSFor(s *Site) *DNS {
	if s.TLS.DNS != nil {
		return s.TLS.DNS
	}
	return c.ACME.DNS
}

func (v *validator) issuers(list []Issuer, path string) {
	seen := map[string]int{}
	for i, is := range list {
		ip := fmt.Sprintf("%s[%d]", path, i)
		profile, profilePath := is.Profile, ip+".profile"
		if profile == "" {
			profile, profilePath = v.c.ACME.Profile, "acme.profile"
		}
		if dir := v.checkCA(caIssuer{ca: is.CA, eab: is.EAB, profile: profile}, ip, profilePath); dir != "" {
			if j, dup := seen[dir]; dup {
				v.addf(ip+".ca", "%s is already %s[%d]", is.CA, path, j)
			} else {
				seen[dir] = i
			}
		}
		if is.CARoot != "" {
			if msg := checkRoots(is.CARoot); msg != "" {
				v.addf(ip+".ca_root", "%s", msg)
			}
		}
		if is.Email != "" {
			if addr, err := mail.ParseAddress(is.Email); err != nil || addr.Address != is.Email {
				v.addf(ip+".email", "%q is not an email address", is.Email)
			}
		}
		v.profile(is.Profile, ip+".profile")
		v.rateLimits(is.Limits, ip+".limits")
	}
}

// eab checks the external account binding e of the CA ca.
func (v *validator) eab(e *EAB, ca, path string) {
	if e.APIKey != "" {
		k, _ := LookupCA(ca)
		if !k.EABFromAPIKey {
			v.addf(path+".api_key", "only ZeroSSL derives a binding from an API key; give this CA's key_id and mac_key")
		}
		if e.KeyID != "" || e.MACKey != "" {
			v.addf(path+".api_key", "api_key cannot be combined with key_id and mac_key; it stands in for them")
		}
		return
	}
	if e.KeyID == "" {
		v.addf(path+".key_id", "is required with eab (or, for ZeroSSL, api_key alone)")
	}
	switch {
	case e.MACKey == "":
		v.addf(path+".mac_key", "is required with eab")
	case !isBase64URL(e.MACKey):
		v.addf(path+".mac_key", "is not base64url (the alphabet A-Z a-z 0-9 - _)")
	}
}

// profile checks an ACME profile name: the CA defines the names, so only
// their shape is checked here.
func (v *validator) profile(p, path string) {
	if p == "" {
		return
	}
	if !isProfileName(p) {
		v.addf(path, "%q is not a profile name (letters, digits, '-', '_' and '.'), like \"shortlived\"", p)
	}
}

// isProfileName reports whether p has the shape of an ACME profile name.
func isProfileName(p string) bool {
	return !strings.ContainsFunc(p, func(r rune) bool {
		return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-' || r == '_' || r == '.')
	})
}

func (v *validator) dns(d *DNS, path string) {
	creds, ok := LookupDNSProvider(d.Provider)
	if !ok {
		lp, lego := legoDNSProviders[d.Provider]
		switch {
		case d.Provider == "":
			v.addf(path+".provider", "is required: one of %s", strings.Join(DNSProviderNames(), ", "))
		case lp.Unavailable:
			v.addf(path+".provider", "lego's DNS provider %q is in no build of gatehouse (the Go modules it needs are not available to gatehouse's build); exec or httpreq can reach %s", d.Provider, lp.Name)
		case lego:
			v.addf(path+".provider", "DNS provider %q is one of lego's that only a build with -tags alldns has; this one has %s (exec and httpreq reach any other)", d.Provider, strings.Join(DNSProviderNames(), ", "))
		default:
			v.addf(path+".provider", "%s", unknownDNSProvider(d.Provider))
		}
	}
	if d.PropagationTimeout < 0 {
		v.addf(path+".propagation_timeout", "must not be negative")
	}
	for i, r := range d.Resolvers {
		if host, port, err := net.SplitHostPort(r); err != nil || host == "" || port == "" {
			v.addf(fmt.Sprintf("%s.resolvers[%d]", path, i), "%q is not host:port, like \"1.1.1.1:53\"", r)
		}
	}
	if !ok {
		return
	}
	keys := make([]string, 0, len(d.Credentials))
	for k := range d.Credentials {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var known []string
	for _, c := range creds {
		known = append(known, c.Key)
	}
	for _, k := range keys {
		cp := path + ".credentials." + k
		i := slices.Index(known, k)
		if i < 0 {
			v.addf(cp, "unknown credential %q for provider %s; it takes %s", k, d.Provider, strings.Join(known, ", "))
			continue
		}
		if msg := checkCredential(creds[i].kind, d.Credentials[k]); msg != "" {
			v.addf(cp, "%s", msg)
		}
	}
	for _, c := range creds {
		if c.Required && d.Credentials[c.Key] == "" {
			v.addf(path+".credentials", "provider %s needs credentials.%s", d.Provider, c.Key)
		}
	}
	cr := d.Credentials
	switch d.Provider {
	case "rfc2136":
		if (cr["tsig_key"] == "") != (cr["tsig_secret"] == "") {
			v.addf(path+".credentials", "tsig_key and tsig_secret go together")
		}
		if f := cr["tsig_file"]; f != "" {
			if _, msg := readFile(f); msg != "" {
				v.addf(path+".credentials.tsig_file", "%s", msg)
			}
		}
		if cr["tsig_file"] != "" && cr["tsig_key"] != "" {
			v.addf(path+".credentials.tsig_file", "tsig_file cannot be combined with tsig_key and tsig_secret")
		}
	case "cloudflare":
		token := cr["api_token"] != ""
		global := cr["email"] != "" || cr["api_key"] != ""
		switch {
		case token && global:
			v.addf(path+".credentials", "use either api_token or email with api_key, not both")
		case global && (cr["email"] == "" || cr["api_key"] == ""):
			v.addf(path+".credentials", "email and api_key go together")
		case !token && !global:
			v.addf(path+".credentials", "provider cloudflare needs credentials.api_token (or email and api_key)")
		}
	case "route53":
		if (cr["access_key_id"] == "") != (cr["secret_access_key"] == "") {
			v.addf(path+".credentials", "access_key_id and secret_access_key go together (or leave both out to use the AWS environment)")
		}
	case "exec", "httpreq":
		if m := cr["mode"]; m != "" && m != "RAW" {
			v.addf(path+".credentials.mode", "must be \"RAW\" or left out, not %q", m)
		}
	}
}

// checkCredential says what is wrong with a credential value, or returns "".
func checkCredential(kind credKind, val string) string {
	switch kind {
	case credInt:
		if n, err := strconv.Atoi(val); err != nil || n < 0 {
			return fmt.Sprintf("%q is not a whole number", val)
		}
	case credBool:
		if _, err := strconv.ParseBool(val); err != nil {
			return fmt.Sprintf("%q is not true or false", val)
		}
	case credURL:
		if u, err := url.Parse(val); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			return fmt.Sprintf("%q is not an absolute http:// or https:// URL", val)
		}
	case credHostPort:
		host := val
		if h, _, err := net.SplitHostPort(val); err == nil {
			host = h
		}
		if host == "" || strings.ContainsAny(host, "/ ") {
			return fmt.Sprintf("%q is not a host or host:port", val)
		}
	}
	return ""
}
