package config

import (
	"fmt"
	"net"
	"net/url"
	"path"
	"strings"
)

// DefaultDockerEndpoint is the Engine API docker.endpoint names by default.
const DefaultDockerEndpoint = "unix:///var/run/docker.sock"

// docker checks the docker block.
func (v *validator) docker() {
	d := v.c.Docker
	if d == nil {
		return
	}
	u, err := url.Parse(d.Endpoint)
	switch {
	case err != nil:
		v.addf("docker.endpoint", "%q is not a URL: %v", d.Endpoint, errorsUnwrapURL(err))
	case u.Scheme == "unix":
		if u.Host != "" || !path.IsAbs(u.Path) {
			v.addf("docker.endpoint", "%q: a unix socket endpoint is unix:///absolute/path.sock (three slashes)", d.Endpoint)
		}
		if d.TLS != nil {
			v.addf("docker.tls", "tls is only used with a tcp:// endpoint")
		}
	case u.Scheme == "tcp":
		if _, port, err := net.SplitHostPort(u.Host); err != nil || port == "" || u.Path != "" && u.Path != "/" {
			v.addf("docker.endpoint", "%q: a tcp endpoint is tcp://host:port, like tcp://docker-proxy:2375", d.Endpoint)
		}
	default:
		v.addf("docker.endpoint", "%q must be a unix:// or tcp:// URL", d.Endpoint)
	}
	if t := d.TLS; t != nil {
		if t.CA != "" {
			if msg := checkRoots(t.CA); msg != "" {
				v.addf("docker.tls.ca", "%s", msg)
			}
		}
		switch {
		case t.Cert != "" && t.Key != "":
			v.keyPair(t.Cert, t.Key, "docker.tls.cert", "docker.tls.key")
		case t.Cert != "":
			v.addf("docker.tls.cert", "tls.cert needs tls.key")
		case t.Key != "":
			v.addf("docker.tls.key", "tls.key needs tls.cert")
		}
	}
	if t := d.UpstreamTLS; t != nil {
		if t.CA != "" {
			if msg := checkRoots(t.CA); msg != "" {
				v.addf("docker.upstream_tls.ca", "%s", msg)
			}
		}
		if badServerName(t.ServerName) {
			v.addf("docker.upstream_tls.server_name", "%q is not a host name", t.ServerName)
		}
		if t.InsecureSkipVerify && (t.CA != "" || t.ServerName != "") {
			v.addf("docker.upstream_tls.insecure_skip_verify", "ca and server_name are ignored when verification is off; drop one or the other")
		}
	}
	if len(d.AllowedHosts) == 0 {
		v.addf("docker.allowed_hosts", `is required: list the hosts container labels may name (like "*.example.com"), so a container cannot make gatehouse order certificates for any name`)
	}
	for i, h := range d.AllowedHosts {
		p := fmt.Sprintf("docker.allowed_hosts[%d]", i)
		switch h = strings.TrimSuffix(strings.ToLower(h), "."); {
		case h == "*":
			v.addf(p, `"*" would allow every host; list the domains labels may name`)
		default:
			if msg := checkHost(h); msg != "" {
				v.addf(p, "%s", msg)
			}
		}
	}
}

// CheckSites validates sites as Sites of c would be, with c's other
// settings (acme, on_demand) in force, and returns their problems with key
// paths relative to sites ("sites[0].routes[1].path" for sites[0]'s second
// Route). It first gives sites their defaults, in place. Config sources
// other than the file (container labels) use it to refuse one bad part
// alone, by the same rules as the file.
func (c *Config) CheckSites(sites []Site) Problems {
	for i := range sites {
		sites[i].withDefaults()
	}
	cp := *c
	cp.Sites = sites
	cp.File, cp.positions = "", nil
	v := &validator{c: &cp}
	if len(sites) > 0 {
		v.sites()
	}
	v.upstreams()
	v.shapingAll()
	v.onDemand()
	var out Problems
	for _, p := range v.problems {
		if within(p.Path, "sites") {
			out = append(out, p)
		}
	}
	return out
}
