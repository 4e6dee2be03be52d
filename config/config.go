// Package config holds gatehouse's configuration: the YAML schema as plain
// structs, a strict loader that reports every problem with its file, line,
// column and key path, defaults, and validation. It imports neither proxy
// nor tlsmgr; they compile what it describes.
//
// [Load] and [Parse] expand ${VAR} and ${VAR:-default} in values, resolve
// relative file paths (storage and the files of storage.etcd, acme.ca_root,
// tls.cert, tls.key, a route's ca and root, on_demand.allow_file) against the config file's directory, so every path in a
// loaded Config is absolute, then apply the defaults and [Config.Validate].
package config

import (
	"net"
	"strconv"
	"time"
)

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
	// the local CA. Default $GATEHOUSE_STORAGE, else /var/lib/gatehouse.
	// Changing it needs a restart.
	// In a file, storage is either that directory or a mapping
	// {etcd: ..., cache: DIR} (see [StorageMapping]); with the mapping,
	// Storage is the cache directory and StorageEtcd is set.
	Storage string `yaml:"storage,omitempty"`
	// StorageEtcd, when set, keeps certificates, keys and ACME accounts in
	// etcd, shared by every instance of a fleet; Storage is then the local
	// read-through cache and holds the local CA. Changing it needs a
	// restart.
	StorageEtcd *EtcdStorage `yaml:"-"`
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
	// OnDemand is the policy for Sites with tls.on_demand.
	OnDemand *OnDemand `yaml:"on_demand,omitempty"`
	// Events report Certificate lifecycle events.
	Events *Events `yaml:"events,omitempty"`
	// RetireAfter is how long the Certificate of a host removed from the
	// config is kept, no longer renewed, before it is deleted. Default 720h.
	RetireAfter time.Duration `yaml:"retire_after,omitempty"`
	// LocalCA configures the local CA, which certifies the names no
	// public CA can.
	LocalCA LocalCA `yaml:"local_ca,omitempty"`
	// Docker adds Routes from the labels of containers a Docker Engine
	// API runs; nil means no Docker discovery.
	Docker *Docker `yaml:"docker,omitempty"`
	// Fleet names this instance in a fleet sharing storage.etcd and,
	// with fleet.shared_config, takes everything but the local keys
	// ([LocalKeys]) from the fleet's shared document; nil means a lone
	// instance. Changing it needs a restart.
	Fleet *Fleet `yaml:"fleet,omitempty"`
	// ACMEServer makes gatehouse an ACME CA for the other machines of a
	// network, issuing from the local CA; nil means none. Changing it
	// needs a restart.
	ACMEServer *ACMEServer `yaml:"acme_server,omitempty"`

	// SharedRevision is the etcd revision of the fleet's shared document
	// this config was made with ([ParseShared]); 0 when none.
	SharedRevision int64 `yaml:"-"`
	// shared is set on a config made by ParseShared: its keys other than
	// the local ones come from the shared document.
	shared bool

	// File is the path the config was loaded from ("" when built in code).
	File string `yaml:"-"`
	// positions maps a key path ("sites[0].routes[1].path") to where its
	// value stands in File, so validation can point at it.
	positions map[string]Position
	// top is where the file's content begins (1:1 when it has none): the
	// position of a problem with the whole file, such as a missing key.
	top Position
}

// LocalCA configures the local CA.
type LocalCA struct {
	// Share serves the local CA's root certificate on the HTTP Listener,
	// at /.well-known/gatehouse/root.pem (PEM) and
	// /.well-known/gatehouse/root.crt (DER, for phones), to every client
	// that can reach it, so the other devices of a network can install it;
	// the dashboard shows its fingerprint and a QR code of the URL. A root
	// certificate is public, but a client fetching it over plain HTTP
	// should check the fingerprint. Default off; changes on reload. Needs
	// listen.http.
	Share bool `yaml:"share,omitempty"`
}

