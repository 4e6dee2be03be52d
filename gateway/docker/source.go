// Package docker is a gateway Source of Routes from the labels of the
// containers a Docker Engine API runs (Docker, or podman's compatible
// service). It only ever sends GET requests to the engine.
//
// A container's labels (gatehouse.host, gatehouse.port, ...) become Sites
// and Routes; every value is checked by the same code as the config file
// ([config.Config.CheckSites]), and a bad one refuses that Route alone,
// logged once with the container and the label. Containers routing the
// same host and path form one Upstream pool. Hosts outside
// docker.allowed_hosts are refused, so no certificate is ever ordered for
// them.
package docker

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// Source is the Routes of labelled containers, as a gateway.Source. Make
// one with [New].
type Source struct {
	cfg    *config.Config // top-level settings the labels' Sites are checked with
	d      *config.Docker
	client *client

	// Refused, when set, is called once for each label host a container
	// names that docker.allowed_hosts does not allow (a metric counts them).
	Refused func(host string)
	// Linger is how long a host keeps answering 503 with Retry-After after
	// its last container stopped, so a restart does not show 404s.
	// Default 10s.
	Linger time.Duration

	mu         sync.Mutex // guards everything below
	log        *slog.Logger
	changed    func(string)
	containers map[string]*container // by ID, as last inspected
	// draining holds the IDs seen being stopped or killed, until they
	// start again: the zero time for as long as that lasts, else the end
	// of a drain on a kill event that names no signal (see handle).
	draining  map[string]time.Time
	reported  map[string]bool // problems logged already, so each is logged once while it lasts
	refused   map[string]bool // container ID + host refused already, so each is counted once while it lasts
	expiry    *time.Timer     // fires when a stopped container's Linger ends
	lastEvent int64           // Unix nanoseconds of the last event, where a new stream starts
	// built holds what the last Load made of each container, by ID (see
	// tape); users indexes it by host: the IDs of the containers whose
	// tapes route each host. hosts and sites are the Sites of the last
	// Load, one per host, sorted by host. A Load builds again only the
	// Sites of hosts whose containers changed, and gives the others as
	// the same values, which the gateway sees unchanged at the cost of a
	// pointer compare (config.Site.Equal).
	built map[string]*tape
	users map[string]map[string]bool
	hosts []string
	sites []config.Site
}

// tape records what the builder did for one container: the pools it
// joined and the problems and refused hosts it reported. Replaying it
// does the same without parsing labels or checking Sites again. It is
// kept only while the container's record and draining state are those it
// was made from and its state does not depend on the time (a stopped
// container's Linger).
type tape struct {
	c        *container
	draining bool
	// timed says the container's state depended on the time: it is
	// built again at every Load.
	timed bool
	// notes says some op is a problem or a refused host, which every
	// Load reports again (they are logged once while they last).
	notes bool
	ops   []op
}

// hostsOf returns the hosts t's Sites route.
func (t *tape) hostsOf(yield func(string) bool) {
	for i := range t.ops {
		for j := range t.ops[i].sites {
			if !yield(t.ops[i].sites[j].Hosts[0]) {
				return
			}
		}
	}
}

// op is one recorded step: a problem (key, label, msg), a refused host
// (key, host), or pool Sites joined (sites, active, member).
type op struct {
	key, label, msg, host string
	sites                 []config.Site
	active                bool
	member                string
}

// New makes the Source for cfg.Docker, whose Sites are checked with cfg's
// top-level settings (acme, on_demand).
func New(cfg *config.Config) (*Source, error) {
	if cfg.Docker == nil {
		return nil, fmt.Errorf("docker: the config has no docker block")
	}
	c, err := newClient(cfg.Docker)
	if err != nil {
		return nil, err
	}
	return &Source{
		cfg: cfg, d: cfg.Docker, client: c,
		log:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		containers: map[string]*container{}, draining: map[string]time.Time{},
		reported: map[string]bool{}, refused: map[string]bool{},
	}, nil
}

// Name implements gateway.Source.
func (s *Source) Name() string { return "docker" }

