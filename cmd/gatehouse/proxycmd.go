package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/gatehouse-proxy/gatehouse/gateway"
)

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func cmdProxy(ctx context.Context, args []string, env *environment) error {
	fs := newFlags("proxy", "proxy --from HOST[:PORT] --to URL [--to URL...]", env)
	var o config.QuickOptions
	fs.StringVar(&o.From, "from", "", "`HOST[:PORT]` to serve over HTTPS (port default 443)")
	fs.Var((*listFlag)(&o.To), "to", "upstream `URL` to proxy to; repeat for round robin")
	fs.StringVar(&o.Storage, "storage", config.QuickStorage(env.getenv), "storage `DIR` for certificates and keys")
	fs.BoolVar(&o.Internal, "internal", false, "use the local CA even for a public host")
	fs.StringVar(&o.Email, "email", env.getenv("GATEHOUSE_EMAIL"), "ACME account `EMAIL`")
	fs.StringVar(&o.CA, "ca", "", "ACME directory `URL` (default Let's Encrypt)")
	fs.StringVar(&o.CARoot, "ca-root", "", "PEM `FILE` of extra roots trusted when talking to the CA")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if o.From == "" || len(o.To) == 0 {
		fmt.Fprintln(env.stderr, "gatehouse proxy: --from and at least one --to are required")
		fs.Usage()
		return exitError(2)
	}
	cfg, err := config.Quick(o)
	if err != nil {
		return fmt.Errorf("flags: %w", err)
	}
	return serve(ctx, env, cfg, gateway.Static(cfg))
}