// Docker configures discovery of Routes from container labels
// (gatehouse.host, gatehouse.port, ...). gatehouse only ever sends GET
// requests to the engine, so a socket proxy allowing GET on /containers,
// /events, /version and /_ping is enough.
type Docker struct {
	// Endpoint is the Engine API: unix:///path/to.sock or tcp://host:port.
	// Default unix:///var/run/docker.sock.
	Endpoint string `yaml:"endpoint,omitempty"`
	// TLS authenticates a tcp:// endpoint: the CA to verify it against
	// and a client certificate.
	TLS *DockerTLS `yaml:"tls,omitempty"`
	// Network names the network whose address is dialled when a container
	// is on several. Default: the container's only network; a container on
	// several is refused.
	Network string `yaml:"network,omitempty"`
	// AllowedHosts lists the hosts labels may name, exact or one-label
	// wildcards ("*.example.com"). A label host matching none is refused
	// and no certificate is ordered for it. Required.
	AllowedHosts []string `yaml:"allowed_hosts,omitempty"`
	// ExposedByDefault routes every container with gatehouse.host labels;
	// otherwise (the default) a container also needs gatehouse.enable=true.
	ExposedByDefault bool `yaml:"exposed_by_default,omitempty"`
	// UpstreamTLS is how containers routed with gatehouse.scheme=https are
	// verified. gatehouse dials a container's address, and a container's
	// certificate is rarely for that address or from a root the system
	// trusts, so without it such requests fail verification (502). nil
	// verifies against the system's roots and the address.
	UpstreamTLS *DockerUpstreamTLS `yaml:"upstream_tls,omitempty"`
}

// DockerUpstreamTLS verifies containers serving HTTPS, as a Route's ca
// and upstream_tls keys verify its https:// Upstreams.
type DockerUpstreamTLS struct {
	// CA is a PEM file of the roots the containers' certificates chain
	// to. Default: the system's roots.
	CA string `yaml:"ca,omitempty"`
	// ServerName is the name sent as SNI and verified instead of the
	// container's address.
	ServerName string `yaml:"server_name,omitempty"`
	// InsecureSkipVerify turns verification off (self-signed
	// certificates); gatehouse warns for each such Route.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify,omitempty"`
}

// DockerTLS are the PEM files securing a tcp:// Docker endpoint.
type DockerTLS struct {
	CA   string `yaml:"ca,omitempty"`
	Cert string `yaml:"cert,omitempty"`
	Key  string `yaml:"key,omitempty"`
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
	// ProxyProtocol makes the HTTP and HTTPS Listeners read a PROXY
	// protocol v1 or v2 header first, so a TCP load balancer can pass on
	// the client's address. Peers in trusted_proxies must send one (their
	// connections are closed otherwise) and the client address in it is
	// used; any other peer is served as itself, and closed if it sends a
	// header, which is never believed from it. Needs trusted_proxies.
	ProxyProtocol bool `yaml:"proxy_protocol,omitempty"`
	// HTTP3 also serves HTTP/3 over QUIC on the HTTPS port (UDP), with the
	// same certificates and Routes, and advertises it with Alt-Svc on the
	// HTTPS Listener's responses. Needs https.
	HTTP3 bool `yaml:"http3,omitempty"`
	// PublicHTTPSPort is the port clients reach the HTTPS Listener on, when
	// a NAT, load balancer or container port mapping puts it behind another
	// port than the one it listens on (say 8443 published as 443). Redirects
	// to HTTPS and the HTTP/3 Alt-Svc name it. Default: the https
	// Listener's own port.
	PublicHTTPSPort int `yaml:"public_https_port,omitempty"`
}

// AdvertisedHTTPSPort is the HTTPS port clients are sent to: the public one
// when set, otherwise the https Listener's own. "" when https is off.
func (l Listen) AdvertisedHTTPSPort() string {
	if l.HTTPS == "" {
		return ""
	}
	if l.PublicHTTPSPort != 0 {
		return strconv.Itoa(l.PublicHTTPSPort)
	}
	_, port, _ := net.SplitHostPort(l.HTTPS)
	return port
}

