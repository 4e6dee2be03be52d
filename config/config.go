// Package config holds gatehouse's configuration: the YAML schema as plain
// structs, a strict loader that reports every problem with its file, line,
// column and key path, defaults, and validation. It imports neither proxy
// nor tlsmgr; they compile what it describes.
//
// [Load] and [Parse] expand ${VAR} and ${VAR:-default} in values, resolve
// relative file paths (storage, acme.ca_root, tls.cert, tls.key, a route's
// ca and root) against the config file's directory, so every path in a
// loaded Config is absolute, then apply the defaults and [Config.Validate].
package config

import "time"

// DefaultPath is where gatehouse looks for its config when neither a flag nor
// GATEHOUSE_CONFIG names one.
const DefaultPath = "/etc/gatehouse/gatehouse.yaml"

// Config is a whole gatehouse configuration file. Top-level keys starting
// with "x-" are ignored, as in Docker Compose, so they can hold YAML anchors
// for "<<" merges.
type Config struct {
	// Listen names the addresses of the HTTP and HTTPS Listeners.
	Listen Listen `yaml:"listen"`
	// Storage is the directory holding certificates, keys, ACME accounts and
	// the local CA. Default /var/lib/gatehouse. Changing it needs a restart.
	Storage string `yaml:"storage,omitempty"`
	// Admin is the address of the local admin endpoint, or "off".
	// Default 127.0.0.1:2019.
	Admin string `yaml:"admin,omitempty"`
	// Log sets the log format and level.
	Log Log `yaml:"log,omitempty"`
	// ACME configures how public certificates are obtained.
	ACME ACME `yaml:"acme,omitempty"`
	// TrustedProxies lists the CIDRs (or single IPs) whose X-Forwarded-* and
	// Forwarded headers are believed. Default none: every such header a
	// client sends is replaced.
	TrustedProxies []string `yaml:"trusted_proxies,omitempty"`
	// Timeouts bound every Listener and every Upstream connection.
	Timeouts Timeouts `yaml:"timeouts,omitempty"`
	// Limits bound what a client may send.
	Limits Limits `yaml:"limits,omitempty"`
	// Sites are the hosts gatehouse serves, each with its Routes.
	Sites []Site `yaml:"sites,omitempty"`

	// File is the path the config was loaded from ("" when built in code).
	File string `yaml:"-"`
	// positions maps a key path ("sites[0].routes[1].path") to where its
	// value stands in File, so validation can point at it.
	positions map[string]Position
}

// Listen names the Listener addresses. An empty address turns that Listener
// off: without http, HTTP-01 is unavailable and nothing redirects to HTTPS.
// In a file, write "off" (or "") to turn one off; after loading, off is "".
// A key left out gets its default.
type Listen struct {
	// HTTP serves HTTP-01 challenges and redirects to HTTPS. Default ":80".
	HTTP string `yaml:"http"`
	// HTTPS serves TLS and answers TLS-ALPN-01 challenges. Default ":443".
	HTTPS string `yaml:"https"`
}

// Log configures the structured log, access lines included.
type Log struct {
	// Format is "text" (the default) or "json".
	Format string `yaml:"format,omitempty"`
	// Level is "debug", "info" (the default), "warn" or "error".
	Level string `yaml:"level,omitempty"`
	// Access turns the per-request access log on or off. Default on.
	Access *bool `yaml:"access,omitempty"`
}

// ACME configures the ACME client used for sites whose certificates come from
// a public or private CA.
type ACME struct {
	// Email is the ACME account contact; the CA may warn it of problems.
	Email string `yaml:"email,omitempty"`
	// CA is the ACME directory URL. Default Let's Encrypt production.
	CA string `yaml:"ca,omitempty"`
	// CARoot is a PEM file of extra roots trusted when talking to the CA,
	// for private or test CAs.
	CARoot string `yaml:"ca_root,omitempty"`
	// Challenges lists the challenge types to use: "http-01", "tls-alpn-01".
	// Default both.
	Challenges []string `yaml:"challenges,omitempty"`
	// Engine is "certmagic" (the default) or "autocert" (minimal: HTTP-01
	// and TLS-ALPN-01 only, one CA).
	Engine string `yaml:"engine,omitempty"`
	// EAB is the external account binding some CAs (ZeroSSL) require.
	EAB *EAB `yaml:"eab,omitempty"`
}

// EAB is an ACME external account binding.
type EAB struct {
	// KeyID is the key identifier the CA gave.
	KeyID string `yaml:"key_id,omitempty"`
	// MACKey is the base64url HMAC key the CA gave.
	MACKey string `yaml:"mac_key,omitempty"`
}

