package config

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// storage checks the etcd storage, if any.
func (v *validator) storage() {
	e := v.c.StorageEtcd
	if e == nil {
		return
	}
	if v.c.positions != nil && !v.c.shared && !v.c.has("storage.etcd") {
		v.addf("storage", "the mapping form of storage needs etcd; write storage: DIR for a directory")
		return
	}
	if v.c.ACME.Engine == EngineAutocert {
		v.addf("storage.etcd", "needs acme.engine certmagic: autocert keeps its cache in files")
	}
	if len(e.Endpoints) == 0 {
		v.addf("storage.etcd.endpoints", "at least one etcd endpoint is needed")
	}
	for i, ep := range e.Endpoints {
		if msg := checkEtcdEndpoint(ep, e.TLS != nil); msg != "" {
			v.addf(fmt.Sprintf("storage.etcd.endpoints[%d]", i), "%s", msg)
		}
	}
	if e.Prefix != "" && !strings.HasSuffix(e.Prefix, "/") {
		v.addf("storage.etcd.prefix", "must end in \"/\", so that %q does not also cover %q", e.Prefix, e.Prefix+"2/")
	}
	if (e.Username == "") != (e.Password == "") {
		v.addf("storage.etcd.username", "username and password go together")
	}
	if e.DialTimeout < 0 {
		v.addf("storage.etcd.dial_timeout", "must not be negative")
	}
	if t := e.TLS; t != nil && (t.Cert == "") != (t.Key == "") {
		v.addf("storage.etcd.tls", "cert and key go together")
	}
}

// checkEtcdEndpoint says what is wrong with an etcd endpoint, or "".
func checkEtcdEndpoint(ep string, tls bool) string {
	hostport := ep
	if strings.Contains(ep, "://") {
		u, err := url.Parse(ep)
		if err != nil {
			return fmt.Sprintf("%q is not a URL: %v", ep, err)
		}
		switch {
		case u.Scheme != "http" && u.Scheme != "https":
			return fmt.Sprintf("%q: the scheme must be http or https", ep)
		case u.Scheme == "http" && tls:
			return fmt.Sprintf("%q is plain http but storage.etcd.tls is set; write https://", ep)
		case u.Path != "" && u.Path != "/":
			return fmt.Sprintf("%q: an endpoint has no path; the key prefix is storage.etcd.prefix", ep)
		}
		hostport = u.Host
	}
	if _, port, err := net.SplitHostPort(hostport); err != nil || port == "" {
		return fmt.Sprintf("%q: want host:port or a URL like https://10.0.0.1:2379", ep)
	}
	return ""
}
