// Package gateway is a running gatehouse: it binds the Listeners, runs the
// HTTP/1, HTTP/2 and HTTP/3 servers, holds the certificate manager and the
// live routing table, wires the admin endpoint, and applies each new config
// its [Source]s produce through one pipeline: merge, validate, compile, then
// an atomic swap. A config that fails any step never replaces the running
// one.
package gateway

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/gatehouse-proxy/gatehouse/admin"
	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/gatehouse-proxy/gatehouse/proxy"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr/acmeserver"
)

// Options configure a [Gateway]. They are read once, by [New].
type Options struct {
	// Config is the config to start with, loaded and valid (required). It
	// decides the Listeners, storage, admin endpoint and log, which a
	// running Gateway keeps until restart.
	Config *config.Config
	// Sources are where later configs come from, in order of precedence:
	// the first is the primary (usually the file), whose Sites win over a
	// later Source's on the same host and path. Nil means Config is all
	// there is.
	Sources []Source
	// Log receives the process log (in the format and level of
	// Config.Log). Nil discards it.
	Log io.Writer
	// Version is reported in the start-up log line.
	Version string
	// Reopen delivers SIGUSR1: the access log file (log.file) is opened
	// again by its path, after a log rotator moved it away. Nil means never.
	Reopen <-chan os.Signal
	// Fleet reads the fleet's registry for the admin endpoint's /fleet
	// and dashboard; nil when not in a fleet.
	Fleet func(ctx context.Context) (admin.FleetStatus, error)
}

// Gateway is one running gatehouse. Make one with [New], then call
// [Gateway.Run] once.
type Gateway struct {
	opts    Options
	logger  *slog.Logger
	sources *sources

	// applyMu serializes Apply, so two config changes never interleave
	// their compile and swap; it guards cfg.
	applyMu sync.Mutex
	cfg     *config.Config // the running config
	closing bool           // stop has begun; nothing applies anymore

	certs      *tlsmgr.Manager
	acmeServer *acmeserver.Server // nil unless acme_server
	routes     *proxy.Handler
	transports *proxy.Transports
	servers    []*http.Server // the HTTPS and HTTP Listeners' servers
	adminSrv   *http.Server   // nil when admin is off
	wg         sync.WaitGroup // counts the Serve goroutines
	h3         *http3Listener // nil unless listen.http3
	trusted    trustedSet     // trusted_proxies, for the PROXY protocol
	accessFile *logFile       // nil unless log.file
	admin      adminState     // what the admin endpoint reads (adminwire.go)

	// started is closed once every Listener serves.
	started chan struct{}
}

