package proxy

import (
	"cmp"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// Defaults applied when a Config reaches Compile without them, so a Table
// built in code (tests, examples) behaves like one built from a file.
const (
	defaultDialTimeout           = 5 * time.Second
	defaultResponseHeaderTimeout = 60 * time.Second
	defaultHSTSMaxAge            = 8760 * time.Hour
)

// Options are the process-level settings a Table needs beyond the Config.
type Options struct {
	// Logger receives Upstream and handler errors (not access lines; those go
	// to the Handler's logger). Nil means discard.
	Logger *slog.Logger
	// Transports is the pool of Upstream connections. Pass the same pool to
	// every Compile so a reload keeps connections warm. Nil means a pool
	// private to this Table, whose idle connections are only dropped by
	// their idle timeout.
	Transports *Transports
	// HTTPSPort is the port of the HTTPS Listener that redirects point to.
	// "" or "443" leave the port out of the Location.
	HTTPSPort string
	// Observe, when set, is called once per finished request on either
	// Listener with the Site's name (its first host, "" when no Site
	// matched), the status sent and the time taken, whether or not the
	// access log is on. It feeds metrics, so it must be cheap, safe for
	// concurrent use and must not allocate.
	Observe func(site string, status int, d time.Duration)
	// Reuse is a Table compiled before, usually the one served: each of its
	// Sites whose config is unchanged ([config.Site.Equal]) and names no
	// file is taken over as compiled, Upstreams, balancer positions and
	// shaping state included, instead of being compiled again, so a reload
	// costs what changed rather than what is configured. It applies only
	// when Reuse was compiled with the same Logger, Transports, Upstream
	// timeouts and trusted_proxies; nil compiles everything.
	Reuse *Table

	// clock is the clock for Upstream cooldowns, ejections and health
	// check times; nil means the system's. Tests set it.
	clock clock
}

// clock tells the time. Tables share compiled Sites only when they run
// on the same clock, which an interface value (a pointer to a test's
// clock) identifies where a func value would not.
type clock interface{ now() time.Time }

// systemClock is time.Now.
type systemClock struct{}

func (systemClock) now() time.Time { return time.Now() }

// Table is a compiled configuration: every host pattern, path prefix,
// Upstream URL, CIDR and CA pool parsed once, so serving a request only does
// map lookups and prefix compares. Its routing is immutable and it is safe
// for concurrent use; a reload compiles a new one and swaps it in whole.
// The only state that changes is each Route's round-robin position and the
// cooldowns of unreachable Upstreams, which a new Table starts afresh for
// the Sites it compiles (not for those it takes over, see Options.Reuse).
type Table struct {
	exact    map[string]*site // normalized host → Site
	wildcard map[string]*site // "example.net" for "*.example.net"
	catchAll *site            // the "*" Site, or nil
	sites    []*site          // config order, for Describe

	// trust is trusted_proxies, shared with the Route handlers: a Table
	// compiled from the same trusted_proxies shares it, so Sites it reuses
	// from an earlier Table (Options.Reuse) need nothing of that Table.
	*trust
	accessLog bool
	limits    requestLimits
	// writeTimeout is timeouts.write, each response's allowed stall.
	writeTimeout time.Duration
	// dialTimeout and responseHeaderTimeout are the Upstream timeouts the
	// Table's transports were chosen with, for Describe.
	dialTimeout           time.Duration
	responseHeaderTimeout time.Duration
	// redirectPort is ":8443", or "" when redirects carry no port.
	redirectPort string
	logger       *slog.Logger
	buffers      *bufferPool // shared by the Table's ReverseProxies
	// ups holds every Upstream with its health, and the health checks
	// the Table runs while it is served.
	ups upstreamSet
	// observe is Options.Observe, or nil.
	observe func(site string, status int, d time.Duration)
	// clock is Options.clock: the clock of cooldowns, ejections and
	// health check times.
	clock clock
	// transports is Options.Transports, which a Table reusing this one's
	// Sites must share.
	transports *Transports
}

// trust is the part of a Table its Route handlers read while serving:
// which peers are trusted proxies, to find the client's address.
type trust struct {
	trusted []netip.Prefix
}

// site is a compiled config.Site.
type site struct {
	name   string   // first host, for logs
	hosts  []string // normalized, config order
	hsts   []string // Strict-Transport-Security value, nil when off
	routes []*route // longest prefix first
	// headers is the security_headers preset, nil when off. Every
	// Route's response headers start from it, and the answers the Site
	// gives without a Route (a 404 for a path none matches, a 400)
	// carry it alone.
	headers *headerOps
	// cfg is the config the Site was compiled from, and ups its Upstreams,
	// for a later Compile to take it over (Options.Reuse).
	cfg config.Site
	ups []*upstream
}

// route is a compiled config.Route.
type route struct {
	path string // as configured, for logs
	// prefix is path without its trailing slash ("" for "/"), so that "/api"
	// and "/api/" both match "/api" and "/api/x" but not "/apix".
	prefix      string
	stripPrefix bool
	maxBody     int64
	handler     http.Handler
	// desc is the route's line in Describe.
	desc string
	// shape is the Route's request and response shaping and access
	// control (middleware.go), nil when it has none.
	shape *shaping
}

// Compile parses and checks everything in cfg that serving needs, so that
// no request ever parses a string, and returns the resulting Table. cfg must
// be validated and defaulted (config.Load does both); Compile still reports
// what it cannot build, such as an unreadable CA file or a missing root.
func Compile(cfg *config.Config, opts Options) (*Table, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Transports == nil {
		opts.Transports = NewTransports()
	}
	if opts.clock == nil {
		opts.clock = systemClock{}
	}
	t := &Table{
		exact:                 make(map[string]*site, len(cfg.Sites)),
		wildcard:              make(map[string]*site),
		accessLog:             cfg.Log.Access == nil || *cfg.Log.Access,
		limits:                newRequestLimits(cfg.Limits),
		writeTimeout:          cmp.Or(cfg.Timeouts.Write, config.DefaultWrite),
		dialTimeout:           cmp.Or(cfg.Timeouts.Dial, defaultDialTimeout),
		responseHeaderTimeout: cmp.Or(cfg.Timeouts.ResponseHeader, defaultResponseHeaderTimeout),
		logger:                opts.Logger,
		buffers:               newBufferPool(),
		observe:               opts.Observe,
		clock:                 opts.clock,
		transports:            opts.Transports,
		trust:                 &trust{},
	}
	if p := opts.HTTPSPort; p != "" && p != "443" {
		t.redirectPort = ":" + p
	}
	var errs []error
	for i, s := range cfg.TrustedProxies {
		p, err := parsePrefix(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("parsing trusted_proxies[%d]: %w", i, err))
			continue
		}
		t.trusted = append(t.trusted, p)
	}
	c := compiler{
		table:    t,
		opts:     opts,
		errorLog: slog.NewLogLogger(opts.Logger.Handler(), slog.LevelWarn),
		seenHost: make(map[string]int, len(cfg.Sites)),
	}
	if old := opts.Reuse; old != nil && old.sameSetting(t) {
		c.reuse = old
		t.ups.states = make(map[upstreamKey]*upstreamState, len(old.ups.states))
		// The reused Sites' handlers read these.
		t.trust, t.buffers = old.trust, old.buffers
	}
	for i := range cfg.Sites {
		if c.adopt(i, &cfg.Sites[i]) {
			continue
		}
		if err := c.site(i, &cfg.Sites[i]); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return t, nil
}

// compiler carries what compiling one Config needs.
type compiler struct {
	table    *Table
	opts     Options
	errorLog *log.Logger
	seenHost map[string]int // normalized host → index of the Site declaring it
	// reuse is Options.Reuse when its Sites may be taken over, else nil.
	reuse *Table
}

// sameSetting reports whether Sites compiled for old work unchanged in t:
// same logger, Upstream transports and timeouts, clock and trusted
// proxies.
func (old *Table) sameSetting(t *Table) bool {
	return old.logger == t.logger && old.transports == t.transports &&
		old.dialTimeout == t.dialTimeout && old.responseHeaderTimeout == t.responseHeaderTimeout &&
		old.clock == t.clock &&
		slices.Equal(old.trusted, t.trusted)
}

// adopt takes over the compiled Site of c.reuse that cs is unchanged from,
// with its Upstreams' health, and reports whether it did. A Site whose
// hosts clash with an earlier one is compiled, for its errors.
func (c *compiler) adopt(i int, cs *config.Site) bool {
	if c.reuse == nil || len(cs.Hosts) == 0 {
		return false
	}
	old := c.reuse.configured(normalizeConfigHost(cs.Hosts[0]))
	if old == nil || !old.cfg.Equal(cs) || cs.NamesFiles() {
		return false
	}
	for _, h := range old.hosts {
		if _, dup := c.seenHost[h]; dup {
			return false
		}
	}
	for _, h := range old.hosts {
		c.seenHost[h] = i
		c.table.register(h, old)
	}
	for _, u := range old.ups {
		c.table.ups.adopt(u)
	}
	c.table.sites = append(c.table.sites, old)
	return true
}

// configured returns the Site t compiled for the normalized config host
// h, or nil.
func (t *Table) configured(h string) *site {
	switch {
	case h == "*":
		return t.catchAll
	case strings.HasPrefix(h, "*."):
		return t.wildcard[h[2:]]
	}
	return t.exact[h]
}

// register makes s serve the normalized config host h.
func (t *Table) register(h string, s *site) {
	switch {
	case h == "*":
		t.catchAll = s
	case strings.HasPrefix(h, "*."):
		t.wildcard[h[2:]] = s
	default:
		t.exact[h] = s
	}
}

func (c *compiler) site(i int, cs *config.Site) error {
	s := &site{}
	var errs []error
	for j, h := range cs.Hosts {
		h = normalizeConfigHost(h)
		if prev, dup := c.seenHost[h]; dup {
			errs = append(errs, fmt.Errorf("compiling sites[%d].hosts[%d]: host %q already served by sites[%d]", i, j, h, prev))
			continue
		}
		c.seenHost[h] = i
		s.hosts = append(s.hosts, h)
		c.table.register(h, s)
	}
	if len(s.hosts) > 0 {
		s.name = s.hosts[0]
	}
	if cs.HSTS != nil {
		s.hsts = []string{hstsValue(cs.HSTS)}
	} else if cs.SecurityHeaders {
		s.hsts = []string{hstsValue(&config.HSTS{})}
	}
	if cs.SecurityHeaders {
		s.headers = withSecurityDefaults(nil)
	}
	s.cfg = *cs
	firstUp := len(c.table.ups.all)
	seenPrefix := make(map[string]int)
	for j := range cs.Routes {
		r, err := c.route(s, &cs.Routes[j])
		if err != nil {
			errs = append(errs, fmt.Errorf("compiling sites[%d].routes[%d]: %w", i, j, err))
			continue
		}
		if prev, dup := seenPrefix[r.prefix]; dup {
			errs = append(errs, fmt.Errorf("compiling sites[%d].routes[%d]: path %q matches the same requests as routes[%d]", i, j, r.path, prev))
			continue
		}
		seenPrefix[r.prefix] = j
		s.routes = append(s.routes, r)
	}
	// Longest prefix first, so the first match is the most specific one.
	slices.SortStableFunc(s.routes, func(a, b *route) int { return cmp.Compare(len(b.prefix), len(a.prefix)) })
	s.ups = slices.Clone(c.table.ups.all[firstUp:])
	c.table.sites = append(c.table.sites, s)
	return errors.Join(errs...)
}

func (c *compiler) route(s *site, cr *config.Route) (*route, error) {
	p := cr.Path
	if p == "" {
		p = "/"
	}
	if !strings.HasPrefix(p, "/") {
		return nil, fmt.Errorf("checking path %q: must start with /", p)
	}
	r := &route{
		path:        p,
		prefix:      strings.TrimSuffix(cleanPath(p), "/"),
		stripPrefix: cr.StripPrefix,
		maxBody:     int64(cr.MaxBody),
	}
	var err error
	switch {
	case len(cr.Upstreams) > 0:
		r.handler, err = c.proxyRoute(s, r, cr)
	case cr.Respond != nil:
		r.handler = newRespondRoute(cr.Respond)
	case cr.Root != "":
		r.handler, err = newStaticRoute(r, cr.Root)
	case cr.Redirect != nil:
		r.handler, err = newRedirectRoute(r, cr.Redirect)
	default:
		err = errors.New("checking route: needs upstreams, respond, root or redirect")
	}
	if err != nil {
		return nil, err
	}
	r.desc = describeRoute(r, cr)
	if r.handler, err = c.shape(s, r, cr, r.handler); err != nil {
		return nil, err
	}
	return r, nil
}

func (c *compiler) proxyRoute(s *site, r *route, cr *config.Route) (http.Handler, error) {
	b, err := c.balancer(s, r, cr)
	if err != nil {
		return nil, err
	}
	return newProxyRoute(c.table, s, r, b, c.errorLog), nil
}

// parsePrefix parses a CIDR or a single address (as a one-address prefix).
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// normalizeConfigHost brings a configured host to the form request hosts are
// looked up in: lowercase, no trailing dot, IPv6 without brackets.
func normalizeConfigHost(h string) string {
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		h = h[1 : len(h)-1]
	}
	return h
}