// Label names. A container's extra Routes are gatehouse.routes.NAME.KEY
// with the same KEYs (host, path, port, ...).
const (
	labelPrefix = "gatehouse."
	labelEnable = "gatehouse.enable"
	routesKey   = "routes."
)

// routeKeys are the KEYs of a Route's labels.
var routeKeys = []string{"host", "port", "path", "strip_prefix", "scheme", "tls.issuer", "health.path"}

// labelRoute is one Route a container's labels ask for, with the label
// each value came from.
type labelRoute struct {
	name   string            // "" for the gatehouse.KEY Route, NAME for gatehouse.routes.NAME.KEY
	values map[string]string // by KEY
	labels map[string]string // KEY → the label it came from
}

// Load implements gateway.Source: the Sites of every labelled container
// as last seen. Until the engine answered once it has no Sites; while the
// engine is away it keeps the last known ones. It never fails: a
// container's problems refuse that container's Routes alone.
func (s *Source) Load(context.Context) (*config.Config, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	b := builder{s: s, now: now, problems: map[string]bool{}, refused: map[string]bool{}}
	if s.built == nil {
		s.built, s.users = map[string]*tape{}, map[string]map[string]bool{}
	}
	dirty := map[string]bool{} // hosts whose Site is built again
	for id, c := range s.containers {
		drain := s.drainingAt(id, now, &b)
		t := s.built[id]
		if t != nil && t.c == c && t.draining == drain && !t.timed {
			if t.notes {
				b.replay(c, t)
			}
			continue
		}
		b.tape = &tape{c: c, draining: drain}
		b.draining = drain
		b.container(c)
		b.tape.timed = b.timed
		s.setTape(id, t, b.tape, dirty)
		b.tape, b.timed, b.draining = nil, false, false
	}
	if len(s.built) > len(s.containers) {
		for id, t := range s.built {
			if _, ok := s.containers[id]; !ok {
				s.setTape(id, t, nil, dirty)
			}
		}
	}
	for h := range dirty {
		s.rebuild(h)
	}
	// Problems are logged once while they last.
	s.reported, s.refused = b.problems, b.refused
	s.scheduleExpiry(b.nextExpiry)
	return &config.Config{Sites: slices.Clone(s.sites)}, nil
}

// drainingAt reports whether container id is being drained at now. A
// drain with an end makes b's result timed: it schedules a Load for its
// end, and once it has ended it is forgotten.
func (s *Source) drainingAt(id string, now time.Time, b *builder) bool {
	until, ok := s.draining[id]
	switch {
	case !ok:
		return false
	case until.IsZero():
		return true
	case now.Before(until):
		if b.nextExpiry.IsZero() || until.Before(b.nextExpiry) {
			b.nextExpiry = until
		}
		return true
	}
	delete(s.draining, id)
	return false
}

// setTape makes t the tape of container id (nil: the container is gone)
// in place of old, marking the hosts either routes dirty.
func (s *Source) setTape(id string, old, t *tape, dirty map[string]bool) {
	if old != nil {
		for h := range old.hostsOf {
			dirty[h] = true
			if u := s.users[h]; u != nil {
				delete(u, id)
				if len(u) == 0 {
					delete(s.users, h)
				}
			}
		}
	}
	if t == nil {
		delete(s.built, id)
		return
	}
	s.built[id] = t
	for h := range t.hostsOf {
		dirty[h] = true
		u := s.users[h]
		if u == nil {
			u = map[string]bool{}
			s.users[h] = u
		}
		u[id] = true
	}
}

