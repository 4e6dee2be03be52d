// Package admin serves gatehouse's local admin endpoint: health and
// readiness, the Certificate inventory and its lifecycle calls, reloads,
// Prometheus metrics and a dashboard page. It reads certificate management
// and the proxy only through the small interfaces and funcs in [Options],
// which the command wires.
//
// The API speaks JSON. Errors are {"error": "..."} ([ErrorAnswer]) with a
// 4xx or 5xx status. The routes, which [Endpoint] names once for this
// package and for the typed client in package admin/client:
//
//	GET  /healthz                 200 "ok" while the process serves
//	GET  /readyz                  200 once Listeners serve and the config is applied, else 503
//	GET  /certs                   every Certificate, most urgent first (a JSON array)
//	GET  /certs/{name}            the Certificate serving name (404 if none)
//	POST /certs/{name}/renew      renew now (?force=1 even when not due); answers the Certificate
//	POST /certs/{name}/revoke     body {"reason": "keyCompromise"}; revokes, replaces, answers the new Certificate
//	POST /certs/migrate           body a MigrateOptions; re-issues from another issuer, streaming MigrateLines
//	POST /reload                  reload the config file, as SIGHUP does
//	GET  /routes                  every Route and where it came from (file, or a container's labels)
//	GET  /fleet                   the fleet's instances from its registry in etcd (a FleetStatus)
//	GET  /budget                  what is left of each ACME Issuer's rate limits (a JSON array)
//	GET  /metrics                 Prometheus text format
//	GET  /                        the dashboard (HTML)
//
// renew and revoke answer 404 for a name without a Certificate, 409 when
// the Certificate cannot be renewed or revoked here (see
// [tlsmgr.RefusedError]) and 502 when the CA, the network or a challenge
// fails.
//
// State-changing calls (POST) refuse requests a browser sends on behalf of
// another site: see [Handler].
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse-proxy/gatehouse/tlsmgr"
)

// Certificates is what the admin endpoint needs of certificate management;
// *tlsmgr.Manager implements it.
type Certificates interface {
	// Certificates returns the inventory, most urgent first.
	Certificates() []tlsmgr.CertificateInfo
	// Renew renews the Certificate serving name; force renews even when it
	// is not due. The errors of Renew and Revoke are answered as they are
	// (they name the call and the host), with the status lifecycleStatus
	// gives.
	Renew(ctx context.Context, name string, force bool) error
	// Revoke revokes the Certificate serving name at its CA with reason,
	// then obtains and serves a replacement.
	Revoke(ctx context.Context, name, reason string) error
}

// Upstream is the health of one Upstream of one Route, as the dashboard
// and the metrics show it.
type Upstream struct {
	// Site is the Site's name (its first host).
	Site string `json:"site"`
	// Route is the Route's path.
	Route string `json:"route"`
	// URL is the Upstream's URL.
	URL string `json:"url"`
	// Healthy reports whether the Upstream takes requests now.
	Healthy bool `json:"healthy"`
	// Reason says why it is not healthy, or what last went wrong.
	Reason string `json:"reason,omitempty"`
	// InFlight counts the requests it is serving.
	InFlight int64 `json:"in_flight"`
	// Failures counts its failed dials, health checks and passive
	// failures since it first appeared.
	Failures uint64 `json:"failures"`
	// Source is where the Route came from: "file", or a config source
	// such as "docker: web-1 (0123abcd5678)".
	Source string `json:"source,omitempty"`
}

// Route is one Route of the running config, as [EndpointRoutes] answers.
type Route struct {
	// Hosts are its Site's hosts.
	Hosts []string `json:"hosts"`
	// Path is the Route's path prefix; "" matches every path.
	Path string `json:"path"`
	// Source is where the Route came from: "file", or a config source
	// such as "docker: web-1 (0123abcd5678), web-2 (4567abcd0123)".
	Source string `json:"source"`
	// Upstreams are the URLs it proxies to; none for a fixed response.
	Upstreams []string `json:"upstreams,omitempty"`
	// Status is the status of its fixed response (respond or redirect),
	// 0 when it proxies. A container host whose containers are all away
	// answers 503 here.
	Status int `json:"status,omitempty"`
}

