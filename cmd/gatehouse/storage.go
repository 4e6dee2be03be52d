package main

import (
	"context"
	"fmt"

	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr"
)

const storageUsage = `Usage: gatehouse storage keygen|copy

  gatehouse storage keygen FILE
        write a new encryption key for storage.etcd.encryption_key_file (mode 0600)
  gatehouse storage copy [-config FILE] [--from SRC] [--to DST]
        copy certificates, keys and ACME accounts from SRC to DST; each is a
        directory or etcd://HOST:PORT/PREFIX/, and the one left out is the
        storage of the config. Keys already there are left alone, so running
        it again copies nothing.
`

func cmdStorage(ctx context.Context, args []string, env *environment) error {
	return subcommand(ctx, "storage", storageUsage, args, env, map[string]runFunc{
		"keygen": storageKeygen,
		"copy":   storageCopy,
	})
}

func storageKeygen(_ context.Context, args []string, env *environment) error {
	fs := newFlags("storage keygen", "storage keygen FILE", env)
	if err := fs.Parse(args); err != nil {
		return exitError(2)
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return exitError(2)
	}
	if err := tlsmgr.GenerateStorageKey(fs.Arg(0)); err != nil {
		return err
	}
	fmt.Fprintf(env.stderr, "# wrote a new encryption key to %s; keep a copy: keys sealed with it are lost without it\n", fs.Arg(0))
	return nil
}

func storageCopy(ctx context.Context, args []string, env *environment) error {
	fs := newFlags("storage copy", "storage copy [-config FILE] [--from SRC] [--to DST]", env)
	path := configFlag(fs, env)
	from := fs.String("from", "", "source `SRC`: a directory or etcd://HOST:PORT/PREFIX/ (default: the config's storage)")
	to := fs.String("to", "", "destination `DST`: a directory or etcd://HOST:PORT/PREFIX/ (default: the config's storage)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *from == "" && *to == "" {
		fmt.Fprintln(env.stderr, "storage copy: give --from, --to or both")
		return exitError(2)
	}
	side := func(spec string) (*config.Config, error) {
		if spec != "" {
			return tlsmgr.StorageConfig(spec)
		}
		return loadConfig(*path, env)
	}
	src, err := side(*from)
	if err != nil {
		return err
	}
	dst, err := side(*to)
	if err != nil {
		return err
	}
	report, err := tlsmgr.CopyStorage(ctx, src, dst, nil)
	for _, key := range report.Copied {
		fmt.Fprintf(env.stdout, "copied %s\n", key)
	}
	fmt.Fprintf(env.stdout, "%d copied, %d already there\n", len(report.Copied), len(report.Unchanged))
	return err
}
