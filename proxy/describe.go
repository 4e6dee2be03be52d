package proxy

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// Describe renders the Table as deterministic text: trusted proxies, then
// each Site in config order with its hosts, HSTS and Routes in match order.
// Golden tests compare it, and an operator can read it to see what a
// config compiled to.
func (t *Table) Describe() string {
	var b strings.Builder
	b.WriteString("trusted_proxies:")
	if len(t.trusted) == 0 {
		b.WriteString(" none")
	}
	for i, p := range t.trusted {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte(' ')
		b.WriteString(p.String())
	}
	b.WriteString("\naccess_log: ")
	if t.accessLog {
		b.WriteString("on\n")
	} else {
		b.WriteString("off\n")
	}
	fmt.Fprintf(&b, "upstream_timeouts: dial=%s response_header=%s\n", t.dialTimeout, t.responseHeaderTimeout)
	if t.redirectPort != "" {
		fmt.Fprintf(&b, "redirect_port: %s\n", strings.TrimPrefix(t.redirectPort, ":"))
	}
	for _, s := range t.sites {
		fmt.Fprintf(&b, "site %s\n", s.name)
		fmt.Fprintf(&b, "  hosts: %s\n", strings.Join(s.hosts, ", "))
		if s.hsts != nil {
			fmt.Fprintf(&b, "  hsts: %s\n", s.hsts[0])
		}
		for _, r := range s.routes {
			fmt.Fprintf(&b, "  route %s -> %s\n", r.path, r.desc)
		}
	}
	return b.String()
}

// describeRoute renders what answers a Route, with its options.
func describeRoute(r *route, cr *config.Route) string {
	var b strings.Builder
	switch h := r.handler.(type) {
	case *proxyRoute:
		b.WriteString("proxy")
		for _, u := range h.balancer.upstreams {
			b.WriteByte(' ')
			b.WriteString(u.name)
		}
		if cr.CA != "" {
			fmt.Fprintf(&b, " ca=%s", cr.CA)
		}
		describeUpstreams(&b, cr)
	case *respondRoute:
		fmt.Fprintf(&b, "respond %d", h.status)
		if body := h.body; body != "" {
			if len(body) > 40 {
				body = body[:40] + "..."
			}
			fmt.Fprintf(&b, " %s %q", h.contentType[0], body)
		}
	case *staticRoute:
		fmt.Fprintf(&b, "root %s", h.root)
	case *redirectRoute:
		fmt.Fprintf(&b, "redirect %d %s", h.status, h.raw)
	}
	if r.stripPrefix {
		b.WriteString(" strip_prefix")
	}
	if r.maxBody > 0 {
		b.WriteString(" max_body=" + strconv.FormatInt(r.maxBody, 10))
	}
	return b.String()
}
