package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"reflect"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/gatehouse-proxy/gatehouse/proxy"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr"
)

func cmdRun(ctx context.Context, args []string, env *environment) error {
	fs := newFlags("run", "run [-config FILE]", env)
	path := configFlag(fs, env)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	load := func() (*config.Config, error) { return config.Load(*path) }
	return serve(ctx, env, load, *path)
}

// reloadDebounce lets an editor finish writing (truncate, write, rename)
// before the file is read again.
const reloadDebounce = 250 * time.Millisecond

// gateway is one running gatehouse: its Listeners, certificates and routing
// table. Only the serve goroutine touches it after start.
type gateway struct {
	env        *environment
	logger     *slog.Logger
	load       func() (*config.Config, error)
	cfg        *config.Config // the running config
	certs      *tlsmgr.Manager
	routes     *proxy.Handler
	transports *proxy.Transports
	servers    []*http.Server
	wg         sync.WaitGroup // counts the Serve goroutines
	h3         *http3Listener // nil unless listen.http3
	trusted    trustedSet     // trusted_proxies, for the PROXY protocol
	accessFile *logFile       // nil unless log.file
	admin      adminState     // what the admin endpoint reads (adminwire.go)
}

// serve runs gatehouse until ctx is done, reloading on SIGHUP and, when
// watch names a file, whenever that file changes.
func serve(ctx context.Context, env *environment, load func() (*config.Config, error), watch string) error {
	cfg, err := load()
	if err != nil {
		printProblems(env.stderr, err)
		return exitError(1)
	}
	g := &gateway{env: env, load: load, cfg: cfg, logger: newLogger(env.stderr, cfg.Log)}
	if err := g.start(ctx); err != nil {
		g.stop()
		return err
	}
	g.logger.Info("gatehouse started", "version", buildVersion(), "https", cfg.Listen.HTTPS, "http", cfg.Listen.HTTP, "admin", cfg.Admin, "sites", len(cfg.Sites))

	var changes <-chan fsnotify.Event
	if watch != "" {
		w, err := watchFile(watch)
		if err != nil {
			g.logger.Warn("not watching the config file; reload with SIGHUP", "file", watch, "error", err)
		} else {
			defer w.Close()
			changes = w.Events
		}
	}
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	for {
		select {
		case <-ctx.Done():
			g.logger.Info("shutting down", "grace", g.cfg.Timeouts.Shutdown)
			g.stop()
			g.logger.Info("stopped")
			return nil
		case <-env.reload:
			g.reload(ctx, "signal")
		case done := <-g.admin.reloads:
			done <- g.reload(ctx, "admin")
		case <-env.reopen:
			g.reopenLogs()
		case ev := <-changes:
			if sameFile(ev.Name, watch) {
				debounce.Reset(reloadDebounce)
			}
		case <-debounce.C:
			g.reload(ctx, "file change")
		}
	}
}

// start binds every Listener first, so certmagic finds the challenge ports
// taken and answers challenges through them, then starts certificates and
// servers.
func (g *gateway) start(ctx context.Context) error {
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
	if cfg.Admin != "off" {
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
		var h http.Handler = g.routes
		if udp != nil {
			g.startHTTP3(udp, g.certs.TLSConfig(), g.routes)
			h = altSvc(h, cmp.Or(cfg.Listen.PublicHTTPSPort, udp.LocalAddr().(*net.UDPAddr).Port))
		}
		srv := &http.Server{
			Handler:           h,
			TLSConfig:         g.certs.TLSConfig(),
			ReadHeaderTimeout: cfg.Timeouts.ReadHeader,
			IdleTimeout:       cfg.Timeouts.Idle,
			MaxHeaderBytes:    int(cfg.Limits.HeaderBytes),
			ErrorLog:          errorLog,
			// No ReadTimeout or WriteTimeout: they would cut WebSockets and
			// streams; ReadHeaderTimeout and IdleTimeout stop slowloris.
		}
		g.goServe(srv, func() error { return srv.ServeTLS(httpsLn, "", "") })
	}
	if httpLn != nil {
		srv := &http.Server{
			Handler:           g.certs.HTTPHandler(g.routes.RedirectHandler()),
			ReadHeaderTimeout: cfg.Timeouts.ReadHeader,
			// The HTTP Listener only redirects and answers challenges, so it
			// can bound whole exchanges.
			ReadTimeout:    30 * time.Second,
			WriteTimeout:   30 * time.Second,
			IdleTimeout:    cfg.Timeouts.Idle,
			MaxHeaderBytes: int(cfg.Limits.HeaderBytes),
			ErrorLog:       errorLog,
		}
		g.goServe(srv, func() error { return srv.Serve(httpLn) })
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
		g.goServe(srv, func() error { return srv.Serve(adminLn) })
	}
	g.admin.ready.Store(true)
	return nil
}

