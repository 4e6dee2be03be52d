package main

import (
	"context"
	"fmt"

	"github.com/gatehouse-proxy/gatehouse/tlsmgr"
)

var storageCommands = []command{
	{"keygen", "FILE", "write a new encryption key for storage.etcd.encryption_key_file (mode 0600)", storageKeygen},
	{"copy", "[-config FILE] [--from SRC] [--to DST]", `copy certificates, keys and ACME accounts from SRC to DST; each is a
directory or etcd://HOST:PORT/PREFIX/, and the one left out is the
storage of the config. Keys already there are left alone, so running
it again copies nothing.`, storageCopy},
}

func storageKeygen(_ context.Context, c *cmdline) error {
	pos, err := c.parse(1)
	if err != nil {
		return err
	}
	if err := tlsmgr.GenerateStorageKey(pos[0]); err != nil {
		return err
	}
	fmt.Fprintf(c.stderr, "# wrote a new encryption key to %s; keep a copy: keys sealed with it are lost without it\n", pos[0])
	return nil
}

func storageCopy(ctx context.Context, c *cmdline) error {
	c.configFlag()
	from := c.String("from", "", "source `SRC`: a directory or etcd://HOST:PORT/PREFIX/ (default: the config's storage)")
	to := c.String("to", "", "destination `DST`: a directory or etcd://HOST:PORT/PREFIX/ (default: the config's storage)")
	if _, err := c.parse(0); err != nil {
		return err
	}
	if *from == "" && *to == "" {
		fmt.Fprintln(c.stderr, "storage copy: give --from, --to or both")
		return exitError(2)
	}
	report, err := tlsmgr.CopyStorageSpecs(ctx, *from, *to, c.loadConfig, nil)
	for _, key := range report.Copied {
		fmt.Fprintf(c.stdout, "copied %s\n", key)
	}
	fmt.Fprintf(c.stdout, "%d copied, %d already there\n", len(report.Copied), len(report.Unchanged))
	return err
}
