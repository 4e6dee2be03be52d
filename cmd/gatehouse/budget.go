package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/gatehouse-proxy/gatehouse/tlsmgr"
)

func certsBudget(ctx context.Context, c *cmdline) error {
	cc := newCertsCmd(c)
	if _, err := cc.interspersed(); err != nil {
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
		if lines == nil {
			lines = []tlsmgr.BudgetLine{}
		}
		return writeJSON(c.stdout, lines)
	}
	printBudget(c.stdout, lines)
	return nil
}

// printBudget writes the budget as a table: "-" where a CA has no known
// limit, and the on-demand share where on-demand issuance has one.
func printBudget(w io.Writer, lines []tlsmgr.BudgetLine) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ISSUER\tLIMIT\tKEY\tUSED\tMAX\tLEFT\tON-DEMAND LEFT\tFREES AT")
	dash := func(n int) string {
		if n < 0 {
			return "-"
		}
		return fmt.Sprint(n)
	}
	for _, l := range lines {
		most := "-"
		if l.Max > 0 {
			most = fmt.Sprintf("%d/%s", l.Max, l.Window)
		}
		frees := "-"
		if !l.FreesAt.IsZero() {
			frees = l.FreesAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", l.Issuer, l.Limit, l.Key, l.Used, most, dash(l.Remaining), dash(l.OnDemandRemaining), frees)
	}
	tw.Flush()
}