// rebuild builds the Site of host h again from the tapes of the
// containers routing it, in the order of a Load from scratch (containers
// by name, then ID), and puts it in place in s.hosts and s.sites, or
// takes it out when no container routes h any more.
func (s *Source) rebuild(h string) {
	i, found := slices.BinarySearch(s.hosts, h)
	var tapes []*tape
	for id := range s.users[h] {
		tapes = append(tapes, s.built[id])
	}
	if len(tapes) == 0 {
		if found {
			s.hosts = slices.Delete(s.hosts, i, i+1)
			s.sites = slices.Delete(s.sites, i, i+1)
		}
		return
	}
	slices.SortFunc(tapes, func(x, y *tape) int {
		return cmp.Or(cmp.Compare(x.c.Name, y.c.Name), cmp.Compare(x.c.ID, y.c.ID))
	})
	b := builder{s: s, pools: map[poolKey]*pool{}}
	for _, t := range tapes {
		for j := range t.ops {
			if o := &t.ops[j]; o.sites != nil {
				b.join(h, o.sites, o.active, o.member)
			}
		}
	}
	site := b.site(h)
	if ps := s.cfg.CheckSites([]config.Site{site}); len(ps) > 0 {
		// Each Route passed alone; together they should too. Say so
		// rather than hide it, and let the gateway refuse the whole.
		s.log.Error("docker: the container routes do not fit together", "host", h, "problems", ps.Error())
	}
	if found {
		s.sites[i] = site
		return
	}
	s.hosts = slices.Insert(s.hosts, i, h)
	s.sites = slices.Insert(s.sites, i, site)
}

// builder turns a container into its tape (Load), or the tapes of a
// host's containers into pools and the host's Site (rebuild).
type builder struct {
	s          *Source
	now        time.Time
	pools      map[poolKey]*pool
	order      []poolKey
	problems   map[string]bool
	refused    map[string]bool
	nextExpiry time.Time
	// tape records the container being built; timed says its state
	// depended on the time; draining says it is being drained.
	tape     *tape
	timed    bool
	draining bool
}

// replay reports again the problems and refused hosts t recorded for c.
func (b *builder) replay(c *container, t *tape) {
	for i := range t.ops {
		switch o := &t.ops[i]; {
		case o.sites != nil:
		case o.host != "":
			b.refuse(o.key, o.host)
		default:
			b.report(c, o.key, o.label, o.msg)
		}
	}
}

type poolKey struct{ host, path string }

// pool is the Route of one host and path, and the containers serving it.
type pool struct {
	site      config.Site // the first container's: its TLS
	route     config.Route
	upstreams []string
	members   []string // "name (id)", for the Route's Source
}

// problem logs a container's problem with a label once while it lasts.
func (b *builder) problem(c *container, label, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	key := c.ID + "\x00" + label + "\x00" + msg
	b.tape.ops = append(b.tape.ops, op{key: key, label: label, msg: msg})
	b.tape.notes = true
	b.report(c, key, label, msg)
}

func (b *builder) report(c *container, key, label, msg string) {
	b.problems[key] = true
	if !b.s.reported[key] {
		b.s.log.Error("docker: refusing a container's route", "container", c.Name, "id", shortID(c.ID), "label", label, "problem", msg)
	}
}

// refuse counts host, which a container names and docker.allowed_hosts
// does not allow, once while it lasts (key: container ID and host).
func (b *builder) refuse(key, host string) {
	if !b.s.refused[key] && !b.refused[key] && b.s.Refused != nil {
		b.s.Refused(host)
	}
	b.refused[key] = true
}

func shortID(id string) string { return id[:min(12, len(id))] }

// state says whether c serves now (active), holds its Routes answering 503
// while it is away for a while (waiting), or has no Routes.
func (b *builder) state(c *container) (active, waiting bool) {
	st := c.State
	switch {
	case st.Running && !st.Paused && !st.Restarting && !b.draining:
		if h := st.Health; h != nil && h.Status != "" && h.Status != "healthy" {
			return false, true
		}
		return true, false
	// podman reports a container it is stopping as "stopping", no
	// longer running: its routes wait (503) as for a stop's kill event.
	case st.Running || st.Paused || st.Restarting || st.Status == "removing" || st.Status == "stopping":
		return false, true
	case st.Status == "exited" || st.Status == "dead":
		b.timed = true
		end := st.FinishedAt.Add(b.s.linger())
		if st.FinishedAt.IsZero() || !b.now.Before(end) {
			return false, false
		}
		if b.nextExpiry.IsZero() || end.Before(b.nextExpiry) {
			b.nextExpiry = end
		}
		return false, true
	}
	return false, false // created, never started
}

