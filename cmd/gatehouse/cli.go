package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = ""

// environment is what a command may touch of the process, so tests run
// commands in-process.
type environment struct {
	stdout, stderr io.Writer
	stdin          io.Reader // hash-password reads it; nil means os.Stdin
	getenv         func(string) string
	// reload delivers SIGHUP.
	reload <-chan os.Signal
	// reopen delivers SIGUSR1: reopen the access log file.
	reopen <-chan os.Signal
}

// exitError asks main for a specific exit code after the command has
// already said what went wrong.
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// command is one command or subcommand: the usage texts are made from its
// name, args and summary.
type command struct {
	name, args string
	// summary says what it does; a summary of several lines is indented
	// alike on each.
	summary string
	run     func(ctx context.Context, c *cmdline) error
}

func commands() []command {
	return []command{
		{"run", "[-config FILE]", "serve until SIGTERM; SIGHUP reloads", cmdRun},
		{"validate", "[-config FILE]", "check a config; prints ok or every problem", cmdValidate},
		{"proxy", "--from HOST[:PORT] --to URL [--to URL...]", "proxy one host, no config file", cmdProxy},
		{"trust", "[-config FILE] [-storage DIR] [--install]", "print the local CA's root, or install it in this machine's trust stores", cmdTrust},
		{"untrust", "[-config FILE] [-storage DIR]", "remove the local CA's root from this machine's trust stores", cmdUntrust},
		{"check", "[-config FILE] [-resolver HOST:PORT] [-caa-identity NAME]", "ACME preflight: DNS, ports, CAA, the CA", cmdCheck},
		{"certs", names(certsCommands()), "see and steer the Certificates", cmdCerts},
		{"migrate", "--to ISSUER [--from ISSUER] [--hosts PATTERN] [--rate 10/min] [--dry-run] [--revoke-old] [--write-config]", "re-issue the Certificates from another CA, paced and resumable", cmdMigrate},
		{"storage", names(storageCommands), "encryption key for etcd storage; copy file <-> etcd", group("storage", storageCommands, "")},
		{"config", names(configCommands), "the fleet's shared config in etcd", group("config", configCommands, "")},
		{"fleet", names(fleetCommands), "the fleet's instances", group("fleet", fleetCommands, "")},
		{"hash-password", "[-cost N] < password", "bcrypt hash of a password on stdin, for basic_auth", cmdHashPassword},
		{"version", "", "print the version", cmdVersion},
	}
}

// usage is the overview `gatehouse help` prints.
func usage() string {
	var b strings.Builder
	b.WriteString("gatehouse: a reverse proxy that gets and renews its own certificates.\n\nUsage:\n")
	list := append(commands(), command{name: "help [COMMAND]", summary: "this text, or a command's flags"})
	writeList(&b, len(list), 45, func(i int) (string, string) {
		c := list[i]
		return "gatehouse " + fmt.Sprintf("%-8s %s", c.name, c.args), c.summary
	})
	b.WriteString("\nThe config file defaults to $GATEHOUSE_CONFIG, else " + config.DefaultPath + ".\n")
	return b.String()
}

// writeList writes n entries, each "  " and its head, then its summary
// from column col, on the next line when the head reaches it; with col
// 0, always on the next lines, indented by 8.
func writeList(w io.Writer, n, col int, entry func(i int) (head, summary string)) {
	indent := 8
	if col > 0 {
		indent = col
	}
	for i := range n {
		head, summary := entry(i)
		line := "  " + strings.TrimRight(head, " ")
		if col > 0 && len(line) < col {
			line += strings.Repeat(" ", col-len(line))
		} else {
			line += "\n" + strings.Repeat(" ", indent)
		}
		fmt.Fprintln(w, line+strings.ReplaceAll(summary, "\n", "\n"+strings.Repeat(" ", indent)))
	}
}

// names joins the names of subcommands as a synopsis: "push|pull|history".
func names(subs []command) string {
	var ns []string
	for _, c := range subs {
		ns = append(ns, c.name)
	}
	return strings.Join(ns, "|")
}

// run runs the command args name. Errors it returns have not been
// printed yet, except exitError.
func run(ctx context.Context, args []string, env *environment) error {
	switch {
	case len(args) > 1 && isHelp(args[0]):
		// Asked for, a command's usage is the output: on stdout, for a
		// pager. An unknown command is an error, on stderr.
		asked := *env
		if slices.ContainsFunc(commands(), func(c command) bool { return c.name == args[1] }) {
			asked.stderr = env.stdout
		}
		return run(ctx, []string{args[1], "-h"}, &asked)
	case len(args) > 0 && isHelp(args[0]):
		fmt.Fprint(env.stdout, usage())
		return nil
	}
	err := dispatch(ctx, &cmdline{environment: env, args: args}, "", commands(), usage())
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if _, ok := errors.AsType[exitError](err); err != nil && !ok {
		fmt.Fprintf(env.stderr, "gatehouse %s: %v\n", args[0], err)
		return exitError(1)
	}
	return err
}

// isHelp reports whether arg asks for usage.
func isHelp(arg string) bool {
	return arg == "help" || arg == "-h" || arg == "-help" || arg == "--help"
}

