package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
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

const usage = `gatehouse: a reverse proxy that gets and renews its own certificates.

Usage:
  gatehouse run      [-config FILE]          serve until SIGTERM; SIGHUP reloads
  gatehouse validate [-config FILE]          check a config; prints ok or every problem
  gatehouse proxy    --from HOST[:PORT] --to URL [--to URL...]
                                             proxy one host, no config file
  gatehouse trust    [-config FILE] [--install]
                                             print the local CA's root, or install it in this machine's trust stores
  gatehouse untrust  [-config FILE]          remove the local CA's root from this machine's trust stores
  gatehouse check    [-config FILE]          ACME preflight: DNS, ports, CAA, the CA
  gatehouse certs    list|show|renew|revoke|retire
                                             see and steer the Certificates
  gatehouse migrate  --to ISSUER [--from ISSUER] [--hosts PATTERN] [--rate 10/min] [--dry-run] [--revoke-old] [--write-config]
                                             re-issue the Certificates from another CA, paced and resumable
  gatehouse storage  keygen|copy             encryption key for etcd storage; copy file <-> etcd
  gatehouse config   push|pull|history       the fleet's shared config in etcd
  gatehouse fleet    status|forget           the fleet's instances
  gatehouse hash-password [-cost N]          bcrypt hash of a password on stdin, for basic_auth
  gatehouse version                          print the version
  gatehouse help [COMMAND]                   this text, or a command's flags

The config file defaults to $GATEHOUSE_CONFIG, else ` + config.DefaultPath + `.
`

// runFunc runs a command or subcommand on its arguments.
type runFunc func(ctx context.Context, args []string, env *environment) error

type command struct {
	name string
	run  runFunc
}

func commands() []command {
	return []command{
		{"run", cmdRun},
		{"validate", cmdValidate},
		{"proxy", cmdProxy},
		{"trust", cmdTrust},
		{"untrust", cmdUntrust},
		{"check", cmdCheck},
		{"certs", cmdCerts},
		{"migrate", cmdMigrate},
		{"storage", cmdStorage},
		{"config", cmdConfig},
		{"fleet", cmdFleet},
		{"hash-password", cmdHashPassword},
		{"version", cmdVersion},
	}
}

// run dispatches to a subcommand. Errors it returns have not been printed
// yet, except exitError.
func run(ctx context.Context, args []string, env *environment) error {
	if len(args) == 0 {
		fmt.Fprint(env.stderr, usage)
		return exitError(2)
	}
	name := args[0]
	if isHelp(name) {
		if len(args) > 1 {
			return run(ctx, []string{args[1], "-h"}, env)
		}
		fmt.Fprint(env.stdout, usage)
		return nil
	}
	for _, c := range commands() {
		if c.name == name {
			err := c.run(ctx, args[1:], env)
			if errors.Is(err, flag.ErrHelp) {
				return nil
			}
			var exit exitError
			if err != nil && !errors.As(err, &exit) {
				fmt.Fprintf(env.stderr, "gatehouse %s: %v\n", name, err)
				return exitError(1)
			}
			return err
		}
	}
	fmt.Fprintf(env.stderr, "gatehouse: unknown command %q\n\n%s", name, usage)
	return exitError(2)
}

// isHelp reports whether arg asks for usage.
func isHelp(arg string) bool {
	return arg == "help" || arg == "-h" || arg == "-help" || arg == "--help"
}

// subcommand runs the sub named by args[0] from subs, or prints usage.
func subcommand(ctx context.Context, name, usage string, args []string, env *environment, subs map[string]runFunc) error {
	if ok, err := named(args, usage, env); !ok {
		return err
	}
	run, ok := subs[args[0]]
	if !ok {
		fmt.Fprintf(env.stderr, "gatehouse %s: unknown subcommand %q\n\n%s", name, args[0], usage)
		return exitError(2)
	}
	return run(ctx, args[1:], env)
}

// named reports whether args name a subcommand; when they do not, it
// prints usage and err is the command's result: exit 2 without
// arguments, nil for help.
func named(args []string, usage string, env *environment) (ok bool, err error) {
	if len(args) > 0 && !isHelp(args[0]) {
		return true, nil
	}
	fmt.Fprint(env.stderr, usage)
	if len(args) == 0 {
		return false, exitError(2)
	}
	return false, nil
}

// newFlags makes a subcommand's flag set; flag parse errors become exit
// status 2, as for any Unix tool.
func newFlags(name, synopsis string, env *environment) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	fs.Usage = func() {
		fmt.Fprintf(env.stderr, "Usage: gatehouse %s\n\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses a command's flags, which take no arguments.
func parseFlags(fs *flag.FlagSet, args []string) error {
	pos, err := parseInterspersed(fs, args)
	if err == nil && len(pos) > 0 {
		fmt.Fprintf(fs.Output(), "unexpected argument %q\n", pos[0])
		fs.Usage()
		return exitError(2)
	}
	return err
}

// parseInterspersed parses flags wherever they stand among the arguments
// ("renew app.example.com --force") and returns the arguments.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, exitError(2)
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// configFlag registers -config (also --config) with the documented default.
func configFlag(fs *flag.FlagSet, env *environment) *string {
	def := config.DefaultPath
	if p := env.getenv("GATEHOUSE_CONFIG"); p != "" {
		def = p
	}
	return fs.String("config", def, "config `FILE` (default from $GATEHOUSE_CONFIG)")
}

func cmdValidate(_ context.Context, args []string, env *environment) error {
	fs := newFlags("validate", "validate [-config FILE]", env)
	path := configFlag(fs, env)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if _, err := loadConfig(*path, env); err != nil {
		return err
	}
	fmt.Fprintln(env.stdout, "ok")
	return nil
}

// loadConfig loads the config at path, or prints its problems: exit 1.
func loadConfig(path string, env *environment) (*config.Config, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, problems(env, err)
	}
	return cfg, nil
}

// problems prints every problem of err, a config's one a line, and
// returns exit status 1.
func problems(env *environment, err error) error {
	var ps config.Problems
	if !errors.As(err, &ps) {
		fmt.Fprintln(env.stderr, err)
	}
	for _, p := range ps {
		fmt.Fprintln(env.stderr, p.Error())
	}
	return exitError(1)
}

func cmdVersion(_ context.Context, args []string, env *environment) error {
	fs := newFlags("version", "version", env)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "gatehouse %s\n", buildVersion())
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