// Options are what the admin endpoint serves. Every field may be nil;
// a nil source makes its endpoints answer 503 (or show nothing, on the
// dashboard).
type Options struct {
	// Addr is the admin Listener's address as configured
	// ("127.0.0.1:2019"). It defines the endpoint's own origin, which
	// state-changing calls require, and, on a loopback address, the Host
	// names accepted (see [Handler]).
	Addr string
	// Logger receives lifecycle calls and their errors; nil discards.
	Logger *slog.Logger
	// Certificates is certificate management.
	Certificates Certificates
	// Migrate re-issues Certificates from another issuer, reporting each
	// step to progress (see [tlsmgr.Manager.Migrate]); nil makes
	// [EndpointMigrate] answer 503.
	Migrate func(ctx context.Context, opts tlsmgr.MigrateOptions, progress func(tlsmgr.MigrationEvent)) (tlsmgr.MigrationResult, error)
	// Reload reloads the config as SIGHUP does and returns why it could
	// not, in which case the running config keeps serving.
	Reload func(ctx context.Context) error
	// Ready reports whether the Listeners serve and the initial config is
	// applied. Nil means ready.
	Ready func() bool
	// Upstreams returns the health of every Upstream, for the dashboard.
	// The metrics take theirs from [NewMetrics].
	Upstreams func() []Upstream
	// Routes returns every Route of the running config, for
	// [EndpointRoutes]; nil makes it answer 503.
	Routes func() []Route
	// Metrics is served on /metrics.
	Metrics *Metrics
	// Fleet reads the fleet's registry, for /fleet and the dashboard; nil
	// when this gatehouse is not in a fleet.
	Fleet func(ctx context.Context) (FleetStatus, error)
	// LocalCA describes the local CA's root for the dashboard; nil shows
	// nothing of it.
	LocalCA func() LocalCA
	// Budget reads the rate-limit budget of the ACME Issuers, for
	// [EndpointBudget] and the dashboard; nil makes the endpoint answer
	// 503.
	Budget func(ctx context.Context) ([]tlsmgr.BudgetLine, error)

	// now is the dashboard's clock; nil means time.Now. Tests set it.
	now func() time.Time
}

// LocalCA is what the dashboard shows of the local CA's root.
type LocalCA struct {
	// Subject is the root's common name.
	Subject string
	// Fingerprint is its SHA-256 fingerprint ([tlsmgr.Fingerprint]).
	Fingerprint string
	// ShareURL is where the HTTP Listener serves it (local_ca.share), ""
	// when it does not; the dashboard shows it as a QR code.
	ShareURL string
}

// maxBody bounds the JSON bodies of POST calls.
const maxBody = 64 << 10

// Handler returns the admin endpoint's handler (the routes are listed in
// the package doc).
//
// The endpoint has no authentication: it trusts whoever can reach its
// address, which is why it listens on loopback by default. To keep a web
// page in a browser on the same machine from using it, every POST must
// carry no Origin header or one equal to the endpoint's own origin, must
// not be marked Sec-Fetch-Site cross-site or same-site, and must have an
// empty body or Content-Type application/json (an HTML form can send
// neither); on a loopback address every request's Host must also be a
// loopback name or address, which defeats DNS rebinding. Refusals are 403
// (415 for the content type).
func Handler(opts Options) http.Handler {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.now == nil {
		opts.now = time.Now
	}
	a := &api{opts: opts, origin: newOriginPolicy(opts.Addr)}
	mux := http.NewServeMux()
	mux.HandleFunc(string(EndpointHealthz), func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc(string(EndpointReadyz), a.readyz)
	mux.HandleFunc(string(EndpointCertificates), a.listCerts)
	mux.HandleFunc(string(EndpointCertificate), a.showCert)
	mux.HandleFunc(string(EndpointRenew), a.renew)
	mux.HandleFunc(string(EndpointRevoke), a.revoke)
	mux.HandleFunc(string(EndpointMigrate), a.migrate)
	mux.HandleFunc(string(EndpointReload), a.reload)
	mux.HandleFunc(string(EndpointRoutes), a.routes)
	mux.HandleFunc(string(EndpointFleet), a.fleet)
	mux.HandleFunc(string(EndpointBudget), a.budget)
	if opts.Metrics != nil {
		mux.Handle(string(EndpointMetrics), opts.Metrics.handler())
	} else {
		mux.HandleFunc(string(EndpointMetrics), func(w http.ResponseWriter, _ *http.Request) {
			writeError(w, http.StatusServiceUnavailable, errors.New("metrics are not collected"))
		})
	}
	mux.HandleFunc(string(EndpointDashboard), a.dashboard)
	return a.guard(mux)
}

// api holds the handlers' shared state.
type api struct {
	opts   Options
	origin originPolicy
}

func (a *api) readyz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if a.opts.Ready != nil && !a.opts.Ready() {
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte("not ready\n"))
		return
	}
	w.Write([]byte("ready\n"))
}

func (a *api) routes(w http.ResponseWriter, _ *http.Request) {
	if a.opts.Routes == nil {
		writeError(w, http.StatusServiceUnavailable, errors.New("the routes are not known here"))
		return
	}
	routes := a.opts.Routes()
	if routes == nil {
		routes = []Route{}
	}
	writeJSON(w, http.StatusOK, routes)
}

func (a *api) budget(w http.ResponseWriter, r *http.Request) {
	if a.opts.Budget == nil {
		writeError(w, http.StatusServiceUnavailable, errors.New("certificate management is not running"))
		return
	}
	lines, err := a.opts.Budget(r.Context())
	if err != nil {
		writeError(w, http.StatusBadGateway, err)
		return
	}
	if lines == nil {
		lines = []tlsmgr.BudgetLine{}
	}
	writeJSON(w, http.StatusOK, lines)
}