func (s *Source) linger() time.Duration { return cmp.Or(s.Linger, 10*time.Second) }

// container adds c's Routes to the pools.
func (b *builder) container(c *container) {
	labels := c.Config.Labels
	enabled := b.s.d.ExposedByDefault
	if v, ok := labels[labelEnable]; ok {
		on, err := strconv.ParseBool(v)
		if err != nil {
			b.problem(c, labelEnable, "%q is not true or false", v)
			return
		}
		enabled = on
	}
	if !enabled {
		return
	}
	routes := b.parse(c)
	if len(routes) == 0 {
		return
	}
	active, waiting := b.state(c)
	if !active && !waiting {
		return
	}
	for _, r := range routes {
		b.route(c, r, active)
	}
}

// parse groups c's gatehouse.* labels into Routes; unknown keys are
// problems.
func (b *builder) parse(c *container) []*labelRoute {
	byName := map[string]*labelRoute{}
	for label, v := range c.Config.Labels {
		rest, ok := strings.CutPrefix(label, labelPrefix)
		if !ok || label == labelEnable {
			continue
		}
		name := ""
		if r, ok := strings.CutPrefix(rest, routesKey); ok {
			n, key, ok := strings.Cut(r, ".")
			if !ok || n == "" {
				b.problem(c, label, "a route label is gatehouse.routes.NAME.KEY, KEY one of %s", strings.Join(routeKeys, ", "))
				continue
			}
			name, rest = n, key
		}
		if !slices.Contains(routeKeys, rest) {
			b.problem(c, label, "unknown label; the keys are %s", strings.Join(routeKeys, ", "))
			continue
		}
		r := byName[name]
		if r == nil {
			r = &labelRoute{name: name, values: map[string]string{}, labels: map[string]string{}}
			byName[name] = r
		}
		r.values[rest] = strings.TrimSpace(v)
		r.labels[rest] = label
	}
	// A named Route takes the gatehouse.KEY values it does not set, so
	// gatehouse.routes.api.path=/api needs no host of its own.
	base := byName[""]
	var out []*labelRoute
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		r := byName[name]
		if name != "" && base != nil {
			for k, v := range base.values {
				if _, ok := r.values[k]; !ok {
					r.values[k], r.labels[k] = v, base.labels[k]
				}
			}
		}
		if _, ok := r.values["host"]; !ok {
			if name != "" || len(r.values) > 0 && len(byName) == 1 {
				b.problem(c, r.label("host"), "is required: name the host(s) to route, comma-separated")
			}
			continue
		}
		out = append(out, r)
	}
	return out
}

// label names the label KEY of r comes from, or would.
func (r *labelRoute) label(key string) string {
	if l, ok := r.labels[key]; ok {
		return l
	}
	if r.name == "" {
		return labelPrefix + key
	}
	return labelPrefix + routesKey + r.name + "." + key
}

