package admin

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"time"

	"github.com/skip2/go-qrcode"

	"github.com/gatehouse-proxy/gatehouse/tlsmgr"
)

//go:embed dashboard.html
var dashboardHTML string

// dashboardTemplate is parsed once; a broken template fails at start, in
// every test.
var dashboardTemplate = template.Must(template.New("dashboard").Parse(dashboardHTML))

// dashboardPage is what the template renders.
type dashboardPage struct {
	Now          string
	Certificates []dashCert
	// CertsKnown is false when certificate management is not wired.
	CertsKnown bool
	Counts     []statusCount
	Upstreams  []dashSite
	// UpstreamsKnown is false when upstream health is not wired.
	UpstreamsKnown bool
	Ready          bool
	// Fleet is set when this gatehouse is in a fleet; FleetError says
	// why its registry could not be read.
	Fleet      *FleetStatus
	FleetError string
	// LocalCA is nil when the dashboard knows no local CA.
	LocalCA *dashLocalCA
	// Budget lists the rate limits that have a maximum or were used;
	// BudgetKnown is false when the budget is not wired, BudgetError says
	// why it could not be read.
	Budget      []dashBudget
	BudgetKnown bool
	BudgetError string
}

// dashBudget is one row of the rate-limit budget table.
type dashBudget struct {
	tlsmgr.BudgetLine
	// Max and Left are "-" without a known maximum; FreesAt "" without
	// an event in the window.
	Max, Left, OnDemandLeft, FreesAt string
	// Spent is set when nothing is left.
	Spent bool
}

// newDashBudget formats one budget line.
func newDashBudget(l tlsmgr.BudgetLine) dashBudget {
	d := dashBudget{BudgetLine: l, Max: "-", Left: "-", OnDemandLeft: "-"}
	if l.Max > 0 {
		d.Max = fmt.Sprintf("%d per %s", l.Max, l.Window)
		d.Left = fmt.Sprint(l.Remaining)
		d.Spent = l.Remaining == 0
	}
	if l.OnDemandRemaining >= 0 {
		d.OnDemandLeft = fmt.Sprint(l.OnDemandRemaining)
	}
	if !l.FreesAt.IsZero() {
		d.FreesAt = l.FreesAt.UTC().Format("2006-01-02 15:04 UTC")
	}
	return d
}

// dashLocalCA is the local CA section: the root's fingerprint and, when
// it is shared, a QR code of its URL for a phone's camera.
type dashLocalCA struct {
	LocalCA
	// QR is the PNG of the QR code as a data: URL, "" when not shared.
	QR template.URL
}

type statusCount struct {
	Status tlsmgr.Status
	N      int
}

// dashCert is one row of the Certificate table.
type dashCert struct {
	Name   string
	Others []string
	Status tlsmgr.Status
	Source string
	// RoutedBy is where its hosts' Routes come from.
	RoutedBy string
	// Client is who the ACME server issued it to, "" for gatehouse's own.
	Client  string
	Issuer  string
	CA      string
	KeyType string
	Serial  string
	// Issued, Expires and Renews are dates, "" when unknown.
	Issued, Expires, Renews string
	RenewalReason           string
	// Left says how long until expiry ("in 42 days", "3 days ago").
	Left string
	// Timeline is set when NotBefore and NotAfter are known; the
	// percentages place today and the renewal point on the bar.
	Timeline           bool
	TodayPct, RenewPct string
	ShowRenew          bool
	// Elapsed is the share of the lifetime already passed, the bar's fill.
	ElapsedPct  string
	TimelineAlt string
	LastError   string
	LastAttempt string
	Failures    int
}

// dashSite groups the Upstreams of one Site.
type dashSite struct {
	Site      string
	Upstreams []Upstream
	Down      int
}

