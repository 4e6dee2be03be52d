package admin

import (
	"net/url"
	"strings"

	"github.com/gatehouse-proxy/gatehouse/tlsmgr"
)

// Endpoint is one call of the admin API, written as a [net/http.ServeMux]
// pattern: a method, a space and a path in which {name} stands for a
// Certificate's name. [Handler] routes these patterns and package
// admin/client calls them, so the two cannot drift apart.
type Endpoint string

// The admin API's endpoints (see the package doc for what each answers).
const (
	// EndpointHealthz answers 200 "ok" while the process serves.
	EndpointHealthz Endpoint = "GET /healthz"
	// EndpointReadyz answers 200 once the Listeners serve and the config
	// is applied, else 503.
	EndpointReadyz Endpoint = "GET /readyz"
	// EndpointCertificates answers every Certificate, most urgent first,
	// as a JSON array of [tlsmgr.CertificateInfo].
	EndpointCertificates Endpoint = "GET /certs"
	// EndpointCertificate answers the Certificate serving {name}.
	EndpointCertificate Endpoint = "GET /certs/{name}"
	// EndpointRenew renews the Certificate serving {name} (with
	// [ForceQuery] set to 1 even when it is not due) and answers it.
	EndpointRenew Endpoint = "POST /certs/{name}/renew"
	// EndpointRevoke takes a [RevokeRequest], revokes the Certificate
	// serving {name}, replaces it and answers the new one.
	EndpointRevoke Endpoint = "POST /certs/{name}/revoke"
	// EndpointMigrate takes a [tlsmgr.MigrateOptions] and re-issues the
	// Certificates it selects from another issuer, answering a stream of
	// [MigrateLine] as it goes (application/x-ndjson).
	EndpointMigrate Endpoint = "POST /certs/migrate"
	// EndpointReload reloads the config file as SIGHUP does and answers a
	// [ReloadAnswer].
	EndpointReload Endpoint = "POST /reload"
	// EndpointRoutes answers every Route of the running config, with
	// where it came from, as a JSON array of [Route].
	EndpointRoutes Endpoint = "GET /routes"
	// EndpointFleet answers the fleet's instances, as a [FleetStatus]
	// read from etcd (503 when this gatehouse has no storage.etcd, 502
	// when etcd cannot be read).
	EndpointFleet Endpoint = "GET /fleet"
	// EndpointBudget answers what is left of each ACME Issuer's rate
	// limits, as a JSON array of [tlsmgr.BudgetLine] (503 without
	// certificate management, 502 when storage cannot be read).
	EndpointBudget Endpoint = "GET /budget"
	// EndpointMetrics answers the metrics in Prometheus text format.
	EndpointMetrics Endpoint = "GET /metrics"
	// EndpointDashboard answers the dashboard page (HTML). Its pattern
	// matches "/" only.
	EndpointDashboard Endpoint = "GET /{$}"
)

// ForceQuery is the query parameter of [EndpointRenew] that renews even
// when the Certificate is not due ("1" or "true").
const ForceQuery = "force"

// Method returns the endpoint's HTTP method ("GET").
func (e Endpoint) Method() string {
	m, _, _ := strings.Cut(string(e), " ")
	return m
}

// Path returns the endpoint's path with {name} replaced by name, escaped
// as one path segment. Endpoints without {name} ignore it.
func (e Endpoint) Path(name string) string {
	_, p, _ := strings.Cut(string(e), " ")
	p = strings.Replace(p, "{name}", url.PathEscape(name), 1)
	return strings.Replace(p, "{$}", "", 1)
}

// RevokeRequest is the JSON body of [EndpointRevoke].
type RevokeRequest struct {
	// Reason is an RFC 5280 reason name (keyCompromise, superseded, ...),
	// as [tlsmgr.ParseRevocationReason] takes it.
	Reason string `json:"reason"`
}

// MigrateLine is one line of the answer of [EndpointMigrate]: an event
// per step, then the result, or an error that stopped the migration
// (progress is kept: the same call resumes it).
type MigrateLine struct {
	Event  *tlsmgr.MigrationEvent  `json:"event,omitempty"`
	Result *tlsmgr.MigrationResult `json:"result,omitempty"`
	Error  string                  `json:"error,omitempty"`
}

// ReloadAnswer is the JSON body of a successful [EndpointReload].
type ReloadAnswer struct {
	// Status is "reloaded".
	Status string `json:"status"`
}

// ErrorAnswer is the JSON body of every error the API answers, with a 4xx
// or 5xx status.
type ErrorAnswer struct {
	// Error says what went wrong, naming the call and the host where
	// there is one.
	Error string `json:"error"`
}
