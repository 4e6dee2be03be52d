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
	return serve(ctx, c.environment, cfg, gateway.Static(cfg))
}
