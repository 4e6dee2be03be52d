package tlsmgr

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr/pebbletest"
)

// TestClosingTransport checks that closing the engine's life cancels a
// request in flight, whose own context would let it wait, and that a
// request made afterwards never reaches the server.
func TestClosingTransport(t *testing.T) {
	var hits atomic.Int32
	arrived := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path == "/quick" {
			io.WriteString(w, "quick")
			return
		}
		arrived <- struct{}{}
		<-r.Context().Done() // a CA that never answers
	}))
	defer srv.Close()

	life, closing := context.WithCancelCause(context.Background())
	client := &http.Client{Transport: &closingTransport{life: life, base: srv.Client().Transport}}

	// A body is read after RoundTrip returns: it must still be readable.
	resp, err := client.Get(srv.URL + "/quick")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(body) != "quick" {
		t.Fatalf("quick request: got %q, %v; want \"quick\"", body, err)
	}

	failed := make(chan error, 1)
	go func() {
		resp, err := client.Get(srv.URL + "/stuck")
		if err == nil {
			resp.Body.Close()
		}
		failed <- err
	}()
	<-arrived
	closing(errEngineClosed)
	select {
	case err := <-failed:
		if err == nil {
			t.Error("request in flight at close: got a response, want an error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("request in flight at close was not cancelled within 5s")
	}

	before := hits.Load()
	if _, err := client.Get(srv.URL + "/quick"); !errors.Is(err, errEngineClosed) {
		t.Errorf("request after close: got %v, want %v", err, errEngineClosed)
	}
	if got := hits.Load(); got != before {
		t.Errorf("request after close reached the server (%d hits, want %d)", got, before)
	}
}

// TestAutocertRemovedHostNotRenewed removes a host while autocert holds
// its certificate: autocert's renewal timer still fires for it, and its
// order must be refused before it reaches the CA, while the host that
// stays is renewed as usual.
func TestAutocertRemovedHostNotRenewed(t *testing.T) {
	skipShort(t)
	t.Parallel()
	// autocert renews a third of the lifetime before expiry: about 10 s in.
	g := startPebbleGatehouse(t, pebbletest.Options{Validity: 15 * time.Second})
	g.acme.Engine = config.EngineAutocert
	h, refused := signalOn(testLog(t), "refused an ACME order for a host removed from the config; a restart stops its renewal")
	m := g.startLogged(t, g.acmeConfig("gone.test", "kept.test"), fastOptions(), h)
	g.waitForCert(t, "gone.test", "", 60*time.Second)
	kept := g.waitForCert(t, "kept.test", "", 60*time.Second)

	if err := m.Apply(t.Context(), g.acmeConfig("kept.test")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-refused:
	case <-time.After(40 * time.Second):
		t.Fatal("no refused renewal of gone.test within 40s")
	}
	g.waitForCert(t, "kept.test", kept.SerialNumber.String(), 40*time.Second)
}

// TestOrderGuard checks which ACME requests the guard reads as orders:
// only new-order and new-authorization payloads name hosts.
func TestOrderGuard(t *testing.T) {
	jws := func(payload string) string {
		return `{"protected":"e30","payload":"` + base64.RawURLEncoding.EncodeToString([]byte(payload)) + `","signature":"c2ln"}`
	}
	for _, tt := range []struct {
		name, body string
		want       []string
	}{
		{"new order", jws(`{"identifiers":[{"type":"dns","value":"a.test"},{"type":"ip","value":"192.0.2.1"},{"type":"dns","value":"b.test"}]}`), []string{"a.test", "b.test"}},
		{"new authorization", jws(`{"identifier":{"type":"dns","value":"a.test"}}`), []string{"a.test"}},
		{"finalize", jws(`{"csr":"MIIB"}`), nil},
		{"post-as-get", `{"protected":"e30","payload":"","signature":"c2ln"}`, nil},
		{"not json", "garbage", nil},
	} {
		if got := orderIdentifiers(strings.NewReader(tt.body)); !slices.Equal(got, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
}
