package admin

import (
	"errors"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// originPolicy decides which Host headers and Origins the endpoint accepts,
// from its configured address, computed once.
type originPolicy struct {
	// port is the admin Listener's port.
	port string
	// host is the configured host ("127.0.0.1"), "" for all interfaces.
	host string
	// loopback is set when the endpoint listens on loopback only; then
	// every request's Host must be a loopback name or address.
	loopback bool
}

func newOriginPolicy(addr string) originPolicy {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return originPolicy{}
	}
	p := originPolicy{port: port, host: host}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.IsUnspecified() {
			p.host = ""
		}
		p.loopback = ip.IsLoopback()
	}
	if host == "localhost" {
		p.loopback = true
	}
	return p
}

// isLoopbackName reports whether host (no port) is localhost or a loopback
// address, which no other site's DNS can point a browser to under its own
// name.
func isLoopbackName(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(strings.Trim(host, "[]"))
	return err == nil && ip.IsLoopback()
}

// hostAllowed reports whether a request's Host header may reach the
// endpoint: on loopback, only loopback names (a DNS-rebinding page arrives
// with its own name); elsewhere any, as the operator chose the address.
func (p originPolicy) hostAllowed(hostport string) bool {
	if !p.loopback {
		return true
	}
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	return isLoopbackName(host)
}

// originAllowed reports whether origin ("http://127.0.0.1:2019") is the
// endpoint's own: plain http, the Listener's port, and the configured host,
// or on loopback any loopback name, or when listening on every interface an
// IP address (never a DNS name, which a rebinding attacker controls).
func (p originPolicy) originAllowed(origin string) bool {
	rest, ok := strings.CutPrefix(origin, "http://")
	if !ok || p.port == "" {
		return false
	}
	host, port, err := net.SplitHostPort(rest)
	if err != nil || port != p.port {
		return false
	}
	switch {
	case p.loopback:
		return isLoopbackName(host)
	case p.host == "":
		_, err := netip.ParseAddr(host)
		return err == nil
	default:
		return strings.EqualFold(host, p.host)
	}
}

var (
	errForeignHost   = errors.New("the admin endpoint answers only to its loopback address (Host header refused)")
	errCrossOrigin   = errors.New("cross-origin request refused: call the admin endpoint from a command line, not a web page")
	errBodyNotJSON   = errors.New("a request with a body must have Content-Type application/json")
	errUnsafeBrowser = errors.New("request marked by the browser as coming from another site refused")
)

// guard enforces the Host and cross-origin rules of [Handler] before mux.
func (a *api) guard(mux http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if !a.origin.hostAllowed(r.Host) {
			writeError(w, http.StatusForbidden, errForeignHost)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodOptions {
			if err := a.sameOrigin(r); err != nil {
				status := http.StatusForbidden
				if errors.Is(err, errBodyNotJSON) {
					status = http.StatusUnsupportedMediaType
				}
				a.opts.Logger.WarnContext(r.Context(), "admin request refused", "method", r.Method, "path", r.URL.Path,
					"origin", r.Header.Get("Origin"), "sec_fetch_site", r.Header.Get("Sec-Fetch-Site"), "error", err)
				writeError(w, status, err)
				return
			}
		}
		mux.ServeHTTP(w, r)
	})
}

// sameOrigin checks a state-changing request: browsers send Origin on
// every POST, and Sec-Fetch-Site where they support it; an HTML form can
// only send urlencoded, multipart or text/plain bodies, never JSON, and
// JSON from a script on another origin needs a CORS preflight the endpoint
// never grants.
func (a *api) sameOrigin(r *http.Request) error {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return errUnsafeBrowser
	}
	if origin := r.Header.Get("Origin"); origin != "" && !a.origin.originAllowed(origin) {
		return errCrossOrigin
	}
	if r.ContentLength != 0 {
		mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || mt != "application/json" {
			return errBodyNotJSON
		}
	}
	return nil
}
