package config

import (
	"net"
	"os"
	"path/filepath"
	"strings"
)

// QuickOptions are what `gatehouse proxy` serves without a config file.
type QuickOptions struct {
	// From is the host to serve over HTTPS, with a port (443 when none)
	// and an http:// or https:// prefix dropped.
	From string
	// To are the Upstream URLs, balanced round robin.
	To []string
	// Storage is the storage directory (see [QuickStorage]).
	Storage string
	// Internal has the local CA issue the Certificate even for a public
	// host.
	Internal bool
	// Email, CA and CARoot are acme.email, acme.ca and acme.ca_root.
	Email, CA, CARoot string
}

// Quick builds and completes ([Complete]) the config of one Site with one
// Route to o.To, without an admin endpoint. A port other than 443 moves
// the HTTPS Listener there and turns the HTTP Listener off, since :80 is
// then most likely not ours either, leaving the TLS-ALPN-01 challenge.
func Quick(o QuickOptions) (*Config, error) {
	// The scheme goes first, or its colon would be taken for the port's.
	host, port := strings.TrimPrefix(strings.TrimPrefix(o.From, "https://"), "http://"), "443"
	if h, p, err := net.SplitHostPort(host); err == nil {
		host, port = h, p
	}
	cfg := &Config{
		Admin:   Off,
		Storage: o.Storage,
		Listen:  Listen{HTTPS: ":" + port},
		ACME:    ACME{Email: o.Email, CA: o.CA, CARoot: o.CARoot},
		Sites: []Site{{
			Hosts:  []string{host},
			Routes: []Route{{Path: "/", Upstreams: o.To}},
		}},
	}
	if port == "443" {
		cfg.Listen.HTTP = ":80"
	} else {
		// Only TLS-ALPN-01 can work without an HTTP Listener.
		cfg.ACME.Challenges = []string{"tls-alpn-01"}
	}
	if o.Internal {
		cfg.Sites[0].TLS.Issuer = IssuerInternal
	}
	if err := Complete(cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

// QuickStorage is the storage directory of `gatehouse proxy` in the
// environment getenv reads: $GATEHOUSE_STORAGE, else [DefaultStorage] for
// root, else the user's data directory ($XDG_DATA_HOME/gatehouse,
// ~/.local/share/gatehouse), else gatehouse-data in the working directory.
func QuickStorage(getenv func(string) string) string {
	if s := getenv("GATEHOUSE_STORAGE"); s != "" {
		return s
	}
	if os.Geteuid() == 0 {
		return DefaultStorage
	}
	if d := getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "gatehouse")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "share", "gatehouse")
	}
	return "gatehouse-data"
}
