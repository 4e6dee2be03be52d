package config

import (
	"fmt"
	"net/netip"
	"net/textproto"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Placeholders allowed in request_headers and response_headers values.
var HeaderPlaceholders = []string{"client_ip", "host", "scheme", "request_id"}

// RequestHeaderPlaceholders adds {user}, the name basic_auth verified, to
// HeaderPlaceholders; it is known only on the way to the Upstream.
var RequestHeaderPlaceholders = append(HeaderPlaceholders[:len(HeaderPlaceholders):len(HeaderPlaceholders)], "user")

// Placeholders allowed in redirect.to.
var RedirectPlaceholders = []string{"host", "scheme", "path", "query"}

// Redirect statuses a redirect Route may use.
var redirectStatuses = []int{301, 302, 303, 307, 308}

// The defaults of shaping and access control.
const (
	DefaultRedirectStatus     = 308
	DefaultRealm              = "gatehouse"
	DefaultRateLimitKey       = RateLimitKeyIP
	DefaultMaxClients         = 100000
	DefaultForwardAuthTimeout = 5 * time.Second
)

// shapingDefaults fills the unset shaping and access-control fields of r;
// withDefaults calls it.
func (r *Route) shapingDefaults() {
	if r.Redirect != nil {
		setDefault(&r.Redirect.Status, DefaultRedirectStatus)
	}
	if r.BasicAuth != nil {
		setDefault(&r.BasicAuth.Realm, DefaultRealm)
	}
	if rl := r.RateLimit; rl != nil {
		setDefault(&rl.Burst, rl.Requests)
		setDefault(&rl.Key, DefaultRateLimitKey)
		setDefault(&rl.MaxClients, DefaultMaxClients)
	}
	if r.ForwardAuth != nil {
		setDefault(&r.ForwardAuth.Timeout, DefaultForwardAuthTimeout)
	}
}

// Rate-limit keys.
const (
	RateLimitKeyIP           = "ip"
	RateLimitKeyHeaderPrefix = "header:"
)

// framingHeaders decide how a message is delimited or routed between
// hops; setting them by hand breaks the connection, not the app.
var framingHeaders = []string{"Connection", "Content-Length", "Transfer-Encoding", "Te", "Trailer", "Upgrade", "Keep-Alive", "Proxy-Connection"}

// shapingAll checks the shaping and access control of every Route.
func (v *validator) shapingAll() {
	for i, s := range v.c.Sites {
		if v.isKnown(i) {
			continue
		}
		for j, r := range s.Routes {
			v.shaping(r, fmt.Sprintf("sites[%d].routes[%d]", i, j))
		}
	}
}

// shaping checks the request and response shaping and access control of
// the Route at path: headers, paths, redirects, compression, IP lists,
// rate limits, basic auth and forward auth.
func (v *validator) shaping(r Route, path string) {
	upstreams := len(r.Upstreams) > 0
	v.headers(r.RequestHeaders, path+".request_headers", true)
	v.headers(r.ResponseHeaders, path+".response_headers", false)
	if r.RequestHeaders != nil && !upstreams {
		v.addf(path+".request_headers", "request_headers is only used with upstreams")
	}
	if h := r.RequestHeaders; h != nil && r.BasicAuth == nil {
		for _, m := range []struct {
			op   string
			vals map[string]string
		}{{"set", h.Set}, {"add", h.Add}} {
			for _, name := range sortedKeys(m.vals) {
				if strings.Contains(m.vals[name], "{user}") {
					v.addf(path+".request_headers."+m.op+"."+name, "{user} is the name basic_auth verified; this route has no basic_auth")
				}
			}
		}
	}
	if r.AddPrefix != "" {
		switch {
		case !upstreams:
			v.addf(path+".add_prefix", "add_prefix is only used with upstreams")
		case !strings.HasPrefix(r.AddPrefix, "/"):
			v.addf(path+".add_prefix", "%q must start with /", r.AddPrefix)
		case strings.ContainsAny(r.AddPrefix, "?#"):
			v.addf(path+".add_prefix", "%q must not have a query or fragment", r.AddPrefix)
		case hasDotDot(r.AddPrefix):
			v.addf(path+".add_prefix", "%q must not have . or .. segments", r.AddPrefix)
		}
	}
	if rw := r.Rewrite; rw != nil {
		v.rewrite(rw, path+".rewrite")
		if !upstreams {
			v.addf(path+".rewrite", "rewrite is only used with upstreams")
		}
	}
	if rd := r.Redirect; rd != nil {
		v.redirect(rd, path+".redirect")
	}
	v.ipList(r.AllowIPs, path+".allow_ips")
	v.ipList(r.DenyIPs, path+".deny_ips")
	if ba := r.BasicAuth; ba != nil {
		v.basicAuth(ba, path+".basic_auth")
	}
	if rl := r.RateLimit; rl != nil {
		v.rateLimit(rl, path+".rate_limit")
	}
	if fa := r.ForwardAuth; fa != nil {
		v.forwardAuth(fa, path+".forward_auth", upstreams)
	}
}

// headers checks a set/add/remove block. Names must be valid header
// names, and neither framing headers nor (in responses) Host may be
// touched; values must not hold line breaks and may only use known
// placeholders.
func (v *validator) headers(h *Headers, path string, request bool) {
	if h == nil {
		return
	}
	if len(h.Set) == 0 && len(h.Add) == 0 && len(h.Remove) == 0 {
		v.addf(path, "needs at least one of set, add or remove")
	}
	checkName := func(p, name, op string) bool {
		switch {
		case !isToken(name):
			v.addf(p, "%q is not a valid header name", name)
		case slices.Contains(framingHeaders, textproto.CanonicalMIMEHeaderKey(name)):
			v.addf(p, "%s is managed by gatehouse (it frames the message); it cannot be changed", textproto.CanonicalMIMEHeaderKey(name))
		case strings.EqualFold(name, "Host") && (!request || op != "set"):
			if request {
				v.addf(p, "Host can only be set, not added or removed")
			} else {
				v.addf(p, "Host is not a response header")
			}
		default:
			return true
		}
		return false
	}
	for _, op := range []struct {
		name string
		m    map[string]string
	}{{"set", h.Set}, {"add", h.Add}} {
		for _, name := range sortedKeys(op.m) {
			p := path + "." + op.name + "." + name
			if !checkName(p, name, op.name) {
				continue
			}
			val := op.m[name]
			if strings.ContainsAny(val, "\r\n\x00") {
				v.addf(p, "a header value must not hold line breaks or NUL")
				continue
			}
			known := HeaderPlaceholders
			if request {
				known = RequestHeaderPlaceholders
			}
			if msg := checkPlaceholders(val, known); msg != "" {
				v.addf(p, "%s", msg)
			}
			if strings.EqualFold(name, "Host") && val == "" {
				v.addf(p, "Host must not be empty")
			}
		}
	}
	for i, name := range h.Remove {
		checkName(fmt.Sprintf("%s.remove[%d]", path, i), name, "remove")
	}
}

// isToken reports whether s is a valid HTTP header name (an RFC 9110 token).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// checkPlaceholders says what is wrong with the {name} placeholders of s,
// or returns "". A brace that does not open a {name} is literal text.
func checkPlaceholders(s string, known []string) string {
	for rest := s; ; {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			return ""
		}
		rest = rest[i+1:]
		j := strings.IndexByte(rest, '}')
		if j < 0 {
			return ""
		}
		name := rest[:j]
		if !IsPlaceholderName(name) {
			continue
		}
		if !slices.Contains(known, name) {
			return fmt.Sprintf("unknown placeholder {%s}; known here: {%s}", name, strings.Join(known, "}, {"))
		}
		rest = rest[j+1:]
	}
}

