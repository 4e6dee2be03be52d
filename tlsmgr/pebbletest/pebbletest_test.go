package pebbletest_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/crypto/acme"

	"github.com/gatehouse-proxy/gatehouse/tlsmgr/pebbletest"
)

// listenLocal listens on a random TCP port of 127.0.0.1, closed at cleanup.
func listenLocal(t *testing.T) (net.Listener, int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln, ln.Addr().(*net.TCPAddr).Port
}

// solver makes a challenge of one type answerable and returns a func that
// withdraws it.
type solver interface {
	chalType() string
	present(cl *acme.Client, name string, chal *acme.Challenge) (cleanup func(), err error)
}

// httpSolver answers HTTP-01 challenges on its listener.
type httpSolver struct {
	mu    sync.Mutex        // guards resps
	resps map[string]string // path -> key authorization
}

func newHTTPSolver(t *testing.T, ln net.Listener) *httpSolver {
	s := &httpSolver{resps: make(map[string]string)}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return s
}

func (s *httpSolver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	resp, ok := s.resps[r.URL.Path]
	s.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Write([]byte(resp))
}

func (s *httpSolver) chalType() string { return "http-01" }

func (s *httpSolver) present(cl *acme.Client, _ string, chal *acme.Challenge) (func(), error) {
	resp, err := cl.HTTP01ChallengeResponse(chal.Token)
	if err != nil {
		return nil, err
	}
	path := cl.HTTP01ChallengePath(chal.Token)
	s.mu.Lock()
	s.resps[path] = resp
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		delete(s.resps, path)
		s.mu.Unlock()
	}, nil
}

// alpnSolver answers TLS-ALPN-01 challenges on its listener.
type alpnSolver struct {
	mu    sync.Mutex // guards certs
	certs map[string]*tls.Certificate
}

func newALPNSolver(t *testing.T, ln net.Listener) *alpnSolver {
	s := &alpnSolver{certs: make(map[string]*tls.Certificate)}
	tln := tls.NewListener(ln, &tls.Config{
		NextProtos: []string{acme.ALPNProto},
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			s.mu.Lock()
			defer s.mu.Unlock()
			if c, ok := s.certs[hello.ServerName]; ok {
				return c, nil
			}
			return nil, errors.New("no challenge for " + hello.ServerName)
		},
	})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			conn, err := tln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(5 * time.Second))
				conn.(*tls.Conn).Handshake()
			})
		}
	})
	t.Cleanup(func() {
		tln.Close()
		wg.Wait()
	})
	return s
}

func (s *alpnSolver) chalType() string { return "tls-alpn-01" }

func (s *alpnSolver) present(cl *acme.Client, name string, chal *acme.Challenge) (func(), error) {
	cert, err := cl.TLSALPN01ChallengeCert(chal.Token, name)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.certs[name] = &cert
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		delete(s.certs, name)
		s.mu.Unlock()
	}, nil
}

// dnsSolver answers DNS-01 challenges through the CA's resolver.
type dnsSolver struct{ ca *pebbletest.CA }

func (s dnsSolver) chalType() string { return "dns-01" }

func (s dnsSolver) present(cl *acme.Client, name string, chal *acme.Challenge) (func(), error) {
	v, err := cl.DNS01ChallengeRecord(chal.Token)
	if err != nil {
		return nil, err
	}
	rec := "_acme-challenge." + strings.TrimPrefix(name, "*.")
	s.ca.AddTXT(rec, v)
	return func() { s.ca.RemoveTXT(rec, v) }, nil
}

// skipShort skips tests that issue certificates (about a second each) under
// -short, as house rule 18 asks of ACME integration tests.
func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("issues a certificate from Pebble; skipped under -short")
	}
}

// newClient registers a new ACME account with ca.
func newClient(t *testing.T, ca *pebbletest.CA) *acme.Client {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cl := &acme.Client{Key: key, DirectoryURL: ca.DirectoryURL(), HTTPClient: ca.HTTPClient()}
	if _, err := cl.Register(t.Context(), &acme.Account{}, acme.AcceptTOS); err != nil {
		t.Fatalf("registering account: %v", err)
	}
	return cl
}

// obtain gets a certificate for names with one challenge type and returns
// its chain, leaf first.
func obtain(t *testing.T, cl *acme.Client, s solver, names ...string) []*x509.Certificate {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	o := readyOrder(t, cl, s, names...)
	ders, _, err := cl.CreateCertFromOrder(ctx, o, newCSR(t, names...), true)
	if err != nil {
		t.Fatalf("finalizing order: %v", err)
	}
	var chain []*x509.Certificate
	for _, der := range ders {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, c)
	}
	return chain
}