// route checks one Route of c and adds it to the pools, for each of its
// hosts docker.allowed_hosts allows.
func (b *builder) route(c *container, r *labelRoute, active bool) {
	fail := func(key, format string, args ...any) { b.problem(c, r.label(key), format, args...) }
	scheme := cmp.Or(r.values["scheme"], "http")
	switch scheme {
	case "http", "https", "h2c":
	default:
		fail("scheme", "must be http, https or h2c, not %q", scheme)
		return
	}
	strip := false
	if v, ok := r.values["strip_prefix"]; ok {
		var err error
		if strip, err = strconv.ParseBool(v); err != nil {
			fail("strip_prefix", "%q is not true or false", v)
			return
		}
	}
	port, ok := b.port(c, r)
	if !ok {
		return
	}
	var hosts []string
	for _, h := range strings.Split(r.values["host"], ",") {
		h = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(h)), ".")
		if h == "" {
			continue
		}
		if !allowed(b.s.d.AllowedHosts, h) {
			fail("host", "host %q is not in docker.allowed_hosts; it is not routed and no certificate is ordered for it", h)
			key := c.ID + "\x00" + h
			b.tape.ops = append(b.tape.ops, op{key: key, host: h})
			b.tape.notes = true
			b.refuse(key, h)
			continue
		}
		hosts = append(hosts, h)
	}
	if len(hosts) == 0 {
		return
	}
	// The upstream address is checked with a placeholder while the
	// container is away: its address is unknown then.
	addr := "192.0.2.1"
	if active {
		if addr, ok = b.address(c); !ok {
			return
		}
	}
	route := config.Route{
		Path:        r.values["path"],
		Upstreams:   []string{scheme + "://" + net.JoinHostPort(addr, strconv.Itoa(port))},
		StripPrefix: strip,
	}
	if p, ok := r.values["health.path"]; ok {
		route.Health = &config.HealthCheck{Path: p}
	}
	// A container serving HTTPS is verified as docker.upstream_tls says:
	// its certificate is rarely for the address dialled.
	if u := b.s.d.UpstreamTLS; u != nil && scheme == "https" {
		route.CA = u.CA
		if u.ServerName != "" || u.InsecureSkipVerify {
			route.UpstreamTLS = &config.UpstreamTLS{ServerName: u.ServerName, InsecureSkipVerify: u.InsecureSkipVerify}
		}
	}
	sites := make([]config.Site, len(hosts))
	for i, h := range hosts {
		sites[i] = config.Site{Hosts: []string{h}, TLS: config.SiteTLS{Issuer: r.values["tls.issuer"]}, Routes: []config.Route{route}}
		sites[i].Routes[0].Health = cloneHealth(route.Health)
		if route.UpstreamTLS != nil {
			ut := *route.UpstreamTLS
			sites[i].Routes[0].UpstreamTLS = &ut
		}
	}
	// The same checks as the file's; a problem refuses this Route alone.
	if ps := b.s.cfg.CheckSites(sites); len(ps) > 0 {
		for _, p := range ps {
			fail(keyOf(p.Path), "%s", p.Message)
		}
		return
	}
	member := c.Name + " (" + shortID(c.ID) + ")"
	b.tape.ops = append(b.tape.ops, op{sites: sites, active: active, member: member})
}

// join adds those of a container's checked Sites (one host and Route
// each) that route host to the pools of their path.
func (b *builder) join(host string, sites []config.Site, active bool, member string) {
	for _, site := range sites {
		if site.Hosts[0] != host {
			continue
		}
		k := poolKey{site.Hosts[0], site.Routes[0].Path}
		p := b.pools[k]
		if p == nil {
			p = &pool{site: site, route: site.Routes[0]}
			p.route.Upstreams = nil
			b.pools[k] = p
			b.order = append(b.order, k)
		}
		if active {
			p.upstreams = append(p.upstreams, site.Routes[0].Upstreams...)
		}
		if !slices.Contains(p.members, member) {
			p.members = append(p.members, member)
		}
	}
}

func cloneHealth(h *config.HealthCheck) *config.HealthCheck {
	if h == nil {
		return nil
	}
	cp := *h
	return &cp
}

// keyOf names the label KEY behind a problem of a label Site's key path.
func keyOf(path string) string {
	switch {
	case strings.Contains(path, ".hosts"):
		return "host"
	case strings.Contains(path, ".tls"):
		return "tls.issuer"
	case strings.Contains(path, ".health"):
		return "health.path"
	case strings.HasSuffix(path, ".ca"), strings.Contains(path, ".upstream_tls"):
		return "scheme" // docker.upstream_tls, which scheme https brings in
	case strings.Contains(path, ".upstreams"):
		return "port"
	case strings.Contains(path, ".strip_prefix"):
		return "strip_prefix"
	}
	return "path"
}

