package preflight

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// checkDirectory fetches the CA's ACME directory.
func (c *checker) checkDirectory(ctx context.Context, ca caRef) {
	subject := "CA " + ca.url
	if ca.name != "" {
		subject = "CA " + ca.name + " (" + ca.url + ")"
	}
	fail := func(format string, args ...any) { c.add(CheckDirectory, Fail, subject, format, args...) }
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	if ca.root != "" {
		pemBytes, err := os.ReadFile(ca.root)
		if err != nil {
			fail("reading its ca_root: %v", err)
			return
		}
		roots.AppendCertsFromPEM(pemBytes)
	}
	client := &http.Client{Timeout: probeTimeout, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		Proxy:           http.ProxyFromEnvironment,
	}}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ca.url, nil)
	if err != nil {
		fail("not a URL: %v", err)
		return
	}
	resp, err := client.Do(req)
	if err != nil {
		fail("the ACME directory does not answer: %v", err)
		return
	}
	defer resp.Body.Close()
	var dir struct {
		NewOrder string `json:"newOrder"`
		Meta     struct {
			ExternalAccountRequired bool   `json:"externalAccountRequired"`
			TermsOfService          string `json:"termsOfService"`
		} `json:"meta"`
	}
	if resp.StatusCode != http.StatusOK {
		fail("the ACME directory answers %s", resp.Status)
		return
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&dir); err != nil || dir.NewOrder == "" {
		fail("the answer is not an ACME directory (no newOrder)")
		return
	}
	if dir.Meta.ExternalAccountRequired && !ca.eab {
		fail("the CA requires an external account binding: set its eab (key_id and mac_key)")
		return
	}
	// gatehouse agrees to the terms on the operator's behalf when it
	// registers the account, so the operator should know where they are.
	tos := "it names no terms of service"
	if dir.Meta.TermsOfService != "" {
		tos = "terms of service: " + dir.Meta.TermsOfService
	}
	c.add(CheckDirectory, OK, subject, "the ACME directory answers; %s", tos)
	if k, ok := config.LookupCA(ca.url); ok {
		if k.Staging {
			c.add(CheckDirectory, Note, subject, "a staging CA: its certificates are not trusted by browsers")
		}
		if k.NoARI {
			c.add(CheckDirectory, Note, subject, "certificates last %d days and the CA offers no ARI: they renew by their lifetime alone, and a mass revocation is not announced ahead", int(k.Lifetime.Hours()/24))
		}
	}
}
