package main

import (
	"context"

	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/gatehouse-proxy/gatehouse/gateway"
)

func cmdRun(ctx context.Context, args []string, env *environment) error {
	fs := newFlags("run", "run [-config FILE]", env)
	path := configFlag(fs, env)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		printProblems(env.stderr, err)
		return exitError(1)
	}
	return serve(ctx, env, cfg, &gateway.File{Path: *path, Signals: env.reload})
}

// serve runs a gateway on cfg, fed by source, until ctx is done.
func serve(ctx context.Context, env *environment, cfg *config.Config, source gateway.Source) error {
	g, err := gateway.New(gateway.Options{
		Config:  cfg,
		Sources: []gateway.Source{source},
		Log:     env.stderr,
		Version: buildVersion(),
		Reopen:  env.reopen,
	})
	if err != nil {
		return err
	}
	return g.Run(ctx)
}
