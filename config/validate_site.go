package config

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
)

func (v *validator) sites() {
	if len(v.c.Sites) == 0 && v.c.Docker == nil && v.c.ACMEServer == nil && !v.c.sharesConfig() {
		v.addf("sites", "at least one site is needed")
		return
	}
	// owner maps each host to the first Site serving it.
	owner := make(map[string]int, len(v.c.Sites))
	for i, s := range v.c.Sites {
		if v.isKnown(i) && v.claim(owner, i, s.Hosts) {
			continue
		}
		path := fmt.Sprintf("sites[%d]", i)
		if len(s.Hosts) == 0 {
			v.addf(path+".hosts", "a site needs at least one host")
		}
		for j, h := range s.Hosts {
			hpath := fmt.Sprintf("%s.hosts[%d]", path, j)
			if msg := checkHost(h); msg != "" {
				v.addf(hpath, "%s", msg)
				continue
			}
			if k, dup := owner[h]; dup {
				if k == i {
					v.addf(hpath, "host %q is listed twice", h)
				} else {
					v.addf(hpath, "host %q is already served by sites[%d] (%s)", h, k, v.c.Sites[k].Hosts[0])
				}
				continue
			}
			owner[h] = i
			v.certFor(s.TLS, h, path, hpath)
		}
		v.siteTLS(s.TLS, path+".tls")
		if s.HSTS != nil && s.HSTS.MaxAge <= 0 {
			v.addf(path+".hsts.max_age", "must be positive")
		}
		if len(s.Routes) == 0 {
			v.addf(path+".routes", "a site needs at least one route")
		}
		seen := make(map[string]int)
		for j, r := range s.Routes {
			rpath := fmt.Sprintf("%s.routes[%d]", path, j)
			if k, dup := seen[r.Path]; dup {
				v.addf(rpath+".path", "path %q is already used by %s.routes[%d]", r.Path, path, k)
			} else {
				seen[r.Path] = j
			}
			v.route(r, rpath)
		}
	}
}

// claim gives the hosts of known Site i to it in owner and reports
// whether none was taken already; one that was leaves owner as it was, for
// the Site's full check to report.
func (v *validator) claim(owner map[string]int, i int, hosts []string) bool {
	for _, h := range hosts {
		if _, dup := owner[h]; dup {
			return false
		}
	}
	for _, h := range hosts {
		owner[h] = i
	}
	return true
}

// checkHost says what is wrong with a Site host, or returns "". Hosts are
// lowercased and without a trailing dot by now.
func checkHost(h string) string {
	if h == "" {
		return "host is empty"
	}
	if h == "*" {
		return ""
	}
	if scheme, rest, ok := strings.Cut(h, "://"); ok {
		return fmt.Sprintf("%q has a scheme (%s://); write the host alone, like %q", h, scheme, strings.TrimSuffix(rest, "/"))
	}
	if ip, err := netip.ParseAddr(h); err == nil {
		if ip.Zone() != "" {
			return fmt.Sprintf("%q has an IPv6 zone, which TLS cannot match", h)
		}
		return ""
	}
	if host, _, err := net.SplitHostPort(h); err == nil {
		return fmt.Sprintf("%q has a port; write %q (ports belong in listen)", h, strings.Trim(host, "[]"))
	}
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		return fmt.Sprintf("%q: write IPv6 addresses without brackets", h)
	}
	if strings.Contains(h, "/") {
		return fmt.Sprintf("%q is not a host name: it has a path", h)
	}
	name := strings.TrimPrefix(h, "*.")
	if strings.Contains(name, "*") {
		return fmt.Sprintf("%q: a wildcard must be the whole leftmost label, as in *.example.com", h)
	}
	if strings.ContainsFunc(name, func(r rune) bool { return r > 0x7f }) {
		return fmt.Sprintf("%q: write internationalized names in their xn-- (punycode) form", h)
	}
	if !isDNSName(name) {
		return fmt.Sprintf("%q is not a valid host name or IP address", h)
	}
	return ""
}