// newCSR returns a certificate request for names with a new key.
func newCSR(t *testing.T, names ...string) []byte {
	t.Helper()
	certKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: names}, certKey)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

// readyOrder places an order for names and passes its challenges of one
// type, and returns it ready to finalize.
func readyOrder(t *testing.T, cl *acme.Client, s solver, names ...string) *acme.Order {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	o, err := cl.AuthorizeOrder(ctx, acme.DomainIDs(names...))
	if err != nil {
		t.Fatalf("creating order: %v", err)
	}
	for _, u := range o.AuthzURLs {
		z, err := cl.GetAuthorization(ctx, u)
		if err != nil {
			t.Fatalf("getting authorization: %v", err)
		}
		var chal *acme.Challenge
		for _, c := range z.Challenges {
			if c.Type == s.chalType() {
				chal = c
			}
		}
		if chal == nil {
			t.Fatalf("no %s challenge for %s", s.chalType(), z.Identifier.Value)
		}
		name := z.Identifier.Value
		if z.Wildcard {
			name = "*." + name
		}
		cleanup, err := s.present(cl, name, chal)
		if err != nil {
			t.Fatalf("presenting challenge: %v", err)
		}
		defer cleanup()
		if _, err := cl.Accept(ctx, chal); err != nil {
			t.Fatalf("accepting challenge: %v", err)
		}
		if _, err := cl.WaitAuthorization(ctx, z.URI); err != nil {
			t.Fatalf("waiting for authorization of %s: %v", name, err)
		}
	}
	if o, err = cl.WaitOrder(ctx, o.URI); err != nil {
		t.Fatalf("waiting for order: %v", err)
	}
	return o
}

// verify checks that chain's leaf is valid for name under ca's issuer roots.
func verify(t *testing.T, ca *pebbletest.CA, chain []*x509.Certificate, name string) {
	t.Helper()
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{DNSName: name, Roots: ca.IssuerRoots(), Intermediates: inter})
	if err != nil {
		t.Errorf("verifying leaf for %s: %v", name, err)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{DNSName: name, Roots: ca.ClientRoots(), Intermediates: inter}); err == nil {
		t.Errorf("leaf verifies against ClientRoots, want only IssuerRoots")
	}
}

func checkValidity(t *testing.T, leaf *x509.Certificate, want time.Duration) {
	t.Helper()
	// Pebble sets NotAfter to NotBefore + validity - 1s.
	if got := leaf.NotAfter.Sub(leaf.NotBefore); got < want-2*time.Second || got > want {
		t.Errorf("NotAfter-NotBefore = %v, want %v", got, want)
	}
}

func TestHTTP01(t *testing.T) {
	t.Parallel()
	skipShort(t)
	ln, port := listenLocal(t)
	s := newHTTPSolver(t, ln)
	ca := pebbletest.Start(t, pebbletest.Options{HTTPPort: port, Validity: 24 * time.Hour})
	cl := newClient(t, ca)
	if got := ca.Orders(); got != 0 {
		t.Errorf("Orders() before ordering = %d, want 0", got)
	}

	chain := obtain(t, cl, s, "app.test")
	leaf := chain[0]
	verify(t, ca, chain, "app.test")
	if got := leaf.DNSNames; len(got) != 1 || got[0] != "app.test" {
		t.Errorf("DNSNames = %q, want [app.test]", got)
	}
	checkValidity(t, leaf, 24*time.Hour)
	if got := ca.Orders(); got != 1 {
		t.Errorf("Orders() = %d, want 1", got)
	}
	if got, want := ca.Validations(), []pebbletest.Validation{{Name: "app.test", Type: "http-01", Status: "valid"}}; !slices.Equal(got, want) {
		t.Errorf("Validations() = %+v, want %+v", got, want)
	}

	t.Run("RenewalWindow", func(t *testing.T) {
		start := time.Now().Add(time.Hour).Truncate(time.Second).UTC()
		end := start.Add(time.Hour)
		if err := ca.SetRenewalWindow(leaf.SerialNumber, start, end); err != nil {
			t.Fatal(err)
		}
		gotStart, gotEnd := renewalWindow(t, ca, leaf)
		if !gotStart.Equal(start) || !gotEnd.Equal(end) {
			t.Errorf("window = %v..%v, want %v..%v", gotStart, gotEnd, start, end)
		}
	})

	if ca.Revoked(leaf.SerialNumber) {
		t.Fatalf("Revoked() before revoking = true")
	}
	if _, ok := ca.RevocationReason(leaf.SerialNumber); ok {
		t.Fatalf("RevocationReason() before revoking: ok")
	}
	if err := cl.RevokeCert(t.Context(), nil, leaf.Raw, acme.CRLReasonKeyCompromise); err != nil {
		t.Fatalf("revoking: %v", err)
	}
	if !ca.Revoked(leaf.SerialNumber) {
		t.Errorf("Revoked() after revoking = false")
	}
	if got, ok := ca.RevocationReason(leaf.SerialNumber); !ok || got != int(acme.CRLReasonKeyCompromise) {
		t.Errorf("RevocationReason() after revoking = %d, %v; want %d, true", got, ok, acme.CRLReasonKeyCompromise)
	}
	if got := ca.Orders(); got != 1 {
		t.Errorf("Orders() after revoking = %d, want 1", got)
	}
}