// New makes a Gateway for opts.Config. Nothing is bound until Run.
func New(opts Options) (*Gateway, error) {
	if opts.Config == nil {
		return nil, errors.New("gateway: Options.Config is required")
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	g := &Gateway{
		opts:    opts,
		cfg:     opts.Config,
		logger:  NewLogger(opts.Log, opts.Config.Log),
		started: make(chan struct{}),
	}
	g.sources = newSources(g, opts.Sources)
	g.admin.stopped = make(chan struct{})
	return g, nil
}

// Logger is the Gateway's process logger.
func (g *Gateway) Logger() *slog.Logger { return g.logger }

// Started is closed once every Listener serves and the first config is
// applied.
func (g *Gateway) Started() <-chan struct{} { return g.started }

// Run binds the Listeners, serves, and applies what the Sources send until
// ctx is done; then it drains in-flight requests for timeouts.shutdown and
// stops. It returns an error only when gatehouse could not start.
func (g *Gateway) Run(ctx context.Context) error {
	if err := g.start(ctx); err != nil {
		g.stop()
		return err
	}
	cfg := g.running()
	g.logger.Info("gatehouse started", "version", g.opts.Version, "https", cfg.Listen.HTTPS, "http", cfg.Listen.HTTP, "admin", cfg.Admin, "sites", len(cfg.Sites))
	close(g.started)

	g.sources.run(ctx)
	g.logger.Info("shutting down", "grace", g.running().Timeouts.Shutdown)
	g.stop()
	g.logger.Info("stopped")
	return nil
}

// Reload reads every Source now, merges and applies the result, as SIGHUP
// and the admin endpoint's POST /reload do, and returns what went wrong.
// trigger names the cause in the log.
func (g *Gateway) Reload(ctx context.Context, trigger string) error {
	return g.sources.reloadNow(ctx, trigger)
}

// Running returns the config in force; nil until Run has started. It is
// safe to call from any goroutine.
func (g *Gateway) Running() *config.Config { return g.admin.cfg.Load() }

// CertificatesHeld counts the Certificates this gateway serves (issued and
// not retired; not those its ACME server issued to other machines); 0
// until Run has started.
func (g *Gateway) CertificatesHeld() int {
	select {
	case <-g.started:
	default:
		return 0
	}
	n := 0
	for _, c := range g.certs.Certificates() {
		// The ACME server's certificates are other machines' to serve.
		if !c.NotAfter.IsZero() && c.Status != tlsmgr.StatusRetired && c.Source != tlsmgr.SourceACMEServer {
			n++
		}
	}
	return n
}

// running returns the config in force.
func (g *Gateway) running() *config.Config {
	g.applyMu.Lock()
	defer g.applyMu.Unlock()
	return g.cfg
}

// start binds every Listener first, so certmagic finds the challenge ports
// taken and answers challenges through them, then starts certificates and
// servers.
func (g *Gateway) start(ctx context.Context) error {
	cfg := g.cfg
	var httpsLn, httpLn, adminLn net.Listener
	var err error
	if cfg.Listen.HTTPS != "" {
		if httpsLn, err = listen("listen.https", cfg.Listen.HTTPS); err != nil {
			return err
		}
	}
	if cfg.Listen.HTTP != "" {
		if httpLn, err = listen("listen.http", cfg.Listen.HTTP); err != nil {
			closeAll(httpsLn)
			return err
		}
	}
	if cfg.Admin != config.Off {
		if adminLn, err = listen("admin", cfg.Admin); err != nil {
			closeAll(httpsLn, httpLn)
			return err
		}
	}
	var udp net.PacketConn
	if cfg.Listen.HTTP3 && httpsLn != nil {
		if udp, err = listenUDP("listen.https", cfg.Listen.HTTPS); err != nil {
			closeAll(httpsLn, httpLn, adminLn)
			return err
		}
		// Once the servers own it, stopHTTP3 closes it.
		defer func() {
			if g.h3 == nil {
				udp.Close()
			}
		}()
	}
	g.trusted.set(cfg)
	if cfg.Listen.ProxyProtocol {
		if httpsLn != nil {
			httpsLn = proxyProtocol(httpsLn, &g.trusted, cfg.Timeouts.ReadHeader)
		}
		if httpLn != nil {
			httpLn = proxyProtocol(httpLn, &g.trusted, cfg.Timeouts.ReadHeader)
		}
	}
	accessLog, err := g.openAccessLog()
	if err != nil {
		closeAll(httpsLn, httpLn, adminLn)
		return err
	}

	g.certs, err = tlsmgr.New(ctx, cfg, g.logger)
	if err != nil {
		closeAll(httpsLn, httpLn, adminLn)
		return fmt.Errorf("starting certificate management: %w", err)
	}
	if err := g.startACMEServer(cfg); err != nil {
		closeAll(httpsLn, httpLn, adminLn)
		return err
	}
	g.newMetrics()
	g.transports = proxy.NewTransports()
	table, err := proxy.Compile(cfg, g.proxyOptions(cfg))
	if err != nil {
		closeAll(httpsLn, httpLn, adminLn)
		return fmt.Errorf("compiling routes: %w", err)
	}
	g.routes = proxy.NewHandler(table, accessLog)

	errorLog := slog.NewLogLogger(g.logger.Handler(), slog.LevelDebug)
	if httpsLn != nil {
		srv := &http.Server{
			Handler:           g.acmeHandler(g.routes),
			TLSConfig:         g.certs.TLSConfig(),
			ReadHeaderTimeout: cfg.Timeouts.ReadHeader,
			IdleTimeout:       cfg.Timeouts.Idle,
			MaxHeaderBytes:    int(cfg.Limits.HeaderBytes),
			HTTP2:             http2Config(cfg),
			// Failed handshakes are counted and summarised, not logged
			// one line each.
			ErrorLog: g.certs.HandshakeErrorLog(errorLog),
			// No ReadTimeout or WriteTimeout: they would cut WebSockets and
			// streams; ReadHeaderTimeout and IdleTimeout stop slowloris, and
			// the proxy moves a write deadline along each response
			// (timeouts.write) for clients that stop reading.
		}
		if udp != nil {
			g.startHTTP3(udp, g.certs.TLSConfig(), g.acmeHandler(g.routes), srv)
			srv.Handler = altSvc(srv.Handler, cmp.Or(cfg.Listen.PublicHTTPSPort, udp.LocalAddr().(*net.UDPAddr).Port))
		}
		// The handshake happens in tlsListener, so HTTP/1 requests are
		// checked for smuggling after decryption (framing.Conn). A clone, as
		// ServeTLS makes: Serve configures HTTP/2 by writing to srv.TLSConfig.
		ln := newTLSListener(httpsLn, srv.TLSConfig.Clone(), cfg.Timeouts.ReadHeader, srv.ErrorLog, refusedLogger(g.logger))
		g.goServe(srv, func() error { return srv.Serve(ln) })
	}
	if httpLn != nil {
		srv := &http.Server{
			Handler:           g.certs.ShareRootHandler(g.certs.HTTPHandler(g.routes.RedirectHandler()), g.sharingRoot),
			ReadHeaderTimeout: cfg.Timeouts.ReadHeader,
			// The HTTP Listener only redirects and answers challenges, so it
			// can bound whole exchanges.
			ReadTimeout:    30 * time.Second,
			WriteTimeout:   30 * time.Second,
			IdleTimeout:    cfg.Timeouts.Idle,
			MaxHeaderBytes: int(cfg.Limits.HeaderBytes),
			ErrorLog:       errorLog,
		}
		g.goServe(srv, func() error { return srv.Serve(strictListener{httpLn, refusedLogger(g.logger)}) })
	}
	if adminLn != nil {
		srv := &http.Server{
			Handler:           g.adminHandler(),
			ReadHeaderTimeout: cfg.Timeouts.ReadHeader,
			MaxHeaderBytes:    int(cfg.Limits.HeaderBytes),
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      adminWriteTimeout,
			IdleTimeout:       cfg.Timeouts.Idle,
			ErrorLog:          errorLog,
		}
		g.adminSrv = srv
		g.goServe(nil, func() error { return srv.Serve(adminLn) })
	}
	g.admin.ready.Store(true)
	return nil
}

func (g *Gateway) proxyOptions(cfg *config.Config) proxy.Options {
	return proxy.Options{Logger: g.logger, Transports: g.transports, HTTPSPort: cfg.Listen.AdvertisedHTTPSPort(), Observe: g.observe()}
}

// goServe runs serve; srv, unless nil, is drained by stop with the
// public servers.
func (g *Gateway) goServe(srv *http.Server, serve func() error) {
	if srv != nil {
		g.servers = append(g.servers, srv)
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if err := serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			g.logger.Error("server stopped", "error", err)
		}
	}()
}

