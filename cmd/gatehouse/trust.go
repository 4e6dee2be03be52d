package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr/trust"
)

// localCAFlags declares the flags trust and untrust share, and returns
// what parses them: the config naming the storage that holds the local
// CA, -storage's directory or the config file's storage (etcd included).
func localCAFlags(c *cmdline) func() (*config.Config, error) {
	c.configFlag()
	storage := c.String("storage", "", "storage `DIR` holding the local CA (default: the config's storage)")
	return func() (*config.Config, error) {
		if _, err := c.parse(0); err != nil {
			return nil, err
		}
		if *storage != "" {
			return &config.Config{Storage: *storage}, nil
		}
		return c.loadConfig()
	}
}

func cmdTrust(ctx context.Context, c *cmdline) error {
	parse := localCAFlags(c)
	install := c.Bool("install", false, "install the root in the system trust store, the NSS databases of Firefox and Chromium, and Java's")
	cfg, err := parse()
	if err != nil {
		return err
	}
	pemBytes, file, err := tlsmgr.LocalRootOf(ctx, cfg)
	if err != nil {
		return fmt.Errorf("loading the local CA root: %w", err)
	}
	root, err := tlsmgr.ParseRoot(pemBytes, file)
	if err != nil {
		return err
	}
	if !*install {
		c.stdout.Write(pemBytes)
		fmt.Fprintf(c.stderr, "# the local CA's root certificate is %s\n# SHA-256 fingerprint %s\n# trust it on this machine: gatehouse trust --install; or, for example: curl --cacert %s https://localhost/\n",
			file, tlsmgr.Fingerprint(root), file)
		return nil
	}
	results, err := trust.Install(root)
	return reportTrust(c, root, results, err)
}

func cmdUntrust(_ context.Context, c *cmdline) error {
	cfg, err := localCAFlags(c)()
	if err != nil {
		return err
	}
	root, _, err := tlsmgr.ReadLocalRoot(cfg.Storage)
	if err != nil {
		return err
	}
	results, err := trust.Uninstall(root)
	return reportTrust(c, root, results, err)
}

// reportTrust prints what happened to each trust store, and for a
// *trust.NeedsRootError the command to run instead.
func reportTrust(c *cmdline, root *x509.Certificate, results []trust.Result, err error) error {
	fmt.Fprintf(c.stdout, "local CA root %q, SHA-256 %s\n", root.Subject.CommonName, tlsmgr.Fingerprint(root))
	for _, r := range results {
		line := fmt.Sprintf("  %s: %s", r.Store, r.Outcome)
		if r.Note != "" {
			line += " (" + r.Note + ")"
		}
		fmt.Fprintln(c.stdout, line)
	}
	if _, ok := errors.AsType[*trust.NeedsRootError](err); ok {
		fmt.Fprintf(c.stderr, "gatehouse %s: %v\nrun it as root: su -c '%s'\n", c.Name(), err, strings.Join(append([]string{"gatehouse", c.Name()}, c.args...), " "))
		return exitError(1)
	}
	return err
}
