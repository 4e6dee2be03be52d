package acmeserver

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestValidationRedirects: an HTTP-01 fetch follows a redirect on the same
// service, and refuses one to another port, so a client cannot aim the
// CA at a service of the network; .localhost resolves to loopback.
func TestValidationRedirects(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/acme-challenge/moved":
			http.Redirect(w, r, "/.well-known/acme-challenge/here", http.StatusFound)
		case "/.well-known/acme-challenge/elsewhere":
			http.Redirect(w, r, "http://127.0.0.1:2019/config", http.StatusFound)
		case "/.well-known/acme-challenge/here":
			io.WriteString(w, "token")
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	c, err := newValidationClient(nil, &ports{http: port, tls: port})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Get("http://app.localhost/.well-known/acme-challenge/moved")
	if err != nil {
		t.Fatalf("following a redirect on the same service: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "token" {
		t.Errorf("got %q, want token", body)
	}
	if resp, err := c.Get("http://app.localhost/.well-known/acme-challenge/elsewhere"); err == nil || !strings.Contains(err.Error(), "only http and https on ports 80 and 443") {
		if resp != nil {
			resp.Body.Close()
		}
		t.Errorf("a redirect to port 2019: got %v, want it refused", err)
	}
	if _, err := c.LookupTxt("_acme-challenge.app.localhost"); err == nil || !strings.Contains(err.Error(), "RFC 6761") {
		t.Errorf("TXT under .localhost: got %v, want no DNS asked", err)
	}
}
