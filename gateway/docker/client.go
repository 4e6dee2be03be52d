package docker

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// client is a small typed client of the Docker Engine API, over the three
// read-only endpoints discovery needs (plus /_ping for the version). It is
// written here rather than taken from github.com/moby/moby/client, whose
// module pulls in OpenTelemetry, go-winio, moby/term, image-spec and a
// dozen more modules for what is three GET requests. Every request it
// sends is a GET, so a socket proxy that allows only reads is enough.
type client struct {
	http *http.Client
	base string // "http://docker" or "https://host:port"
	// version is the negotiated API version prefix ("/v1.41"); "" until
	// negotiate succeeds.
	version string
}

// apiMax is the newest Engine API version this client speaks; an engine
// offering a newer one is spoken to in this one, an older engine in its
// own. Nothing is pinned: Docker 29 refused the versions older clients
// pinned.
const apiMax = "1.51"

func newClient(d *config.Docker) (*client, error) {
	u, err := url.Parse(d.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("parsing docker.endpoint: %w", err)
	}
	tr := &http.Transport{
		MaxIdleConns:          4,
		IdleConnTimeout:       30 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		DisableCompression:    true,
	}
	c := &client{http: &http.Client{Transport: tr}}
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	switch u.Scheme {
	case "unix":
		sock := u.Path
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, "unix", sock)
		}
		c.base = "http://docker"
	case "tcp":
		tr.DialContext = dialer.DialContext
		c.base = "http://" + u.Host
		if d.TLS != nil {
			cfg, err := tlsConfig(d.TLS)
			if err != nil {
				return nil, err
			}
			tr.TLSClientConfig = cfg
			c.base = "https://" + u.Host
		}
	default:
		return nil, fmt.Errorf("docker.endpoint %q: not unix:// or tcp://", d.Endpoint)
	}
	return c, nil
}

func tlsConfig(t *config.DockerTLS) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.CA != "" {
		pem, err := os.ReadFile(t.CA)
		if err != nil {
			return nil, fmt.Errorf("reading docker.tls.ca: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("docker.tls.ca %s holds no PEM certificate", t.CA)
		}
	}
	if t.Cert != "" {
		pair, err := tls.LoadX509KeyPair(t.Cert, t.Key)
		if err != nil {
			return nil, fmt.Errorf("loading docker.tls.cert and docker.tls.key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// get sends GET path (with the version prefix once negotiated) and
// returns the response when it is 200; the caller closes the body.
func (c *client) get(ctx context.Context, path string, query url.Values) (*http.Response, error) {
	u := c.base + c.version + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, &statusError{path: path, code: resp.StatusCode, msg: strings.TrimSpace(string(msg))}
	}
	return resp, nil
}

type statusError struct {
	path string
	code int
	msg  string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("GET %s: %d %s: %s", e.path, e.code, http.StatusText(e.code), e.msg)
}

// isNotFound reports whether err says the container does not exist (any
// more). podman answers 500 "no such container" for a container removed
// during the request.
func isNotFound(err error) bool {
	var se *statusError
	return errors.As(err, &se) && (se.code == http.StatusNotFound || strings.Contains(se.msg, "no such container"))
}

func (c *client) getJSON(ctx context.Context, path string, query url.Values, v any) error {
	resp, err := c.get(ctx, path, query)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("GET %s: decoding the answer: %w", path, err)
	}
	return nil
}

// negotiate asks the engine which API version it speaks (GET /_ping's
// Api-Version header) and uses it, or apiMax when the engine is newer.
func (c *client) negotiate(ctx context.Context) (string, error) {
	c.version = ""
	resp, err := c.get(ctx, "/_ping", nil)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	v := resp.Header.Get("Api-Version")
	if v == "" || versionLess(apiMax, v) {
		v = apiMax
	}
	c.version = "/v" + v
	return v, nil
}

// versionLess reports whether API version a is older than b ("1.41" <
// "1.44").
func versionLess(a, b string) bool {
	am, an, _ := strings.Cut(a, ".")
	bm, bn, _ := strings.Cut(b, ".")
	ai, _ := strconv.Atoi(am)
	bi, _ := strconv.Atoi(bm)
	if ai != bi {
		return ai < bi
	}
	aj, _ := strconv.Atoi(an)
	bj, _ := strconv.Atoi(bn)
	return aj < bj
}

// summary is one entry of GET /containers/json.
type summary struct {
	ID    string `json:"Id"`
	State string
}

// container is what GET /containers/{id}/json says that discovery uses.
type container struct {
	ID    string `json:"Id"`
	Name  string
	State struct {
		Status     string // created, running, paused, restarting, removing, exited, dead
		Running    bool
		Paused     bool
		Restarting bool
		FinishedAt time.Time
		Health     *struct{ Status string } // starting, healthy, unhealthy; nil or "" without a HEALTHCHECK
	}
	Config struct {
		Labels       map[string]string
		ExposedPorts map[string]struct{}
		StopTimeout  *int // seconds; nil for the engine's default
	}
	NetworkSettings struct {
		Networks map[string]struct{ IPAddress string }
	}
}

// filters encodes the Engine API's filters query parameter.
func filters(f map[string][]string) url.Values {
	b, _ := json.Marshal(f)
	return url.Values{"filters": {string(b)}}
}

func (c *client) list(ctx context.Context, f map[string][]string) ([]summary, error) {
	q := filters(f)
	q.Set("all", "1")
	var out []summary
	return out, c.getJSON(ctx, "/containers/json", q, &out)
}

func (c *client) inspect(ctx context.Context, id string) (*container, error) {
	var out container
	if err := c.getJSON(ctx, "/containers/"+url.PathEscape(id)+"/json", nil, &out); err != nil {
		return nil, err
	}
	out.Name = strings.TrimPrefix(out.Name, "/")
	return &out, nil
}

// event is one line of GET /events.
type event struct {
	Type   string
	Action string
	Actor  struct {
		ID         string
		Attributes map[string]string
	}
	TimeNano int64 `json:"timeNano"`
}

// events opens the event stream, from since (Unix nanoseconds; 0 for
// now on); next returns each event until the stream ends or ctx is done,
// and close ends it.
func (c *client) events(ctx context.Context, f map[string][]string, since int64) (next func() (event, error), close func(), err error) {
	q := filters(f)
	if since > 0 {
		q.Set("since", fmt.Sprintf("%d.%09d", since/1e9, since%1e9))
	}
	resp, err := c.get(ctx, "/events", q)
	if err != nil {
		return nil, nil, err
	}
	dec := json.NewDecoder(bufio.NewReader(resp.Body))
	next = func() (event, error) {
		var e event
		if err := dec.Decode(&e); err != nil {
			return e, fmt.Errorf("reading the event stream: %w", err)
		}
		return e, nil
	}
	return next, func() { resp.Body.Close() }, nil
}
