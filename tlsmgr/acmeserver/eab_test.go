package acmeserver

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/go-acme/lego/v5/acme"
	"github.com/go-acme/lego/v5/certcrypto"
	"github.com/go-acme/lego/v5/certificate"
	"github.com/go-acme/lego/v5/challenge/tlsalpn01"
	"github.com/go-acme/lego/v5/registration"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// TestEAB: with eab_keys, registering needs External Account Binding with
// one of them; two accounts may bind one key, and both obtain
// certificates; no binding, an unknown key ID or a wrong HMAC key is
// refused, and so is an order by an account registered without a binding.
func TestEAB(t *testing.T) {
	raw := make([]byte, 32)
	rand.Read(raw)
	key := base64.RawURLEncoding.EncodeToString(raw)
	ca := startCA(t, "ca.localhost", nil, func(as *config.ACMEServer) { as.EABKeys = map[string]string{"lab": key} })

	refused := func(name string, err error, typ string) {
		t.Helper()
		var pd *acme.ProblemDetails
		if !errors.As(err, &pd) || !strings.HasSuffix(pd.Type, ":"+typ) {
			t.Errorf("%s: got %v, want %s", name, err, typ)
		}
	}
	c, _ := ca.newLego(t)
	_, err := c.Registration.Register(t.Context(), registration.RegisterOptions{TermsOfServiceAgreed: true})
	refused("registering without EAB", err, "externalAccountRequired")
	_, err = c.Registration.RegisterWithExternalAccountBinding(t.Context(), registration.RegisterEABOptions{TermsOfServiceAgreed: true, Kid: "nope", HmacEncoded: key})
	refused("an unknown key ID", err, "unauthorized")
	wrong := make([]byte, 32)
	rand.Read(wrong)
	_, err = c.Registration.RegisterWithExternalAccountBinding(t.Context(), registration.RegisterEABOptions{TermsOfServiceAgreed: true, Kid: "lab", HmacEncoded: base64.RawURLEncoding.EncodeToString(wrong)})
	if err == nil {
		t.Error("registered with a wrong HMAC key")
	}

	for i, name := range []string{"a.localhost", "b.localhost"} {
		c, u := ca.newLego(t)
		reg, err := c.Registration.RegisterWithExternalAccountBinding(t.Context(), registration.RegisterEABOptions{TermsOfServiceAgreed: true, Kid: "lab", HmacEncoded: key})
		if err != nil {
			t.Fatalf("account %d registering with EAB key lab: %v", i, err)
		}
		u.Reg = reg
		if err := c.Challenge.SetTLSALPN01Provider(tlsalpn01.NewProviderServer("127.0.0.1", ca.ports.tls)); err != nil {
			t.Fatal(err)
		}
		res, err := c.Certificate.Obtain(t.Context(), certificate.ObtainRequest{Domains: []string{name}, Bundle: true, KeyType: certcrypto.EC256})
		if err != nil {
			t.Fatalf("account %d obtaining %s: %v", i, name, err)
		}
		ca.verify(t, res.Certificate, name)
	}

	// An account registered before eab_keys was set has no binding: it
	// may not order, and is told why (smallstep alone would answer an
	// internal error).
	old := startCA(t, "ca.localhost", nil, nil)
	oc, ou := old.newLego(t)
	register(t, oc, ou)
	if err := oc.Challenge.SetTLSALPN01Provider(tlsalpn01.NewProviderServer("127.0.0.1", old.ports.tls)); err != nil {
		t.Fatal(err)
	}
	old.restart(t, func(as *config.ACMEServer) { as.EABKeys = map[string]string{"lab": key} })
	_, err = oc.Certificate.Obtain(t.Context(), certificate.ObtainRequest{Domains: []string{"c.localhost"}, Bundle: true, KeyType: certcrypto.EC256})
	var pd *acme.ProblemDetails
	if !errors.As(err, &pd) || !strings.HasSuffix(pd.Type, ":unauthorized") || !strings.Contains(pd.Detail, "eab_keys") {
		t.Errorf("an unbound account ordering: got %v, want unauthorized naming eab_keys", err)
	}
}
