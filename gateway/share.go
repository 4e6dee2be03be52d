package gateway

import (
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/gatehouse-proxy/gatehouse/admin"
	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr"
)

// sharingRoot reports whether the applied config has local_ca.share on.
func (g *Gateway) sharingRoot() bool {
	cfg := g.admin.cfg.Load()
	return cfg != nil && cfg.LocalCA.Share
}

// localCA is what the dashboard shows of the local CA.
func (g *Gateway) localCA() admin.LocalCA {
	root := g.certs.LocalRootCertificate()
	ca := admin.LocalCA{Subject: root.Subject.CommonName, Fingerprint: tlsmgr.Fingerprint(root)}
	if cfg := g.admin.cfg.Load(); cfg != nil && cfg.LocalCA.Share {
		ca.ShareURL = shareURL(cfg)
	}
	return ca
}

// shareURL is the URL, for a phone of the network, of the root the HTTP
// Listener shares (DER, as phones install it). Its host is the first host
// of a Site with a local CA certificate that names this machine to the
// others (nas.home.arpa; not localhost, a loopback address nor a
// wildcard); else the HTTP Listener's own address when it is a specific
// one; else this machine's host name.
func shareURL(cfg *config.Config) string {
	lnHost, port, _ := net.SplitHostPort(cfg.Listen.HTTP)
	host := ""
	for _, s := range cfg.Sites {
		for _, h := range s.Hosts {
			if host == "" && s.TLS.IssuerFor(h) == config.IssuerInternal && reachableName(h) {
				host = h
			}
		}
	}
	if host == "" {
		if ip, err := netip.ParseAddr(lnHost); err == nil && !ip.IsUnspecified() && !ip.IsLoopback() {
			host = lnHost
		}
	}
	if host == "" {
		host, _ = os.Hostname()
	}
	if port != "" && port != "80" && port != "http" {
		host = net.JoinHostPort(host, port)
	} else if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return "http://" + host + tlsmgr.SharedRootDERPath
}

// reachableName reports whether another device could reach this machine
// by host.
func reachableName(host string) bool {
	host = strings.ToLower(host)
	if strings.Contains(host, "*") || host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return false
	}
	ip, err := netip.ParseAddr(host)
	return err != nil || !(ip.IsLoopback() || ip.IsUnspecified())
}