func (a *api) dashboard(w http.ResponseWriter, r *http.Request) {
	now := a.opts.now()
	page := dashboardPage{Now: now.UTC().Format("2006-01-02 15:04:05 UTC"), Ready: a.opts.Ready == nil || a.opts.Ready()}
	if a.opts.Certificates != nil {
		page.CertsKnown = true
		certs := a.inventory()
		tlsmgr.SortCertificates(certs)
		counts := map[tlsmgr.Status]int{}
		for _, c := range certs {
			counts[c.Status]++
			page.Certificates = append(page.Certificates, newDashCert(c, now))
		}
		for _, s := range tlsmgr.Statuses() {
			if counts[s] > 0 {
				page.Counts = append(page.Counts, statusCount{s, counts[s]})
			}
		}
	}
	if a.opts.Upstreams != nil {
		page.UpstreamsKnown = true
		for _, u := range a.opts.Upstreams() {
			i := slices.IndexFunc(page.Upstreams, func(s dashSite) bool { return s.Site == u.Site })
			if i < 0 {
				page.Upstreams = append(page.Upstreams, dashSite{Site: u.Site})
				i = len(page.Upstreams) - 1
			}
			page.Upstreams[i].Upstreams = append(page.Upstreams[i].Upstreams, u)
			if !u.Healthy {
				page.Upstreams[i].Down++
			}
		}
		// Sites with an Upstream down first, as failing Certificates are.
		slices.SortStableFunc(page.Upstreams, func(x, y dashSite) int {
			return min(y.Down, 1) - min(x.Down, 1)
		})
	}
	if a.opts.Fleet != nil {
		ctx, cancel := context.WithTimeout(r.Context(), fleetTimeout)
		st, err := a.opts.Fleet(ctx)
		cancel()
		page.Fleet = &st
		if err != nil {
			page.FleetError = err.Error()
		}
	}
	if a.opts.Budget != nil {
		page.BudgetKnown = true
		ctx, cancel := context.WithTimeout(r.Context(), budgetScrapeTimeout)
		lines, err := a.opts.Budget(ctx)
		cancel()
		if err != nil {
			page.BudgetError = err.Error()
		}
		for _, l := range lines {
			if l.Max > 0 || l.Used > 0 {
				page.Budget = append(page.Budget, newDashBudget(l))
			}
		}
		// Spent limits first.
		slices.SortStableFunc(page.Budget, func(x, y dashBudget) int {
			return btoi(y.Spent) - btoi(x.Spent)
		})
	}
	if a.opts.LocalCA != nil {
		ca := a.opts.LocalCA()
		page.LocalCA = &dashLocalCA{LocalCA: ca}
		if ca.ShareURL != "" {
			qr, err := qrDataURL(ca.ShareURL)
			if err != nil {
				a.opts.Logger.ErrorContext(r.Context(), "drawing the QR code of the local CA root", "url", ca.ShareURL, "error", err)
			}
			page.LocalCA.QR = qr
		}
	}
	var buf bytes.Buffer
	if err := dashboardTemplate.Execute(&buf, page); err != nil {
		a.opts.Logger.ErrorContext(r.Context(), "rendering the dashboard", "error", err)
		http.Error(w, "rendering the dashboard failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	// The page has no scripts and loads nothing from elsewhere.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Write(buf.Bytes())
}

const day = 24 * time.Hour

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// qrDataURL draws url as a QR code (medium error correction, 5 pixels a
// module, the quiet zone included) in a PNG data: URL, so the page loads
// nothing from elsewhere.
func qrDataURL(url string) (template.URL, error) {
	q, err := qrcode.New(url, qrcode.Medium)
	if err != nil {
		return "", err
	}
	png, err := q.PNG(-5)
	if err != nil {
		return "", err
	}
	return template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(png)), nil
}

func newDashCert(c tlsmgr.CertificateInfo, now time.Time) dashCert {
	d := dashCert{
		Status: c.Status, Source: c.Source, RoutedBy: c.RoutedBy, Client: c.Client, Issuer: c.Issuer, CA: c.CA, KeyType: c.KeyType, Serial: c.Serial,
		Issued: date(c.NotBefore), Expires: date(c.NotAfter), Renews: date(c.NextRenewal), RenewalReason: c.RenewalReason,
		LastError: c.LastError, LastAttempt: date(c.LastAttempt), Failures: c.Failures,
	}
	if len(c.Names) > 0 {
		d.Name, d.Others = c.Names[0], c.Names[1:]
	}
	if !c.NotAfter.IsZero() {
		d.Left = humanLeft(c.NotAfter.Sub(now))
	}
	if !c.NotBefore.IsZero() && c.NotAfter.After(c.NotBefore) {
		life := c.NotAfter.Sub(c.NotBefore)
		pct := func(t time.Time) float64 {
			return min(max(float64(t.Sub(c.NotBefore))/float64(life)*100, 0), 100)
		}
		d.Timeline = true
		d.TodayPct = fmt.Sprintf("%.1f", pct(now))
		d.ElapsedPct = d.TodayPct
		alt := fmt.Sprintf("issued %s, expires %s", d.Issued, d.Expires)
		if !c.NextRenewal.IsZero() {
			d.ShowRenew = true
			d.RenewPct = fmt.Sprintf("%.1f", pct(c.NextRenewal))
			alt += ", renewal due " + d.Renews
		}
		d.TimelineAlt = alt + fmt.Sprintf("; today is %s%% of the way through its lifetime", d.TodayPct)
	}
	return d
}

func date(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04")
}

// humanLeft says how far away an expiry is, in days, or hours when close.
func humanLeft(d time.Duration) string {
	past := d < 0
	if past {
		d = -d
	}
	var s string
	switch {
	case d >= 2*day:
		s = fmt.Sprintf("%d days", int(d/day))
	case d >= 2*time.Hour:
		s = fmt.Sprintf("%d hours", int(d/time.Hour))
	default:
		s = fmt.Sprintf("%d minutes", int(d/time.Minute))
	}
	if past {
		return "expired " + s + " ago"
	}
	return "in " + s
}
