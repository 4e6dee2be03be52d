package proxy

import (
	"cmp"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// Defaults of the upstream settings, for a Config built in code without
// them (config.Load fills the same values in).
const (
	defaultHealthPath     = "/"
	defaultHealthInterval = 10 * time.Second
	defaultHealthTimeout  = 5 * time.Second
	defaultMaxFails       = 3
	defaultFailWindow     = 30 * time.Second
)

// defaultUnhealthyStatus are the answers passive health counts as failures
// when unhealthy_status is not set, as the README documents. An explicit
// empty list counts none.
var defaultUnhealthyStatus = []int{500, 502, 503}

// balancer compiles a proxied Route's Upstreams, their transports and
// health, and its balancing policy.
func (c *compiler) balancer(s *site, r *route, cr *config.Route) (*balancer, error) {
	base := transportKey{
		dial:              c.table.dialTimeout,
		responseHeader:    c.table.responseHeaderTimeout,
		maxResponseHeader: cmp.Or(int64(cr.MaxResponseHeader), defaultMaxResponseHeader),
	}
	if ka := cr.KeepAlive; ka != nil {
		base.maxIdle, base.idleTimeout = ka.MaxIdle, ka.IdleTimeout
	}
	httpsKey, httpsTLS, err := c.upstreamTLS(s, r, cr, base)
	if err != nil {
		return nil, err
	}

	var check *healthCheck
	if h := cr.Health; h != nil {
		check = &healthCheck{
			path:         cmp.Or(h.Path, defaultHealthPath),
			interval:     cmp.Or(h.Interval, defaultHealthInterval),
			timeout:      cmp.Or(h.Timeout, defaultHealthTimeout),
			expectStatus: h.ExpectStatus,
			expectBody:   h.ExpectBody,
		}
	}

	ups := make([]*upstream, 0, len(cr.Upstreams))
	for k, raw := range cr.Upstreams {
		kind, target, socket, err := parseUpstream(raw)
		if err != nil {
			return nil, fmt.Errorf("parsing upstreams[%d]: %w", k, err)
		}
		key, ktc := base, transportTLS{}
		switch kind {
		case kindHTTPS:
			key, ktc = httpsKey, httpsTLS
		case kindUnix:
			key.socket = socket
		}
		key.kind = kind
		u := &upstream{
			name:   raw,
			scheme: target.Scheme,
			host:   target.Host,
			rt:     c.opts.Transports.get(key, ktc, target.Host),
			key:    upstreamKey{site: s.name, route: r.path, name: raw},
			tkey:   key,
			check:  check,
		}
		if kind == kindH2C {
			// WebSocket upgrades go over HTTP/1.1 (see upstream.transport),
			// pooled with the same timeouts and keepalive.
			k1 := key
			k1.kind = kindHTTP
			u.upgrade = c.opts.Transports.transport(k1, ktc)
		}
		c.table.ups.add(u)
		ups = append(ups, u)
	}

	b := newBalancer(ups, c.table.clock.now, c.opts.Logger)
	b.site, b.route = s.name, r.path
	if lb := cr.LB; lb != nil {
		switch lb.Policy {
		case "", policyRoundRobin:
		case policyWeightedRoundRobin:
			if len(lb.Weights) != len(ups) {
				return nil, fmt.Errorf("checking lb.weights: %d weights for %d upstreams", len(lb.Weights), len(ups))
			}
			for i, w := range lb.Weights {
				if w < 1 {
					return nil, fmt.Errorf("checking lb.weights[%d]: %d is not positive", i, w)
				}
			}
			b.policy = newWeightedRoundRobin(lb.Weights)
		case policyLeastConn:
			b.policy = new(leastConn)
		case policyRandomTwo:
			b.policy = randomTwo{}
		case policyIPHash:
			b.policy = newIPHash(c.table.trust, ups)
		case policyCookie:
			path := r.prefix
			if path == "" {
				path = "/"
			}
			b.cookie = newCookiePolicy(cmp.Or(lb.Cookie, defaultCookie), lb.CookieSecret, path, ups)
		default:
			return nil, fmt.Errorf("checking lb.policy: unknown policy %q", lb.Policy)
		}
		b.tryDuration = lb.TryDuration
		for _, code := range lb.RetryStatus {
			b.retryStatus.add(code)
		}
	}
	if ph := cr.PassiveHealth; ph != nil {
		b.passive = &passiveHealth{
			maxFails: cmp.Or(ph.MaxFails, defaultMaxFails),
			window:   cmp.Or(ph.FailWindow, defaultFailWindow),
			latency:  ph.UnhealthyLatency,
		}
		codes := ph.UnhealthyStatus
		if codes == nil {
			codes = defaultUnhealthyStatus
		}
		for _, code := range codes {
			b.passive.status.add(code)
		}
	}
	return b, nil
}

// describeUpstreams adds a proxied Route's upstream settings to its line
// in Describe, as compiled (defaults filled in).
func describeUpstreams(b *strings.Builder, cr *config.Route) {
	if lb := cr.LB; lb != nil {
		fmt.Fprintf(b, " lb=%s", cmp.Or(lb.Policy, policyRoundRobin))
		if len(lb.Weights) > 0 {
			fmt.Fprintf(b, " weights=%v", lb.Weights)
		}
		if lb.Policy == policyCookie {
			fmt.Fprintf(b, " cookie=%s", cmp.Or(lb.Cookie, defaultCookie))
		}
		if lb.TryDuration > 0 {
			fmt.Fprintf(b, " try_duration=%s", lb.TryDuration)
		}
		if len(lb.RetryStatus) > 0 {
			fmt.Fprintf(b, " retry_status=%v", lb.RetryStatus)
		}
	}
	if h := cr.Health; h != nil {
		fmt.Fprintf(b, " health=%s every %s within %s", cmp.Or(h.Path, defaultHealthPath),
			cmp.Or(h.Interval, defaultHealthInterval), cmp.Or(h.Timeout, defaultHealthTimeout))
	}
	if p := cr.PassiveHealth; p != nil {
		fmt.Fprintf(b, " passive=%d/%s", cmp.Or(p.MaxFails, defaultMaxFails), cmp.Or(p.FailWindow, defaultFailWindow))
	}
	if t := cr.UpstreamTLS; t != nil {
		if t.ServerName != "" {
			fmt.Fprintf(b, " server_name=%s", t.ServerName)
		}
		if t.ClientCert != "" {
			fmt.Fprintf(b, " client_cert=%s", t.ClientCert)
		}
		if t.InsecureSkipVerify {
			b.WriteString(" insecure_skip_verify")
		}
	}
	if k := cr.KeepAlive; k != nil {
		fmt.Fprintf(b, " keepalive=%d/%s", cmp.Or(k.MaxIdle, defaultMaxIdlePerHost), cmp.Or(k.IdleTimeout, defaultIdleConnTimeout))
	}
	if m := int64(cr.MaxResponseHeader); m != 0 && m != defaultMaxResponseHeader {
		fmt.Fprintf(b, " max_response_header=%d", m)
	}
}

// upstreamTLS returns the transport key and TLS material of a Route's
// https:// Upstreams: base plus the Route's CA and upstream_tls.
func (c *compiler) upstreamTLS(s *site, r *route, cr *config.Route, base transportKey) (transportKey, transportTLS, error) {
	key, tc := base, transportTLS{}
	if cr.CA != "" {
		roots, sum, err := loadCertPool(cr.CA)
		if err != nil {
			return key, tc, err
		}
		key.ca, tc.roots = sum, roots
	}
	ut := cr.UpstreamTLS
	if ut == nil {
		return key, tc, nil
	}
	key.serverName = ut.ServerName
	key.insecure = ut.InsecureSkipVerify
	if ut.ClientCert != "" || ut.ClientKey != "" {
		cert, sum, err := loadClientCert(ut.ClientCert, ut.ClientKey)
		if err != nil {
			return key, tc, err
		}
		key.clientCert, tc.clientCert = sum, cert
	}
	if ut.InsecureSkipVerify {
		c.opts.Logger.Warn("upstream certificates are not verified (upstream_tls.insecure_skip_verify): anyone on the path to them can read and change the traffic",
			slog.String("site", s.name), slog.String("route", r.path))
	}
	return key, tc, nil
}
