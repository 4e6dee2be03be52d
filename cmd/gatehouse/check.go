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
func cmdCheck(ctx context.Context, c *cmdline) error {
	c.configFlag()
	resolver := c.String("resolver", "", "DNS server `HOST:PORT` for the address and CAA lookups (default: the system's)")
	caaIdentity := c.String("caa-identity", "", "the CAA issuer `NAME` of a CA gatehouse does not know (it knows Let's Encrypt, ZeroSSL, Google Trust Services)")
	cfg, err := c.load()
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
			fmt.Fprintf(c.stdout, "%-6s%s: %s\n", levelLabels[f.Level], f.Subject, f.Message)
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
		fmt.Fprintln(c.stdout, "ok: nothing found that would make the CA refuse an order")
		return nil
	case 1:
		fmt.Fprintln(c.stdout, "1 problem would make obtaining certificates fail")
	default:
		fmt.Fprintf(c.stdout, "%d problems would make obtaining certificates fail\n", n)
	}
	return exitError(1)
}
