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

type command struct {
	name string
	run  func(ctx context.Context, args []string, env *environment) error
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
	switch name {
	case "help", "-h", "-help", "--help":
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

func parseFlags(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return err
	case err != nil:
		return exitError(2)
	case fs.NArg() > 0:
		fmt.Fprintf(fs.Output(), "unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return exitError(2)
	}
	return nil
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
	if _, err := config.Load(*path); err != nil {
		printProblems(env.stderr, err)
		return exitError(1)
	}
	fmt.Fprintln(env.stdout, "ok")
	return nil
}

// printProblems writes every config problem on its own line.
func printProblems(w io.Writer, err error) {
	var problems config.Problems
	if errors.As(err, &problems) {
		for _, p := range problems {
			fmt.Fprintln(w, p.Error())
		}
		return
	}
	fmt.Fprintln(w, err)
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