// port is the gatehouse.port label, else the container's one exposed
// port; several or none is a problem rather than a guess.
func (b *builder) port(c *container, r *labelRoute) (int, bool) {
	if v, ok := r.values["port"]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 65535 {
			b.problem(c, r.label("port"), "%q is not a port number from 1 to 65535", v)
			return 0, false
		}
		return n, true
	}
	var tcp []int
	for p := range c.Config.ExposedPorts {
		num, proto, _ := strings.Cut(p, "/")
		if n, err := strconv.Atoi(num); err == nil && (proto == "" || proto == "tcp") {
			tcp = append(tcp, n)
		}
	}
	switch len(tcp) {
	case 1:
		return tcp[0], true
	case 0:
		b.problem(c, r.label("port"), "is required: the container exposes no TCP port")
	default:
		slices.Sort(tcp)
		b.problem(c, r.label("port"), "is required: the container exposes several TCP ports (%v)", tcp)
	}
	return 0, false
}

// address is c's IP address on docker.network, else on its only network.
func (b *builder) address(c *container) (string, bool) {
	nets := c.NetworkSettings.Networks
	if n := b.s.d.Network; n != "" {
		if e, ok := nets[n]; ok && e.IPAddress != "" {
			return e.IPAddress, true
		}
		b.problem(c, "docker.network", "the container has no address on network %q (its networks: %s)", n, strings.Join(slices.Sorted(maps.Keys(nets)), ", "))
		return "", false
	}
	var addrs []string
	for _, e := range nets {
		if e.IPAddress != "" {
			addrs = append(addrs, e.IPAddress)
		}
	}
	switch len(addrs) {
	case 1:
		return addrs[0], true
	case 0:
		b.problem(c, "docker.network", "the container has no IP address (network mode host or none?)")
	default:
		b.problem(c, "docker.network", "the container is on several networks (%s); set docker.network to the one gatehouse shares", strings.Join(slices.Sorted(maps.Keys(nets)), ", "))
	}
	return "", false
}

// allowed reports whether host matches one of the patterns: exact, or a
// one-label wildcard "*.example.com" matching "a.example.com". A wildcard
// host matches only the same wildcard.
func allowed(patterns []string, host string) bool {
	for _, p := range patterns {
		p = strings.TrimSuffix(strings.ToLower(p), ".")
		if p == host {
			return true
		}
		if rest, ok := strings.CutPrefix(p, "*."); ok && !strings.HasPrefix(host, "*.") {
			label, parent, ok := strings.Cut(host, ".")
			if ok && label != "" && parent == rest {
				return true
			}
		}
	}
	return false
}

// emptyPool answers for a host and path whose containers are all away:
// 503 with Retry-After, so clients and monitors see a restart, not a
// removed site (404).
func emptyPool(path string) config.Route {
	return config.Route{
		Path:            path,
		Respond:         &config.Respond{Status: 503, Body: "no container is ready to serve this; retry shortly\n"},
		ResponseHeaders: &config.Headers{Set: map[string]string{"Retry-After": "5"}},
	}
}

// site renders the pools, all of host h, as its Site, Routes in order of
// path.
func (b *builder) site(h string) config.Site {
	slices.SortFunc(b.order, func(x, y poolKey) int { return cmp.Compare(x.path, y.path) })
	var out config.Site
	for n, k := range b.order {
		p := b.pools[k]
		r := p.route
		if len(p.upstreams) == 0 {
			r = emptyPool(r.Path)
		} else {
			slices.Sort(p.upstreams)
			r.Upstreams = slices.Compact(p.upstreams)
		}
		r.Source = "docker: " + strings.Join(p.members, ", ")
		if n > 0 {
			out.Routes = append(out.Routes, r)
			continue
		}
		out = p.site
		out.Routes = []config.Route{r}
		out.Source = "docker"
	}
	return out
}

// scheduleExpiry reports a change when the next stopped container's
// Linger ends, so its 503 Route goes away.
func (s *Source) scheduleExpiry(at time.Time) {
	if s.expiry != nil {
		s.expiry.Stop()
		s.expiry = nil
	}
	if at.IsZero() || s.changed == nil {
		return
	}
	changed := s.changed
	s.expiry = time.AfterFunc(time.Until(at)+10*time.Millisecond, func() { changed("docker: a stopped container's routes expire") })
}
