package admin

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gatehouse-proxy/gatehouse/tlsmgr"
)

// Inventory lists the Certificates; *tlsmgr.Manager implements it.
type Inventory interface {
	// Certificates returns the inventory, most urgent first.
	Certificates() []tlsmgr.CertificateInfo
}

// Metrics collects what /metrics exposes, on a registry of its own (never
// the process-global default one):
//
//   - per Certificate, read from the inventory at scrape time:
//     gatehouse_certificate_not_after_seconds{name,issuer},
//     gatehouse_certificate_next_renewal_seconds{name,issuer},
//     gatehouse_certificate_failures{name,issuer} (consecutive) and
//     gatehouse_certificate_status{name,issuer,status} (1 for the current
//     status, 0 for the others); name is the Certificate's first name,
//     retired Certificates are left out and pending ones (no certificate
//     yet) have no not_after;
//   - from Certificate events ([Metrics.ObserveEvent]):
//     gatehouse_certificate_issuance_attempts_total{issuer,challenge},
//     gatehouse_certificate_issuance_failures_total{issuer,challenge},
//     gatehouse_certificate_renewal_attempts_total{issuer,challenge},
//     gatehouse_certificate_renewal_failures_total{issuer,challenge}
//     (issuer is the CA's ACME directory, or "internal") and the histogram
//     gatehouse_acme_order_duration_seconds{issuer};
//   - from the proxy ([Metrics.ObserveRequest]):
//     gatehouse_http_requests_total{site,code} and the histogram
//     gatehouse_http_request_duration_seconds{site,code}, code being the
//     status class ("2xx");
//   - gatehouse_upstream_healthy{site,route,upstream} (1 or 0) at scrape
//     time;
//   - from the HTTPS Listener ([Metrics.HandshakeFailed]):
//     gatehouse_tls_handshake_failures_total{reason}, one series per
//     tlsmgr reason, from zero;
//   - gatehouse_acme_budget_remaining{issuer,limit,domain} at scrape time:
//     what is left of each account-wide and per-domain rate limit of each
//     ACME Issuer that has one (tlsmgr.BudgetLine: issuer is the CA's
//     directory, domain what the limit counts: a registered domain or an
//     account); the per-name limits stay out, one series per name;
//   - gatehouse_source_refused_hosts_total{source}: label hosts outside
//     docker.allowed_hosts ([Metrics.RefusedHost]);
//   - the Go runtime, build and process collectors (go_*, go_build_info,
//     process_*).
//
// A Metrics lives as long as the process: reloads keep its counters.
type Metrics struct {
	reg *prometheus.Registry

	requests  *prometheus.CounterVec
	durations *prometheus.HistogramVec
	// sites maps a Site name to its per-class series, copied on write so
	// that ObserveRequest neither locks nor allocates.
	sites atomic.Pointer[map[string]*siteSeries]
	// sitesMu serialises the writers of sites.
	sitesMu sync.Mutex

	issuanceAttempts, issuanceFailures *prometheus.CounterVec
	renewalAttempts, renewalFailures   *prometheus.CounterVec
	orderDuration                      *prometheus.HistogramVec
	refusedHosts                       *prometheus.CounterVec
	challenge                          func(host string) string

	// handshakeFailures holds one counter per tlsmgr.HandshakeReasons
	// entry, read without a lock; handshakeVec makes any other.
	handshakeFailures map[string]prometheus.Counter
	handshakeVec      *prometheus.CounterVec
}

// statusClasses are the code label values, indexed by status/100 - 1.
var statusClasses = [...]string{"1xx", "2xx", "3xx", "4xx", "5xx"}

// siteSeries are one Site's request series, one per status class.
type siteSeries struct {
	count [len(statusClasses)]prometheus.Counter
	dur   [len(statusClasses)]prometheus.Observer
}

// MetricsOptions are the sources of [NewMetrics]; each may be nil.
type MetricsOptions struct {
	// Inventory is read at each scrape for the Certificate gauges.
	Inventory Inventory
	// Upstreams is read at each scrape for Upstream health.
	Upstreams func() []Upstream
	// Budget is read at each scrape for the rate-limit budget.
	Budget func(ctx context.Context) ([]tlsmgr.BudgetLine, error)
	// Challenge names the challenge types that orders for a host use, the
	// challenge label of the issuance and renewal counters ("dns-01",
	// "http-01,tls-alpn-01"); nil labels them "unknown".
	Challenge func(host string) string
	// ACMEServer, when set, is read at each scrape for the counters of
	// the ACME server (acme_server).
	ACMEServer func() ACMEServerCounts
}

