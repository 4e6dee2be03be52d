package proxy

import (
	"fmt"
	"net/http"
	"net/url"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// redirectRoute answers every request with a redirect whose target is
// rendered from a template compiled once: {path} is the request path
// (after strip_prefix, escaped), {query} its query, {host} and {scheme}
// the request's.
type redirectRoute struct {
	route  *route
	to     template
	raw    string // as configured, for Describe
	status int
}

func newRedirectRoute(r *route, cr *config.Redirect) (*redirectRoute, error) {
	t, err := parseTemplate(cr.To, config.RedirectPlaceholders)
	if err != nil {
		return nil, fmt.Errorf("parsing redirect.to: %w", err)
	}
	status := cr.Status
	if status == 0 {
		status = config.DefaultRedirectStatus
	}
	return &redirectRoute{route: r, to: t, raw: cr.To, status: status}, nil
}

func (rr *redirectRoute) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	v := vars{r: r}
	if !rr.to.hasPath() {
		w.Header()["Location"] = rr.to.value(&v)
	} else {
		p := r.URL.Path
		if rr.route.stripPrefix {
			p = rr.route.strip(p)
		}
		v.path = (&url.URL{Path: p}).EscapedPath()
		var buf [256]byte
		w.Header().Set("Location", string(rr.to.render(buf[:0], &v)))
	}
	w.WriteHeader(rr.status)
}

// hasPath reports whether t uses {path}.
func (t *template) hasPath() bool {
	for _, p := range t.parts {
		if p.ph == phPath {
			return true
		}
	}
	return false
}