// hstsValue renders a Strict-Transport-Security header value.
func hstsValue(h *config.HSTS) string {
	age := cmp.Or(h.MaxAge, defaultHSTSMaxAge)
	v := "max-age=" + strconv.FormatInt(int64(age/time.Second), 10)
	if h.IncludeSubdomains {
		v += "; includeSubDomains"
	}
	if h.Preload {
		v += "; preload"
	}
	return v
}

// lookup finds the Site serving host and its Route for the cleaned path. It
// does not allocate: it is on every request's path.
func (t *Table) lookup(host, path string) (*site, *route) {
	s := t.site(host)
	if s == nil {
		return nil, nil
	}
	return s, s.route(path)
}

// site finds the Site serving host, a Host header or SNI value: exact name
// first, then a one-label wildcard, then the catch-all.
func (t *Table) site(host string) *site {
	var buf [maxHostLen]byte
	h := normalizeHost(buf[:0], host)
	if h == nil {
		return t.catchAll
	}
	if s, ok := t.exact[string(h)]; ok {
		return s
	}
	if i := indexByte(h, '.'); i > 0 {
		if s, ok := t.wildcard[string(h[i+1:])]; ok {
			return s
		}
	}
	return t.catchAll
}

// route finds the Route with the longest prefix matching path at a segment
// boundary.
func (s *site) route(path string) *route {
	for _, r := range s.routes {
		if r.matches(path) {
			return r
		}
	}
	return nil
}