// inventory is the Certificates with the sources of the Routes their
// names serve (RoutedBy).
func (a *api) inventory() []tlsmgr.CertificateInfo {
	certs := a.opts.Certificates.Certificates()
	if a.opts.Routes == nil || len(certs) == 0 {
		return certs
	}
	byHost := map[string][]string{}
	for _, r := range a.opts.Routes() {
		for _, h := range r.Hosts {
			if r.Source != "" && !slices.Contains(byHost[h], r.Source) {
				byHost[h] = append(byHost[h], r.Source)
			}
		}
	}
	for i := range certs {
		var from []string
		for _, n := range certs[i].Names {
			for _, s := range byHost[n] {
				if !slices.Contains(from, s) {
					from = append(from, s)
				}
			}
		}
		certs[i].RoutedBy = strings.Join(from, "; ")
	}
	return certs
}

func (a *api) listCerts(w http.ResponseWriter, _ *http.Request) {
	if a.opts.Certificates == nil {
		writeError(w, http.StatusServiceUnavailable, errors.New("certificate management is not running"))
		return
	}
	certs := a.inventory()
	if certs == nil {
		certs = []tlsmgr.CertificateInfo{}
	}
	writeJSON(w, http.StatusOK, certs)
}

func (a *api) showCert(w http.ResponseWriter, r *http.Request) {
	if a.opts.Certificates == nil {
		writeError(w, http.StatusServiceUnavailable, errors.New("certificate management is not running"))
		return
	}
	name := r.PathValue("name")
	c, ok := tlsmgr.FindCertificate(a.inventory(), name)
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Errorf("no certificate for %q", name))
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func (a *api) renew(w http.ResponseWriter, r *http.Request) {
	if a.opts.Certificates == nil {
		writeError(w, http.StatusServiceUnavailable, errors.New("certificate management is not running"))
		return
	}
	name := r.PathValue("name")
	force := r.URL.Query().Get(ForceQuery)
	forced := force == "1" || force == "true"
	a.opts.Logger.InfoContext(r.Context(), "renewing certificate on request", "name", name, "force", forced, "via", "admin")
	if err := a.opts.Certificates.Renew(r.Context(), name, forced); err != nil {
		a.opts.Logger.WarnContext(r.Context(), "renewing certificate on request", "name", name, "error", err)
		// err names the call and the host already.
		writeError(w, lifecycleStatus(err), err)
		return
	}
	a.answerCert(w, name)
}

func (a *api) revoke(w http.ResponseWriter, r *http.Request) {
	if a.opts.Certificates == nil {
		writeError(w, http.StatusServiceUnavailable, errors.New("certificate management is not running"))
		return
	}
	name := r.PathValue("name")
	var req RevokeRequest
	if r.ContentLength != 0 {
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("decoding the request body: %w", err))
			return
		}
	}
	if _, err := tlsmgr.ParseRevocationReason(req.Reason); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	a.opts.Logger.InfoContext(r.Context(), "revoking certificate on request", "name", name, "reason", req.Reason, "via", "admin")
	if err := a.opts.Certificates.Revoke(r.Context(), name, req.Reason); err != nil {
		a.opts.Logger.WarnContext(r.Context(), "revoking certificate on request", "name", name, "error", err)
		writeError(w, lifecycleStatus(err), err)
		return
	}
	a.answerCert(w, name)
}

// lifecycleStatus maps an error of Renew or Revoke to a status: 404 for a
// name without a Certificate; 409 for a call refused because of what the
// Certificate is (from files, retired, none yet, an engine that cannot),
// which no retry fixes until that changes; else 502, as the CA, the network
// or the challenge failed.
func lifecycleStatus(err error) int {
	if errors.Is(err, tlsmgr.ErrUnknownCertificate) {
		return http.StatusNotFound
	}
	if _, ok := errors.AsType[*tlsmgr.RefusedError](err); ok {
		return http.StatusConflict
	}
	return http.StatusBadGateway
}

// answerCert answers a lifecycle call with the Certificate now serving
// name. A retired Certificate that was revoked leaves the inventory: the
// answer then names it only.
func (a *api) answerCert(w http.ResponseWriter, name string) {
	c, ok := tlsmgr.FindCertificate(a.opts.Certificates.Certificates(), name)
	if !ok {
		c = tlsmgr.CertificateInfo{Names: []string{name}}
	}
	writeJSON(w, http.StatusOK, c)
}

func (a *api) reload(w http.ResponseWriter, r *http.Request) {
	if a.opts.Reload == nil {
		writeError(w, http.StatusServiceUnavailable, errors.New("reloading is not available"))
		return
	}
	a.opts.Logger.InfoContext(r.Context(), "reloading config on request", "via", "admin")
	if err := a.opts.Reload(r.Context()); err != nil {
		// A bad file is the caller's to fix; the running config serves on.
		writeError(w, http.StatusUnprocessableEntity, err)
		return
	}
	writeJSON(w, http.StatusOK, ReloadAnswer{Status: "reloaded"})
}

func writeError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, ErrorAnswer{Error: err.Error()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(ErrorAnswer{Error: fmt.Sprintf("encoding the answer: %v", err)})
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
