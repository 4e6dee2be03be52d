package proxy

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// requestIDHeader is the canonical form of X-Request-ID.
const requestIDHeader = "X-Request-Id"

// maxRequestIDLen bounds a client's X-Request-ID that gatehouse keeps.
const maxRequestIDLen = 128

// requestIDFor returns the request ID of r: the client's X-Request-ID when
// it is sane (1 to 128 visible ASCII characters), else a new random one.
// A client's ID is kept from anyone, trusted proxy or not, as Caddy and
// Traefik do: it only correlates log lines across hops and grants nothing.
func requestIDFor(r *http.Request) string {
	if v := r.Header[requestIDHeader]; len(v) == 1 && saneRequestID(v[0]) {
		return v[0]
	}
	return newRequestID()
}

func saneRequestID(s string) bool {
	if s == "" || len(s) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// newRequestID returns 32 random hex digits. math/rand/v2's generator is
// ChaCha8 seeded from the OS, so IDs do not repeat across restarts, and it
// is far cheaper than crypto/rand on every request.
func newRequestID() string {
	const hex = "0123456789abcdef"
	var b [32]byte
	for half := range 2 {
		v := rand.Uint64()
		for i := range 16 {
			b[half*16+i] = hex[v&0xf]
			v >>= 4
		}
	}
	return string(b[:])
}

// placeholder is what a template part stands for.
type placeholder uint8

const (
	phLiteral placeholder = iota
	phClientIP
	phHost
	phScheme
	phRequestID
	phPath
	phQuery // ?query, or nothing when the query is empty (see parseTemplate)
	phRawQuery
	phUser
)

var placeholderNames = map[string]placeholder{
	"client_ip":  phClientIP,
	"host":       phHost,
	"scheme":     phScheme,
	"request_id": phRequestID,
	"path":       phPath,
	"query":      phRawQuery,
	"user":       phUser,
}

// template is a header value or redirect target split once, at compile
// time, into literal text and placeholders, so a request only appends.
type template struct {
	parts []templatePart
	// static is the whole value when there is no placeholder.
	static []string
}

type templatePart struct {
	lit string
	ph  placeholder
}

// parseTemplate splits s into literals and the placeholders in allowed.
// "{name}" for any other lowercase name is an error; other braces are
// literal. A "?" right before {query} is dropped with it when the request
// has no query, so "/new{path}?{query}" never ends in a bare "?".
func parseTemplate(s string, allowed []string) (template, error) {
	var t template
	lit := ""
	for rest := s; rest != ""; {
		i := strings.IndexByte(rest, '{')
		j := -1
		if i >= 0 {
			j = strings.IndexByte(rest[i:], '}')
		}
		if i < 0 || j < 0 {
			lit += rest
			break
		}
		name := rest[i+1 : i+j]
		ph, known := placeholderNames[name]
		if !config.IsPlaceholderName(name) {
			lit += rest[:i+1]
			rest = rest[i+1:]
			continue
		}
		if !known || !slices.Contains(allowed, name) {
			return template{}, fmt.Errorf("unknown placeholder {%s} in %q", name, s)
		}
		lit += rest[:i]
		rest = rest[i+j+1:]
		if ph == phRawQuery && strings.HasSuffix(lit, "?") {
			lit, ph = lit[:len(lit)-1], phQuery
		}
		if lit != "" {
			t.parts = append(t.parts, templatePart{lit: lit})
			lit = ""
		}
		t.parts = append(t.parts, templatePart{ph: ph})
	}
	if lit != "" {
		t.parts = append(t.parts, templatePart{lit: lit})
	}
	if len(t.parts) == 0 || len(t.parts) == 1 && t.parts[0].ph == phLiteral {
		t.static = []string{s}
	}
	return t, nil
}

// vars are the values placeholders render to for one request.
type vars struct {
	t         *trust
	r         *http.Request
	requestID string
	path      string // escaped, for redirects
	user      string // the name basic_auth verified, or ""
	clientIP  string // computed on first use
}

func (v *vars) client() string {
	if v.clientIP == "" {
		if ip := v.t.clientIP(v.r); ip.IsValid() {
			v.clientIP = ip.String()
		}
	}
	return v.clientIP
}

// render appends t's value for v to buf.
func (t *template) render(buf []byte, v *vars) []byte {
	for _, p := range t.parts {
		switch p.ph {
		case phLiteral:
			buf = append(buf, p.lit...)
		case phClientIP:
			buf = append(buf, v.client()...)
		case phHost:
			buf = append(buf, v.r.Host...)
		case phScheme:
			if v.r.TLS != nil {
				buf = append(buf, "https"...)
			} else {
				buf = append(buf, "http"...)
			}
		case phRequestID:
			buf = append(buf, v.requestID...)
		case phPath:
			buf = append(buf, v.path...)
		case phQuery:
			if q := v.r.URL.RawQuery; q != "" {
				buf = append(buf, '?')
				buf = append(buf, q...)
			}
		case phRawQuery:
			buf = append(buf, v.r.URL.RawQuery...)
		case phUser:
			buf = append(buf, v.user...)
		}
	}
	return buf
}

// value returns t's value for v as a one-element header value slice. A
// static value is shared: header maps get it with cap == len, so an Add
// copies instead of writing into it.
func (t *template) value(v *vars) []string {
	if t.static != nil {
		return t.static
	}
	var buf [128]byte
	return []string{string(t.render(buf[:0], v))}
}

// headerOps is a compiled set/add/remove block, applied in that order:
// remove, then set, then add.
type headerOps struct {
	remove []string // canonical names
	set    []headerOp
	add    []headerOp
	// host is request_headers.set.Host, which goes to the request's Host
	// rather than its header map.
	host *template
	// defaults are set only when the header is absent (the
	// security_headers preset), before everything else.
	defaults []headerOp
}

type headerOp struct {
	name string // canonical
	tmpl template
}

// compileHeaders compiles a config.Headers block with the placeholders
// known; nil gives nil.
func compileHeaders(h *config.Headers, known []string) (*headerOps, error) {
	if h == nil {
		return nil, nil
	}
	ops := &headerOps{}
	for _, name := range h.Remove {
		ops.remove = append(ops.remove, http.CanonicalHeaderKey(name))
	}
	compile := func(m map[string]string, dst *[]headerOp) error {
		names := make([]string, 0, len(m))
		for name := range m {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			t, err := parseTemplate(m[name], known)
			if err != nil {
				return fmt.Errorf("parsing %s: %w", name, err)
			}
			if t.static != nil {
				t.static = slices.Clip(t.static)
			}
			cname := http.CanonicalHeaderKey(name)
			if cname == "Host" && dst == &ops.set {
				ops.host = &t
				continue
			}
			*dst = append(*dst, headerOp{name: cname, tmpl: t})
		}
		return nil
	}
	if err := compile(h.Set, &ops.set); err != nil {
		return nil, fmt.Errorf("compiling set: %w", err)
	}
	if err := compile(h.Add, &ops.add); err != nil {
		return nil, fmt.Errorf("compiling add: %w", err)
	}
	return ops, nil
}

// apply changes h as the block says.
func (o *headerOps) apply(h http.Header, v *vars) {
	for _, d := range o.defaults {
		if _, ok := h[d.name]; !ok {
			h[d.name] = d.tmpl.static
		}
	}
	for _, name := range o.remove {
		delete(h, name)
	}
	for _, op := range o.set {
		h[op.name] = op.tmpl.value(v)
	}
	for _, op := range o.add {
		val := op.tmpl.value(v)
		h[op.name] = append(h[op.name], val[0])
	}
}

// applyUpgrade applies o to a 101 Switching Protocols. ReverseProxy sends
// a 101 as sent, the ResponseWriter's header (X-Request-ID, HSTS), with
// res, the Upstream's, added to it value by value; applyUpgrade changes
// both so that the result is what apply makes of a header holding both.
//
// The Sec-WebSocket-* headers are left alone: they are the handshake
// itself. Sec-WebSocket-Accept proves the Upstream read the client's key,
// and Sec-WebSocket-Protocol and -Extensions settle the subprotocol and
// the frame format (permessage-deflate), so changing one fails the
// handshake or has client and Upstream read each other's frames wrongly.
// Connection and Upgrade are never in o (config refuses framing headers).
func (o *headerOps) applyUpgrade(sent, res http.Header, v *vars) {
	for _, d := range o.defaults {
		_, inSent := sent[d.name]
		if _, inRes := res[d.name]; !inSent && !inRes {
			res[d.name] = d.tmpl.static
		}
	}
	for _, name := range o.remove {
		if !isHandshakeHeader(name) {
			delete(sent, name)
			delete(res, name)
		}
	}
	for _, op := range o.set {
		if !isHandshakeHeader(op.name) {
			delete(sent, op.name)
			res[op.name] = op.tmpl.value(v)
		}
	}
	for _, op := range o.add {
		if !isHandshakeHeader(op.name) {
			res[op.name] = append(res[op.name], op.tmpl.value(v)[0])
		}
	}
}

// isHandshakeHeader reports whether the canonical header name is one of
// the WebSocket handshake's Sec-WebSocket-* headers.
func isHandshakeHeader(name string) bool {
	return strings.HasPrefix(name, "Sec-Websocket-")
}

// securityDefaults are the security_headers preset besides HSTS, which the
// Site sends as its own hsts (see Compile).
var securityDefaults = [][2]string{
	{"X-Content-Type-Options", "nosniff"},
	{"X-Frame-Options", "DENY"},
	{"Referrer-Policy", "strict-origin-when-cross-origin"},
}

// withSecurityDefaults returns ops (maybe nil) with the security_headers
// preset in front.
func withSecurityDefaults(ops *headerOps) *headerOps {
	out := &headerOps{}
	if ops != nil {
		*out = *ops
	}
	out.defaults = nil
	for _, d := range securityDefaults {
		out.defaults = append(out.defaults, headerOp{name: d[0], tmpl: template{static: []string{d[1]}}})
	}
	return out
}
