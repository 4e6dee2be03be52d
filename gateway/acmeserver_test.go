package gateway

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-acme/lego/v5/certcrypto"
	"github.com/go-acme/lego/v5/certificate"
	"github.com/go-acme/lego/v5/challenge/dns01"
	"github.com/go-acme/lego/v5/lego"
	"github.com/go-acme/lego/v5/registration"

	"github.com/gatehouse-proxy/gatehouse/gateway/gatewaytest"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr/pebbletest"
)

const acmeServerConfig = `listen: {http: "127.0.0.1:{{HTTP}}", https: "127.0.0.1:{{HTTPS}}"}
admin: "127.0.0.1:{{ADMIN}}"
storage: {{STORAGE}}
acme_server:
  host: ca.localhost
  allowed_names: ["*.lab.home.arpa"]
  lifetime: 2d
  resolvers: [%s]
sites:
  - hosts: [localhost]
    routes: [{respond: {body: local}}]
`

// TestACMEServer runs gatehouse with acme_server: lego obtains a
// certificate from it over the HTTPS Listener (DNS-01 in BIND), chained to
// the local CA's root, and the admin endpoint's inventory, the metrics and
// the dashboard list it with its client until lego revokes it.
func TestACMEServer(t *testing.T) {
	ns := pebbletest.StartBIND(t, "lab.home.arpa")
	dns01.SetDefaultClient(dns01.NewClient(&dns01.Options{RecursiveNameservers: []string{ns.Addr}, Timeout: 5 * time.Second}))
	p := newPorts(t)
	in, g := startSources(t, p, fmt.Sprintf(acmeServerConfig, ns.Addr))
	admin := gatewaytest.AdminClient{T: t, Base: fmt.Sprintf("http://127.0.0.1:%d", p.Admin)}

	u := pebbletest.NewLegoAccount(t)
	cfg := lego.NewConfig(u)
	cfg.CADirURL = fmt.Sprintf("https://ca.localhost:%d/acme/directory", p.HTTPS)
	cfg.HTTPClient = in.Client(t)
	c, err := lego.NewClient(cfg)
	if err != nil {
		t.Fatalf("lego: %v", err)
	}
	if u.Reg, err = c.Registration.Register(t.Context(), registration.RegisterOptions{TermsOfServiceAgreed: true}); err != nil {
		t.Fatalf("registering: %v", err)
	}
	if err := c.Challenge.SetDNS01Provider(ns.LegoProvider(), dns01.DisableAuthoritativeNssPropagationRequirement()); err != nil {
		t.Fatal(err)
	}
	held := g.CertificatesHeld()
	res, err := c.Certificate.Obtain(t.Context(), certificate.ObtainRequest{Domains: []string{"nas.lab.home.arpa"}, Bundle: true, KeyType: certcrypto.EC256})
	if err != nil {
		t.Fatalf("obtaining: %v", err)
	}
	leafBlock, rest := pem.Decode(res.Certificate)
	interBlock, _ := pem.Decode(rest)
	if leafBlock == nil || interBlock == nil {
		t.Fatalf("chain %q is not leaf and intermediate", res.Certificate)
	}
	leaf, err := x509.ParseCertificate(leafBlock.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	inter, err := x509.ParseCertificate(interBlock.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	inters := x509.NewCertPool()
	inters.AddCert(inter)
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "nas.lab.home.arpa", Roots: in.LocalRoots(t), Intermediates: inters}); err != nil {
		t.Fatalf("the certificate does not chain to the local CA's root: %v", err)
	}
	if d := leaf.NotAfter.Sub(leaf.NotBefore); d < 48*time.Hour || d > 48*time.Hour+2*time.Minute {
		t.Errorf("lifetime %v, want acme_server.lifetime 2d", d)
	}

	ci, ok := admin.Certs()["nas.lab.home.arpa"]
	if !ok || ci.Source != tlsmgr.SourceACMEServer || !strings.HasPrefix(ci.Client, "127.0.0.1, account ") ||
		ci.Status != tlsmgr.StatusValid || !ci.NotAfter.Equal(leaf.NotAfter) || ci.Serial != leaf.SerialNumber.Text(16) {
		t.Fatalf("inventory entry %+v (found %v); want source acme_server, client 127.0.0.1, valid, serial %x, not after %v",
			ci, ok, leaf.SerialNumber, leaf.NotAfter)
	}
	if n := g.CertificatesHeld(); n != held {
		t.Errorf("CertificatesHeld went from %d to %d; the ACME server's certificates are not gatehouse's to serve", held, n)
	}
	_, metrics := admin.Do("GET", "/metrics", "", "")
	if want := `gatehouse_certificate_status{issuer="` + inter.Subject.CommonName + `",name="nas.lab.home.arpa",status="valid"} 1`; !strings.Contains(metrics, want) {
		t.Errorf("metrics lack %s:\n%s", want, gatewaytest.GrepLines(metrics, "gatehouse_certificate_status"))
	}
	if want := "gatehouse_acme_server_issued_total 1"; !strings.Contains(metrics, want) {
		t.Errorf("metrics lack %s:\n%s", want, gatewaytest.GrepLines(metrics, "gatehouse_acme_server"))
	}
	if _, err := c.Certificate.Obtain(t.Context(), certificate.ObtainRequest{Domains: []string{"nas.example.com"}, Bundle: true, KeyType: certcrypto.EC256}); err == nil {
		t.Error("obtained a certificate for nas.example.com, outside allowed_names")
	}
	if _, metrics := admin.Do("GET", "/metrics", "", ""); !strings.Contains(metrics, `gatehouse_acme_server_refused_total{reason="name"} 1`) {
		t.Errorf("metrics do not count the refused order:\n%s", gatewaytest.GrepLines(metrics, "gatehouse_acme_server"))
	}
	if _, dash := admin.Do("GET", "/", "", ""); !strings.Contains(dash, "nas.lab.home.arpa") || !strings.Contains(dash, "127.0.0.1, account") {
		t.Errorf("the dashboard does not list nas.lab.home.arpa with its client")
	}

	// A renewal (the same account and names) replaces the first
	// certificate in the inventory.
	res, err = c.Certificate.Obtain(t.Context(), certificate.ObtainRequest{Domains: []string{"nas.lab.home.arpa"}, Bundle: true, KeyType: certcrypto.EC256})
	if err != nil {
		t.Fatalf("renewing: %v", err)
	}
	renewed, err := certcrypto.ParsePEMCertificate(res.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	if ci := admin.Certs()["nas.lab.home.arpa"]; ci.Serial != renewed.SerialNumber.Text(16) {
		t.Errorf("after the renewal the inventory shows serial %s, want the renewal's %x", ci.Serial, renewed.SerialNumber)
	}

	if err := c.Certificate.Revoke(t.Context(), res.Certificate); err != nil {
		t.Fatalf("revoking: %v", err)
	}
	if ci := admin.Certs()["nas.lab.home.arpa"]; ci.Status != tlsmgr.StatusRevoked {
		t.Errorf("after revocation the inventory says %q, want revoked", ci.Status)
	}
	// Expired certificates stay listed for a week, then leave.
	shown := func(at time.Time) bool {
		list, err := issuedInventory(g.acmeServer, at)
		if err != nil {
			t.Fatal(err)
		}
		return slices.ContainsFunc(list, func(ci tlsmgr.CertificateInfo) bool { return ci.Serial == renewed.SerialNumber.Text(16) })
	}
	if !shown(renewed.NotAfter.Add(6*24*time.Hour)) || shown(renewed.NotAfter.Add(8*24*time.Hour)) {
		t.Errorf("the expired certificate is listed 6 days after its expiry: %v, 8 days after: %v; want listed for a week",
			shown(renewed.NotAfter.Add(6*24*time.Hour)), shown(renewed.NotAfter.Add(8*24*time.Hour)))
	}

	// The ACME server's host serves nothing else; gatehouse's own Sites
	// are untouched.
	if status, body := gatewaytest.Get(t, in.Client(t), fmt.Sprintf("https://localhost:%d/acme/directory", p.HTTPS)); status != 200 || body != "local" {
		t.Errorf("localhost/acme/directory: %d %q, want the Site's answer", status, body)
	}
}
