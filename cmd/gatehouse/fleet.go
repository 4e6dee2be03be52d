package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"text/tabwriter"

	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/gatehouse-proxy/gatehouse/gateway/fleet"
)

const configUsage = `Usage: gatehouse config push|pull|history

  gatehouse config push FILE [-config LOCAL] [--force]
        validate FILE as the fleet's shared document, as each instance with
        the local file LOCAL would run it, and write it to etcd; refused if
        the document changed since FILE was pulled (or since push read it)
  gatehouse config pull [-config LOCAL]
        print the fleet's shared document, first line naming its revision
  gatehouse config history [-config LOCAL] [-n N]
        list the last N revisions etcd keeps (default 10)
`

const fleetUsage = `Usage: gatehouse fleet status|forget

  gatehouse fleet status [-config LOCAL]
        list the fleet's instances: up, behind (an older config revision) or gone
  gatehouse fleet forget NAME [-config LOCAL]
        stop listing an instance that is gone
`

// dialFleet parses a fleet subcommand's flags (-config and the caller's)
// and its argument (one when wantArg, else none), given before, between
// or after the flags, and connects to the fleet of the local file.
func dialFleet(fs *flag.FlagSet, args []string, env *environment, path *string, wantArg bool) (*fleet.Fleet, *config.Config, string, error) {
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return nil, nil, "", err
	}
	if len(pos) > 1 || (len(pos) == 1) != wantArg {
		fs.Usage()
		return nil, nil, "", exitError(2)
	}
	arg := ""
	if wantArg {
		arg = pos[0]
	}
	local, err := loadConfig(*path, env)
	if err != nil {
		return nil, nil, "", err
	}
	f, err := fleet.Dial(local)
	return f, local, arg, err
}

func cmdConfig(ctx context.Context, args []string, env *environment) error {
	return subcommand(ctx, "config", configUsage, args, env, map[string]runFunc{
		"push": func(ctx context.Context, args []string, env *environment) error {
			fs := newFlags("config push", "config push FILE [-config LOCAL] [--force]", env)
			path := configFlag(fs, env)
			force := fs.Bool("force", false, "write even if the document changed since FILE was pulled")
			f, local, file, err := dialFleet(fs, args, env, path, true)
			if err != nil {
				return err
			}
			f.Close()
			res, err := fleet.PushFile(ctx, local, file, *force)
			if _, ok := errors.AsType[config.Problems](err); ok {
				return problems(env, err)
			}
			if err != nil {
				return err
			}
			if res.Unchanged {
				fmt.Fprintf(env.stdout, "unchanged: revision %d is already %s\n", res.Revision, file)
				return nil
			}
			fmt.Fprintf(env.stdout, "pushed %s as revision %d (was %d)\n", file, res.Revision, res.Base)
			return nil
		},
		"pull": func(ctx context.Context, args []string, env *environment) error {
			fs := newFlags("config pull", "config pull [-config LOCAL]", env)
			f, _, _, err := dialFleet(fs, args, env, configFlag(fs, env), false)
			if err != nil {
				return err
			}
			defer f.Close()
			doc, err := f.Pull(ctx)
			if err != nil {
				return err
			}
			if doc.Revision == 0 {
				return errors.New("the fleet has no shared config yet: write one with gatehouse config push FILE")
			}
			env.stdout.Write(fleet.Pulled(doc))
			return nil
		},
		"history": func(ctx context.Context, args []string, env *environment) error {
			fs := newFlags("config history", "config history [-config LOCAL] [-n N]", env)
			path := configFlag(fs, env)
			n := fs.Int("n", 10, "list at most `N` revisions")
			f, _, _, err := dialFleet(fs, args, env, path, false)
			if err != nil {
				return err
			}
			defer f.Close()
			docs, err := f.History(ctx, *n)
			for _, d := range docs {
				fmt.Fprintf(env.stdout, "revision %d\tversion %d\t%d bytes\tsha256 %s\n", d.Revision, d.Version, len(d.Data), d.Digest())
			}
			return err
		},
	})
}

func cmdFleet(ctx context.Context, args []string, env *environment) error {
	return subcommand(ctx, "fleet", fleetUsage, args, env, map[string]runFunc{
		"status": func(ctx context.Context, args []string, env *environment) error {
			fs := newFlags("fleet status", "fleet status [-config LOCAL]", env)
			f, _, _, err := dialFleet(fs, args, env, configFlag(fs, env), false)
			if err != nil {
				return err
			}
			defer f.Close()
			st, err := f.Status(ctx)
			if err != nil {
				return err
			}
			fmt.Fprintf(env.stdout, "config revision %d\n", st.ConfigRevision)
			w := tabwriter.NewWriter(env.stdout, 0, 8, 2, ' ', 0)
			for _, in := range st.Instances {
				fmt.Fprintf(w, "%s\t%s\trevision %d\t%d certificates\t%s\t%s\n", in.Name, in.State, in.ConfigRevision, in.Certificates, in.Address, in.Version)
				if in.LastError != "" {
					fmt.Fprintf(w, "\tlast error: %s\n", in.LastError)
				}
			}
			return w.Flush()
		},
		"forget": func(ctx context.Context, args []string, env *environment) error {
			fs := newFlags("fleet forget", "fleet forget NAME [-config LOCAL]", env)
			f, _, name, err := dialFleet(fs, args, env, configFlag(fs, env), true)
			if err != nil {
				return err
			}
			defer f.Close()
			return f.Forget(ctx, name)
		},
	})
}
