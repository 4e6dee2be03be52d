package main

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/gatehouse-proxy/gatehouse/gateway/fleet"
)

var configCommands = []command{
	{"push", "FILE [-config LOCAL] [--force]", `validate FILE as the fleet's shared document, as each instance with
the local file LOCAL would run it, and write it to etcd; refused if
the document changed since FILE was pulled (or since push read it)`, configPush},
	{"pull", "[-config LOCAL]", "print the fleet's shared document, first line naming its revision", configPull},
	{"history", "[-config LOCAL] [-n N]", "list the last N revisions etcd keeps (default 10)", configHistory},
}

var fleetCommands = []command{
	{"status", "[-config LOCAL]", "list the fleet's instances: up, behind (an older config revision) or gone", fleetStatus},
	{"forget", "NAME [-config LOCAL]", "stop listing an instance that is gone", fleetForget},
}

// dialFleet declares -config, parses it, the caller's flags and the n
// arguments, and connects to the fleet of the local file.
func dialFleet(c *cmdline, n int) (*fleet.Fleet, *config.Config, []string, error) {
	c.configFlag()
	pos, err := c.parse(n)
	if err != nil {
		return nil, nil, nil, err
	}
	local, err := c.loadConfig()
	if err != nil {
		return nil, nil, nil, err
	}
	f, err := fleet.Dial(local)
	return f, local, pos, err
}

func configPush(ctx context.Context, c *cmdline) error {
	force := c.Bool("force", false, "write even if the document changed since FILE was pulled")
	f, local, pos, err := dialFleet(c, 1)
	if err != nil {
		return err
	}
	f.Close()
	res, err := fleet.PushFile(ctx, local, pos[0], *force)
	if _, ok := errors.AsType[config.Problems](err); ok {
		return c.problems(err)
	}
	if err != nil {
		return err
	}
	if res.Unchanged {
		fmt.Fprintf(c.stdout, "unchanged: revision %d is already %s\n", res.Revision, pos[0])
		return nil
	}
	fmt.Fprintf(c.stdout, "pushed %s as revision %d (was %d)\n", pos[0], res.Revision, res.Base)
	return nil
}

func configPull(ctx context.Context, c *cmdline) error {
	f, _, _, err := dialFleet(c, 0)
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
	c.stdout.Write(fleet.Pulled(doc))
	return nil
}

func configHistory(ctx context.Context, c *cmdline) error {
	n := c.Int("n", 10, "list at most `N` revisions")
	f, _, _, err := dialFleet(c, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	docs, err := f.History(ctx, *n)
	for _, d := range docs {
		fmt.Fprintf(c.stdout, "revision %d\tversion %d\t%d bytes\tsha256 %s\n", d.Revision, d.Version, len(d.Data), d.Digest())
	}
	return err
}

func fleetStatus(ctx context.Context, c *cmdline) error {
	f, _, _, err := dialFleet(c, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Status(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "config revision %d\n", st.ConfigRevision)
	w := tabwriter.NewWriter(c.stdout, 0, 8, 2, ' ', 0)
	for _, in := range st.Instances {
		fmt.Fprintf(w, "%s\t%s\trevision %d\t%d certificates\t%s\t%s\n", in.Name, in.State, in.ConfigRevision, in.Certificates, in.Address, in.Version)
		if in.LastError != "" {
			fmt.Fprintf(w, "\tlast error: %s\n", in.LastError)
		}
	}
	return w.Flush()
}

func fleetForget(ctx context.Context, c *cmdline) error {
	f, _, pos, err := dialFleet(c, 1)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Forget(ctx, pos[0])
}