// Log configures the structured log, access lines included.
type Log struct {
	// Format is "text" (the default) or "json".
	Format string `yaml:"format,omitempty"`
	// Level is "debug", "info" (the default), "warn" or "error".
	Level string `yaml:"level,omitempty"`
	// Access turns the per-request access log on or off. Default on.
	Access *bool `yaml:"access,omitempty"`
	// File, when set, receives the access log instead of stderr (gatehouse's
	// own log stays there), whatever Level says. It is created 0640 in a
	// directory that must exist, reopened on SIGUSR1 (after a log rotator
	// moved it) and rotated when it passes MaxSize. Changing it needs a
	// restart.
	File string `yaml:"file,omitempty"`
	// MaxSize rotates File once it grows past this size (File.1 keeps the
	// previous one). Zero means rotate only on SIGUSR1 (logrotate style).
	MaxSize ByteSize `yaml:"max_size,omitempty"`
}

// ACME configures the ACME client used for sites whose certificates come from
// a public or private CA.
type ACME struct {
	// Email is the ACME account contact; the CA may warn it of problems.
	Email string `yaml:"email,omitempty"`
	// CA is the ACME directory URL, or the name of a CA gatehouse knows
	// ([KnownCAs]: "letsencrypt", "zerossl", "google", ...). Default Let's
	// Encrypt production.
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
	// Issuers lists ACME CAs tried in order: when one fails, the next is
	// used. When set, it replaces ca, ca_root and eab above.
	Issuers []Issuer `yaml:"issuers,omitempty"`
	// Profile asks the CA for an ACME profile ("shortlived", "tlsserver");
	// it is the default of every issuer's own profile.
	Profile string `yaml:"profile,omitempty"`
	// KeyType is the Certificate key: "p256" (default), "p384", "rsa2048",
	// "rsa4096" or "ed25519".
	KeyType string `yaml:"key_type,omitempty"`
	// DNS solves DNS-01 through a DNS provider for every Site that does not
	// set its own; needed for wildcard hosts.
	DNS *DNS `yaml:"dns,omitempty"`
	// Limits overrides the CA's rate limits that gatehouse budgets
	// against; without acme.issuers only.
	Limits *RateLimits `yaml:"limits,omitempty"`
}

// Issuer is one ACME CA in an ordered list of Issuers.
type Issuer struct {
	// CA is the ACME directory URL, or the name of a CA gatehouse knows
	// ([KnownCAs]).
	CA string `yaml:"ca,omitempty"`
	// CARoot is a PEM file of extra roots trusted when talking to this CA.
	CARoot string `yaml:"ca_root,omitempty"`
	// EAB is this CA's external account binding.
	EAB *EAB `yaml:"eab,omitempty"`
	// Profile asks this CA for an ACME profile.
	Profile string `yaml:"profile,omitempty"`
	// Email overrides acme.email for this CA.
	Email string `yaml:"email,omitempty"`
	// Limits overrides this CA's rate limits, which gatehouse budgets
	// against: a known CA's published ones by default, none for another.
	Limits *RateLimits `yaml:"limits,omitempty"`
}

// DNS configures DNS-01 challenges through a DNS provider.
type DNS struct {
	// Provider names the DNS provider: "rfc2136", "cloudflare", "route53",
	// "digitalocean", "exec", "httpreq", one of DefaultLegoDNSProviders,
	// or, in a build with -tags alldns, any of lego's.
	Provider string `yaml:"provider,omitempty"`
	// Credentials are the provider's settings; [DNSProviders] lists the
	// keys each provider takes (for example api_token for cloudflare),
	// and any other key is an error.
	Credentials map[string]string `yaml:"credentials,omitempty"`
	// PropagationTimeout bounds the wait for the TXT record to be visible.
	// Default 2m.
	PropagationTimeout time.Duration `yaml:"propagation_timeout,omitempty"`
	// Resolvers are the DNS servers (host:port) asked during the
	// propagation check, and by the provider to find the zone and follow
	// CNAMEs. Default the system's. Every resolvers list of a config must
	// be the same: the providers' DNS client is process-wide.
	Resolvers []string `yaml:"resolvers,omitempty"`
}

