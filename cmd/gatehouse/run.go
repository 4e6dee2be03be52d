package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/gatehouse-proxy/gatehouse/gateway"
	"github.com/gatehouse-proxy/gatehouse/gateway/docker"
	"github.com/gatehouse-proxy/gatehouse/gateway/fleet"
)

func cmdRun(ctx context.Context, c *cmdline) error {
	path := c.configFlag()
	cfg, err := c.load()
	if err != nil {
		return err
	}
	file := &gateway.File{Path: *path, Signals: c.reload}
	sources := []gateway.Source{file}
	var member *fleet.Source
	if cfg.Fleet != nil && cfg.StorageEtcd != nil {
		// A fleet's instance: the file and the fleet's document are one
		// primary Source, which also keeps the instance registered.
		if member, err = fleet.NewSource(cfg, file, fleet.Options{Version: buildVersion()}); err != nil {
			return err
		}
		defer member.Close()
		if cfg, err = member.StartConfig(ctx); err != nil {
			return c.problems(err)
		}
		sources[0] = member
	}
	var labels *docker.Source
	if cfg.Docker != nil {
		// Container labels: one more Source, after the file, which keeps
		// any host and path it serves. docker is read at start only.
		if labels, err = docker.New(cfg); err != nil {
			return c.problems(err)
		}
		sources = append(sources, labels)
	}
	return serve(ctx, c.environment, cfg, sources, labels, member)
}

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func cmdProxy(ctx context.Context, c *cmdline) error {
	var o config.QuickOptions
	c.StringVar(&o.From, "from", "", "`HOST[:PORT]` to serve over HTTPS (port default 443)")
	c.Var((*listFlag)(&o.To), "to", "upstream `URL` to proxy to; repeat for round robin")
	c.StringVar(&o.Storage, "storage", config.QuickStorage(c.getenv), "storage `DIR` for certificates and keys")
	c.BoolVar(&o.Internal, "internal", false, "use the local CA even for a public host")
	c.StringVar(&o.Email, "email", c.getenv("GATEHOUSE_EMAIL"), "ACME account `EMAIL`")
	c.StringVar(&o.CA, "ca", "", "ACME directory `URL` (default Let's Encrypt)")
	c.StringVar(&o.CARoot, "ca-root", "", "PEM `FILE` of extra roots trusted when talking to the CA")
	if _, err := c.parse(0); err != nil {
		return err
	}
	if o.From == "" || len(o.To) == 0 {
		fmt.Fprintln(c.stderr, "gatehouse proxy: --from and at least one --to are required")
		c.Usage()
		return exitError(2)
	}
	cfg, err := config.Quick(o)
	if err != nil {
		return fmt.Errorf("flags: %w", err)
	}
	return serve(ctx, c.environment, cfg, []gateway.Source{gateway.Static(cfg)}, nil, nil)
}

// serve runs a gateway on cfg, fed by sources, until ctx is done;
// labels, when not nil, is one of them, whose refused hosts are counted
// in the metrics; member, when not nil, is the primary of a fleet's
// instance, which reports the gateway in the fleet's registry.
func serve(ctx context.Context, env *environment, cfg *config.Config, sources []gateway.Source, labels *docker.Source, member *fleet.Source) error {
	opts := gateway.Options{
		Config:  cfg,
		Sources: sources,
		Log:     env.stderr,
		Version: buildVersion(),
		Reopen:  env.reopen,
	}
	if member != nil {
		opts.Fleet = member.Status
	}
	g, err := gateway.New(opts)
	if err != nil {
		return err
	}
	if member != nil {
		member.Gateway = g
	}
	if labels != nil {
		labels.Refused = func(string) { g.RefusedHost(labels.Name()) }
	}
	return g.Run(ctx)
}