// renewalWindow fetches leaf's ACME Renewal Information (RFC 9773).
func renewalWindow(t *testing.T, ca *pebbletest.CA, leaf *x509.Certificate) (start, end time.Time) {
	t.Helper()
	hc := ca.HTTPClient()
	var dir struct {
		RenewalInfo string `json:"renewalInfo"`
	}
	getJSON(t, hc, ca.DirectoryURL(), &dir)
	serial, err := asn1.Marshal(leaf.SerialNumber)
	if err != nil {
		t.Fatal(err)
	}
	id := base64.RawURLEncoding.EncodeToString(leaf.AuthorityKeyId) + "." +
		base64.RawURLEncoding.EncodeToString(serial[2:]) // skip tag and short length
	var info struct {
		SuggestedWindow struct{ Start, End time.Time } `json:"suggestedWindow"`
	}
	getJSON(t, hc, dir.RenewalInfo+"/"+id, &info)
	return info.SuggestedWindow.Start, info.SuggestedWindow.End
}

func getJSON(t *testing.T, hc *http.Client, url string, v any) {
	t.Helper()
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

func TestTLSALPN01(t *testing.T) {
	t.Parallel()
	skipShort(t)
	ln, port := listenLocal(t)
	s := newALPNSolver(t, ln)
	ca := pebbletest.Start(t, pebbletest.Options{TLSPort: port})
	cl := newClient(t, ca)

	chain := obtain(t, cl, s, "alpn.test")
	verify(t, ca, chain, "alpn.test")
	checkValidity(t, chain[0], pebbletest.DefaultValidity)
	if got := ca.Orders(); got != 1 {
		t.Errorf("Orders() = %d, want 1", got)
	}
}

func TestDNS01Wildcard(t *testing.T) {
	t.Parallel()
	skipShort(t)
	ca := pebbletest.Start(t, pebbletest.Options{})
	cl := newClient(t, ca)

	chain := obtain(t, cl, dnsSolver{ca}, "dns.test", "*.dns.test")
	verify(t, ca, chain, "dns.test")
	verify(t, ca, chain, "www.dns.test")
	if got := ca.Orders(); got != 1 {
		t.Errorf("Orders() = %d, want 1", got)
	}
	got := ca.Validations()
	slices.SortFunc(got, func(a, b pebbletest.Validation) int { return strings.Compare(a.Name, b.Name) })
	if want := []pebbletest.Validation{{Name: "*.dns.test", Type: "dns-01", Status: "valid"}, {Name: "dns.test", Type: "dns-01", Status: "valid"}}; !slices.Equal(got, want) {
		t.Errorf("Validations() = %+v, want %+v", got, want)
	}
}

// TestFailedValidation checks that nothing listening on HTTPPort fails the
// order rather than hanging, and that a rejected order still counts.
func TestFailedValidation(t *testing.T) {
	t.Parallel()
	skipShort(t)
	ca := pebbletest.Start(t, pebbletest.Options{HTTPPort: pebbletest.FreePort(t)})
	cl := newClient(t, ca)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	o, err := cl.AuthorizeOrder(ctx, acme.DomainIDs("down.test"))
	if err != nil {
		t.Fatal(err)
	}
	z, err := cl.GetAuthorization(ctx, o.AuthzURLs[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range z.Challenges {
		if c.Type == "http-01" {
			if _, err := cl.Accept(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
	}
	_, err = cl.WaitAuthorization(ctx, z.URI)
	var ae *acme.AuthorizationError
	if !errors.As(err, &ae) {
		t.Fatalf("WaitAuthorization error = %v, want *acme.AuthorizationError", err)
	}
	if got := ca.Orders(); got != 1 {
		t.Errorf("Orders() = %d, want 1", got)
	}
	if got, want := ca.Validations(), []pebbletest.Validation{{Name: "down.test", Type: "http-01", Status: "invalid"}}; !slices.Equal(got, want) {
		t.Errorf("Validations() = %+v, want %+v", got, want)
	}
}

func TestReservedAddr(t *testing.T) {
	t.Parallel()
	addr := "127.0.0.1:" + strconv.Itoa(pebbletest.FreePort(t))
	if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		conn.Close()
		t.Fatalf("dialing %s before Start succeeded, want connection refused", addr)
	}

	ca := pebbletest.Start(t, pebbletest.Options{Addr: addr})
	if got, want := ca.DirectoryURL(), "https://"+addr+"/dir"; got != want {
		t.Errorf("DirectoryURL() = %q, want %q", got, want)
	}
	pemBytes, err := os.ReadFile(ca.ClientRootFile())
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pemBytes) {
		t.Fatalf("ClientRootFile() holds no PEM certificate")
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	defer hc.CloseIdleConnections()
	var dir struct {
		NewOrder string `json:"newOrder"`
	}
	getJSON(t, hc, ca.DirectoryURL(), &dir)
	if !strings.HasPrefix(dir.NewOrder, "https://"+addr+"/") {
		t.Errorf("newOrder = %q, want a URL on %s", dir.NewOrder, addr)
	}

	ca.Close()
	if _, err := hc.Get(ca.DirectoryURL()); err == nil {
		t.Errorf("GET after Close succeeded")
	}
}

func TestResolver(t *testing.T) {
	t.Parallel()
	ca := pebbletest.Start(t, pebbletest.Options{})
	query := func(t *testing.T, proto, name string, qtype uint16) *dns.Msg {
		t.Helper()
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), qtype)
		c := &dns.Client{Net: proto, Timeout: 2 * time.Second}
		in, _, err := c.ExchangeContext(t.Context(), m, ca.DNSAddr())
		if err != nil {
			t.Fatalf("%s query %s %s: %v", proto, dns.TypeToString[qtype], name, err)
		}
		if in.Rcode != dns.RcodeSuccess {
			t.Fatalf("%s query %s %s: rcode %s", proto, dns.TypeToString[qtype], name, dns.RcodeToString[in.Rcode])
		}
		return in
	}
	txts := func(t *testing.T, name string) []string {
		var vs []string
		for _, rr := range query(t, "tcp", name, dns.TypeTXT).Answer {
			vs = append(vs, strings.Join(rr.(*dns.TXT).Txt, ""))
		}
		return vs
	}

	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			in := query(t, network, "Any.Name.test", dns.TypeA)
			if len(in.Answer) != 1 || !in.Answer[0].(*dns.A).A.Equal(net.IPv4(127, 0, 0, 1)) {
				t.Errorf("A answer = %v, want 127.0.0.1", in.Answer)
			}
			if in := query(t, network, "any.name.test", dns.TypeAAAA); len(in.Answer) != 0 {
				t.Errorf("AAAA answer = %v, want none", in.Answer)
			}
		})
	}

	t.Run("SOA", func(t *testing.T) {
		if in := query(t, "udp", "app.test", dns.TypeSOA); len(in.Answer) != 1 {
			t.Errorf("SOA app.test answer = %v, want one SOA", in.Answer)
		}
		if in := query(t, "udp", "_acme-challenge.app.test", dns.TypeSOA); len(in.Answer) != 0 {
			t.Errorf("SOA _acme-challenge.app.test answer = %v, want none", in.Answer)
		}
	})

	t.Run("TXT", func(t *testing.T) {
		long := strings.Repeat("x", 300)
		ca.AddTXT("_acme-challenge.App.test", "one")
		ca.AddTXT("_acme-challenge.app.test.", "two")
		ca.AddTXT("_acme-challenge.app.test", "two")
		ca.AddTXT("_acme-challenge.app.test", long)
		if got := txts(t, "_acme-challenge.app.test"); strings.Join(got, ",") != "one,two,"+long {
			t.Errorf("TXT = %q, want [one two %s]", got, long)
		}
		ca.RemoveTXT("_acme-challenge.app.test", "one")
		if got := txts(t, "_acme-challenge.app.test"); strings.Join(got, ",") != "two,"+long {
			t.Errorf("TXT after RemoveTXT = %q, want [two %s]", got, long)
		}
		ca.ClearTXT("_acme-challenge.app.test")
		if got := txts(t, "_acme-challenge.app.test"); len(got) != 0 {
			t.Errorf("TXT after ClearTXT = %q, want none", got)
		}
	})
}