// ACMEServerCounts are what the ACME server did since gatehouse started.
type ACMEServerCounts struct {
	// Issued counts the certificates it issued.
	Issued int64
	// RefusedClients counts requests from clients outside
	// allowed_clients; RefusedNames counts orders naming a name outside
	// allowed_names.
	RefusedClients, RefusedNames int64
}

// NewMetrics registers every collector.
func NewMetrics(opts MetricsOptions) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), challenge: opts.Challenge}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gatehouse_http_requests_total",
		Help: "Requests answered, by Site (its first host; empty when no Site matched) and status class.",
	}, []string{"site", "code"})
	m.durations = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "gatehouse_http_request_duration_seconds",
		Help:    "Time from a request's arrival to the end of its response, by Site and status class.",
		Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
	}, []string{"site", "code"})
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"issuer", "challenge"})
	}
	m.issuanceAttempts = counter("gatehouse_certificate_issuance_attempts_total", "Attempts to obtain a new Certificate, by Issuer and challenge type.")
	m.issuanceFailures = counter("gatehouse_certificate_issuance_failures_total", "Failed attempts to obtain a new Certificate, by Issuer and challenge type.")
	m.renewalAttempts = counter("gatehouse_certificate_renewal_attempts_total", "Attempts to renew a Certificate, by Issuer and challenge type.")
	m.renewalFailures = counter("gatehouse_certificate_renewal_failures_total", "Failed attempts to renew a Certificate, by Issuer and challenge type.")
	m.orderDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "gatehouse_acme_order_duration_seconds",
		Help:    "Time an ACME order took, from new order to certificate download or failure, by Issuer.",
		Buckets: []float64{.25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
	}, []string{"issuer"})
	m.handshakeVec = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gatehouse_tls_handshake_failures_total",
		Help: "Failed TLS handshakes on the HTTPS Listener, by reason (unknown_name, bad_sni, protocol_version, eof, timeout, ...).",
	}, []string{"reason"})
	m.handshakeFailures = make(map[string]prometheus.Counter, len(tlsmgr.HandshakeReasons))
	for _, r := range tlsmgr.HandshakeReasons {
		m.handshakeFailures[r] = m.handshakeVec.WithLabelValues(r)
	}
	m.refusedHosts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gatehouse_source_refused_hosts_total",
		Help: "Hosts a config source (container labels) named that its allowed_hosts did not allow: not routed, no certificate ordered.",
	}, []string{"source"})
	m.reg.MustRegister(
		m.requests, m.durations, m.handshakeVec, m.refusedHosts,
		m.issuanceAttempts, m.issuanceFailures, m.renewalAttempts, m.renewalFailures, m.orderDuration,
		&certCollector{inventory: opts.Inventory},
		&upstreamCollector{upstreams: opts.Upstreams},
		&budgetCollector{budget: opts.Budget},
		collectors.NewGoCollector(),
		collectors.NewBuildInfoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	if opts.ACMEServer != nil {
		m.reg.MustRegister(acmeServerCollector(opts.ACMEServer))
	}
	empty := map[string]*siteSeries{}
	m.sites.Store(&empty)
	return m
}

var (
	acmeIssuedDesc = prometheus.NewDesc("gatehouse_acme_server_issued_total",
		"Certificates the ACME server (acme_server) issued to other machines.", nil, nil)
	acmeRefusedDesc = prometheus.NewDesc("gatehouse_acme_server_refused_total",
		"Requests the ACME server refused, by reason: client (outside allowed_clients) or name (an order outside allowed_names).", []string{"reason"}, nil)
)

// acmeServerCollector reads the ACME server's counters at each scrape.
type acmeServerCollector func() ACMEServerCounts

func (c acmeServerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- acmeIssuedDesc
	ch <- acmeRefusedDesc
}

func (c acmeServerCollector) Collect(ch chan<- prometheus.Metric) {
	n := c()
	ch <- prometheus.MustNewConstMetric(acmeIssuedDesc, prometheus.CounterValue, float64(n.Issued))
	ch <- prometheus.MustNewConstMetric(acmeRefusedDesc, prometheus.CounterValue, float64(n.RefusedClients), "client")
	ch <- prometheus.MustNewConstMetric(acmeRefusedDesc, prometheus.CounterValue, float64(n.RefusedNames), "name")
}

// RefusedHost counts one host that source named and its allowed_hosts
// refused.
func (m *Metrics) RefusedHost(source string) { m.refusedHosts.WithLabelValues(source).Inc() }

