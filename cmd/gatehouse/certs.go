package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gatehouse-proxy/gatehouse/admin/client"
	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr"
)

const certsUsage = `Usage: gatehouse certs COMMAND [flags]

  list [--json]                      every Certificate, most urgent first
  show NAME                          one Certificate in full, with its chain
  renew NAME|--all [--force]         renew now (--force even when not due)
  revoke NAME --reason REASON        revoke at the CA, then obtain and serve a replacement
                                     (REASON: ` + "keyCompromise, superseded, cessationOfOperation, affiliationChanged, unspecified" + `)
  retire                             retire the Certificates of hosts no longer in the config
` + certsBudgetUsage + `
They talk to the running gatehouse through its admin endpoint (--admin ADDR,
default the config's admin). When none answers, they work on the storage
directly (renew then answers the CA's challenges on the config's listen
addresses itself). retire always works on the storage and the config file.

Flags common to every command:
  -config FILE   the config (default $GATEHOUSE_CONFIG, else ` + config.DefaultPath + `)
  --admin ADDR   the admin endpoint to use instead of the config's
`

// certsCmd is one run of `gatehouse certs`: its flags and where it works.
type certsCmd struct {
	env     *environment
	cfgPath string
	admin   string
	client  *http.Client
}

func cmdCerts(ctx context.Context, args []string, env *environment) error {
	if ok, err := named(args, certsUsage, env); !ok {
		return err
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("certs "+sub, flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	fs.Usage = func() { fmt.Fprint(env.stderr, certsUsage) }
	c := &certsCmd{env: env, client: &http.Client{Timeout: 5 * time.Minute}}
	cfgPath := configFlag(fs, env)
	admin := fs.String("admin", "", "admin endpoint `ADDR` (default: the config's admin)")
	asJSON := fs.Bool("json", false, "list: print JSON")
	all := fs.Bool("all", false, "renew: every Certificate that can be renewed")
	force := fs.Bool("force", false, "renew: even when not due")
	reason := fs.String("reason", "", "revoke: the RFC 5280 `REASON`")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	c.cfgPath, c.admin = *cfgPath, *admin

	want := func(n int, what string) error {
		if len(pos) != n {
			fmt.Fprintf(env.stderr, "gatehouse certs %s: %s\n\n", sub, what)
			fs.Usage()
			return exitError(2)
		}
		return nil
	}
	switch sub {
	case "list":
		if err := want(0, "takes no arguments"); err != nil {
			return err
		}
		return c.list(ctx, *asJSON)
	case "show":
		if err := want(1, "needs one NAME"); err != nil {
			return err
		}
		return c.show(ctx, pos[0])
	case "renew":
		if *all {
			if err := want(0, "takes NAME or --all, not both"); err != nil {
				return err
			}
			return c.renewAll(ctx, *force)
		}
		if err := want(1, "needs one NAME, or --all"); err != nil {
			return err
		}
		return c.renew(ctx, pos[0], *force)
	case "revoke":
		if err := want(1, "needs one NAME"); err != nil {
			return err
		}
		if *reason == "" {
			fmt.Fprintf(env.stderr, "gatehouse certs revoke: --reason is required (%s)\n", strings.Join(tlsmgr.RevocationReasons(), ", "))
			return exitError(2)
		}
		if _, err := tlsmgr.ParseRevocationReason(*reason); err != nil {
			fmt.Fprintf(env.stderr, "gatehouse certs revoke: %v\n", err)
			return exitError(2)
		}
		return c.revoke(ctx, pos[0], *reason)
	case "budget":
		return c.budget(ctx, *asJSON)
	case "retire":
		if err := want(0, "takes no arguments"); err != nil {
			return err
		}
		return c.retire(ctx)
	default:
		fmt.Fprintf(env.stderr, "gatehouse certs: unknown command %q\n\n", sub)
		fs.Usage()
		return exitError(2)
	}
}

// reach returns the running gatehouse's Certificates or, when none
// answers at the admin endpoint, says so and works on the storage.
func (c *certsCmd) reach(ctx context.Context) (client.Certificates, error) {
	addr := c.admin
	if addr == "" {
		addr = config.DefaultAdmin
		if cfg, err := config.Load(c.cfgPath); err == nil {
			addr = cfg.Admin
		}
	}
	return client.Reach(ctx, addr, c.client, func(why error) (client.Certificates, error) {
		cfg, err := loadConfig(c.cfgPath, c.env)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(c.env.stderr, "# %v; working on the storage %s\n", why, cfg.Storage)
		return &tlsmgr.Offline{Config: cfg, Log: c.logger()}, nil
	})
}

// inventory reaches the Certificates and returns them with their
// inventory.
func (c *certsCmd) inventory(ctx context.Context) (client.Certificates, []tlsmgr.CertificateInfo, error) {
	certs, err := c.reach(ctx)
	if err != nil {
		return nil, nil, err
	}
	list, err := certs.Certificates(ctx)
	return certs, list, err
}

func (c *certsCmd) list(ctx context.Context, asJSON bool) error {
	_, certs, err := c.inventory(ctx)
	if err != nil {
		return err
	}
	tlsmgr.SortCertificates(certs)
	if asJSON {
		if certs == nil {
			certs = []tlsmgr.CertificateInfo{}
		}
		for i := range certs {
			certs[i].ChainPEM = "" // `certs show` has it
		}
		enc := json.NewEncoder(c.env.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(certs)
	}
	printTable(c.env.stdout, certs, time.Now(), isTerminal(c.env.stdout) && c.env.getenv("NO_COLOR") == "")
	return nil
}

// ANSI colours for the days-left column.
const (
	red    = "\x1b[31m"
	yellow = "\x1b[33m"
	green  = "\x1b[32m"
	reset  = "\x1b[0m"
)

// printTable writes the inventory as a table; with colour, days left are
// red when expired or failing, yellow when expiring or within a week,
// green otherwise.
func printTable(w io.Writer, certs []tlsmgr.CertificateInfo, now time.Time, colour bool) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STATUS\tDAYS LEFT\tNAMES\tSOURCE\tISSUER\tNEXT RENEWAL\tLAST ERROR")
	for _, ci := range certs {
		days := "-"
		if d, ok := ci.DaysLeft(now); ok {
			days = fmt.Sprint(d)
			if colour {
				// Colour codes are zero-width on a terminal but count for
				// tabwriter, so every cell of the column gets the same
				// number of them.
				col := green
				switch {
				case ci.Status == tlsmgr.StatusExpired || ci.Status == tlsmgr.StatusFailing || d < 0:
					col = red
				case ci.Status == tlsmgr.StatusExpiring || d < 7:
					col = yellow
				}
				days = col + days + reset
			}
		} else if colour {
			days = reset + days + reset
		}
		next := "-"
		if !ci.NextRenewal.IsZero() {
			next = ci.NextRenewal.UTC().Format(time.RFC3339) + " (" + ci.RenewalReason + ")"
		}
		issuer := ci.Issuer
		if issuer == "" {
			issuer = "-"
		}
		lastErr := ci.LastError
		if len(lastErr) > 80 {
			lastErr = lastErr[:77] + "..."
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", ci.Status, days, strings.Join(ci.Names, ","), ci.Source, issuer, next, lastErr)
	}
	tw.Flush()
}

// isTerminal reports whether w is a terminal, so colour is used only
// there and never in pipes or files.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func (c *certsCmd) show(ctx context.Context, name string) error {
	_, certs, err := c.inventory(ctx)
	if err != nil {
		return err
	}
	ci, ok := tlsmgr.FindCertificate(certs, name)
	if !ok {
		return fmt.Errorf("no certificate for %s", name)
	}
	printCert(c.env.stdout, ci, time.Now())
	return nil
}

// printCert writes every field of ci, then its chain.
func printCert(w io.Writer, ci tlsmgr.CertificateInfo, now time.Time) {
	ts := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format(time.RFC3339)
	}
	or := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	days := "-"
	if d, ok := ci.DaysLeft(now); ok {
		days = fmt.Sprint(d)
	}
	next := ts(ci.NextRenewal)
	if ci.RenewalReason != "" {
		next += " (" + ci.RenewalReason + ")"
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, kv := range [][2]string{
		{"names", strings.Join(ci.Names, ", ")},
		{"status", string(ci.Status)},
		{"source", ci.Source},
		{"issuer", or(ci.Issuer)},
		{"ca", or(ci.CA)},
		{"key type", or(ci.KeyType)},
		{"serial", or(ci.Serial)},
		{"not before", ts(ci.NotBefore)},
		{"not after", ts(ci.NotAfter)},
		{"days left", days},
		{"next renewal", next},
		{"last attempt", ts(ci.LastAttempt)},
		{"last error", or(ci.LastError)},
		{"failures", fmt.Sprint(ci.Failures)},
		{"retired at", ts(ci.RetiredAt)},
	} {
		fmt.Fprintf(tw, "%s:\t%s\n", kv[0], kv[1])
	}
	tw.Flush()
	if ci.ChainPEM != "" {
		fmt.Fprintf(w, "\n%s", ci.ChainPEM)
	}
}

func (c *certsCmd) renew(ctx context.Context, name string, force bool) error {
	certs, err := c.reach(ctx)
	if err != nil {
		return err
	}
	return c.renewOne(ctx, certs, name, force)
}

// renewOne renews name on certs and says what then serves it.
func (c *certsCmd) renewOne(ctx context.Context, certs client.Certificates, name string, force bool) error {
	ci, err := certs.Renew(ctx, name, force)
	if err != nil {
		return err // it names the call and the host
	}
	fmt.Fprintf(c.env.stdout, "%s: serial %s, valid until %s (%s)", name, ci.Serial, ci.NotAfter.UTC().Format(time.RFC3339), ci.Status)
	if _, offline := certs.(*tlsmgr.Offline); offline {
		fmt.Fprint(c.env.stdout, "; gatehouse serves it when it starts")
	}
	fmt.Fprintln(c.env.stdout)
	return nil
}

// renewAll renews every Certificate gatehouse can renew (not files, not
// retired ones, not ACME ones still without a certificate), going on after
// a failure; it fails if any did.
func (c *certsCmd) renewAll(ctx context.Context, force bool) error {
	certs, list, err := c.inventory(ctx)
	if err != nil {
		return err
	}
	_, offline := certs.(*tlsmgr.Offline)
	failed := 0
	for _, ci := range list {
		ok, pending := ci.Renewable(offline)
		if pending {
			fmt.Fprintf(c.env.stderr, "# %s: no certificate yet (%s); skipped\n", ci.Names[0], ci.Status)
		}
		if !ok {
			continue
		}
		if err := c.renewOne(ctx, certs, ci.Names[0], force); err != nil {
			fmt.Fprintf(c.env.stderr, "gatehouse certs renew: %v\n", err)
			failed++
		}
	}
	if failed > 0 {
		return exitError(1)
	}
	return nil
}

func (c *certsCmd) revoke(ctx context.Context, name, reason string) error {
	certs, err := c.reach(ctx)
	if err != nil {
		return err
	}
	ci, err := certs.Revoke(ctx, name, reason)
	if err != nil {
		return err // it names the call and the host
	}
	if _, offline := certs.(*tlsmgr.Offline); offline {
		fmt.Fprintf(c.env.stdout, "%s: revoked (%s); gatehouse obtains a replacement when it starts if the host is still configured\n", name, reason)
		return nil
	}
	fmt.Fprintf(c.env.stdout, "%s: revoked (%s); now serving serial %s, valid until %s\n", name, reason, ci.Serial, ci.NotAfter.UTC().Format(time.RFC3339))
	return nil
}

// retire works on the storage and the config file: it is what a running
// gatehouse does after each reload, so it is safe beside one.
func (c *certsCmd) retire(ctx context.Context) error {
	cfg, err := loadConfig(c.cfgPath, c.env)
	if err != nil {
		return err
	}
	names, err := (&tlsmgr.Offline{Config: cfg, Log: c.logger()}).Retire(ctx)
	if err != nil {
		return err
	}
	if len(names) == 0 {
		fmt.Fprintln(c.env.stdout, "nothing to retire")
		return nil
	}
	for _, n := range names {
		fmt.Fprintf(c.env.stdout, "%s: retired; no longer renewed, deleted after %s\n", n, cfg.RetireAfter)
	}
	return nil
}

// logger logs warnings of the offline commands to stderr.
func (c *certsCmd) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(c.env.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}