// IsPlaceholderName reports whether s looks like a placeholder name:
// lowercase letters and underscores. Braces around anything else are
// literal text, here and where proxy compiles the same values.
func IsPlaceholderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('a' <= c && c <= 'z' || c == '_') {
			return false
		}
	}
	return true
}

// hasDotDot reports whether an absolute path has a "." or ".." segment.
func hasDotDot(p string) bool {
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

var groupRef = regexp.MustCompile(`\$(\d+|\{\w+\}|\w+)`)

func (v *validator) rewrite(rw *Rewrite, path string) {
	if rw.Match == "" {
		v.addf(path+".match", "is required with rewrite")
		return
	}
	re, err := regexp.Compile(rw.Match)
	if err != nil {
		v.addf(path+".match", "%q is not a regexp: %v", rw.Match, unwrapRegexp(err))
		return
	}
	if strings.ContainsAny(rw.To, "?#") {
		v.addf(path+".to", "%q must not have a query or fragment; rewrite changes the path only", rw.To)
	}
	names := re.SubexpNames()
	for _, m := range groupRef.FindAllStringSubmatch(rw.To, -1) {
		ref := strings.Trim(m[1], "{}")
		if n, err := strconv.Atoi(ref); err == nil {
			if n > re.NumSubexp() {
				v.addf(path+".to", "$%d refers to a group that match does not have (it has %d)", n, re.NumSubexp())
			}
			continue
		}
		if !slices.Contains(names, ref) {
			v.addf(path+".to", "%s refers to no named group of match (write ${1}x, not $1x, when a letter follows)", m[0])
		}
	}
}

// unwrapRegexp drops the "error parsing regexp:" prefix, which the key
// path already implies.
func unwrapRegexp(err error) string {
	return strings.TrimPrefix(err.Error(), "error parsing regexp: ")
}

func (v *validator) redirect(rd *Redirect, path string) {
	if !slices.Contains(redirectStatuses, rd.Status) {
		v.addf(path+".status", "%d is not a redirect status (301, 302, 303, 307 or 308)", rd.Status)
	}
	switch {
	case rd.To == "":
		v.addf(path+".to", "is required with redirect")
	case strings.ContainsAny(rd.To, "\r\n\x00 "):
		v.addf(path+".to", "%q must not hold spaces or line breaks", rd.To)
	default:
		if msg := checkPlaceholders(rd.To, RedirectPlaceholders); msg != "" {
			v.addf(path+".to", "%s", msg)
			return
		}
		// Check the target as it would be rendered for some request.
		to := strings.NewReplacer("{path}", "/p", "{query}", "q", "{host}", "example.com", "{scheme}", "https").Replace(rd.To)
		if strings.HasPrefix(to, "/") && !strings.HasPrefix(to, "//") {
			return
		}
		u, err := url.Parse(to)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.addf(path+".to", "%q is neither a path starting with / nor an absolute http:// or https:// URL", rd.To)
		}
	}
}

