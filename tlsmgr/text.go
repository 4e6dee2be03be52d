package tlsmgr

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// The inventory and the budget as text, for the command line and other
// tools that show them to a person.

// ANSI colours for the days-left column.
const (
	red    = "\x1b[31m"
	yellow = "\x1b[33m"
	green  = "\x1b[32m"
	reset  = "\x1b[0m"
)

// WriteCertificates writes certs as the table `gatehouse certs list`
// prints, one row each in their order; with colour (for a terminal), days
// left are red when expired or failing, yellow when expiring or within a
// week, green otherwise.
func WriteCertificates(w io.Writer, certs []CertificateInfo, now time.Time, colour bool) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STATUS\tDAYS LEFT\tNAMES\tSOURCE\tISSUER\tNEXT RENEWAL\tLAST ERROR")
	for _, ci := range certs {
		days := "-"
		if d, ok := ci.DaysLeft(now); ok {
			days = fmt.Sprint(d)
			if colour {
				// Colour codes are zero-width on a terminal but count for
				// tabwriter, so every cell of the column gets the same
				// number of them.
				col := green
				switch {
				case ci.Status == StatusExpired || ci.Status == StatusFailing || d < 0:
					col = red
				case ci.Status == StatusExpiring || d < 7:
					col = yellow
				}
				days = col + days + reset
			}
		} else if colour {
			days = reset + days + reset
		}
		next := "-"
		if !ci.NextRenewal.IsZero() {
			next = ci.NextRenewal.UTC().Format(time.RFC3339) + " (" + ci.RenewalReason + ")"
		}
		issuer := ci.Issuer
		if issuer == "" {
			issuer = "-"
		}
		lastErr := ci.LastError
		if len(lastErr) > 80 {
			lastErr = lastErr[:77] + "..."
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", ci.Status, days, strings.Join(ci.Names, ","), ci.Source, issuer, next, lastErr)
	}
	return tw.Flush()
}

// WriteDetail writes every field of ci, one a line, then its chain, as
// `gatehouse certs show` prints it.
func (ci CertificateInfo) WriteDetail(w io.Writer, now time.Time) error {
	ts := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format(time.RFC3339)
	}
	or := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	days := "-"
	if d, ok := ci.DaysLeft(now); ok {
		days = fmt.Sprint(d)
	}
	next := ts(ci.NextRenewal)
	if ci.RenewalReason != "" {
		next += " (" + ci.RenewalReason + ")"
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, kv := range [][2]string{
		{"names", strings.Join(ci.Names, ", ")},
		{"status", string(ci.Status)},
		{"source", ci.Source},
		{"issuer", or(ci.Issuer)},
		{"ca", or(ci.CA)},
		{"key type", or(ci.KeyType)},
		{"serial", or(ci.Serial)},
		{"not before", ts(ci.NotBefore)},
		{"not after", ts(ci.NotAfter)},
		{"days left", days},
		{"next renewal", next},
		{"last attempt", ts(ci.LastAttempt)},
		{"last error", or(ci.LastError)},
		{"failures", fmt.Sprint(ci.Failures)},
		{"retired at", ts(ci.RetiredAt)},
	} {
		fmt.Fprintf(tw, "%s:\t%s\n", kv[0], kv[1])
	}
	if err := tw.Flush(); err != nil || ci.ChainPEM == "" {
		return err
	}
	_, err := fmt.Fprintf(w, "\n%s", ci.ChainPEM)
	return err
}

// WriteBudget writes lines as the table `gatehouse certs budget` prints:
// "-" where a CA has no known limit, and the on-demand share where
// on-demand issuance has one.
func WriteBudget(w io.Writer, lines []BudgetLine) error {
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
	return tw.Flush()
}
