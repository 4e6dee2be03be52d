// Package client calls a running gatehouse's admin endpoint (package
// [admin]) with typed methods: readiness, the Certificate inventory,
// renewals, revocations and reloads. It calls the routes [admin.Endpoint]
// names, the ones [admin.Handler] serves, so the endpoint, `gatehouse
// certs` and other tools share one description of them.
//
// An answer with a status other than 2xx becomes an [*Error] carrying the
// status and the endpoint's message, so callers can tell a name without a
// Certificate (404) from a refused call (409) or a failing CA (502).
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gatehouse-proxy/gatehouse/admin"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr"
)

// maxAnswer bounds the answers read; an inventory of thousands of
// Certificates with their chains stays well below it.
const maxAnswer = 32 << 20

// Client calls one admin endpoint. It is safe for concurrent use.
type Client struct {
	base string
	http *http.Client
}

// New returns a Client calling the admin endpoint at baseURL
// ("http://127.0.0.1:2019"; a final slash is dropped) through httpClient,
// whose timeout bounds every call; nil means [http.DefaultClient]. For an
// address as the config's admin key takes it, see [BaseURL].
func New(baseURL string, httpClient *http.Client) *Client {
	if httpClient == nil {
		httpClient = http.DefaultClient
	}
	return &Client{base: strings.TrimSuffix(baseURL, "/"), http: httpClient}
}

// BaseURL turns an admin address into the base URL to call: a host and
// port as the config's admin key takes them ("127.0.0.1:2019"), dialled
// on loopback when the endpoint listens on every address (":2019",
// "0.0.0.0:2019", "[::]:2019"); or a URL ("http://gw.internal:2019"),
// taken as it is.
func BaseURL(addr string) (string, error) {
	if strings.Contains(addr, "://") {
		u, err := url.Parse(addr)
		if err != nil {
			return "", fmt.Errorf("parsing admin URL: %w", err)
		}
		return strings.TrimSuffix(u.String(), "/"), nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("parsing admin address %q: %w", addr, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port), nil
}

// ErrNoInstance says no gatehouse answers at an admin address.
var ErrNoInstance = errors.New("no gatehouse answers")

// dialTimeout bounds Dial's health check: a gatehouse answers /healthz at
// once, and a CLI must not hang on an address where nothing listens.
const dialTimeout = 3 * time.Second

// Dial returns a Client for the gatehouse whose admin endpoint is at addr
// (as [BaseURL] takes it) once its /healthz answered. When nothing answers
// there, or addr is "" or "off", the error wraps [ErrNoInstance] and says
// why, so a tool can fall back to working on the storage.
func Dial(ctx context.Context, addr string, httpClient *http.Client) (*Client, error) {
	if addr == "" || addr == "off" {
		return nil, fmt.Errorf("%w: the admin endpoint is off", ErrNoInstance)
	}
	base, err := BaseURL(addr)
	if err != nil {
		return nil, err
	}
	c := New(base, httpClient)
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	if err := c.Health(ctx); err != nil {
		if e, ok := errors.AsType[*Error](err); ok {
			return nil, fmt.Errorf("%w at %s: /healthz answered %d %s", ErrNoInstance, addr, e.Status, http.StatusText(e.Status))
		}
		// The failed request (the *url.Error) says enough; what wraps it
		// would repeat the address.
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue
		}
		return nil, fmt.Errorf("%w at %s: %v", ErrNoInstance, addr, err)
	}
	return c, nil
}

// BaseURL returns the base URL the Client calls.
func (c *Client) BaseURL() string { return c.base }

// Error is an answer of the admin endpoint with a status other than 2xx.
type Error struct {
	// Status is the HTTP status: 404 for a name without a Certificate,
	// 409 for a call refused because of what the Certificate is, 502 when
	// the CA, the network or a challenge failed, 422 for a config that
	// does not load, 503 for a part gatehouse does not run, 403 or 415
	// for a request the endpoint's guard refuses.
	Status int
	// Message is the endpoint's error message as it is (it names the call
	// and the host), or "" when the answer carried none.
	Message string
	// Method and Path are the call's ("POST", "/certs/app.example.com/renew?force=1").
	Method, Path string
}

// Error returns the endpoint's message, or names the call and the status
// when there is none.
func (e *Error) Error() string {
	if e.Message != "" {
		return e.Message
	}
	return strings.TrimSpace(fmt.Sprintf("%s %s: %d %s", e.Method, e.Path, e.Status, http.StatusText(e.Status)))
}

// Health returns nil while a gatehouse serves at the endpoint
// ([admin.EndpointHealthz]).
func (c *Client) Health(ctx context.Context) error {
	return c.call(ctx, admin.EndpointHealthz, "", nil, nil, nil)
}

// Ready reports whether the gatehouse serves its Listeners with its config
// applied ([admin.EndpointReadyz]); not being ready yet is not an error.
func (c *Client) Ready(ctx context.Context) (bool, error) {
	err := c.call(ctx, admin.EndpointReadyz, "", nil, nil, nil)
	if e, ok := errors.AsType[*Error](err); ok && e.Status == http.StatusServiceUnavailable {
		return false, nil
	}
	return err == nil, err
}

// Certificates returns every Certificate, most urgent first
// ([admin.EndpointCertificates]).
func (c *Client) Certificates(ctx context.Context) ([]tlsmgr.CertificateInfo, error) {
	var certs []tlsmgr.CertificateInfo
	if err := c.call(ctx, admin.EndpointCertificates, "", nil, nil, &certs); err != nil {
		return nil, err
	}
	return certs, nil
}