func (v *validator) ipList(list []string, path string) {
	for i, p := range list {
		if !isIPOrCIDR(p) {
			v.addf(fmt.Sprintf("%s[%d]", path, i), "%q is neither an IP address nor a CIDR like 10.0.0.0/8", p)
		}
	}
}

// isIPOrCIDR reports whether s is an IP address or a CIDR.
func isIPOrCIDR(s string) bool {
	if _, err := netip.ParsePrefix(s); err == nil {
		return true
	}
	_, err := netip.ParseAddr(s)
	return err == nil
}

func (v *validator) basicAuth(ba *BasicAuth, path string) {
	if len(ba.Users) == 0 {
		v.addf(path+".users", "basic_auth needs at least one user")
	}
	if strings.ContainsAny(ba.Realm, "\"\\\r\n") {
		v.addf(path+".realm", "%q must not hold quotes, backslashes or line breaks", ba.Realm)
	}
	for _, name := range sortedKeys(ba.Users) {
		p := path + ".users." + name
		if name == "" || strings.ContainsAny(name, ":\r\n") {
			v.addf(p, "a user name must not be empty or hold a colon")
			continue
		}
		hash := ba.Users[name]
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			v.addf(p, "is not a bcrypt hash (make one with gatehouse hash-password): %v", strings.TrimPrefix(err.Error(), "crypto/bcrypt: "))
		}
	}
}

func (v *validator) rateLimit(rl *RateLimit, path string) {
	if rl.Requests <= 0 {
		v.addf(path+".requests", "must be a positive number of requests")
	}
	if rl.Per <= 0 {
		v.addf(path+".per", "must be a positive duration like 1s or 1m")
	}
	if rl.Burst < 0 {
		v.addf(path+".burst", "must not be negative")
	}
	if rl.MaxClients < 0 {
		v.addf(path+".max_clients", "must not be negative")
	}
	switch k := rl.Key; {
	case k == RateLimitKeyIP:
	case strings.HasPrefix(k, RateLimitKeyHeaderPrefix):
		if name := strings.TrimPrefix(k, RateLimitKeyHeaderPrefix); !isToken(name) {
			v.addf(path+".key", "%q is not a valid header name", name)
		}
	default:
		v.addf(path+".key", "must be %q or %q, not %q", RateLimitKeyIP, RateLimitKeyHeaderPrefix+"NAME", k)
	}
}

func (v *validator) forwardAuth(fa *ForwardAuth, path string, upstreams bool) {
	if u, err := url.Parse(fa.URL); fa.URL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		v.addf(path+".url", "%q is not an absolute http:// or https:// URL", fa.URL)
	}
	if fa.Timeout < 0 {
		v.addf(path+".timeout", "must not be negative")
	}
	if len(fa.CopyHeaders) > 0 && !upstreams {
		v.addf(path+".copy_headers", "copy_headers is only used with upstreams")
	}
	for i, name := range fa.CopyHeaders {
		p := fmt.Sprintf("%s.copy_headers[%d]", path, i)
		switch {
		case !isToken(name):
			v.addf(p, "%q is not a valid header name", name)
		case slices.Contains(framingHeaders, textproto.CanonicalMIMEHeaderKey(name)) || strings.EqualFold(name, "Host"):
			v.addf(p, "%s cannot be copied onto the request", name)
		}
	}
}