// Timeouts bound the Listeners and Upstream connections. Zero means the
// default given on each field, never "no timeout".
type Timeouts struct {
	// ReadHeader bounds reading a request's headers. Default 10s.
	ReadHeader time.Duration `yaml:"read_header,omitempty"`
	// Idle bounds how long a keep-alive connection waits for its next
	// request. Default 2m.
	Idle time.Duration `yaml:"idle,omitempty"`
	// Dial bounds connecting to an Upstream. Default 5s.
	Dial time.Duration `yaml:"dial,omitempty"`
	// ResponseHeader bounds waiting for an Upstream's response headers once
	// the request is sent. Default 60s.
	ResponseHeader time.Duration `yaml:"response_header,omitempty"`
	// Shutdown bounds the drain of in-flight requests on SIGTERM. Default 10s.
	Shutdown time.Duration `yaml:"shutdown,omitempty"`
}

// Limits bound what a client may send.
type Limits struct {
	// HeaderBytes bounds a request's header block ("64KiB" or bytes).
	// Default 64 KiB.
	HeaderBytes ByteSize `yaml:"header_bytes,omitempty"`
}

// Site is a set of hosts served alike: one certificate policy and one set of
// Routes.
type Site struct {
	// Hosts are exact names ("app.example.com"), one-label wildcards
	// ("*.example.com") or "*" for every other host (catch-all).
	Hosts []string `yaml:"hosts,omitempty"`
	// TLS chooses where the Site's Certificate comes from.
	TLS SiteTLS `yaml:"tls,omitempty"`
	// HSTS, when present, sends Strict-Transport-Security on every HTTPS
	// response of the Site.
	HSTS *HSTS `yaml:"hsts,omitempty"`
	// Routes map path prefixes to handlers; the longest prefix wins.
	Routes []Route `yaml:"routes,omitempty"`
}

// Issuer names for SiteTLS.Issuer.
const (
	IssuerACME     = "acme"
	IssuerInternal = "internal"
)

// SiteTLS chooses where a Site's Certificate comes from. The zero value means
// automatic: ACME for public names, the local CA for names no public CA can
// certify (localhost, *.localhost, IP addresses, *.internal, *.home.arpa).
type SiteTLS struct {
	// Issuer is "acme" or "internal" (the local CA). Default automatic.
	Issuer string `yaml:"issuer,omitempty"`
	// Cert and Key are PEM files of a Certificate managed by hand; they are
	// reloaded on SIGHUP. Both or neither.
	Cert string `yaml:"cert,omitempty"`
	Key  string `yaml:"key,omitempty"`
}

// HSTS configures the Strict-Transport-Security header.
type HSTS struct {
	// MaxAge is how long browsers remember to use HTTPS. Default 8760h (a year).
	MaxAge time.Duration `yaml:"max_age,omitempty"`
	// IncludeSubdomains adds includeSubDomains.
	IncludeSubdomains bool `yaml:"include_subdomains,omitempty"`
	// Preload adds preload.
	Preload bool `yaml:"preload,omitempty"`
}

// Route is a path prefix and what answers it: Upstreams, a fixed response or
// a directory of static files; exactly one of the three.
type Route struct {
	// Path is a prefix of the cleaned request path. Default "/".
	Path string `yaml:"path,omitempty"`
	// Upstreams are the backends requests are proxied to, round robin:
	// http://, https://, h2c:// URLs (scheme, host and port only).
	Upstreams []string `yaml:"upstreams,omitempty"`
	// StripPrefix removes Path from the request path before it is proxied
	// or looked up under Root.
	StripPrefix bool `yaml:"strip_prefix,omitempty"`
	// CA is a PEM file of roots to verify https:// Upstreams against,
	// instead of the system roots.
	CA string `yaml:"ca,omitempty"`
	// MaxBody bounds a request body ("10MB", "512KiB" or bytes); beyond it
	// the answer is 413. Zero means no limit.
	MaxBody ByteSize `yaml:"max_body,omitempty"`
	// Respond answers with a fixed status and body.
	Respond *Respond `yaml:"respond,omitempty"`
	// Root serves static files from this directory. The whole request path
	// is looked up under it ("/static/app.css" in Root/static/app.css)
	// unless StripPrefix is set.
	Root string `yaml:"root,omitempty"`
}

// Respond is a fixed response.
type Respond struct {
	// Status is the HTTP status. Default 200.
	Status int `yaml:"status,omitempty"`
	// Body is the response body, sent as text/plain unless it looks like HTML.
	Body string `yaml:"body,omitempty"`
}
