package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/gatehouse-proxy/gatehouse/admin/client"
	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr"
)

const migrateUsage = `Usage: gatehouse migrate --to ISSUER [flags]

Re-issues every ACME Certificate (or those --hosts and --from select) from
ISSUER, a CA name (letsencrypt, zerossl, ...) or directory URL among the
config's issuers. Each old certificate serves until its replacement is in
place. Progress is kept in storage: run the same command again to resume
after an interrupt or a restart.

It works through the running gatehouse's admin endpoint (--admin ADDR,
default the config's admin), so a running fleet migrates without a restart;
when none answers, on the storage directly (answering the CA's challenges
on the config's listen addresses itself).

Flags:
  --to ISSUER        the issuer to move to (required)
  --from ISSUER      only the Certificates issued by this one
  --hosts PATTERN    only these hosts (comma-separated, *.example.com)
  --rate N/UNIT      the pace of orders (1/s, 300/3h; default 10/min, or
                     half the target's orders limit over its window if slower)
  --dry-run          show the plan and order nothing
  --revoke-old       once all are replaced, revoke the old ones (superseded)
  --write-config     move ISSUER first in the config's issuer lists
  -config FILE       the config (default $GATEHOUSE_CONFIG, else ` + config.DefaultPath + `)
  --admin ADDR       the admin endpoint to use instead of the config's
`

func cmdMigrate(ctx context.Context, c *cmdline) error {
	c.Usage = func() { fmt.Fprint(c.stderr, migrateUsage) }
	c.configFlag()
	admin := c.String("admin", "", "")
	var opts tlsmgr.MigrateOptions
	c.StringVar(&opts.To, "to", "", "")
	c.StringVar(&opts.From, "from", "", "")
	c.StringVar(&opts.Hosts, "hosts", "", "")
	rate := c.String("rate", "", "")
	c.BoolVar(&opts.DryRun, "dry-run", false, "")
	c.BoolVar(&opts.RevokeOld, "revoke-old", false, "")
	writeConfig := c.Bool("write-config", false, "")
	if _, err := c.parse(0); err != nil {
		return err
	}
	if opts.To == "" {
		fmt.Fprint(c.stderr, "gatehouse migrate: --to is required\n\n"+migrateUsage)
		return exitError(2)
	}
	if *rate != "" {
		r, err := tlsmgr.ParseMigrateRate(*rate)
		if err != nil {
			fmt.Fprintf(c.stderr, "gatehouse migrate: --rate: %v\n", err)
			return exitError(2)
		}
		opts.Rate = r
	}

	// A migration runs for hours at a slow pace: no timeout on the call.
	certs, err := (&certsCmd{cmdline: c, admin: admin, client: &http.Client{}}).reach(ctx)
	if err != nil {
		return err
	}
	out := newMigrateOutput(c.stdout, isTerminal(c.stdout) && c.getenv("TERM") != "dumb", opts.DryRun)
	res, err := certs.Migrate(ctx, opts, out.event)
	out.finish()
	if err != nil {
		if errors.Is(err, context.Canceled) {
			err = errors.New("interrupted; run the same command again to resume")
		}
		return err
	}
	printMigrateResult(c.stdout, res)
	if res.Failed > 0 {
		// The config stays as it is: the old issuer still renews those.
		return exitError(1)
	}
	return issuerOrder(ctx, c, certs, opts.To, *writeConfig && !opts.DryRun)
}

// issuerOrder says which lines of the config to change so renewals try
// the new issuer first, or changes them with write and has the running
// gatehouse, if certs is one, reload.
func issuerOrder(ctx context.Context, c *cmdline, certs client.Certificates, to string, write bool) error {
	cfg, err := config.Load(*c.config)
	if err != nil {
		fmt.Fprintf(c.stderr, "# the config does not load, so its issuer order is not checked: %v\n", err)
		return nil
	}
	if !write {
		if changes := tlsmgr.IssuerOrder(cfg, to); len(changes) > 0 {
			fmt.Fprintln(c.stdout, "renewals still try another issuer first; change the config (or run with --write-config):")
			for _, ch := range changes {
				fmt.Fprintf(c.stdout, "  %s\n  %s\n", ch.Where.Error(), ch.First.Error())
			}
		}
		return nil
	}
	done, err := tlsmgr.PutIssuerFirst(cfg, to)
	for _, ch := range done {
		fmt.Fprintf(c.stdout, "%s: %s: moved %s first\n", cfg.File, ch.Path, to)
	}
	if live, ok := certs.(*client.Client); ok && err == nil && len(done) > 0 {
		// The file changed under the running gatehouse, which reloads
		// it on the change; asking makes sure, and reports a problem.
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := live.Reload(ctx); err != nil {
			return fmt.Errorf("reloading the running gatehouse: %w", err)
		}
	}
	return err
}