// stop drains in-flight requests for up to timeouts.shutdown, then closes
// what is left and stops certificate management. The admin endpoint goes
// last: while the public servers drain, its /readyz answers 503, so a load
// balancer sees this instance leave rather than a refused connection.
func (g *Gateway) stop() {
	g.admin.stopping()
	g.applyMu.Lock()
	g.closing = true
	grace := g.cfg.Timeouts.Shutdown
	g.applyMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	var wg sync.WaitGroup
	for _, srv := range g.servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Shutdown(ctx); err != nil {
				g.logger.Warn("requests still in flight after the shutdown grace period; closing them", "grace", grace)
				srv.Close()
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		g.stopHTTP3(ctx)
	}()
	wg.Wait()
	if g.adminSrv != nil {
		if err := g.adminSrv.Shutdown(ctx); err != nil {
			g.adminSrv.Close()
		}
	}
	g.wg.Wait()
	defer g.closeAccessLog()
	g.closeACMEServer()
	if g.certs != nil {
		if err := g.certs.Close(); err != nil {
			g.logger.Warn("stopping certificate management", "error", err)
		}
	}
	if g.routes != nil {
		// Stops the Upstream health checks.
		_ = g.routes.Close()
	}
	if g.transports != nil {
		g.transports.Close()
	}
}

// Apply validates cfg, compiles its Routes and certificate policy, and swaps
// both in; anything wrong leaves the running config serving and is
// returned. Settings that only change on restart (Listeners, storage,
// admin, log, limits, ACME account) keep their running values, each
// difference logged. Apply is safe to call from any goroutine once Run has
// started.
func (g *Gateway) Apply(ctx context.Context, cfg *config.Config) error {
	return g.apply(ctx, cfg, g.logger)
}

func (g *Gateway) apply(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	select {
	case <-g.started:
	default:
		return errors.New("applying config: the gateway is not running")
	}
	g.applyMu.Lock()
	defer g.applyMu.Unlock()
	if g.closing {
		return errStopping
	}
	// The running config passed: its unchanged Sites are not checked again.
	if err := cfg.ValidateChange(g.cfg); err != nil {
		return err
	}
	keepRestartOnly(log, g.cfg, cfg)
	opts := g.proxyOptions(cfg)
	// Unchanged Sites keep their compiled Routes, Upstreams and health
	// checks: a change costs what changed.
	opts.Reuse = g.routes.Table()
	table, err := proxy.Compile(cfg, opts)
	if err != nil {
		return fmt.Errorf("compiling routes: %w", err)
	}
	if err := g.certs.Apply(ctx, cfg); err != nil {
		return fmt.Errorf("applying certificates: %w", err)
	}
	g.routes.Swap(table)
	g.trusted.set(cfg)
	g.cfg = cfg
	g.admin.cfg.Store(cfg)
	return nil
}

func listen(key, addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: listening on %s: %w", key, addr, err)
	}
	return ln, nil
}

func closeAll(lns ...net.Listener) {
	for _, ln := range lns {
		if ln != nil {
			ln.Close()
		}
	}
}

// NewLogger builds the process logger in the configured format and level.
func NewLogger(w io.Writer, l config.Log) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(l.Level)); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if l.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
