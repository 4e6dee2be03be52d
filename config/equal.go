package config

import (
	"maps"
	"reflect"
	"slices"
)

// Equal reports whether s and o configure the same Site, Source included.
// It is what lets a reload keep what it built for an unchanged Site
// (validation, the compiled Site, its Certificates), so it must be cheap:
// a Source that hands the same slices again costs a pointer compare per
// field, and Sites that differ usually do so in their first fields.
// TestSiteEqualSeesEveryField holds it to every field.
func (s *Site) Equal(o *Site) bool {
	if s == o {
		return true
	}
	if s.Source != o.Source || s.SecurityHeaders != o.SecurityHeaders || !slices.Equal(s.Hosts, o.Hosts) ||
		!ptrEqual(s.HSTS, o.HSTS) || !s.TLS.Equal(&o.TLS) || len(s.Routes) != len(o.Routes) {
		return false
	}
	if len(s.Routes) > 0 && &s.Routes[0] == &o.Routes[0] {
		return true
	}
	for i := range s.Routes {
		if !s.Routes[i].Equal(&o.Routes[i]) {
			return false
		}
	}
	return true
}

// Equal reports whether t and o choose Certificates the same way.
func (t *SiteTLS) Equal(o *SiteTLS) bool {
	return t.Issuer == o.Issuer && t.Cert == o.Cert && t.Key == o.Key && t.OnDemand == o.OnDemand &&
		deepEqual(t.DNS, o.DNS) && (len(t.Issuers) == 0 && len(o.Issuers) == 0 || reflect.DeepEqual(t.Issuers, o.Issuers))
}

// Equal reports whether r and o configure the same Route, Source included.
func (r *Route) Equal(o *Route) bool {
	if r == o {
		return true
	}
	return r.Path == o.Path && r.Source == o.Source && slices.Equal(r.Upstreams, o.Upstreams) &&
		r.StripPrefix == o.StripPrefix && r.CA == o.CA && r.MaxBody == o.MaxBody &&
		ptrEqual(r.Respond, o.Respond) && r.Root == o.Root && ptrEqual(r.Redirect, o.Redirect) &&
		deepEqual(r.LB, o.LB) && ptrEqual(r.Health, o.Health) && deepEqual(r.PassiveHealth, o.PassiveHealth) &&
		ptrEqual(r.UpstreamTLS, o.UpstreamTLS) && ptrEqual(r.KeepAlive, o.KeepAlive) &&
		r.MaxResponseHeader == o.MaxResponseHeader &&
		headersEqual(r.RequestHeaders, o.RequestHeaders) && headersEqual(r.ResponseHeaders, o.ResponseHeaders) &&
		r.AddPrefix == o.AddPrefix && ptrEqual(r.Rewrite, o.Rewrite) && r.Compress == o.Compress &&
		basicAuthEqual(r.BasicAuth, o.BasicAuth) &&
		slices.Equal(r.AllowIPs, o.AllowIPs) && slices.Equal(r.DenyIPs, o.DenyIPs) &&
		ptrEqual(r.RateLimit, o.RateLimit) && deepEqual(r.ForwardAuth, o.ForwardAuth)
}

// NamesFiles reports whether checking or compiling s reads files (a
// Certificate, a CA, a client certificate, a root directory): such a Site
// is checked and compiled again at every reload, so a file replaced under
// an unchanged config is read again, as on SIGHUP.
func (s *Site) NamesFiles() bool {
	if s.TLS.Cert != "" || s.TLS.Key != "" || len(s.TLS.Issuers) > 0 {
		return true
	}
	for i := range s.Routes {
		r := &s.Routes[i]
		if r.CA != "" || r.Root != "" || r.UpstreamTLS != nil && (r.UpstreamTLS.ClientCert != "" || r.UpstreamTLS.ClientKey != "") {
			return true
		}
	}
	return false
}

func ptrEqual[T comparable](a, b *T) bool {
	return a == b || a != nil && b != nil && *a == *b
}

func deepEqual[T any](a, b *T) bool {
	return a == b || a != nil && b != nil && reflect.DeepEqual(a, b)
}

func headersEqual(a, b *Headers) bool {
	return a == b || a != nil && b != nil &&
		maps.Equal(a.Set, b.Set) && maps.Equal(a.Add, b.Add) && slices.Equal(a.Remove, b.Remove)
}

func basicAuthEqual(a, b *BasicAuth) bool {
	return a == b || a != nil && b != nil && a.Realm == b.Realm && maps.Equal(a.Users, b.Users)
}