// isDNSName reports whether name is a valid lowercase DNS name: labels of
// 1 to 63 letters, digits and inner hyphens, 253 bytes at most, not ending in
// a numeric label (that would be a mistyped IP address).
func isDNSName(name string) bool {
	if len(name) > 253 {
		return false
	}
	labels := strings.Split(name, ".")
	for _, l := range labels {
		if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, r := range l {
			if !('a' <= r && r <= 'z' || '0' <= r && r <= '9' || r == '-') {
				return false
			}
		}
	}
	_, err := strconv.Atoi(labels[len(labels)-1])
	return err != nil
}

// certFor checks that a Certificate can be had for host h of the Site at
// path.
func (v *validator) certFor(t SiteTLS, h, path, hpath string) {
	if t.Cert != "" || t.OnDemand { // on-demand hosts: validate_ondemand.go
		return
	}
	switch {
	case h == "*":
		v.addf(hpath, "the catch-all host * needs tls.cert and tls.key: no CA issues a certificate for every name")
	case strings.HasPrefix(h, "*.") && t.IssuerFor(h) == IssuerACME && t.DNS == nil && v.c.ACME.DNS == nil:
		v.addf(hpath, "a wildcard certificate from ACME needs DNS-01: set tls.dns (or acme.dns) with a DNS provider, or use tls.issuer: internal or tls.cert/tls.key")
	}
}

func (v *validator) siteTLS(t SiteTLS, path string) {
	switch t.Issuer {
	case "", IssuerACME, IssuerInternal:
	default:
		v.addf(path+".issuer", "must be %q or %q, not %q", IssuerACME, IssuerInternal, t.Issuer)
	}
	switch {
	case t.Cert == "" && t.Key == "":
		return
	case t.Key == "":
		v.addf(path+".cert", "tls.cert needs tls.key")
		return
	case t.Cert == "":
		v.addf(path+".key", "tls.key needs tls.cert")
		return
	}
	if t.Issuer != "" {
		v.addf(path+".issuer", "tls.issuer cannot be combined with tls.cert and tls.key")
	}
	pair := [2]string{t.Cert, t.Key}
	if v.keyPairs[pair] {
		return
	}
	if v.keyPairs == nil {
		v.keyPairs = map[[2]string]bool{}
	}
	v.keyPairs[pair] = true
	v.keyPair(t.Cert, t.Key, path+".cert", path+".key")
}

// keyPair checks that certFile and keyFile are readable and hold a matching
// certificate and private key, reporting at certPath or keyPath.
func (v *validator) keyPair(certFile, keyFile, certPath, keyPath string) {
	cert, msg := readFile(certFile)
	if msg != "" {
		v.addf(certPath, "%s", msg)
	}
	key, kmsg := readFile(keyFile)
	if kmsg != "" {
		v.addf(keyPath, "%s", kmsg)
	}
	if msg != "" || kmsg != "" {
		return
	}
	if _, err := tls.X509KeyPair(cert, key); err != nil {
		v.addf(certPath, "loading %s and %s: %v", certFile, keyFile, err)
	}
}

