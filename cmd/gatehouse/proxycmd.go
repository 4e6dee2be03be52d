package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
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
	from := fs.String("from", "", "`HOST[:PORT]` to serve over HTTPS (port default 443)")
	var to listFlag
	fs.Var(&to, "to", "upstream `URL` to proxy to; repeat for round robin")
	storage := fs.String("storage", defaultStorage(env), "storage `DIR` for certificates and keys")
	internal := fs.Bool("internal", false, "use the local CA even for a public host")
	email := fs.String("email", env.getenv("GATEHOUSE_EMAIL"), "ACME account `EMAIL`")
	ca := fs.String("ca", "", "ACME directory `URL` (default Let's Encrypt)")
	caRoot := fs.String("ca-root", "", "PEM `FILE` of extra roots trusted when talking to the CA")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *from == "" || len(to) == 0 {
		fmt.Fprintln(env.stderr, "gatehouse proxy: --from and at least one --to are required")
		fs.Usage()
		return exitError(2)
	}
	cfg, err := quickConfig(*from, to, *storage, *internal, *email, *ca, *caRoot)
	if err != nil {
		return err
	}
	return serve(ctx, env, cfg, gateway.Static(cfg))
}

// quickConfig builds the config `gatehouse proxy` serves: one Site, one
// Route. A port other than 443 moves the HTTPS Listener there and turns the
// HTTP Listener off, since :80 is then most likely not ours either.
func quickConfig(from string, to []string, storage string, internal bool, email, ca, caRoot string) (*config.Config, error) {
	host, port := from, "443"
	if h, p, err := net.SplitHostPort(from); err == nil {
		host, port = h, p
	}
	host = strings.TrimPrefix(strings.TrimPrefix(host, "https://"), "http://")
	cfg := &config.Config{
		Admin:   "off",
		Storage: storage,
		Listen:  config.Listen{HTTPS: ":" + port},
		ACME:    config.ACME{Email: email, CA: ca, CARoot: caRoot},
		Sites: []config.Site{{
			Hosts:  []string{host},
			Routes: []config.Route{{Path: "/", Upstreams: to}},
		}},
	}
	if port == "443" {
		cfg.Listen.HTTP = ":80"
	} else {
		// Only TLS-ALPN-01 can work without an HTTP Listener.
		cfg.ACME.Challenges = []string{"tls-alpn-01"}
	}
	if internal {
		cfg.Sites[0].TLS.Issuer = config.IssuerInternal
	}
	if err := config.Complete(cfg); err != nil {
		return nil, fmt.Errorf("flags: %w", err)
	}
	return cfg, nil
}

// defaultStorage is $GATEHOUSE_STORAGE, else /var/lib/gatehouse for root,
// else the user's data directory.
func defaultStorage(env *environment) string {
	if s := env.getenv("GATEHOUSE_STORAGE"); s != "" {
		return s
	}
	if os.Geteuid() == 0 {
		return "/var/lib/gatehouse"
	}
	if d := env.getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "gatehouse")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "share", "gatehouse")
	}
	return "gatehouse-data"
}
