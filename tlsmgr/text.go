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

// ANSI colours for the expires-in column.
const (
	red    = "\x1b[31m"
	yellow = "\x1b[33m"
	green  = "\x1b[32m"
	reset  = "\x1b[0m"
)

// WriteCertificates writes certs as the table `gatehouse certs list`
// prints, one row each in their order; with colour (for a terminal), the
// time to expiry is red when expired or failing, yellow when expiring,
// green otherwise. Expiring is the status, which knows the Certificate's
// lifetime and ARI window: a 6-day certificate with 3 days left is not
// urgent, and is not coloured as if it were.
func WriteCertificates(w io.Writer, certs []CertificateInfo, now time.Time, colour bool) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STATUS\tEXPIRES IN\tNAMES\tSOURCE\tISSUER\tNEXT RENEWAL\tLAST ERROR")
	for _, ci := range certs {
		left := "-"
		if !ci.NotAfter.IsZero() {
			d := ci.NotAfter.Sub(now)
			left = shortDuration(d)
			if colour {
				// Colour codes are zero-width on a terminal but count for
				// tabwriter, so every cell of the column gets the same
				// number of them.
				col := green
				switch {
				case ci.Status == StatusExpired || ci.Status == StatusFailing || d < 0:
					col = red
				case ci.Status == StatusExpiring:
					col = yellow
				}
				left = col + left + reset
			}
		} else if colour {
			left = reset + left + reset
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
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", ci.Status, left, strings.Join(ci.Names, ","), ci.Source, issuer, next, lastErr)
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
	left := "-"
	if !ci.NotAfter.IsZero() {
		left = shortDuration(ci.NotAfter.Sub(now))
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
		{"expires in", left},
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

// shortDuration writes d in whole days, or hours under two days, or
// minutes under two hours (rounded towards zero, negative once past):
// "89d", "23h", "-36h". Short-lived Certificates (the local CA's 24 hours,
// 6-day ACME profiles) would all read "0" in days.
func shortDuration(d time.Duration) string {
	sign := ""
	if d < 0 {
		sign, d = "-", -d
	}
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%s%dd", sign, d/(24*time.Hour))
	case d >= 2*time.Hour:
		return fmt.Sprintf("%s%dh", sign, d/time.Hour)
	}
	return fmt.Sprintf("%s%dm", sign, d/time.Minute)
}
