package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/gatehouse-proxy/gatehouse/admin/client"
	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr"
)

// certsCommands are the subcommands of certs, which share the flags of
// certsArgs.
func certsCommands() []command {
	return []command{
		{"list", "[--json]", "every Certificate, most urgent first", certsList},
		{"show", "NAME", "one Certificate in full, with its chain", certsShow},
		{"renew", "NAME|--all [--force]", "renew now (--force even when not due)", certsRenew},
		{"revoke", "NAME --reason REASON", "revoke at the CA, then obtain and serve a replacement\n(REASON: keyCompromise, superseded, cessationOfOperation, affiliationChanged, unspecified)", certsRevoke},
		{"retire", "", "retire the Certificates of hosts no longer in the config", certsRetire},
		{"budget", "[--json]", "what is left of each CA's rate limits (the budget)", certsBudget},
	}
}

// certsUsage lists certsCommands and the flags they share.
func certsUsage() string {
	var b strings.Builder
	b.WriteString("Usage: gatehouse certs COMMAND [flags]\n\n")
	subs := certsCommands()
	writeList(&b, len(subs), 37, func(i int) (string, string) { return subs[i].name + " " + subs[i].args, subs[i].summary })
	b.WriteString(`
They talk to the running gatehouse through its admin endpoint (--admin ADDR,
default the config's admin). When none answers, they work on the storage
directly (renew then answers the CA's challenges on the config's listen
addresses itself). retire always works on the storage and the config file.

Flags common to every command:
  -config FILE   the config (default $GATEHOUSE_CONFIG, else ` + config.DefaultPath + `)
  --admin ADDR   the admin endpoint to use instead of the config's
`)
	return b.String()
}

func cmdCerts(ctx context.Context, c *cmdline) error {
	return group("certs", certsCommands(), certsUsage())(ctx, c)
}

// certsCmd is one run of a certs command: its flags and where it works.
type certsCmd struct {
	*cmdline
	admin              *string
	asJSON, all, force *bool
	reason             *string
	client             *http.Client
}

// certsArgs declares the flags every certs command takes, parses them
// and wants n arguments (any number if n < 0); what says so otherwise.
func certsArgs(c *cmdline, n int, what string) (*certsCmd, []string, error) {
	c.Usage = func() { fmt.Fprint(c.stderr, certsUsage()) }
	c.configFlag()
	cc := &certsCmd{
		cmdline: c,
		admin:   c.String("admin", "", "admin endpoint `ADDR` (default: the config's admin)"),
		asJSON:  c.Bool("json", false, "list: print JSON"),
		all:     c.Bool("all", false, "renew: every Certificate that can be renewed"),
		force:   c.Bool("force", false, "renew: even when not due"),
		reason:  c.String("reason", "", "revoke: the RFC 5280 `REASON`"),
		client:  &http.Client{Timeout: 5 * time.Minute},
	}
	pos, err := c.interspersed()
	if err == nil && n >= 0 && len(pos) != n {
		err = cc.misuse(what)
	}
	return cc, pos, err
}

// misuse says what is wrong with the arguments, then the usage: exit 2.
func (c *certsCmd) misuse(what string) error {
	fmt.Fprintf(c.stderr, "gatehouse %s: %s\n\n", c.Name(), what)
	c.Usage()
	return exitError(2)
}

func certsList(ctx context.Context, c *cmdline) error {
	cc, _, err := certsArgs(c, 0, "takes no arguments")
	if err != nil {
		return err
	}
	certs, err := cc.inventory(ctx)
	if err != nil {
		return err
	}
	tlsmgr.SortCertificates(certs)
	if *cc.asJSON {
		for i := range certs {
			certs[i].ChainPEM = "" // `certs show` has it
		}
		return writeJSON(c.stdout, certs)
	}
	return tlsmgr.WriteCertificates(c.stdout, certs, time.Now(), isTerminal(c.stdout) && c.getenv("NO_COLOR") == "")
}