func printMigrateResult(w io.Writer, res tlsmgr.MigrationResult) {
	if res.DryRun {
		fmt.Fprintf(w, "plan: %d to migrate to %s (%d done before), %d skipped; %d orders at %g/min, about %s\n",
			res.Total, res.To, res.Resumed, res.Skipped, res.Total-res.Resumed, res.Rate, res.Estimate.Round(time.Second))
		for _, l := range res.Budget {
			if l.Max > 0 {
				fmt.Fprintf(w, "budget at %s: %s (%s, per %s): %d of %d left\n", l.Issuer, l.Limit, l.Key, l.Window, l.Remaining, l.Max)
			}
		}
		return
	}
	fmt.Fprintf(w, "migrated %d of %d to %s (%d by an earlier run), %d revoked, %d skipped, %d failed\n",
		res.Migrated, res.Total, res.To, res.Resumed, res.Revoked, res.Skipped, res.Failed)
}

// migrateOutput prints a migration's steps: on a terminal a progress bar,
// with the lines that need attention above it; otherwise one line per
// Certificate and step.
type migrateOutput struct {
	w        io.Writer
	terminal bool
	dryRun   bool
	barShown bool
}

func newMigrateOutput(w io.Writer, terminal, dryRun bool) *migrateOutput {
	return &migrateOutput{w: w, terminal: terminal, dryRun: dryRun}
}

// event is called one step at a time.
func (o *migrateOutput) event(ev tlsmgr.MigrationEvent) {
	line := migrateLine(ev, o.dryRun)
	if !o.terminal {
		if line != "" {
			fmt.Fprintln(o.w, line)
		}
		return
	}
	if line != "" && (ev.Step == tlsmgr.MigrationFailed || ev.Step == tlsmgr.MigrationSkipped || o.dryRun) {
		o.clearBar()
		fmt.Fprintln(o.w, line)
	}
	if !o.dryRun && ev.Total > 0 {
		o.bar(ev)
	}
}

// migrateLine is the one line of a step, "" for a step not worth one (the
// plan of a migration that is not a dry run).
func migrateLine(ev tlsmgr.MigrationEvent, dryRun bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s", ev.Host, ev.Step)
	switch ev.Step {
	case tlsmgr.MigrationPlanned:
		if !dryRun {
			return ""
		}
		if ev.From != "" {
			fmt.Fprintf(&b, " (now from %s, serial %s)", ev.From, ev.OldSerial)
		}
		if ev.Reason != "" {
			fmt.Fprintf(&b, ", failed before: %s", ev.Reason)
		}
	case tlsmgr.MigrationMigrated:
		fmt.Fprintf(&b, " (serial %s, was %s)", ev.Serial, ev.OldSerial)
	case tlsmgr.MigrationRevoked:
		fmt.Fprintf(&b, " (old serial %s at %s)", ev.OldSerial, ev.From)
	case tlsmgr.MigrationSkipped, tlsmgr.MigrationFailed:
		fmt.Fprintf(&b, ": %s", ev.Reason)
	}
	if ev.Resumed {
		b.WriteString(", by an earlier run")
	}
	if ev.Total > 0 && (ev.Step == tlsmgr.MigrationMigrated || ev.Step == tlsmgr.MigrationRevoked) {
		fmt.Fprintf(&b, " [%d/%d]", ev.Done, ev.Total)
	}
	return b.String()
}

const barWidth = 30

func (o *migrateOutput) bar(ev tlsmgr.MigrationEvent) {
	filled := barWidth * ev.Done / ev.Total
	fmt.Fprintf(o.w, "\r\x1b[K[%s%s] %d/%d %s %s", strings.Repeat("#", filled), strings.Repeat(".", barWidth-filled), ev.Done, ev.Total, ev.Host, ev.Step)
	o.barShown = true
}

func (o *migrateOutput) clearBar() {
	if o.barShown {
		fmt.Fprint(o.w, "\r\x1b[K")
	}
}

// finish ends the bar's line.
func (o *migrateOutput) finish() {
	if o.barShown {
		fmt.Fprintln(o.w)
		o.barShown = false
	}
}
