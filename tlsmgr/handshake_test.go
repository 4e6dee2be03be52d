package tlsmgr

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// failureCounts is a HandshakeCounter that tests can wait on.
type failureCounts struct {
	mu      sync.Mutex
	n       map[string]int
	changed chan struct{} // signalled at each count
}

func newFailureCounts() *failureCounts {
	return &failureCounts{n: map[string]int{}, changed: make(chan struct{}, 1)}
}

func (f *failureCounts) HandshakeFailed(reason string) {
	f.mu.Lock()
	f.n[reason]++
	f.mu.Unlock()
	select {
	case f.changed <- struct{}{}:
	default:
	}
}

func (f *failureCounts) get(reason string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n[reason]
}

// waitFor waits until reason was counted n times.
func (f *failureCounts) waitFor(t *testing.T, reason string, n int) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for f.get(reason) < n {
		select {
		case <-f.changed:
		case <-deadline:
			f.mu.Lock()
			defer f.mu.Unlock()
			t.Fatalf("timed out waiting for %d failures %q; counted %v", n, reason, f.n)
		}
	}
	if got := f.get(reason); got != n {
		t.Fatalf("counted %d failures %q, want %d", got, reason, n)
	}
}

// summaryLines collects the "TLS handshakes failed" lines as reason→counts.
type summaryLines struct {
	mu    sync.Mutex
	lines map[string][]int64
}

func (s *summaryLines) Enabled(context.Context, slog.Level) bool { return true }
func (s *summaryLines) WithAttrs([]slog.Attr) slog.Handler       { return s }
func (s *summaryLines) WithGroup(string) slog.Handler            { return s }
func (s *summaryLines) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "TLS handshakes failed" {
		return nil
	}
	var reason string
	var count int64
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "reason":
			reason = a.Value.String()
		case "count":
			count = a.Value.Int64()
		}
		return true
	})
	s.mu.Lock()
	s.lines[reason] = append(s.lines[reason], count)
	s.mu.Unlock()
	return nil
}

func (s *summaryLines) of(reason string) []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.lines[reason])
}

// TestHandshakeFailures checks, through a real HTTPS server as the gateway
// runs it, that an SNI carrying a port is served by its host, that a name
// not served or not a host name gets the unrecognized_name alert, and that
// every failed handshake is counted by reason and summarised in the log at
// most once a minute per reason.
func TestHandshakeFailures(t *testing.T) {
	m, _ := newFakeManager(t, &config.Config{Sites: []config.Site{{Hosts: []string{"localhost"}}}})
	var clock atomic.Int64
	clock.Store(time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC).UnixNano())
	lines := &summaryLines{lines: map[string][]int64{}}
	m.handshakes = newHandshakeLog(slog.New(lines), func() time.Time { return time.Unix(0, clock.Load()) })
	counts := newFailureCounts()
	m.CountHandshakeFailures(counts)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:   http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }),
		TLSConfig: m.TLSConfig(),
		ErrorLog:  m.HandshakeErrorLog(log.New(io.Discard, "", 0)),
		// Bounds the handshake too, for the silent client below.
		ReadHeaderTimeout: 300 * time.Millisecond,
	}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })
	addr := ln.Addr().String()
	roots := x509.NewCertPool()
	roots.AddCert(m.ca.root)

	t.Run("port in SNI", func(t *testing.T) {
		conn, err := tls.Dial("tcp", addr, &tls.Config{
			ServerName: "localhost:28443",
			// The name to verify is the host, not what was sent.
			InsecureSkipVerify: true,
			VerifyConnection: func(cs tls.ConnectionState) error {
				inter := x509.NewCertPool()
				for _, c := range cs.PeerCertificates[1:] {
					inter.AddCert(c)
				}
				_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: "localhost"})
				return err
			},
		})
		if err != nil {
			t.Fatalf("handshake with SNI localhost:28443: %v", err)
		}
		conn.Close()
		counts.mu.Lock()
		defer counts.mu.Unlock()
		if len(counts.n) != 0 {
			t.Errorf("failures counted: %v, want none", counts.n)
		}
	})

	refused := func(t *testing.T, sni, reason string, n int) {
		t.Helper()
		_, err := tls.Dial("tcp", addr, &tls.Config{ServerName: sni, RootCAs: roots})
		if err == nil || !strings.Contains(err.Error(), "unrecognized name") {
			t.Errorf("handshake with SNI %q: got %v, want the unrecognized_name alert", sni, err)
		}
		counts.waitFor(t, reason, n)
	}
	for _, tt := range []struct{ sni, reason string }{
		{"nobody.test", ReasonUnknownName},
		{"bad name", ReasonBadSNI},
		{"localhost:99999", ReasonBadSNI},
		{"localhost:", ReasonBadSNI},
		{"exa\x01mple.test", ReasonBadSNI},
		{"*.localhost", ReasonBadSNI},
	} {
		t.Run("refused "+tt.sni, func(t *testing.T) { refused(t, tt.sni, tt.reason, counts.get(tt.reason)+1) })
	}

	t.Run("TLS 1.1", func(t *testing.T) {
		if _, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "localhost", RootCAs: roots, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}); err == nil {
			t.Error("TLS 1.1 handshake succeeded")
		}
		counts.waitFor(t, ReasonProtocolVersion, 1)
	})
	t.Run("closed mid-handshake", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		counts.waitFor(t, ReasonEOF, 1)
	})
	t.Run("plain HTTP", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
		_, _ = io.ReadAll(c)
		counts.waitFor(t, ReasonPlainHTTP, 1)
	})

	t.Run("no application protocol in common", func(t *testing.T) {
		if _, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "localhost", RootCAs: roots, NextProtos: []string{"spdy/1"}}); err == nil {
			t.Error("handshake succeeded")
		}
		counts.waitFor(t, ReasonNoALPN, 1)
	})
	t.Run("client distrusts the certificate", func(t *testing.T) {
		if _, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "localhost", RootCAs: x509.NewCertPool()}); err == nil {
			t.Error("handshake succeeded without the root")
		}
		counts.waitFor(t, ReasonCertificateRejected, 1)
	})
	t.Run("silent client", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		counts.waitFor(t, ReasonTimeout, 1)
	})

	// One line per reason so far, each for its first failure.
	for _, r := range []string{ReasonUnknownName, ReasonBadSNI, ReasonProtocolVersion, ReasonEOF, ReasonPlainHTTP, ReasonNoALPN, ReasonCertificateRejected, ReasonTimeout} {
		if got := lines.of(r); !slices.Equal(got, []int64{1}) {
			t.Errorf("log lines of %s: counts %v, want one line counting 1", r, got)
		}
	}
	// A burst within the minute is counted, not logged...
	for i := range 5 {
		refused(t, "nobody.test", ReasonUnknownName, 2+i)
	}
	if got := lines.of(ReasonUnknownName); len(got) != 1 {
		t.Errorf("log lines of unknown_name after a burst: counts %v, want still one", got)
	}
	// ...and summed up on the next line, a minute later.
	clock.Add(int64(handshakeSummaryEvery))
	refused(t, "nobody.test", ReasonUnknownName, 7)
	if got, want := lines.of(ReasonUnknownName), []int64{1, 6}; !slices.Equal(got, want) {
		t.Errorf("log lines of unknown_name: counts %v, want %v", got, want)
	}
}
