package gateway

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

const handshakeConfig = `listen: {http: "127.0.0.1:{{HTTP}}", https: "127.0.0.1:{{HTTPS}}"}
admin: "127.0.0.1:{{ADMIN}}"
storage: {{STORAGE}}
sites:
  - hosts: [localhost]
    tls: {issuer: internal}
    routes: [{respond: {body: local}}]
`

// TestHandshakeFailureMetrics checks, through the running gateway, that an
// SNI carrying a port is served, that failed handshakes appear in
// gatehouse_tls_handshake_failures_total by reason on the admin endpoint,
// and that they are summarised in the log rather than logged one by one.
func TestHandshakeFailureMetrics(t *testing.T) {
	p := newPorts(t)
	in := start(t, p, handshakeConfig)
	roots := in.LocalRoots(t)

	conn, err := tls.Dial("tcp", in.HTTPS, &tls.Config{ServerName: "localhost:28443", InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("handshake with SNI localhost:28443: %v", err)
	}
	leaf := conn.ConnectionState().PeerCertificates[0]
	conn.Close()
	if err := leaf.VerifyHostname("localhost"); err != nil {
		t.Errorf("SNI localhost:28443 got a certificate not for localhost: %v", err)
	}

	for range 3 {
		_, err := tls.Dial("tcp", in.HTTPS, &tls.Config{ServerName: "nobody.test", RootCAs: roots})
		if err == nil || !strings.Contains(err.Error(), "unrecognized name") {
			t.Errorf("handshake for nobody.test: %v, want the unrecognized_name alert", err)
		}
	}
	c, err := net.Dial("tcp", in.HTTPS)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()

	metrics := func() string {
		res, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", p.Admin))
		if err != nil {
			t.Fatalf("GET /metrics: %v", err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return string(b)
	}
	want := []string{
		`gatehouse_tls_handshake_failures_total{reason="unknown_name"} 3`,
		`gatehouse_tls_handshake_failures_total{reason="eof"} 1`,
		`gatehouse_tls_handshake_failures_total{reason="bad_sni"} 0`,
	}
	var out string
	waitFor(t, 5*time.Second, func() bool {
		out = metrics()
		for _, w := range want {
			if !strings.Contains(out, w+"\n") {
				return false
			}
		}
		return true
	})

	log := in.Stderr.String()
	for _, reason := range []string{"unknown_name", "eof"} {
		if n := strings.Count(log, `msg="TLS handshakes failed" reason=`+reason+" "); n != 1 {
			t.Errorf("%d summary lines for %s, want 1\n%s", n, reason, log)
		}
	}
	if strings.Contains(log, "TLS handshake error") {
		t.Errorf("a handshake failure was logged on its own line\n%s", log)
	}
}