// OnDemand is the policy that decides which names may get a Certificate at
// their first TLS handshake, for Sites with tls.on_demand. At least one of
// Allow, AllowFile or Ask is required, because a Site such as "*" would
// otherwise let anyone spend the CA's rate limits with made-up names. A name
// is allowed when it matches one of the Site's hosts and Allow, AllowFile or
// Ask allows it (any of the three). Denied names are remembered for a short
// while, so a flood of them does not reach Ask. The policy changes on reload.
type OnDemand struct {
	// Allow lists allowed names: exact ("shop.example.com"), one-label
	// wildcards ("*.customers.example.com") or "~regexp", which must match
	// the whole name.
	Allow []string `yaml:"allow,omitempty"`
	// AllowFile is a file of allowed names, one a line, in Allow's syntax;
	// blank lines and lines starting with # are skipped. It is read again
	// when it changes; if it cannot be read or has a bad line, the last
	// good list stays in force and the problem is logged.
	AllowFile string `yaml:"allow_file,omitempty"`
	// Ask is an http:// or https:// URL asked with GET ?domain=NAME; only
	// a 2xx answer within 5s allows the name. Redirects are not followed;
	// errors, timeouts and any other status deny.
	Ask string `yaml:"ask,omitempty"`
	// Rate bounds how many new Certificates on-demand issuance may start.
	// Default burst 10, one more each minute. Renewals are not counted.
	Rate *Rate `yaml:"rate,omitempty"`
	// BudgetShare is the part of each CA rate limit that on-demand
	// issuance may use, as a percentage ("50%", the default), so that a
	// flood of names cannot spend what renewals of the configured hosts
	// need. "0%" stops on-demand orders; "100%" lets them use it all.
	BudgetShare string `yaml:"budget_share,omitempty"`
}

// Rate is a token bucket: Burst tokens, refilled one each Per.
type Rate struct {
	// Burst is the bucket size. Default 10.
	Burst int `yaml:"burst,omitempty"`
	// Per is the time to refill one token. Default 1m.
	Per time.Duration `yaml:"per,omitempty"`
}

// Events calls out when something happens to a Certificate: obtained,
// renewed, renewal_failed, expiring, revoked, retired.
type Events struct {
	// Webhook receives a JSON POST per event.
	Webhook string `yaml:"webhook,omitempty"`
	// Exec runs this command per event, with the event as JSON on stdin
	// and GATEHOUSE_EVENT and GATEHOUSE_NAMES in its environment.
	Exec []string `yaml:"exec,omitempty"`
}

// EAB is an ACME external account binding: KeyID and MACKey, or, for a CA
// that derives a binding from an API key (ZeroSSL), APIKey alone.
type EAB struct {
	// KeyID is the key identifier the CA gave.
	KeyID string `yaml:"key_id,omitempty"`
	// MACKey is the base64url HMAC key the CA gave.
	MACKey string `yaml:"mac_key,omitempty"`
	// APIKey is a ZeroSSL API access key: gatehouse asks ZeroSSL's API
	// for a binding once and keeps it in storage.
	APIKey string `yaml:"api_key,omitempty"`
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
	// Write bounds how long sending a response to a client may stall: a
	// client that reads nothing for this long loses its response (the
	// connection is closed, or an HTTP/2 stream reset). Default 60s.
	Write time.Duration `yaml:"write,omitempty"`
	// Shutdown bounds the drain of in-flight requests on SIGTERM. Default 10s.
	Shutdown time.Duration `yaml:"shutdown,omitempty"`
}

