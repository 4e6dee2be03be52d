package config

import (
	"os"
	"strings"
	"time"
)

// The defaults withDefaults applies.
const (
	DefaultHTTP            = ":80"
	DefaultHTTPS           = ":443"
	DefaultStorage         = "/var/lib/gatehouse"
	DefaultEtcdPrefix      = "/gatehouse/"
	DefaultAdmin           = "127.0.0.1:2019"
	DefaultLogFormat       = "text"
	DefaultLogLevel        = "info"
	DefaultCA              = "https://acme-v02.api.letsencrypt.org/directory"
	DefaultEngine          = "certmagic"
	DefaultReadHeader      = 10 * time.Second
	DefaultIdle            = 2 * time.Minute
	DefaultDial            = 5 * time.Second
	DefaultEtcdDialTimeout = 5 * time.Second
	DefaultResponseHeader  = 60 * time.Second
	DefaultWrite           = 60 * time.Second
	DefaultShutdown        = 10 * time.Second
	DefaultHeaderBytes     = ByteSize(64 << 10)
	DefaultHeaders         = 100
	DefaultURIBytes        = ByteSize(8 << 10)
	DefaultStreams         = 100
	DefaultHSTSMaxAge      = 8760 * time.Hour
	DefaultRespondStatus   = 200
)

// Challenge types for ACME.Challenges.
const (
	ChallengeHTTP01    = "http-01"
	ChallengeTLSALPN01 = "tls-alpn-01"
)

// Engine names for ACME.Engine.
const (
	EngineCertmagic = "certmagic"
	EngineAutocert  = "autocert"
)

// Off turns off the admin endpoint, or a Listener, where an address is
// expected.
const Off = "off"

// Complete applies the defaults to a Config built in code and validates it,
// as [Load] does for a file, except that an empty Listen address stays
// empty: in code, "" is how a Listener is turned off. Relative paths are
// left relative to the working directory.
func Complete(c *Config) error {
	c.withDefaults()
	return c.Validate()
}

// withDefaults fills every field left unset. In a config file, a listen
// address written as "off", "" or nothing turns that Listener off and
// becomes ""; only a listen key left out entirely gets its default. A Config
// built in code (no positions) keeps its Listen addresses as they are.
func (c *Config) withDefaults() {
	listen := func(addr *string, path, def string) {
		switch {
		case *addr == Off:
			*addr = ""
		case *addr == "" && c.positions != nil && !c.has(path):
			*addr = def
		}
	}
	listen(&c.Listen.HTTP, "listen.http", DefaultHTTP)
	listen(&c.Listen.HTTPS, "listen.https", DefaultHTTPS)
	setDefault(&c.Storage, DefaultStorage)
	if e := c.StorageEtcd; e != nil {
		setDefault(&e.Prefix, DefaultEtcdPrefix)
		setDefault(&e.DialTimeout, DefaultEtcdDialTimeout)
	}
	setDefault(&c.Admin, DefaultAdmin)
	setDefault(&c.Log.Format, DefaultLogFormat)
	setDefault(&c.Log.Level, DefaultLogLevel)
	if c.Log.Access == nil {
		on := true
		c.Log.Access = &on
	}
	setDefault(&c.ACME.CA, DefaultCA)
	if c.ACME.Challenges == nil {
		c.ACME.Challenges = []string{ChallengeHTTP01, ChallengeTLSALPN01}
	}
	setDefault(&c.ACME.Engine, DefaultEngine)
	if c.ACME.DNS != nil {
		setDefault(&c.ACME.DNS.PropagationTimeout, DefaultPropagationTimeout)
	}
	setDefault(&c.RetireAfter, DefaultRetireAfter)
	if c.ACMEServer != nil {
		c.ACMEServer.withDefaults()
	}
	c.onDemandDefaults()
	setDefault(&c.Timeouts.ReadHeader, DefaultReadHeader)
	setDefault(&c.Timeouts.Idle, DefaultIdle)
	setDefault(&c.Timeouts.Dial, DefaultDial)
	setDefault(&c.Timeouts.ResponseHeader, DefaultResponseHeader)
	setDefault(&c.Timeouts.Write, DefaultWrite)
	setDefault(&c.Timeouts.Shutdown, DefaultShutdown)
	setDefault(&c.Limits.HeaderBytes, DefaultHeaderBytes)
	setDefault(&c.Limits.Headers, DefaultHeaders)
	setDefault(&c.Limits.URIBytes, DefaultURIBytes)
	setDefault(&c.Limits.Streams, DefaultStreams)
	if c.Docker != nil {
		setDefault(&c.Docker.Endpoint, DefaultDockerEndpoint)
	}
	if c.Fleet != nil && c.Fleet.Name == "" {
		// A hostname that cannot be read leaves the name empty, which
		// validation reports.
		c.Fleet.Name, _ = os.Hostname()
	}
	for i := range c.Sites {
		c.Sites[i].withDefaults()
	}
}

// withDefaults fills the unset fields of s and its Routes, and brings its
// hosts to lower case without a trailing dot.
func (s *Site) withDefaults() {
	for j, h := range s.Hosts {
		// Written only when it changes: a Site given its defaults again
		// (a config source's CheckSites of a Site it already published)
		// may be read meanwhile.
		if n := strings.TrimSuffix(strings.ToLower(h), "."); n != h {
			s.Hosts[j] = n
		}
	}
	if s.HSTS != nil {
		setDefault(&s.HSTS.MaxAge, DefaultHSTSMaxAge)
	}
	if s.TLS.DNS != nil {
		setDefault(&s.TLS.DNS.PropagationTimeout, DefaultPropagationTimeout)
	}
	for j := range s.Routes {
		r := &s.Routes[j]
		setDefault(&r.Path, "/")
		if r.Respond != nil {
			setDefault(&r.Respond.Status, DefaultRespondStatus)
		}
		r.upstreamDefaults()
		r.shapingDefaults()
	}
}

// setDefault sets *v to def when *v is the zero value.
func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}