func (g *gateway) proxyOptions(cfg *config.Config) proxy.Options {
	return proxy.Options{Logger: g.logger, Transports: g.transports, HTTPSPort: cfg.Listen.AdvertisedHTTPSPort(), Observe: g.observe()}
}

func (g *gateway) goServe(srv *http.Server, serve func() error) {
	g.servers = append(g.servers, srv)
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if err := serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			g.logger.Error("server stopped", "error", err)
		}
	}()
}

// stop drains in-flight requests for up to timeouts.shutdown, then closes
// what is left and stops certificate management.
func (g *gateway) stop() {
	g.admin.stopping()
	grace := g.cfg.Timeouts.Shutdown
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
	g.wg.Wait()
	defer g.closeAccessLog()
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

// reload loads, validates and compiles a whole new config, then swaps it in.
// Anything wrong leaves the running config serving.
func (g *gateway) reload(ctx context.Context, why string) error {
	log := g.logger.With("trigger", why)
	cfg, err := g.load()
	if err != nil {
		var problems config.Problems
		if errors.As(err, &problems) {
			for _, p := range problems {
				log.Error("invalid config; keeping the running one", "problem", p.Error())
			}
		} else {
			log.Error("loading config; keeping the running one", "error", err)
		}
		return err
	}
	keepRestartOnly(log, g.cfg, cfg)
	table, err := proxy.Compile(cfg, g.proxyOptions(cfg))
	if err != nil {
		log.Error("compiling routes; keeping the running config", "error", err)
		return fmt.Errorf("compiling routes: %w", err)
	}
	if err := g.certs.Apply(ctx, cfg); err != nil {
		log.Error("applying certificates; keeping the running config", "error", err)
		return fmt.Errorf("applying certificates: %w", err)
	}
	g.routes.Swap(table)
	g.trusted.set(cfg)
	g.cfg = cfg
	g.admin.cfg.Store(cfg)
	log.Info("config reloaded", "sites", len(cfg.Sites))
	return nil
}

// keepRestartOnly copies into next the settings a running gatehouse cannot
// change (they hold sockets, files or the log), warning for each that
// differs.
func keepRestartOnly(log *slog.Logger, running, next *config.Config) {
	warn := func(key string, was, now any) {
		log.Warn("this setting changes only on restart; keeping the running value", "key", key, "running", was, "new", now)
	}
	if running.Listen != next.Listen {
		warn("listen", running.Listen, next.Listen)
		next.Listen = running.Listen
	}
	if running.Storage != next.Storage {
		warn("storage", running.Storage, next.Storage)
		next.Storage = running.Storage
	}
	if running.Admin != next.Admin {
		warn("admin", running.Admin, next.Admin)
		next.Admin = running.Admin
	}
	// The ACME issuer and its account are built once (tlsmgr refuses to
	// change them live).
	if !reflect.DeepEqual(running.ACME, next.ACME) {
		warn("acme", "", "")
		next.ACME = running.ACME
	}
	if running.Log.Format != next.Log.Format || running.Log.Level != next.Log.Level ||
		running.Log.File != next.Log.File || running.Log.MaxSize != next.Log.MaxSize {
		warn("log", running.Log, next.Log)
		next.Log.Format, next.Log.Level = running.Log.Format, running.Log.Level
		next.Log.File, next.Log.MaxSize = running.Log.File, running.Log.MaxSize
	}
	if running.Limits != next.Limits {
		warn("limits", running.Limits, next.Limits)
		next.Limits = running.Limits
	}
	if running.Timeouts.ReadHeader != next.Timeouts.ReadHeader || running.Timeouts.Idle != next.Timeouts.Idle {
		warn("timeouts.read_header/idle", running.Timeouts, next.Timeouts)
		next.Timeouts.ReadHeader, next.Timeouts.Idle = running.Timeouts.ReadHeader, running.Timeouts.Idle
	}
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

// newLogger builds the process logger in the configured format.
func newLogger(w io.Writer, l config.Log) *slog.Logger {
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

// watchFile watches the directory holding path: editors and Kubernetes
// replace files by rename, which a watch on the file itself would miss.
func watchFile(path string) (*fsnotify.Watcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("creating file watcher: %w", err)
	}
	if err := w.Add(filepath.Dir(path)); err != nil {
		w.Close()
		return nil, fmt.Errorf("watching %s: %w", filepath.Dir(path), err)
	}
	return w, nil
}

// sameFile reports whether a watch event concerns path, or the "..data"
// symlink through which Kubernetes swaps mounted ConfigMaps.
func sameFile(name, path string) bool {
	if filepath.Base(name) == "..data" {
		return true
	}
	a, errA := filepath.Abs(name)
	b, errB := filepath.Abs(path)
	return errA == nil && errB == nil && a == b
}