// Limits bound what a client may send.
type Limits struct {
	// HeaderBytes bounds a request's header block ("64KiB" or bytes).
	// Default 64 KiB.
	HeaderBytes ByteSize `yaml:"header_bytes,omitempty"`
	// Headers bounds how many header fields a request may carry; more are
	// answered 431. Default 100.
	Headers int `yaml:"headers,omitempty"`
	// URIBytes bounds a request's target (path and query, "8KiB" or
	// bytes); a longer one is answered 414. Default 8 KiB.
	URIBytes ByteSize `yaml:"uri_bytes,omitempty"`
	// Streams bounds the requests one HTTP/2 or HTTP/3 connection may
	// have in flight at once (advertised to the client; a stream past it
	// is refused). Default 100.
	Streams int `yaml:"streams,omitempty"`
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
	// SecurityHeaders adds a preset of response headers: HSTS (unless hsts
	// is set), X-Content-Type-Options nosniff, X-Frame-Options DENY and
	// Referrer-Policy strict-origin-when-cross-origin. A route's
	// response_headers override or remove any of them.
	SecurityHeaders bool `yaml:"security_headers,omitempty"`
	// Routes map path prefixes to handlers; the longest prefix wins.
	Routes []Route `yaml:"routes,omitempty"`

	// Source names the config source the Site came from when it is not the
	// config file (which leaves it empty).
	Source string `yaml:"-"`
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
	// DNS solves DNS-01 for this Site through a DNS provider, overriding
	// acme.dns.
	DNS *DNS `yaml:"dns,omitempty"`
	// OnDemand obtains a Certificate from ACME at the first handshake for
	// each name that matches Hosts and that the top-level on_demand policy
	// allows, instead of for the hosts at start. Hosts may then be "*" or
	// wildcards; each name still gets its own Certificate (HTTP-01 or
	// TLS-ALPN-01). Needs acme.engine certmagic.
	OnDemand bool `yaml:"on_demand,omitempty"`
	// Issuers overrides acme.issuers for this Site.
	Issuers []Issuer `yaml:"issuers,omitempty"`
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
	// Upstreams are the backends requests are proxied to, round robin
	// unless lb says otherwise: http://, https://, h2c:// URLs (scheme,
	// host and port only) or unix:///path/to.sock (HTTP/1.1 over a unix
	// socket).
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
	// Redirect answers with a redirect instead (a fourth kind of Route).
	Redirect *Redirect `yaml:"redirect,omitempty"`

	// LB chooses how requests spread over Upstreams and when they are
	// retried.
	LB *LB `yaml:"lb,omitempty"`
	// Health is the active health check of the Upstreams.
	Health *HealthCheck `yaml:"health,omitempty"`
	// PassiveHealth ejects Upstreams that fail real requests.
	PassiveHealth *PassiveHealth `yaml:"passive_health,omitempty"`
	// UpstreamTLS configures TLS to https:// Upstreams beyond ca.
	UpstreamTLS *UpstreamTLS `yaml:"upstream_tls,omitempty"`
	// KeepAlive sizes the idle connection pool to the Upstreams.
	KeepAlive *KeepAlive `yaml:"keepalive,omitempty"`
	// MaxResponseHeader bounds an Upstream's response header block.
	// Default 1MiB.
	MaxResponseHeader ByteSize `yaml:"max_response_header,omitempty"`

	// RequestHeaders change the request sent to the Upstream.
	RequestHeaders *Headers `yaml:"request_headers,omitempty"`
	// ResponseHeaders change the response sent to the client.
	ResponseHeaders *Headers `yaml:"response_headers,omitempty"`
	// AddPrefix is put before the path sent to the Upstream (after
	// strip_prefix).
	AddPrefix string `yaml:"add_prefix,omitempty"`
	// Rewrite replaces the path sent to the Upstream by regexp.
	Rewrite *Rewrite `yaml:"rewrite,omitempty"`
	// Compress compresses responses with zstd or gzip, as the client
	// accepts, except already-compressed types and tiny bodies.
	Compress bool `yaml:"compress,omitempty"`

	// BasicAuth asks for a user name and password.
	BasicAuth *BasicAuth `yaml:"basic_auth,omitempty"`
	// AllowIPs, when set, admits only clients in these CIDRs or IPs.
	AllowIPs []string `yaml:"allow_ips,omitempty"`
	// DenyIPs refuses clients in these CIDRs or IPs.
	DenyIPs []string `yaml:"deny_ips,omitempty"`
	// RateLimit bounds requests per client.
	RateLimit *RateLimit `yaml:"rate_limit,omitempty"`
	// ForwardAuth asks an external service whether to let a request through.
	ForwardAuth *ForwardAuth `yaml:"forward_auth,omitempty"`

	// Source names the config source the Route came from when it is not
	// the config file (which leaves it empty).
	Source string `yaml:"-"`
}

// Redirect is a redirect Route.
type Redirect struct {
	// To is the target URL; "{path}" and "{query}" stand for the request's.
	To string `yaml:"to,omitempty"`
	// Status is 301, 302, 303, 307 or 308. Default 308.
	Status int `yaml:"status,omitempty"`
}

