package gateway

import (
	"cmp"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr/acmeserver"
)

// startACMEServer starts the ACME server of acme_server, if any, on the
// local CA of g.certs, with its database under the storage directory, and
// adds what it issues to the inventory.
func (g *Gateway) startACMEServer(cfg *config.Config) error {
	as := cfg.ACMEServer
	if as == nil {
		return nil
	}
	root, issuer := g.certs.LocalIssuer()
	srv, err := acmeserver.New(acmeserver.Options{
		Config:    *as,
		Resolvers: as.ValidationResolvers(cfg),
		Root:      root,
		Issuer:    issuer,
		Dir:       filepath.Join(cfg.Storage, "acme_server"),
		Logger:    g.logger.With("component", "acme_server"),
	})
	if err != nil {
		return fmt.Errorf("acme_server: %w", err)
	}
	g.acmeServer = srv
	host := as.Host
	if port := cfg.Listen.AdvertisedHTTPSPort(); port != "443" && port != "https" {
		host = net.JoinHostPort(host, port)
	}
	g.logger.Info("serving the ACME server", "directory", "https://"+host+config.ACMEServerPath+"directory")
	g.certs.ListAlso(func() ([]tlsmgr.CertificateInfo, error) { return issuedInventory(srv, time.Now()) })
	return nil
}

// acmeHandler serves the ACME server on its host in front of next, or is
// next when there is none.
func (g *Gateway) acmeHandler(next http.Handler) http.Handler {
	if g.acmeServer == nil {
		return next
	}
	return g.acmeServer.Handler(next)
}

// closeACMEServer releases the ACME server's database, once the Listeners
// no longer serve it.
func (g *Gateway) closeACMEServer() {
	if g.acmeServer == nil {
		return
	}
	if err := g.acmeServer.Close(); err != nil {
		g.logger.Warn("stopping the ACME server", "error", err)
	}
}

// issuedInventory is the inventory's view of what srv issued: per client
// account and names the newest certificate (a renewal replaces the one
// before), revoked ones included, expired ones for as long as the server
// keeps their records (acmeserver.RecordsKeptFor).
func issuedInventory(srv *acmeserver.Server, now time.Time) ([]tlsmgr.CertificateInfo, error) {
	all, err := srv.Issued()
	if err != nil {
		return nil, fmt.Errorf("listing the ACME server's certificates: %w", err)
	}
	newest := map[string]acmeserver.Issued{}
	for _, c := range all {
		k := c.Account + " " + strings.Join(c.Names, ",")
		if old, ok := newest[k]; !ok || cmp.Or(c.NotBefore.Compare(old.NotBefore), c.IssuedAt.Compare(old.IssuedAt)) > 0 {
			newest[k] = c
		}
	}
	out := make([]tlsmgr.CertificateInfo, 0, len(newest))
	for _, c := range newest {
		if now.Sub(c.NotAfter) > acmeserver.RecordsKeptFor {
			continue
		}
		status := tlsmgr.StatusValid
		switch {
		case c.Revoked:
			status = tlsmgr.StatusRevoked
		case !now.Before(c.NotAfter):
			status = tlsmgr.StatusExpired
		}
		client := c.Client
		if c.Account != "" {
			client += ", account " + c.Account
		}
		out = append(out, tlsmgr.CertificateInfo{
			Names: slices.Clone(c.Names), Source: tlsmgr.SourceACMEServer, Client: client,
			Issuer: c.Issuer, Serial: c.Serial, NotBefore: c.NotBefore, NotAfter: c.NotAfter, Status: status,
		})
	}
	return out, nil
}