func (v *validator) route(r Route, path string) {
	if !strings.HasPrefix(r.Path, "/") {
		v.addf(path+".path", "%q must start with /", r.Path)
	} else if strings.ContainsAny(r.Path, "?#") {
		v.addf(path+".path", "%q must not have a query or fragment", r.Path)
	}

	var kinds []string
	if len(r.Upstreams) > 0 {
		kinds = append(kinds, "upstreams")
	}
	if r.Respond != nil {
		kinds = append(kinds, "respond")
	}
	if r.Root != "" {
		kinds = append(kinds, "root")
	}
	if r.Redirect != nil {
		kinds = append(kinds, "redirect")
	}
	switch len(kinds) {
	case 0:
		v.addf(path, "a route needs one of upstreams, respond, root or redirect")
	case 1:
	default:
		v.addf(path, "a route has exactly one of upstreams, respond, root or redirect, not %s", strings.Join(kinds, " and "))
	}

	https := false
	for i, u := range r.Upstreams {
		upath := fmt.Sprintf("%s.upstreams[%d]", path, i)
		scheme, msg := checkUpstream(u)
		if msg != "" {
			v.addf(upath, "%s", msg)
		}
		https = https || scheme == "https"
	}
	if r.CA != "" {
		if !https {
			v.addf(path+".ca", "ca is only used with https:// upstreams")
		} else if msg := checkRoots(r.CA); msg != "" {
			v.addf(path+".ca", "%s", msg)
		}
	}
	if r.StripPrefix && r.Respond != nil {
		v.addf(path+".strip_prefix", "strip_prefix is only used with upstreams or root")
	}
	if r.MaxBody < 0 {
		v.addf(path+".max_body", "must not be negative")
	}
	if r.Respond != nil && (r.Respond.Status < 100 || r.Respond.Status > 599) {
		v.addf(path+".respond.status", "%d is not an HTTP status (100 to 599)", r.Respond.Status)
	}
	if r.Root != "" {
		switch fi, err := os.Stat(r.Root); {
		case err != nil:
			v.addf(path+".root", "directory %s does not exist", r.Root)
		case !fi.IsDir():
			v.addf(path+".root", "%s is not a directory", r.Root)
		}
	}
}

// checkUpstream returns the scheme of an Upstream URL and says what is
// wrong with it, if anything.
func checkUpstream(s string) (scheme, msg string) {
	if !strings.Contains(s, "://") {
		return "", fmt.Sprintf("%q has no scheme; write it like %q", s, "http://"+s)
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Sprintf("%q is not a URL: %v", s, errorsUnwrapURL(err))
	}
	switch u.Scheme {
	case "http", "https", "h2c":
	case "unix":
		return u.Scheme, checkUnixUpstream(s, u)
	default:
		return "", fmt.Sprintf("scheme %q is not http, https, h2c or unix", u.Scheme)
	}
	switch {
	case u.Hostname() == "":
		return u.Scheme, fmt.Sprintf("%q has no host", s)
	case u.User != nil:
		return u.Scheme, fmt.Sprintf("%q has a user or password, which gatehouse does not send", s)
	case u.Path != "" && u.Path != "/":
		return u.Scheme, fmt.Sprintf("%q has a path; an upstream is scheme://host:port only, and the request path is sent as is (use the route path with strip_prefix: true to drop a prefix)", s)
	case u.RawQuery != "" || u.ForceQuery:
		return u.Scheme, fmt.Sprintf("%q has a query; an upstream is scheme://host:port only", s)
	case u.Fragment != "":
		return u.Scheme, fmt.Sprintf("%q has a fragment; an upstream is scheme://host:port only", s)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return u.Scheme, fmt.Sprintf("port %q in %q is not a number from 1 to 65535", p, s)
		}
	}
	return u.Scheme, ""
}

// checkUnixUpstream says what is wrong with a unix socket Upstream,
// unix:///absolute/path, or returns "".
func checkUnixUpstream(s string, u *url.URL) string {
	switch {
	case u.Host != "":
		return fmt.Sprintf("%q has a host; a unix socket upstream is unix:///absolute/path.sock (three slashes)", s)
	case !strings.HasPrefix(u.Path, "/"):
		return fmt.Sprintf("%q has no absolute socket path; write it like %q", s, "unix:///run/app.sock")
	case u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return fmt.Sprintf("%q: a unix socket upstream is unix:///absolute/path.sock only", s)
	}
	return ""
}

// errorsUnwrapURL drops the "parse URL:" wrapping of a *url.Error, which
// repeats the URL.
func errorsUnwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