// LB is a Route's balancing policy and retries.
type LB struct {
	// Policy is round_robin (default), weighted_round_robin, least_conn,
	// random_two, ip_hash or cookie.
	Policy string `yaml:"policy,omitempty"`
	// Weights are per Upstream, in order, for weighted_round_robin.
	Weights []int `yaml:"weights,omitempty"`
	// Cookie names the sticky-session cookie for the cookie policy.
	// Default "gatehouse_upstream".
	Cookie string `yaml:"cookie,omitempty"`
	// CookieSecret signs the cookie; set it on every instance behind one
	// name. Default a random secret per process.
	CookieSecret string `yaml:"cookie_secret,omitempty"`
	// TryDuration is how long a request may keep being retried: rounds
	// over the Upstreams repeat, 250ms apart, until it has passed. Default
	// 0: one round, each Upstream tried at most once.
	TryDuration time.Duration `yaml:"try_duration,omitempty"`
	// RetryStatus lists Upstream statuses on which an idempotent request
	// without a body is retried on another Upstream. A failed dial is
	// always retried (nothing was sent); a request whose body was sent
	// never is.
	RetryStatus []int `yaml:"retry_status,omitempty"`
}

// HealthCheck is an active health check.
type HealthCheck struct {
	// Path is requested on each Upstream. Default "/".
	Path string `yaml:"path,omitempty"`
	// Interval between checks. Default 10s.
	Interval time.Duration `yaml:"interval,omitempty"`
	// Timeout of one check. Default 5s.
	Timeout time.Duration `yaml:"timeout,omitempty"`
	// ExpectStatus is the healthy status. Default any 2xx.
	ExpectStatus int `yaml:"expect_status,omitempty"`
	// ExpectBody is a substring the healthy body contains.
	ExpectBody string `yaml:"expect_body,omitempty"`
}

// PassiveHealth ejects an Upstream for FailWindow after MaxFails failures
// within FailWindow.
type PassiveHealth struct {
	// MaxFails is how many failures eject. Default 3.
	MaxFails int `yaml:"max_fails,omitempty"`
	// FailWindow is both the counting window and the ejection time.
	// Default 30s.
	FailWindow time.Duration `yaml:"fail_window,omitempty"`
	// UnhealthyStatus lists statuses that count as failures (for example
	// 502, 503).
	UnhealthyStatus []int `yaml:"unhealthy_status,omitempty"`
	// UnhealthyLatency counts a response slower than this as a failure.
	UnhealthyLatency time.Duration `yaml:"unhealthy_latency,omitempty"`
}

// UpstreamTLS configures TLS to https:// Upstreams.
type UpstreamTLS struct {
	// ServerName is the name sent and verified instead of the URL's host.
	ServerName string `yaml:"server_name,omitempty"`
	// ClientCert and ClientKey are PEM files presented to the Upstream
	// (mutual TLS).
	ClientCert string `yaml:"client_cert,omitempty"`
	ClientKey  string `yaml:"client_key,omitempty"`
	// InsecureSkipVerify turns verification off; gatehouse warns at start.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify,omitempty"`
}

// KeepAlive sizes an idle connection pool.
type KeepAlive struct {
	// MaxIdle is the idle connections kept per Upstream. Default 512: as
	// many as the requests in flight at a peak (an HTTP/2 client multiplies
	// its connections by its streams), so a steady load reuses connections
	// instead of closing and redialing the ones over the cap. Idle ones close
	// after IdleTimeout.
	MaxIdle int `yaml:"max_idle,omitempty"`
	// IdleTimeout closes idle connections after this long. Default 90s.
	IdleTimeout time.Duration `yaml:"idle_timeout,omitempty"`
}

// Headers changes a header block. Values may hold placeholders:
// {client_ip}, {host}, {scheme}, {request_id}.
type Headers struct {
	// Set replaces a header's values.
	Set map[string]string `yaml:"set,omitempty"`
	// Add appends a value.
	Add map[string]string `yaml:"add,omitempty"`
	// Remove deletes headers.
	Remove []string `yaml:"remove,omitempty"`
}

