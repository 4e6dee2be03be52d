package acmeserver

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-acme/lego/v5/acme"
	"github.com/go-acme/lego/v5/certcrypto"
	"github.com/go-acme/lego/v5/certificate"
	"github.com/go-acme/lego/v5/challenge/dns01"
	"github.com/go-acme/lego/v5/challenge/tlsalpn01"
	"github.com/go-acme/lego/v5/lego"

	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr/pebbletest"
)

// TestLegoTLSALPN01 obtains, renews and revokes a certificate with lego's
// TLS-ALPN-01 solver, for a name the server resolves through BIND, and
// for one under .localhost, which it resolves to loopback without DNS.
func TestLegoTLSALPN01(t *testing.T) {
	ns := pebbletest.StartBIND(t, "lab.home.arpa")
	ca := startCA(t, "ca.localhost", []string{ns.Addr}, nil)
	c, u := ca.newLego(t)
	register(t, c, u)
	if err := c.Challenge.SetTLSALPN01Provider(tlsalpn01.NewProviderServer("127.0.0.1", ca.ports.tls)); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"nas.lab.home.arpa", "printer.localhost"} {
		t.Run(name, func(t *testing.T) {
			res, err := c.Certificate.Obtain(t.Context(), certificate.ObtainRequest{Domains: []string{name}, Bundle: true, KeyType: certcrypto.EC256})
			if err != nil {
				t.Fatalf("obtaining: %v", err)
			}
			leaf := ca.verify(t, res.Certificate, name)
			if got, want := leaf.NotAfter.Sub(leaf.NotBefore), time.Duration(config.DefaultACMEServerLifetime); got < want || got > want+2*time.Minute {
				t.Errorf("lifetime %v, want acme_server's default %v", got, want)
			}
			rec, ok := ca.issued(t, leaf.SerialNumber.Text(16))
			if !ok {
				t.Fatalf("serial %x is not among the issued certificates", leaf.SerialNumber)
			}
			if !slices.Equal(rec.Names, []string{name}) || rec.Client != "127.0.0.1" || rec.Revoked || !rec.NotAfter.Equal(leaf.NotAfter) {
				t.Errorf("issued record %+v; want names [%s], client 127.0.0.1, not revoked, not after %v", rec, name, leaf.NotAfter)
			}

			// ARI (RFC 9773): renew from two thirds of the lifetime to
			// five sixths.
			ri, err := c.Certificate.GetRenewalInfo(t.Context(), leaf)
			if err != nil {
				t.Fatalf("renewal info: %v", err)
			}
			life := leaf.NotAfter.Sub(leaf.NotBefore)
			if w := ri.SuggestedWindow; !w.Start.Equal(leaf.NotBefore.Add(life*2/3)) || !w.End.Equal(leaf.NotBefore.Add(life*5/6)) {
				t.Errorf("renewal window %v to %v, want two thirds to five sixths of %v to %v", w.Start, w.End, leaf.NotBefore, leaf.NotAfter)
			}

			// Renewal is a new order by the same account.
			again, err := c.Certificate.Obtain(t.Context(), certificate.ObtainRequest{Domains: []string{name}, Bundle: true, KeyType: certcrypto.EC256})
			if err != nil {
				t.Fatalf("renewing: %v", err)
			}
			renewed := ca.verify(t, again.Certificate, name)
			if renewed.SerialNumber.Cmp(leaf.SerialNumber) == 0 {
				t.Fatal("the renewal has the first certificate's serial")
			}

			if err := c.Certificate.Revoke(t.Context(), again.Certificate); err != nil {
				t.Fatalf("revoking: %v", err)
			}
			if rec, _ := ca.issued(t, renewed.SerialNumber.Text(16)); !rec.Revoked {
				t.Errorf("renewed certificate %x is not revoked in the inventory", renewed.SerialNumber)
			}
			if ri, err := c.Certificate.GetRenewalInfo(t.Context(), renewed); err != nil || !ri.SuggestedWindow.End.Before(time.Now().Add(time.Minute)) {
				t.Errorf("renewal info of the revoked certificate: %+v, %v; want a window in the past", ri, err)
			}
			if rec, _ := ca.issued(t, leaf.SerialNumber.Text(16)); rec.Revoked {
				t.Errorf("first certificate %x is revoked; only the renewal was", leaf.SerialNumber)
			}
			err = c.Certificate.Revoke(t.Context(), again.Certificate)
			var pd *acme.ProblemDetails
			if !errors.As(err, &pd) || pd.Type != "urn:ietf:params:acme:error:alreadyRevoked" {
				t.Errorf("revoking again: got %v, want alreadyRevoked", err)
			}
		})
	}

	// Records are kept for a week after their certificate expires, then
	// deleted (issuing prunes them, hourly), so the table does not grow
	// with every renewal forever.
	all, err := ca.srv.Issued()
	if err != nil || len(all) != 4 {
		t.Fatalf("Issued: %d records, %v; want 4", len(all), err)
	}
	expiry := all[0].NotAfter
	if err := ca.srv.db.prune(expiry.Add(RecordsKeptFor - time.Minute)); err != nil {
		t.Fatal(err)
	}
	if kept, _ := ca.srv.Issued(); len(kept) != 4 {
		t.Errorf("prune within a week of expiry left %d of 4 records", len(kept))
	}
	if err := ca.srv.db.prune(expiry.Add(RecordsKeptFor + time.Hour)); err != nil {
		t.Fatal(err)
	}
	if kept, _ := ca.srv.Issued(); len(kept) != 0 {
		t.Errorf("prune over a week after expiry left %+v", kept)
	}
}