// matches reports whether path is r's prefix or lies below it.
func (r *route) matches(path string) bool {
	p := r.prefix
	return len(path) >= len(p) && path[:len(p)] == p && (len(path) == len(p) || path[len(p)] == '/')
}

// strip removes the route's prefix from a cleaned path, keeping it rooted.
func (r *route) strip(path string) string {
	rest := path[len(r.prefix):]
	if rest == "" {
		return "/"
	}
	return rest
}

// maxHostLen bounds a DNS name (253) plus room for a trailing dot and
// brackets; longer hosts match only the catch-all.
const maxHostLen = 256

// normalizeHost appends host to buf lowercased, without port, trailing dot
// or IPv6 brackets. It returns nil when host is empty, too long or has an
// empty label ("a..b", ".a", "a..").
func normalizeHost(buf []byte, host string) []byte {
	if strings.HasPrefix(host, "[") {
		if end := strings.IndexByte(host, ']'); end > 0 {
			host = host[1:end]
			// Every IPv6 literal has two colons; "[a:b]" is none, and
			// normalising its "a:b" again would drop ":b".
			if strings.Count(host, ":") < 2 {
				return nil
			}
		}
	} else if i := strings.IndexByte(host, ':'); i >= 0 && strings.IndexByte(host[i+1:], ':') < 0 {
		host = host[:i]
	}
	host = strings.TrimSuffix(host, ".")
	if host == "" || len(host) > cap(buf) || host[len(host)-1] == '.' {
		return nil
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		} else if c == '.' && (i == 0 || host[i-1] == '.') {
			// An empty label: no host name. Normalising "a.." to "a."
			// would make a second normalisation give another name.
			return nil
		}
		buf = append(buf, c)
	}
	return buf
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// hostPort joins host and port for a URL, bracketing IPv6 literals.
func hostPort(host, port string) string {
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return host + port
}
