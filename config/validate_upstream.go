package config

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Defaults of a Route's upstream settings, applied by upstreamDefaults
// when their block is present.
const (
	DefaultLBPolicy          = "round_robin"
	DefaultLBCookie          = "gatehouse_upstream"
	DefaultHealthPath        = "/"
	DefaultHealthInterval    = 10 * time.Second
	DefaultHealthTimeout     = 5 * time.Second
	DefaultMaxFails          = 3
	DefaultFailWindow        = 30 * time.Second
	DefaultKeepAliveMaxIdle  = 512
	DefaultKeepAliveIdle     = 90 * time.Second
	DefaultMaxResponseHeader = ByteSize(1 << 20)
)

// LBPolicies are the values lb.policy accepts.
var LBPolicies = []string{"round_robin", "weighted_round_robin", "least_conn", "random_two", "ip_hash", "cookie"}

// maxWeight bounds an lb weight, which keeps the compiled schedule small.
const maxWeight = 1000

// upstreamDefaults fills the defaults of r's lb, health, passive_health
// and keepalive blocks, and max_response_header for a proxied Route.
func (r *Route) upstreamDefaults() {
	if len(r.Upstreams) > 0 {
		setDefault(&r.MaxResponseHeader, DefaultMaxResponseHeader)
	}
	if lb := r.LB; lb != nil {
		setDefault(&lb.Policy, DefaultLBPolicy)
		if lb.Policy == "cookie" {
			setDefault(&lb.Cookie, DefaultLBCookie)
		}
	}
	if h := r.Health; h != nil {
		setDefault(&h.Path, DefaultHealthPath)
		setDefault(&h.Interval, DefaultHealthInterval)
		setDefault(&h.Timeout, DefaultHealthTimeout)
	}
	if p := r.PassiveHealth; p != nil {
		setDefault(&p.MaxFails, DefaultMaxFails)
		setDefault(&p.FailWindow, DefaultFailWindow)
	}
	if k := r.KeepAlive; k != nil {
		setDefault(&k.MaxIdle, DefaultKeepAliveMaxIdle)
		setDefault(&k.IdleTimeout, DefaultKeepAliveIdle)
	}
}

// upstreams checks every Route's lb, health, passive_health, upstream_tls,
// keepalive and max_response_header.
func (v *validator) upstreams() {
	for i, s := range v.c.Sites {
		if v.isKnown(i) {
			continue
		}
		for j := range s.Routes {
			v.upstreamRoute(&s.Routes[j], fmt.Sprintf("sites[%d].routes[%d]", i, j))
		}
	}
}

func (v *validator) upstreamRoute(r *Route, path string) {
	proxied := len(r.Upstreams) > 0
	for key, set := range map[string]bool{
		"lb":             r.LB != nil,
		"health":         r.Health != nil,
		"passive_health": r.PassiveHealth != nil,
		"upstream_tls":   r.UpstreamTLS != nil,
		"keepalive":      r.KeepAlive != nil,
	} {
		if set && !proxied {
			v.addf(path+"."+key, "%s is only used with upstreams", key)
		}
	}
	if r.MaxResponseHeader < 0 {
		v.addf(path+".max_response_header", "must not be negative")
	} else if r.MaxResponseHeader != 0 && !proxied {
		v.addf(path+".max_response_header", "max_response_header is only used with upstreams")
	}
	if !proxied {
		return
	}
	v.lb(r, path+".lb")
	if h := r.Health; h != nil {
		p := path + ".health"
		if !strings.HasPrefix(h.Path, "/") || strings.ContainsAny(h.Path, "# ") {
			v.addf(p+".path", "%q is not a path starting with /", h.Path)
		}
		if h.Interval <= 0 {
			v.addf(p+".interval", "must be positive")
		}
		if h.Timeout <= 0 {
			v.addf(p+".timeout", "must be positive")
		}
		if h.ExpectStatus != 0 && (h.ExpectStatus < 100 || h.ExpectStatus > 599) {
			v.addf(p+".expect_status", "%d is not an HTTP status (100 to 599)", h.ExpectStatus)
		}
	}
	if ph := r.PassiveHealth; ph != nil {
		p := path + ".passive_health"
		if ph.MaxFails < 1 {
			v.addf(p+".max_fails", "must be at least 1")
		}
		if ph.FailWindow <= 0 {
			v.addf(p+".fail_window", "must be positive")
		}
		v.statuses(ph.UnhealthyStatus, p+".unhealthy_status")
		if ph.UnhealthyLatency < 0 {
			v.addf(p+".unhealthy_latency", "must not be negative")
		}
	}
	if k := r.KeepAlive; k != nil {
		if k.MaxIdle < 0 {
			v.addf(path+".keepalive.max_idle", "must not be negative")
		}
		if k.IdleTimeout < 0 {
			v.addf(path+".keepalive.idle_timeout", "must not be negative")
		}
	}
	if t := r.UpstreamTLS; t != nil {
		v.upstreamTLS(r, t, path+".upstream_tls")
	}
}