// Rewrite replaces the Upstream path: Match is a regexp on the path, To the
// replacement with $1-style capture groups.
type Rewrite struct {
	Match string `yaml:"match,omitempty"`
	To    string `yaml:"to,omitempty"`
}

// BasicAuth is HTTP basic authentication against bcrypt hashes
// (`gatehouse hash-password` makes one).
type BasicAuth struct {
	// Realm is shown by browsers. Default "gatehouse".
	Realm string `yaml:"realm,omitempty"`
	// Users maps a user name to its bcrypt hash.
	Users map[string]string `yaml:"users,omitempty"`
}

// RateLimit is a token bucket per client: Requests per Per, with Burst.
type RateLimit struct {
	Requests int           `yaml:"requests,omitempty"`
	Per      time.Duration `yaml:"per,omitempty"`
	// Burst is the bucket size. Default Requests.
	Burst int `yaml:"burst,omitempty"`
	// Key is "ip" (default, the real client IP) or "header:NAME".
	Key string `yaml:"key,omitempty"`
	// MaxClients bounds how many clients are tracked at once; the least
	// recently seen is forgotten first. Default 100000.
	MaxClients int `yaml:"max_clients,omitempty"`
}

// ForwardAuth asks an external service about each request: a 2xx lets it
// through; any other answer is returned to the client as it is.
type ForwardAuth struct {
	// URL receives a GET with the original method, URI, host and client IP
	// in X-Forwarded-* headers, plus the request's headers.
	URL string `yaml:"url,omitempty"`
	// CopyHeaders are copied from the service's 2xx answer onto the
	// request sent to the Upstream (for example Remote-User).
	CopyHeaders []string `yaml:"copy_headers,omitempty"`
	// Timeout of the call. Default 5s.
	Timeout time.Duration `yaml:"timeout,omitempty"`
}

// Respond is a fixed response.
type Respond struct {
	// Status is the HTTP status. Default 200.
	Status int `yaml:"status,omitempty"`
	// Body is the response body, sent as text/plain unless it looks like HTML.
	Body string `yaml:"body,omitempty"`
}

// StorageMapping is the mapping form of the storage key.
type StorageMapping struct {
	// Etcd is the etcd cluster to keep storage in. Required.
	Etcd *EtcdStorage `yaml:"etcd"`
	// Cache is the directory of the local copy served while etcd is
	// unreachable, which also holds the local CA. Default
	// /var/lib/gatehouse.
	Cache string `yaml:"cache,omitempty"`
}

// EtcdStorage says how to reach the etcd cluster holding the storage.
type EtcdStorage struct {
	// Endpoints are the client URLs of the etcd members
	// ("https://10.0.0.1:2379", or "host:port"). Required.
	Endpoints []string `yaml:"endpoints"`
	// Prefix is put before every key, so several fleets can share one
	// etcd. It ends in "/". Default "/gatehouse/".
	Prefix string `yaml:"prefix,omitempty"`
	// TLS configures TLS to etcd; nil uses plain TCP unless an endpoint
	// is https, which then verifies against the system roots.
	TLS *EtcdTLS `yaml:"tls,omitempty"`
	// Username and Password authenticate to etcd; both or neither.
	Username string `yaml:"username,omitempty"`
	Password string `yaml:"password,omitempty"`
	// DialTimeout bounds connecting to etcd and each request. Default 5s.
	DialTimeout time.Duration `yaml:"dial_timeout,omitempty"`
	// EncryptionKeyFile holds the 32-byte key that seals private keys
	// (AES-256-GCM) before they are written to etcd; "" stores them in
	// clear. Write one with "gatehouse storage keygen FILE".
	EncryptionKeyFile string `yaml:"encryption_key_file,omitempty"`
}

// EtcdTLS are the PEM files of TLS to etcd.
type EtcdTLS struct {
	// CA verifies the etcd members; "" uses the system roots.
	CA string `yaml:"ca,omitempty"`
	// Cert and Key are the client certificate and its key, for etcd's
	// client certificate auth; both or neither.
	Cert string `yaml:"cert,omitempty"`
	Key  string `yaml:"key,omitempty"`
}
