package gateway

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-proxy/gatehouse/admin"
	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr"
)

// adminState is what the admin endpoint reads of a running gateway. Its
// fields are safe to use from the admin's request goroutines; everything
// else of the gateway stays with the serve goroutine.
type adminState struct {
	// metrics is nil when the admin endpoint is off: nothing would serve
	// them, so the proxy is not asked to observe requests.
	metrics *admin.Metrics
	// ready is set once the Listeners serve and the initial config is
	// applied, and cleared when shutdown begins.
	ready atomic.Bool
	// cfg is the applied config, for the challenge label of the metrics.
	cfg atomic.Pointer[config.Config]
	// stopped is closed when shutdown begins, so a reload asked for then
	// is refused at once.
	stopped  chan struct{}
	stopOnce sync.Once
}

// stopping marks the gateway unready and refuses further reloads; stop
// calls it first.
func (s *adminState) stopping() {
	s.ready.Store(false)
	s.stopOnce.Do(func() {
		if s.stopped != nil {
			close(s.stopped)
		}
	})
}

// adminWriteTimeout bounds an admin call. Renew and revoke answer once the
// CA has, and DNS-01 waits for propagation (acme.dns.propagation_timeout,
// 2m by default), so it is long enough for a slow ACME order.
const adminWriteTimeout = 10 * time.Minute

// errStopping answers a reload asked for while gatehouse shuts down.
var errStopping = errors.New("gatehouse is shutting down")

// newMetrics creates the metrics when the admin endpoint is on; call it
// once certificate management runs and before the first proxy.Compile.
func (g *Gateway) newMetrics() {
	g.admin.cfg.Store(g.cfg)
	if g.cfg.Admin == config.Off || g.cfg.Admin == "" {
		return
	}
	opts := admin.MetricsOptions{
		Inventory: g.certs,
		Upstreams: g.upstreams,
		Budget:    g.certs.Budget,
		Challenge: g.challengeOf,
	}
	if srv := g.acmeServer; srv != nil {
		opts.ACMEServer = func() admin.ACMEServerCounts {
			clients, names := srv.RefusedCounts()
			return admin.ACMEServerCounts{Issued: srv.IssuedCount(), RefusedClients: clients, RefusedNames: names}
		}
	}
	g.admin.metrics = admin.NewMetrics(opts)
	g.certs.Subscribe(g.admin.metrics.ObserveEvent)
	g.certs.CountHandshakeFailures(g.admin.metrics)
}

// observe is proxy.Options.Observe: the metrics' request observer, or nil.
func (g *Gateway) observe() func(string, int, time.Duration) {
	if g.admin.metrics == nil {
		return nil
	}
	return g.admin.metrics.ObserveRequest
}

// adminHandler is the admin endpoint, wired to this gateway.
func (g *Gateway) adminHandler() http.Handler {
	return admin.Handler(admin.Options{
		Addr:         g.cfg.Admin,
		Logger:       g.logger,
		Certificates: g.certs,
		Migrate:      g.migrate,
		Reload:       g.requestReload,
		Ready:        g.admin.ready.Load,
		Upstreams:    g.upstreams,
		Routes:       g.routeList,
		Metrics:      g.admin.metrics,
		Fleet:        g.opts.Fleet,
		LocalCA:      g.localCA,
		Budget:       g.certs.Budget,
	})
}

// migrate runs a migration for the admin endpoint until the request ends
// or shutdown begins: a long migration must not hold the shutdown for its
// grace period, and its progress in storage lets the next run resume.
func (g *Gateway) migrate(ctx context.Context, opts tlsmgr.MigrateOptions, progress func(tlsmgr.MigrationEvent)) (tlsmgr.MigrationResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-g.admin.stopped:
			cancel()
		case <-ctx.Done():
		}
	}()
	return g.certs.Migrate(ctx, opts, progress)
}

// requestReload reloads every Source, as SIGHUP does, and returns the
// outcome.
func (g *Gateway) requestReload(ctx context.Context) error {
	select {
	case <-g.admin.stopped:
		return errStopping
	default:
	}
	return g.Reload(ctx, "admin")
}

// upstreams reports the proxy's Upstream health for the admin endpoint.
func (g *Gateway) upstreams() []admin.Upstream {
	if g.routes == nil {
		return nil
	}
	sources := routeSources(g.admin.cfg.Load())
	var out []admin.Upstream
	for _, u := range g.routes.Upstreams() {
		out = append(out, admin.Upstream{
			Site: u.Site, Route: u.Route, URL: u.URL, Healthy: u.Healthy,
			Reason: u.Reason, InFlight: u.InFlight, Failures: u.Failures,
			Source: sources[[2]string{u.Site, u.Route}],
		})
	}
	return out
}

// routeList lists every Route of the applied config, for the admin
// endpoint's GET /routes.
func (g *Gateway) routeList() []admin.Route {
	cfg := g.admin.cfg.Load()
	if cfg == nil {
		return nil
	}
	var out []admin.Route
	for _, s := range cfg.Sites {
		for _, r := range s.Routes {
			ar := admin.Route{Hosts: s.Hosts, Path: r.Path, Source: sourceOf(r.Source), Upstreams: r.Upstreams}
			switch {
			case r.Respond != nil:
				ar.Status = cmp.Or(r.Respond.Status, http.StatusOK)
			case r.Redirect != nil:
				ar.Status = cmp.Or(r.Redirect.Status, http.StatusPermanentRedirect)
			}
			out = append(out, ar)
		}
	}
	return out
}

// routeSources maps each Route (its Site's first host, its path) to where
// it came from.
func routeSources(cfg *config.Config) map[[2]string]string {
	out := map[[2]string]string{}
	if cfg == nil {
		return out
	}
	for _, s := range cfg.Sites {
		if len(s.Hosts) == 0 {
			continue
		}
		for _, r := range s.Routes {
			out[[2]string{s.Hosts[0], r.Path}] = sourceOf(r.Source)
		}
	}
	return out
}

// RefusedHost counts a host that source named and refused (a container
// label outside docker.allowed_hosts) in the admin metrics. It is safe to
// call from a Source's Load.
func (g *Gateway) RefusedHost(source string) {
	if m := g.admin.metrics; m != nil {
		m.RefusedHost(source)
	}
}

// challengeOf names the challenge types an order for host uses, from the
// applied config: DNS-01 for wildcards and Sites with a DNS provider, else
// the enabled acme.challenges.
func (g *Gateway) challengeOf(host string) string {
	cfg := g.admin.cfg.Load()
	if cfg == nil {
		return "unknown"
	}
	if strings.HasPrefix(host, "*.") || cfg.ACME.DNS != nil {
		return "dns-01"
	}
	for _, s := range cfg.Sites {
		for _, h := range s.Hosts {
			if strings.EqualFold(h, host) && s.TLS.DNS != nil {
				return "dns-01"
			}
		}
	}
	return strings.Join(cfg.ACME.Challenges, ",")
}
