// Package pebbletest runs a real ACME CA, Let's Encrypt's Pebble, inside the
// test binary, together with a tiny DNS resolver, so that gatehouse's
// integration tests can obtain real certificates offline. It is meant to be
// imported only by _test.go files.
//
// A test picks the ports its program under test listens on, starts a CA that
// validates challenges against them, and points the program at the CA:
//
//	httpPort, tlsPort := pebbletest.FreePort(t), pebbletest.FreePort(t)
//	ca := pebbletest.Start(t, pebbletest.Options{HTTPPort: httpPort, TLSPort: tlsPort})
//	cfg.ACME.CA = ca.DirectoryURL()       // https://127.0.0.1:PORT/dir
//	cfg.ACME.CARoot = ca.ClientRootFile() // PEM of the directory server's TLS root
//	cfg.Listen.HTTP = fmt.Sprintf("127.0.0.1:%d", httpPort)  // Pebble validates HTTP-01 here
//	cfg.Listen.HTTPS = fmt.Sprintf("127.0.0.1:%d", tlsPort) // and TLS-ALPN-01 here
//	startGatehouse(t, cfg) // a site for app.test; any name resolves to 127.0.0.1
//	conn, err := tls.Dial("tcp", cfg.Listen.HTTPS,
//		&tls.Config{ServerName: "app.test", RootCAs: ca.IssuerRoots()})
//	// ... check err and the certificate, then:
//	if got := ca.Orders(); got != 1 {
//		t.Errorf("orders = %d, want 1", got)
//	}
//
// Every host name resolves to 127.0.0.1 (and to no IPv6 address), so Pebble's
// validation authority connects to 127.0.0.1:HTTPPort for HTTP-01 and to
// 127.0.0.1:TLSPort for TLS-ALPN-01 whatever name is being validated; any
// name such as "app.test" works. The program under test must therefore
// listen on 127.0.0.1 or on all interfaces, not only on [::1].
//
// Two different roots are involved: [CA.ClientRoots] (also written to
// [CA.ClientRootFile]) signs the TLS certificate of the ACME directory server,
// which the ACME client must trust; [CA.IssuerRoots] is the root that issued
// certificates chain to, which a TLS client of the program under test must
// trust. The issuer root is generated afresh for every CA; the directory
// server's certificate is the fixed one every net/http/httptest TLS server
// in the process uses (SANs 127.0.0.1, ::1, example.com).
//
// Issuing a certificate takes about a second with golang.org/x/crypto/acme
// (which polls once a second) and less with certmagic; tests that do should
// skip under testing.Short(), per house rule 18.
//
// Start sets, process-wide and only if they are unset or empty,
// PEBBLE_VA_NOSLEEP=1 (no random sleep before validations),
// PEBBLE_WFE_NONCEREJECT=0 (no spurious badNonce errors) and
// PEBBLE_AUTHZREUSE=0 (every order needs fresh challenges). A CI job may set
// PEBBLE_WFE_NONCEREJECT itself to exercise an ACME client's retry path;
// [Options.BadNonces] does so for one CA.
// Pebble reads them when a CA is constructed, so several CAs can run in
// parallel tests of one binary.
package pebbletest
