package main

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr/trust"
)

// trustFlags are the flags trust and untrust share; storageDir resolves
// them to the storage holding the local CA.
type trustFlags struct {
	config, storage *string
}

func newTrustFlags(fs *flag.FlagSet, env *environment) trustFlags {
	return trustFlags{
		config:  configFlag(fs, env),
		storage: fs.String("storage", "", "storage `DIR` holding the local CA (default: the config's storage)"),
	}
}

// storageConfig is the config naming the storage that holds the local
// CA: -storage's directory, or the config file's storage (etcd included).
func (f trustFlags) storageConfig(env *environment) (*config.Config, error) {
	if *f.storage != "" {
		return &config.Config{Storage: *f.storage}, nil
	}
	return loadConfig(*f.config, env)
}

func cmdTrust(ctx context.Context, args []string, env *environment) error {
	fs := newFlags("trust", "trust [-config FILE] [-storage DIR] [--install]", env)
	flags := newTrustFlags(fs, env)
	install := fs.Bool("install", false, "install the root in the system trust store, the NSS databases of Firefox and Chromium, and Java's")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := flags.storageConfig(env)
	if err != nil {
		return err
	}
	pemBytes, file, err := tlsmgr.LocalRootOf(ctx, cfg)
	if err != nil {
		return fmt.Errorf("loading the local CA root: %w", err)
	}
	root, _, err := tlsmgr.ReadLocalRoot(cfg.Storage)
	if err != nil {
		return err
	}
	if !*install {
		env.stdout.Write(pemBytes)
		fmt.Fprintf(env.stderr, "# the local CA's root certificate is %s\n# SHA-256 fingerprint %s\n# trust it on this machine: gatehouse trust --install; or, for example: curl --cacert %s https://localhost/\n",
			file, tlsmgr.Fingerprint(root), file)
		return nil
	}
	results, err := trust.Install(root)
	return reportTrust(env, "trust", args, root, results, err)
}

func cmdUntrust(_ context.Context, args []string, env *environment) error {
	fs := newFlags("untrust", "untrust [-config FILE] [-storage DIR]", env)
	flags := newTrustFlags(fs, env)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := flags.storageConfig(env)
	if err != nil {
		return err
	}
	root, _, err := tlsmgr.ReadLocalRoot(cfg.Storage)
	if err != nil {
		return err
	}
	results, err := trust.Uninstall(root)
	return reportTrust(env, "untrust", args, root, results, err)
}

// reportTrust prints what happened to each trust store, and for a
// *trust.NeedsRootError the command to run instead.
func reportTrust(env *environment, name string, args []string, root *x509.Certificate, results []trust.Result, err error) error {
	fmt.Fprintf(env.stdout, "local CA root %q, SHA-256 %s\n", root.Subject.CommonName, tlsmgr.Fingerprint(root))
	printResults(env.stdout, results)
	var needRoot *trust.NeedsRootError
	if errors.As(err, &needRoot) {
		fmt.Fprintf(env.stderr, "gatehouse %s: %v\nrun it as root: su -c '%s'\n", name, err, strings.Join(append([]string{"gatehouse", name}, args...), " "))
		return exitError(1)
	}
	return err
}

func printResults(w io.Writer, results []trust.Result) {
	for _, r := range results {
		line := fmt.Sprintf("  %s: %s", r.Store, r.Outcome)
		if r.Note != "" {
			line += " (" + r.Note + ")"
		}
		fmt.Fprintln(w, line)
	}
}