// TestLegoDNS01 obtains, renews and revokes a wildcard certificate with
// lego's DNS-01 solver, its TXT records in BIND, read by the server
// through acme_server.resolvers.
func TestLegoDNS01(t *testing.T) {
	ns := pebbletest.StartBIND(t, "lab.home.arpa")
	dns01.SetDefaultClient(dns01.NewClient(&dns01.Options{RecursiveNameservers: []string{ns.Addr}, Timeout: 5 * time.Second}))
	ca := startCA(t, "ca.localhost", []string{ns.Addr}, nil)
	c, u := ca.newLego(t)
	register(t, c, u)
	if err := c.Challenge.SetDNS01Provider(ns.LegoProvider(), dns01.DisableAuthoritativeNssPropagationRequirement()); err != nil {
		t.Fatal(err)
	}
	names := []string{"*.lab.home.arpa"}
	res, err := c.Certificate.Obtain(t.Context(), certificate.ObtainRequest{Domains: names, Bundle: true, KeyType: certcrypto.EC256})
	if err != nil {
		t.Fatalf("obtaining: %v", err)
	}
	leaf := ca.verify(t, res.Certificate, "nas.lab.home.arpa")
	again, err := c.Certificate.Obtain(t.Context(), certificate.ObtainRequest{Domains: names, Bundle: true, KeyType: certcrypto.EC256})
	if err != nil {
		t.Fatalf("renewing: %v", err)
	}
	renewed := ca.verify(t, again.Certificate, "nas.lab.home.arpa")
	if renewed.SerialNumber.Cmp(leaf.SerialNumber) == 0 {
		t.Fatal("the renewal has the first certificate's serial")
	}
	if err := c.Certificate.Revoke(t.Context(), again.Certificate); err != nil {
		t.Fatalf("revoking: %v", err)
	}
	if rec, ok := ca.issued(t, renewed.SerialNumber.Text(16)); !ok || !rec.Revoked || !slices.Equal(rec.Names, names) {
		t.Errorf("renewed certificate's record %+v (found %v); want revoked, names %v", rec, ok, names)
	}
	if n := ca.srv.IssuedCount(); n != 2 {
		t.Errorf("IssuedCount %d, want 2", n)
	}
}

// TestRefused: an order for a name outside allowed_names is refused with
// rejectedIdentifier, naming it; a client outside allowed_clients gets
// unauthorized, even for the directory; nothing is issued.
func TestRefused(t *testing.T) {
	ca := startCA(t, "ca.localhost", nil, nil)
	c, u := ca.newLego(t)
	register(t, c, u)
	if err := c.Challenge.SetTLSALPN01Provider(tlsalpn01.NewProviderServer("127.0.0.1", ca.ports.tls)); err != nil {
		t.Fatal(err)
	}
	for _, names := range [][]string{{"www.example.com"}, {"nas.localhost", "evil.example.net"}, {"lab.home.arpa"}} {
		_, err := c.Certificate.Obtain(t.Context(), certificate.ObtainRequest{Domains: names, Bundle: true, KeyType: certcrypto.EC256})
		var pd *acme.ProblemDetails
		if !errors.As(err, &pd) || pd.Type != "urn:ietf:params:acme:error:rejectedIdentifier" {
			t.Fatalf("ordering %v: got %v, want rejectedIdentifier", names, err)
		}
		refused := names[len(names)-1]
		if !strings.Contains(pd.Detail, `"`+refused+`"`) || !strings.Contains(pd.Detail, "allowed_names") || strings.Contains(pd.Detail, `"nas.localhost"`) {
			t.Errorf("detail %q should name %q (only) and allowed_names", pd.Detail, refused)
		}
	}

	other := startCA(t, "ca.localhost", nil, func(as *config.ACMEServer) { as.AllowedClients = []string{"192.168.0.0/16"} })
	resp, err := other.httpClient().Get(other.dirURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("directory from a client outside allowed_clients: %d %s, want 403 problem", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	cfg := lego.NewConfig(pebbletest.NewLegoAccount(t))
	cfg.CADirURL, cfg.HTTPClient = other.dirURL, other.httpClient()
	_, err = lego.NewClient(cfg)
	var pd *acme.ProblemDetails
	if !errors.As(err, &pd) || pd.Type != "urn:ietf:params:acme:error:unauthorized" || !strings.Contains(pd.Detail, "allowed_clients") {
		t.Errorf("lego from a client outside allowed_clients: got %v, want unauthorized naming allowed_clients", err)
	}

	if clients, names := ca.srv.RefusedCounts(); clients != 0 || names != 3 {
		t.Errorf("refused: %d clients, %d names; want 0 and 3", clients, names)
	}
	if clients, _ := other.srv.RefusedCounts(); clients != 2 {
		t.Errorf("refused clients %d, want 2 (the directory, twice)", clients)
	}
	all, err := ca.srv.Issued()
	if err != nil || len(all) != 0 {
		t.Errorf("issued %v (%v), want nothing", all, err)
	}
}
