package pebbletest_test

import (
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/crypto/acme"

	"github.com/gatehouse-proxy/gatehouse/tlsmgr/pebbletest"
)

// bindSolver answers DNS-01 challenges by updating a real BIND with
// TSIG-signed RFC 2136 messages.
type bindSolver struct{ ns *pebbletest.BIND }

func (s bindSolver) chalType() string { return "dns-01" }

func (s bindSolver) present(cl *acme.Client, name string, chal *acme.Challenge) (func(), error) {
	v, err := cl.DNS01ChallengeRecord(chal.Token)
	if err != nil {
		return nil, err
	}
	rr := &dns.TXT{
		Hdr: dns.RR_Header{Name: dns.Fqdn("_acme-challenge." + strings.TrimPrefix(name, "*.")), Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 1},
		Txt: []string{v},
	}
	send := func(update func(*dns.Msg)) error {
		m := new(dns.Msg).SetUpdate(s.ns.Zone)
		update(m)
		m.SetTsig(s.ns.KeyName, dns.Fqdn(s.ns.KeyAlgorithm), 300, time.Now().Unix())
		c := &dns.Client{TsigSecret: map[string]string{s.ns.KeyName: s.ns.KeySecret}, Timeout: 2 * time.Second}
		r, _, err := c.Exchange(m, s.ns.Addr)
		if err == nil && r.Rcode != dns.RcodeSuccess {
			err = &dnsError{rcode: r.Rcode}
		}
		return err
	}
	if err := send(func(m *dns.Msg) { m.Insert([]dns.RR{rr}) }); err != nil {
		return nil, err
	}
	return func() { _ = send(func(m *dns.Msg) { m.Remove([]dns.RR{rr}) }) }, nil
}

type dnsError struct{ rcode int }

func (e *dnsError) Error() string { return "DNS update answered " + dns.RcodeToString[e.rcode] }

// TestExternalResolver validates DNS-01 against a real BIND: the records
// live only there, written with TSIG-signed updates, and Pebble reads them
// through Options.Resolver.
func TestExternalResolver(t *testing.T) {
	t.Parallel()
	skipShort(t)
	ns := pebbletest.StartBIND(t, "bind.test")
	ca := pebbletest.Start(t, pebbletest.Options{Resolver: ns.Addr})
	cl := newClient(t, ca)
	chain := obtain(t, cl, bindSolver{ns}, "*.bind.test")
	verify(t, ca, chain, "www.bind.test")
	if vals, err := ns.TXT(t.Context(), "_acme-challenge.bind.test"); err != nil || len(vals) != 0 {
		t.Errorf("TXT after clean-up: %q (%v), want none", vals, err)
	}
	// The built-in resolver was not asked: it holds no record.
	m := new(dns.Msg)
	m.SetQuestion("_acme-challenge.bind.test.", dns.TypeTXT)
	if r, _, err := new(dns.Client).Exchange(m, ca.DNSAddr()); err != nil || len(r.Answer) != 0 {
		t.Errorf("built-in resolver: %v (%v), want no TXT", r, err)
	}
}

// TestProfilesAndARIRetryAfter checks extra profiles are offered in the
// directory and that the ARI endpoint's Retry-After is the one asked for.
func TestProfilesAndARIRetryAfter(t *testing.T) {
	t.Parallel()
	skipShort(t)
	httpLn, httpPort := listenLocal(t)
	ca := pebbletest.Start(t, pebbletest.Options{
		HTTPPort: httpPort,
		// Same validity as the default: an order without a profile
		// gets a random one.
		Profiles:      map[string]time.Duration{"shortlived": pebbletest.DefaultValidity},
		ARIRetryAfter: 3 * time.Second,
	})
	var dir struct {
		RenewalInfo string `json:"renewalInfo"`
		Meta        struct {
			Profiles map[string]string `json:"profiles"`
		} `json:"meta"`
	}
	getJSON(t, ca.HTTPClient(), ca.DirectoryURL(), &dir)
	var names []string
	for n := range dir.Meta.Profiles {
		names = append(names, n)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"default", "shortlived"}) {
		t.Errorf("directory profiles: got %v, want [default shortlived]", names)
	}

	cl := newClient(t, ca)
	leaf := obtain(t, cl, newHTTPSolver(t, httpLn), "ari.test")[0]
	resp, err := ca.HTTPClient().Get(dir.RenewalInfo + "/" + ariID(t, leaf))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("Retry-After"); resp.StatusCode != 200 || got != "3" {
		t.Errorf("renewalInfo: status %d, Retry-After %q; want 200, \"3\"", resp.StatusCode, got)
	}
}

// ariID is a certificate's ARI identifier (RFC 9773 §4.1).
func ariID(t *testing.T, leaf *x509.Certificate) string {
	t.Helper()
	serial, err := asn1.Marshal(leaf.SerialNumber)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(leaf.AuthorityKeyId) + "." +
		base64.RawURLEncoding.EncodeToString(serial[2:])
}