func (v *validator) lb(r *Route, path string) {
	lb := r.LB
	if lb == nil {
		return
	}
	if !slices.Contains(LBPolicies, lb.Policy) {
		v.addf(path+".policy", "unknown policy %q; use one of %s", lb.Policy, strings.Join(LBPolicies, ", "))
	}
	switch {
	case lb.Policy == "weighted_round_robin" && len(lb.Weights) == 0:
		v.addf(path+".weights", "weighted_round_robin needs weights, one per upstream")
	case lb.Policy != "weighted_round_robin" && len(lb.Weights) > 0:
		v.addf(path+".weights", "weights are only used with policy weighted_round_robin")
	case len(lb.Weights) > 0 && len(lb.Weights) != len(r.Upstreams):
		v.addf(path+".weights", "%d weights for %d upstreams; give one per upstream, in order", len(lb.Weights), len(r.Upstreams))
	}
	for i, w := range lb.Weights {
		if w < 1 || w > maxWeight {
			v.addf(fmt.Sprintf("%s.weights[%d]", path, i), "%d is not a weight from 1 to %d", w, maxWeight)
		}
	}
	if lb.Policy != "cookie" {
		if lb.Cookie != "" {
			v.addf(path+".cookie", "cookie is only used with policy cookie")
		}
		if lb.CookieSecret != "" {
			v.addf(path+".cookie_secret", "cookie_secret is only used with policy cookie")
		}
	} else {
		if (&http.Cookie{Name: lb.Cookie, Value: "x"}).Valid() != nil {
			v.addf(path+".cookie", "%q is not a valid cookie name", lb.Cookie)
		}
		if lb.CookieSecret != "" && len(lb.CookieSecret) < 16 {
			v.addf(path+".cookie_secret", "is too short to sign anything: use at least 16 characters, ideally 32 random ones")
		}
	}
	if lb.TryDuration < 0 {
		v.addf(path+".try_duration", "must not be negative")
	}
	v.statuses(lb.RetryStatus, path+".retry_status")
}

// statuses checks a list of HTTP statuses.
func (v *validator) statuses(codes []int, path string) {
	for i, code := range codes {
		if code < 100 || code > 599 {
			v.addf(fmt.Sprintf("%s[%d]", path, i), "%d is not an HTTP status (100 to 599)", code)
		}
	}
}

// badServerName reports whether name, when set, cannot be the host name
// an upstream's certificate is verified for (a wildcard cannot).
func badServerName(name string) bool {
	return name != "" && checkHost(strings.ToLower(name)) != "" || strings.HasPrefix(name, "*")
}

func (v *validator) upstreamTLS(r *Route, t *UpstreamTLS, path string) {
	https := slices.ContainsFunc(r.Upstreams, func(u string) bool { return strings.HasPrefix(u, "https://") })
	if !https {
		v.addf(path, "upstream_tls is only used with https:// upstreams")
	}
	if badServerName(t.ServerName) {
		v.addf(path+".server_name", "%q is not a host name", t.ServerName)
	}
	if t.InsecureSkipVerify && r.CA != "" {
		v.addf(path+".insecure_skip_verify", "ca is ignored when verification is off; drop one of them")
	}
	if t.InsecureSkipVerify && t.ServerName != "" {
		v.addf(path+".insecure_skip_verify", "server_name is not verified when verification is off; drop one of them")
	}
	switch {
	case t.ClientCert == "" && t.ClientKey == "":
		return
	case t.ClientKey == "":
		v.addf(path+".client_cert", "client_cert needs client_key")
		return
	case t.ClientCert == "":
		v.addf(path+".client_key", "client_key needs client_cert")
		return
	}
	v.keyPair(t.ClientCert, t.ClientKey, path+".client_cert", path+".client_key")
}