// writeJSON writes list as indented JSON, as --json prints it: [] when
// empty, never null.
func writeJSON[T any](w io.Writer, list []T) error {
	if list == nil {
		list = []T{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(list)
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

func certsShow(ctx context.Context, c *cmdline) error {
	cc, pos, err := certsArgs(c, 1, "needs one NAME")
	if err != nil {
		return err
	}
	certs, err := cc.inventory(ctx)
	if err != nil {
		return err
	}
	ci, ok := tlsmgr.FindCertificate(certs, pos[0])
	if !ok {
		return fmt.Errorf("no certificate for %s", pos[0])
	}
	return ci.WriteDetail(c.stdout, time.Now())
}

// certsRenew renews one Certificate, or with --all every one gatehouse
// can renew (see [client.RenewAll]), going on after a failure; it fails
// if any did.
func certsRenew(ctx context.Context, c *cmdline) error {
	cc, pos, err := certsArgs(c, -1, "")
	switch {
	case err != nil:
		return err
	case *cc.all && len(pos) != 0:
		return cc.misuse("takes NAME or --all, not both")
	case !*cc.all && len(pos) != 1:
		return cc.misuse("needs one NAME, or --all")
	}
	certs, err := cc.reach(ctx)
	if err != nil {
		return err
	}
	if !*cc.all {
		ci, err := certs.Renew(ctx, pos[0], *cc.force)
		if err != nil {
			return err // it names the call and the host
		}
		cc.renewed(certs, pos[0], ci)
		return nil
	}
	failed, err := client.RenewAll(ctx, certs, *cc.force, func(r client.Renewal) {
		switch {
		case r.Pending:
			fmt.Fprintf(c.stderr, "# %s: no certificate yet (%s); skipped\n", r.Name, r.Listed.Status)
		case r.Err != nil:
			fmt.Fprintf(c.stderr, "gatehouse certs renew: %v\n", r.Err)
		default:
			cc.renewed(certs, r.Name, r.Renewed)
		}
	})
	if err == nil && failed > 0 {
		return exitError(1)
	}
	return err
}

// renewed says what serves name after its renewal.
func (c *certsCmd) renewed(certs client.Certificates, name string, ci tlsmgr.CertificateInfo) {
	fmt.Fprintf(c.stdout, "%s: serial %s, valid until %s (%s)", name, ci.Serial, ci.NotAfter.UTC().Format(time.RFC3339), ci.Status)
	if _, offline := certs.(*tlsmgr.Offline); offline {
		fmt.Fprint(c.stdout, "; gatehouse serves it when it starts")
	}
	fmt.Fprintln(c.stdout)
}

func certsRevoke(ctx context.Context, c *cmdline) error {
	cc, pos, err := certsArgs(c, 1, "needs one NAME")
	if err != nil {
		return err
	}
	name, reason := pos[0], *cc.reason
	if reason == "" {
		fmt.Fprintf(c.stderr, "gatehouse certs revoke: --reason is required (%s)\n", strings.Join(tlsmgr.RevocationReasons(), ", "))
		return exitError(2)
	}
	if _, err := tlsmgr.ParseRevocationReason(reason); err != nil {
		fmt.Fprintf(c.stderr, "gatehouse certs revoke: %v\n", err)
		return exitError(2)
	}
	certs, err := cc.reach(ctx)
	if err != nil {
		return err
	}
	ci, err := certs.Revoke(ctx, name, reason)
	if err != nil {
		return err // it names the call and the host
	}
	if _, offline := certs.(*tlsmgr.Offline); offline {
		fmt.Fprintf(c.stdout, "%s: revoked (%s); gatehouse obtains a replacement when it starts if the host is still configured\n", name, reason)
		return nil
	}
	fmt.Fprintf(c.stdout, "%s: revoked (%s); now serving serial %s, valid until %s\n", name, reason, ci.Serial, ci.NotAfter.UTC().Format(time.RFC3339))
	return nil
}

// certsRetire works on the storage and the config file: it is what a
// running gatehouse does after each reload, so it is safe beside one.
func certsRetire(ctx context.Context, c *cmdline) error {
	cc, _, err := certsArgs(c, 0, "takes no arguments")
	if err != nil {
		return err
	}
	cfg, err := c.loadConfig()
	if err != nil {
		return err
	}
	names, err := (&tlsmgr.Offline{Config: cfg, Log: cc.logger()}).Retire(ctx)
	if err != nil {
		return err
	}
	if len(names) == 0 {
		fmt.Fprintln(c.stdout, "nothing to retire")
		return nil
	}
	for _, n := range names {
		fmt.Fprintf(c.stdout, "%s: retired; no longer renewed, deleted after %s\n", n, cfg.RetireAfter)
	}
	return nil
}

func certsBudget(ctx context.Context, c *cmdline) error {
	cc, _, err := certsArgs(c, -1, "")
	if err != nil {
		return err
	}
	certs, err := cc.reach(ctx)
	if err != nil {
		return err
	}
	lines, err := certs.Budget(ctx)
	if err != nil {
		return err
	}
	if *cc.asJSON {
		return writeJSON(c.stdout, lines)
	}
	return tlsmgr.WriteBudget(c.stdout, lines)
}

// reach returns the running gatehouse's Certificates or, when none
// answers at the admin endpoint, says so and works on the storage.
func (c *certsCmd) reach(ctx context.Context) (client.Certificates, error) {
	addr := *c.admin
	if addr == "" {
		addr = config.DefaultAdmin
		if cfg, err := config.Load(*c.config); err == nil {
			addr = cfg.Admin
		}
	}
	return client.Reach(ctx, addr, c.client, func(why error) (client.Certificates, error) {
		cfg, err := c.loadConfig()
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(c.stderr, "# %v; working on the storage %s\n", why, cfg.Storage)
		return &tlsmgr.Offline{Config: cfg, Log: c.logger()}, nil
	})
}

// inventory reaches the Certificates and returns their inventory.
func (c *certsCmd) inventory(ctx context.Context) ([]tlsmgr.CertificateInfo, error) {
	certs, err := c.reach(ctx)
	if err != nil {
		return nil, err
	}
	return certs.Certificates(ctx)
}

// logger logs warnings of the offline commands to stderr.
func (c *certsCmd) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}