// Certificate returns the Certificate serving name, the current one
// before a retired one ([admin.EndpointCertificate]); an [*Error] with
// status 404 when there is none.
func (c *Client) Certificate(ctx context.Context, name string) (tlsmgr.CertificateInfo, error) {
	var ci tlsmgr.CertificateInfo
	err := c.call(ctx, admin.EndpointCertificate, name, nil, nil, &ci)
	return ci, err
}

// Renew renews the Certificate serving name, even when it is not due if
// force is set, and returns the Certificate then serving it
// ([admin.EndpointRenew]).
func (c *Client) Renew(ctx context.Context, name string, force bool) (tlsmgr.CertificateInfo, error) {
	var q url.Values
	if force {
		q = url.Values{admin.ForceQuery: {"1"}}
	}
	var ci tlsmgr.CertificateInfo
	err := c.call(ctx, admin.EndpointRenew, name, q, nil, &ci)
	return ci, err
}

// Revoke revokes the Certificate serving name at its CA with reason (an
// RFC 5280 reason name, see [tlsmgr.RevocationReasons]), and returns the
// replacement the gatehouse then serves ([admin.EndpointRevoke]). A
// retired Certificate is not replaced: the answer then carries its name
// only.
func (c *Client) Revoke(ctx context.Context, name, reason string) (tlsmgr.CertificateInfo, error) {
	var ci tlsmgr.CertificateInfo
	err := c.call(ctx, admin.EndpointRevoke, name, nil, admin.RevokeRequest{Reason: reason}, &ci)
	return ci, err
}

// Migrate re-issues the Certificates opts selects from the issuer
// opts.To on the running gatehouse ([admin.EndpointMigrate]), calling
// progress (when not nil) with each step as the gatehouse reports it, and
// returns the result. The migration runs as long as the call: cancelling
// ctx stops it, and the same call later resumes it. The Client's timeout
// bounds the whole call, so give it an [http.Client] without one for a
// long migration.
func (c *Client) Migrate(ctx context.Context, opts tlsmgr.MigrateOptions, progress func(tlsmgr.MigrationEvent)) (tlsmgr.MigrationResult, error) {
	e := admin.EndpointMigrate
	method, path := e.Method(), e.Path("")
	b, err := json.Marshal(opts)
	if err != nil {
		return tlsmgr.MigrationResult{}, fmt.Errorf("encoding the request %s %s: %w", method, path, err)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(b))
	if err != nil {
		return tlsmgr.MigrationResult{}, fmt.Errorf("building the request %s %s: %w", method, path, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return tlsmgr.MigrationResult{}, fmt.Errorf("calling the admin endpoint: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
		var answer admin.ErrorAnswer
		_ = json.Unmarshal(b, &answer)
		return tlsmgr.MigrationResult{}, &Error{Status: resp.StatusCode, Message: answer.Error, Method: method, Path: path}
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var l admin.MigrateLine
		if err := dec.Decode(&l); err != nil {
			if ctx.Err() != nil {
				return tlsmgr.MigrationResult{}, ctx.Err()
			}
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF // the gatehouse stopped before the result
			}
			return tlsmgr.MigrationResult{}, fmt.Errorf("reading the admin endpoint's answer to %s %s: %w", method, path, err)
		}
		switch {
		case l.Event != nil:
			if progress != nil {
				progress(*l.Event)
			}
		case l.Result != nil:
			return *l.Result, nil
		case l.Error != "":
			return tlsmgr.MigrationResult{}, &Error{Status: http.StatusBadGateway, Message: l.Error, Method: method, Path: path}
		}
	}
}

// Fleet returns the fleet's instances as the gatehouse reads them from
// its registry in etcd ([admin.EndpointFleet]).
func (c *Client) Fleet(ctx context.Context) (admin.FleetStatus, error) {
	var st admin.FleetStatus
	err := c.call(ctx, admin.EndpointFleet, "", nil, nil, &st)
	return st, err
}

// Budget returns what is left of each ACME Issuer's rate limits
// ([admin.EndpointBudget]).
func (c *Client) Budget(ctx context.Context) ([]tlsmgr.BudgetLine, error) {
	var out []tlsmgr.BudgetLine
	if err := c.call(ctx, admin.EndpointBudget, "", nil, nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// Reload reloads the config file as SIGHUP does ([admin.EndpointReload]).
// A config that does not load is an [*Error] with status 422 and its
// problems; the running config keeps serving.
func (c *Client) Reload(ctx context.Context) error {
	var answer admin.ReloadAnswer
	return c.call(ctx, admin.EndpointReload, "", nil, nil, &answer)
}

// Routes returns every Route of the running config and where it came
// from ([admin.EndpointRoutes]).
func (c *Client) Routes(ctx context.Context) ([]admin.Route, error) {
	var out []admin.Route
	if err := c.call(ctx, admin.EndpointRoutes, "", nil, nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// call sends a request to endpoint e (for name, with query) with body as
// JSON when not nil, and decodes a JSON answer into out when not nil. An
// answer other than 2xx becomes an *Error; a failure to reach the endpoint
// or to read its answer names the call.
func (c *Client) call(ctx context.Context, e admin.Endpoint, name string, query url.Values, body, out any) error {
	method, path := e.Method(), e.Path(name)
	if len(query) > 0 {
		path += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encoding the request %s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return fmt.Errorf("building the request %s %s: %w", method, path, err)
	}
	if body != nil {
		// The endpoint takes a body only as JSON (see admin.Handler).
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("calling the admin endpoint: %w", err) // the *url.Error names the method and URL
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return fmt.Errorf("reading the admin endpoint's answer to %s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var answer admin.ErrorAnswer
		_ = json.Unmarshal(b, &answer) // an answer that is not JSON carries no message
		return &Error{Status: resp.StatusCode, Message: answer.Error, Method: method, Path: path}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("decoding the admin endpoint's answer to %s %s: %w", method, path, err)
	}
	return nil
}