// ObserveRequest counts one finished request; it is proxy.Options.Observe.
// After a Site's first request it takes no lock and allocates nothing.
func (m *Metrics) ObserveRequest(site string, status int, d time.Duration) {
	s := (*m.sites.Load())[site]
	if s == nil {
		s = m.addSite(site)
	}
	i := status/100 - 1
	if i < 0 || i >= len(statusClasses) {
		i = len(statusClasses) - 1 // a status outside 1xx-5xx counts as a server error
	}
	s.count[i].Inc()
	s.dur[i].Observe(d.Seconds())
}

// addSite creates the series of a Site seen for the first time.
func (m *Metrics) addSite(site string) *siteSeries {
	m.sitesMu.Lock()
	defer m.sitesMu.Unlock()
	old := *m.sites.Load()
	if s := old[site]; s != nil {
		return s
	}
	s := &siteSeries{}
	for i, class := range statusClasses {
		s.count[i] = m.requests.WithLabelValues(site, class)
		s.dur[i] = m.durations.WithLabelValues(site, class)
	}
	next := make(map[string]*siteSeries, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[site] = s
	m.sites.Store(&next)
	return s
}

// HandshakeFailed counts one failed TLS handshake; it makes Metrics a
// tlsmgr.HandshakeCounter.
func (m *Metrics) HandshakeFailed(reason string) {
	if c := m.handshakeFailures[reason]; c != nil {
		c.Inc()
		return
	}
	m.handshakeVec.WithLabelValues(reason).Inc()
}

// ObserveEvent counts a Certificate event; subscribe it with
// (*tlsmgr.Manager).Subscribe. An obtained or renewed event counts an
// attempt, an obtain_failed or renewal_failed event an attempt and a
// failure, and each of them with a Duration feeds the order histogram.
func (m *Metrics) ObserveEvent(e tlsmgr.Event) {
	challenge := "unknown"
	if m.challenge != nil && len(e.Names) > 0 {
		challenge = m.challenge(e.Names[0])
	}
	switch e.Type {
	case tlsmgr.EventObtained:
		m.issuanceAttempts.WithLabelValues(e.Issuer, challenge).Inc()
	case tlsmgr.EventObtainFailed:
		m.issuanceAttempts.WithLabelValues(e.Issuer, challenge).Inc()
		m.issuanceFailures.WithLabelValues(e.Issuer, challenge).Inc()
	case tlsmgr.EventRenewed:
		m.renewalAttempts.WithLabelValues(e.Issuer, challenge).Inc()
	case tlsmgr.EventRenewalFailed:
		m.renewalAttempts.WithLabelValues(e.Issuer, challenge).Inc()
		m.renewalFailures.WithLabelValues(e.Issuer, challenge).Inc()
	default:
		return
	}
	if e.Duration > 0 {
		m.orderDuration.WithLabelValues(e.Issuer).Observe(e.Duration.Seconds())
	}
}

// handler serves the registry in the Prometheus text (or OpenMetrics)
// format.
func (m *Metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// statuses are the values of the status label, so that each Certificate
// has one series per status and alerts can match status="failing" == 1:
// every status but retired, as retired Certificates are left out.
var statuses = slices.DeleteFunc(tlsmgr.Statuses(), func(s tlsmgr.Status) bool { return s == tlsmgr.StatusRetired })

var (
	notAfterDesc = prometheus.NewDesc("gatehouse_certificate_not_after_seconds",
		"When the Certificate expires, in Unix seconds.", []string{"name", "issuer"}, nil)
	nextRenewalDesc = prometheus.NewDesc("gatehouse_certificate_next_renewal_seconds",
		"When the Certificate is next due for renewal (ARI window or lifetime fraction), in Unix seconds.", []string{"name", "issuer"}, nil)
	failuresDesc = prometheus.NewDesc("gatehouse_certificate_failures",
		"Consecutive failed renewal or issuance attempts of the Certificate.", []string{"name", "issuer"}, nil)
	statusDesc = prometheus.NewDesc("gatehouse_certificate_status",
		"1 for the Certificate's current status (expired, failing, expiring, renewing, pending, valid, revoked), 0 for the others.", []string{"name", "issuer", "status"}, nil)
	upstreamDesc = prometheus.NewDesc("gatehouse_upstream_healthy",
		"1 when the Upstream takes requests, 0 when it is ejected or failing its health check.", []string{"site", "route", "upstream"}, nil)
	upstreamInFlightDesc = prometheus.NewDesc("gatehouse_upstream_in_flight",
		"Requests the Upstream is serving now.", []string{"site", "route", "upstream"}, nil)
	upstreamFailuresDesc = prometheus.NewDesc("gatehouse_upstream_failures_total",
		"Failed dials, health checks and passive failures of the Upstream.", []string{"site", "route", "upstream"}, nil)
)

// certCollector reads the inventory at each scrape, so the gauges are never
// stale and a removed Certificate disappears.
type certCollector struct {
	inventory Inventory
}

func (c *certCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- notAfterDesc
	ch <- nextRenewalDesc
	ch <- failuresDesc
	ch <- statusDesc
}

func (c *certCollector) Collect(ch chan<- prometheus.Metric) {
	if c.inventory == nil {
		return
	}
	type key struct{ name, issuer string }
	seen := map[key]bool{}
	for _, ci := range c.inventory.Certificates() {
		if ci.Status == tlsmgr.StatusRetired || len(ci.Names) == 0 {
			continue
		}
		k := key{ci.Names[0], ci.Issuer}
		if seen[k] {
			// Two Certificates for one name from one Issuer (a replacement
			// not yet swapped in): the list is most urgent first, keep that.
			continue
		}
		seen[k] = true
		if !ci.NotAfter.IsZero() {
			// A pending Certificate has no expiry; year 1 would set off
			// every "expires soon" alert.
			ch <- prometheus.MustNewConstMetric(notAfterDesc, prometheus.GaugeValue, unixSeconds(ci.NotAfter), k.name, k.issuer)
		}
		if !ci.NextRenewal.IsZero() {
			ch <- prometheus.MustNewConstMetric(nextRenewalDesc, prometheus.GaugeValue, unixSeconds(ci.NextRenewal), k.name, k.issuer)
		}
		ch <- prometheus.MustNewConstMetric(failuresDesc, prometheus.GaugeValue, float64(ci.Failures), k.name, k.issuer)
		for _, s := range statuses {
			v := 0.0
			if ci.Status == s {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(statusDesc, prometheus.GaugeValue, v, k.name, k.issuer, string(s))
		}
	}
}

func unixSeconds(t time.Time) float64 {
	return float64(t.UnixMilli()) / 1000
}

var budgetDesc = prometheus.NewDesc("gatehouse_acme_budget_remaining",
	"What is left of a rate limit of an ACME Issuer in its sliding window: orders, Certificates or validations gatehouse may still send before it uses the next Issuer or waits.",
	[]string{"issuer", "limit", "domain"}, nil)

// budgetScrapeTimeout bounds reading the budget from storage at a scrape.
const budgetScrapeTimeout = 5 * time.Second

// budgetCollector reads the rate-limit budget at each scrape.
type budgetCollector struct {
	budget func(ctx context.Context) ([]tlsmgr.BudgetLine, error)
}

func (c *budgetCollector) Describe(ch chan<- *prometheus.Desc) { ch <- budgetDesc }

func (c *budgetCollector) Collect(ch chan<- prometheus.Metric) {
	if c.budget == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), budgetScrapeTimeout)
	defer cancel()
	lines, err := c.budget(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(budgetDesc, err)
		return
	}
	type key struct{ issuer, limit, domain string }
	seen := map[key]bool{}
	for _, l := range lines {
		k := key{l.Issuer, string(l.Limit), l.Key}
		if l.Max <= 0 || seen[k] {
			continue // no limit known: nothing is left or spent
		}
		if l.Limit == tlsmgr.LimitDuplicates || l.Limit == tlsmgr.LimitFailedValidations {
			// Counted per set of names or per host: with on-demand TLS a
			// series each for thousands of names. The dashboard, GET
			// /budget and `gatehouse certs budget` show them.
			continue
		}
		seen[k] = true
		ch <- prometheus.MustNewConstMetric(budgetDesc, prometheus.GaugeValue, float64(l.Remaining), k.issuer, k.limit, k.domain)
	}
}

// upstreamCollector reads Upstream health at each scrape.
type upstreamCollector struct {
	upstreams func() []Upstream
}

func (c *upstreamCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- upstreamDesc
	ch <- upstreamInFlightDesc
	ch <- upstreamFailuresDesc
}

func (c *upstreamCollector) Collect(ch chan<- prometheus.Metric) {
	if c.upstreams == nil {
		return
	}
	type key struct{ site, route, url string }
	seen := map[key]bool{}
	for _, u := range c.upstreams() {
		k := key{u.Site, u.Route, u.URL}
		if seen[k] {
			continue
		}
		seen[k] = true
		v := 0.0
		if u.Healthy {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(upstreamDesc, prometheus.GaugeValue, v, u.Site, u.Route, u.URL)
		ch <- prometheus.MustNewConstMetric(upstreamInFlightDesc, prometheus.GaugeValue, float64(u.InFlight), u.Site, u.Route, u.URL)
		ch <- prometheus.MustNewConstMetric(upstreamFailuresDesc, prometheus.CounterValue, float64(u.Failures), u.Site, u.Route, u.URL)
	}
}
