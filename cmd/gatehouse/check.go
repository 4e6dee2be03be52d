package main

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/gatehouse-proxy/gatehouse/tlsmgr/preflight"
)

// levelLabels start each printed finding, padded to one width.
var levelLabels = map[preflight.Level]string{preflight.OK: "ok", preflight.Note: "note", preflight.Fail: "FAIL"}

// cmdCheck is the ACME preflight: it finds what would make the CA refuse
// or fail an order before gatehouse asks it for one, printing each finding
// as it is made.
func cmdCheck(ctx context.Context, args []string, env *environment) error {
	fs := newFlags("check", "check [-config FILE] [-resolver HOST:PORT] [-caa-identity NAME]", env)
	path := configFlag(fs, env)
	resolver := fs.String("resolver", "", "DNS server `HOST:PORT` for the address and CAA lookups (default: the system's)")
	caaIdentity := fs.String("caa-identity", "", "the CAA issuer `NAME` of a CA gatehouse does not know (it knows Let's Encrypt, ZeroSSL, Google Trust Services)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(*path, env)
	if err != nil {
		return err
	}
	if _, _, err := net.SplitHostPort(*resolver); *resolver != "" && err != nil {
		return fmt.Errorf("-resolver: want HOST:PORT: %w", err)
	}
	report, err := preflight.Run(ctx, cfg, preflight.Options{
		Resolver:    *resolver,
		CAAIdentity: *caaIdentity,
		Progress: func(f preflight.Finding) {
			fmt.Fprintf(env.stdout, "%-6s%s: %s\n", levelLabels[f.Level], f.Subject, f.Message)
		},
	})
	if errors.Is(err, preflight.ErrNoSystemResolver) {
		return fmt.Errorf("%w (give one with -resolver)", err)
	}
	if err != nil {
		return err
	}
	switch n := report.Failures(); n {
	case 0:
		fmt.Fprintln(env.stdout, "ok: nothing found that would make the CA refuse an order")
		return nil
	case 1:
		fmt.Fprintln(env.stdout, "1 problem would make obtaining certificates fail")
	default:
		fmt.Fprintf(env.stdout, "%d problems would make obtaining certificates fail\n", n)
	}
	return exitError(1)
}