// group is a command whose subcommands are subs; its usage lists them,
// unless usage is given.
func group(name string, subs []command, usage string) func(context.Context, *cmdline) error {
	if usage == "" {
		var b strings.Builder
		fmt.Fprintf(&b, "Usage: gatehouse %s %s\n\n", name, names(subs))
		writeList(&b, len(subs), 0, func(i int) (string, string) {
			return "gatehouse " + name + " " + subs[i].name + " " + subs[i].args, subs[i].summary
		})
		usage = b.String()
	}
	return func(ctx context.Context, c *cmdline) error { return dispatch(ctx, c, name, subs, usage) }
}

// dispatch runs the one of subs that c's first argument names, the
// subcommands of name ("" for gatehouse's commands), or prints usage:
// exit 2 without an argument or for an unknown one.
func dispatch(ctx context.Context, c *cmdline, name string, subs []command, usage string) error {
	if len(c.args) == 0 || isHelp(c.args[0]) {
		fmt.Fprint(c.stderr, usage)
		if len(c.args) == 0 {
			return exitError(2)
		}
		return nil
	}
	for _, sub := range subs {
		if sub.name == c.args[0] {
			return sub.run(ctx, newCmdline(c.environment, strings.TrimSpace(name+" "+sub.name), sub.args, c.args[1:]))
		}
	}
	if name == "" {
		fmt.Fprintf(c.stderr, "gatehouse: unknown command %q\n\n%s", c.args[0], usage)
	} else {
		fmt.Fprintf(c.stderr, "gatehouse %s: unknown subcommand %q\n\n%s", name, c.args[0], usage)
	}
	return exitError(2)
}

// cmdline is one run of a command: its environment, its flags and its
// arguments.
type cmdline struct {
	*environment
	*flag.FlagSet
	args   []string // after the command's name, flags included
	config *string  // -config, once configFlag declared it
}

// newCmdline makes the flags of the command name, whose usage starts
// with its synopsis; flag parse errors become exit status 2, as for any
// Unix tool.
func newCmdline(env *environment, name, args string, cmdArgs []string) *cmdline {
	c := &cmdline{environment: env, FlagSet: flag.NewFlagSet(name, flag.ContinueOnError), args: cmdArgs}
	c.SetOutput(env.stderr)
	c.Usage = func() {
		fmt.Fprintf(env.stderr, "Usage: gatehouse %s\n\n", strings.TrimRight(name+" "+args, " "))
		c.PrintDefaults()
	}
	return c
}

// configFlag declares -config (also --config) with the documented
// default.
func (c *cmdline) configFlag() *string {
	def := config.DefaultPath
	if p := c.getenv("GATEHOUSE_CONFIG"); p != "" {
		def = p
	}
	c.config = c.String("config", def, "config `FILE` (default from $GATEHOUSE_CONFIG)")
	return c.config
}

// parse parses the flags wherever they stand among the arguments
// ("renew app.example.com --force") and returns the arguments, which
// must be n: for more, it names the first one too many.
func (c *cmdline) parse(n int) ([]string, error) {
	pos, err := c.interspersed()
	if err != nil || len(pos) == n {
		return pos, err
	}
	if len(pos) > n {
		fmt.Fprintf(c.Output(), "unexpected argument %q\n", pos[n])
	}
	c.Usage()
	return nil, exitError(2)
}

// interspersed parses the flags wherever they stand among the arguments
// and returns the arguments.
func (c *cmdline) interspersed() ([]string, error) {
	var pos []string
	args := c.args
	for {
		if err := c.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, exitError(2)
		}
		if c.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, c.Arg(0))
		args = c.Args()[1:]
	}
}

// load parses a command's flags, which take no arguments, and loads the
// config -config names.
func (c *cmdline) load() (*config.Config, error) {
	if _, err := c.parse(0); err != nil {
		return nil, err
	}
	return c.loadConfig()
}

// loadConfig loads the config -config names, or prints its problems:
// exit 1.
func (c *cmdline) loadConfig() (*config.Config, error) {
	cfg, err := config.Load(*c.config)
	if err != nil {
		return nil, c.problems(err)
	}
	return cfg, nil
}

// problems prints every problem of err, a config's one a line, and
// returns exit status 1.
func (c *cmdline) problems(err error) error {
	var ps config.Problems
	if !errors.As(err, &ps) {
		fmt.Fprintln(c.stderr, err)
	}
	for _, p := range ps {
		fmt.Fprintln(c.stderr, p.Error())
	}
	return exitError(1)
}

func cmdValidate(_ context.Context, c *cmdline) error {
	c.configFlag()
	if _, err := c.load(); err != nil {
		return err
	}
	fmt.Fprintln(c.stdout, "ok")
	return nil
}

func cmdVersion(_ context.Context, c *cmdline) error {
	if _, err := c.parse(0); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "gatehouse %s\n", buildVersion())
	return nil
}

func buildVersion() string {
	v := version
	info, ok := debug.ReadBuildInfo()
	if v == "" && ok && info.Main.Version != "" {
		v = info.Main.Version
	}
	if v == "" {
		v = "(devel)"
	}
	if ok {
		v += " " + strings.TrimSpace(info.GoVersion)
	}
	return v
}
