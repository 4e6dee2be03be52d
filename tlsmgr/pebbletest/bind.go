package pebbletest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	mathrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// BIND is a BIND 9 server (Debian's named) started by a test: authoritative
// for one zone, on 127.0.0.1, accepting dynamic updates (RFC 2136) signed
// with one TSIG key. Pass Addr as [Options.Resolver] so Pebble validates
// DNS-01 against it.
type BIND struct {
	// Addr is 127.0.0.1:PORT, UDP and TCP.
	Addr string
	// Zone is the zone's name with the final dot ("example.test.").
	Zone string
	// KeyName, KeySecret (base64) and KeyAlgorithm ("hmac-sha256") are
	// the TSIG key updates must be signed with.
	KeyName, KeySecret, KeyAlgorithm string

	output     *lockedBuffer
	cmd        *exec.Cmd
	exited     chan struct{}
	waitResult error
}

// lockedBuffer is a bytes.Buffer safe for a writer goroutine and a reader.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// StartBIND runs named in the foreground with a zone for zone (without the
// final dot) whose apex, ns and every one-label subdomain resolve to
// 127.0.0.1, and which accepts dynamic updates signed with a fresh
// HMAC-SHA256 TSIG key, and registers t.Cleanup to stop it. When named is
// missing it skips the test, except in CI (CI set), where it fails it:
// .ci/run installs bind9.
func StartBIND(t testing.TB, zone string) *BIND {
	t.Helper()
	named, err := exec.LookPath("named")
	if err != nil {
		for _, p := range []string{"/usr/sbin/named", "/usr/local/sbin/named"} {
			if _, serr := os.Stat(p); serr == nil {
				named, err = p, nil
				break
			}
		}
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("pebbletest: named (BIND 9) not found in CI: .ci/run should install bind9: %v", err)
		}
		t.Skip("named (BIND 9) not installed: apt-get install -y bind9 bind9-utils")
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		t.Fatal(err)
	}
	b := &BIND{
		Zone: dns.Fqdn(zone), KeyName: "gatehouse-test.", KeySecret: base64.StdEncoding.EncodeToString(secret),
		KeyAlgorithm: "hmac-sha256", output: &lockedBuffer{}, exited: make(chan struct{}),
	}
	dir := t.TempDir()
	zoneFile := filepath.Join(dir, zone+".zone")
	zoneText := fmt.Sprintf(`$TTL 1
@	IN SOA ns.%[1]s hostmaster.%[1]s 1 3600 600 86400 1
@	IN NS ns.%[1]s
ns	IN A 127.0.0.1
@	IN A 127.0.0.1
*	IN A 127.0.0.1
`, b.Zone)
	if err := os.WriteFile(zoneFile, []byte(zoneText), 0o644); err != nil {
		t.Fatal(err)
	}
	port, err := freeUDPAndTCPPort()
	if err != nil {
		t.Fatal(err)
	}
	b.Addr = fmt.Sprintf("127.0.0.1:%d", port)
	conf := fmt.Sprintf(`options {
	directory %[1]q;
	pid-file %[2]q;
	session-keyfile %[3]q;
	listen-on port %[4]d { 127.0.0.1; };
	listen-on-v6 { none; };
	recursion no;
	dnssec-validation no;
	allow-query { any; };
	notify no;
};
controls { };
key %[5]q { algorithm %[6]s; secret %[7]q; };
zone %[8]q {
	type primary;
	file %[9]q;
	allow-update { key %[5]q; };
};
`, dir, filepath.Join(dir, "named.pid"), filepath.Join(dir, "session.key"), port,
		b.KeyName, b.KeyAlgorithm, b.KeySecret, zone, zoneFile)
	confFile := filepath.Join(dir, "named.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	b.cmd = exec.Command(named, "-g", "-c", confFile)
	b.cmd.Stdout = b.output
	b.cmd.Stderr = b.output
	if err := b.cmd.Start(); err != nil {
		t.Fatalf("starting named: %v", err)
	}
	go func() {
		b.waitResult = b.cmd.Wait()
		close(b.exited)
	}()
	t.Cleanup(func() {
		_ = b.cmd.Process.Kill()
		<-b.exited
		if t.Failed() {
			t.Logf("named output:\n%s", b.output.String())
		}
	})

	// Wait until named answers for the zone.
	deadline := time.Now().Add(20 * time.Second)
	for {
		m := new(dns.Msg)
		m.SetQuestion(b.Zone, dns.TypeSOA)
		r, _, err := (&dns.Client{Timeout: 500 * time.Millisecond}).Exchange(m, b.Addr)
		if err == nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) > 0 {
			return b
		}
		select {
		case <-b.exited:
			t.Fatalf("named exited: %v\n%s", b.waitResult, b.output.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("named did not answer for %s within 20s (last error %v)\n%s", b.Zone, err, b.output.String())
		}
	}
}

// freeUDPAndTCPPort returns a port of 127.0.0.1 free for both UDP and TCP a
// moment ago, below the ephemeral range for the reason FreePort gives:
// named binds it only after it has started, and a port from the
// ephemeral range may be handed to another socket by then.
func freeUDPAndTCPPort() (int, error) {
	lo, hi := staticPorts()
	handedOutMu.Lock()
	defer handedOutMu.Unlock()
	var lastErr error
	for range 100 {
		port := lo + mathrand.IntN(hi-lo)
		if handedOut[port] {
			continue
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			lastErr = err
			continue
		}
		ln, err := net.Listen("tcp", addr)
		pc.Close()
		if err != nil {
			lastErr = err
			continue
		}
		ln.Close()
		handedOut[port] = true
		return port, nil
	}
	return 0, fmt.Errorf("no port in %d-%d free for UDP and TCP after 100 tries: %w", lo, hi-1, lastErr)
}

// TXT returns the TXT values of name as the server holds them.
func (b *BIND) TXT(ctx context.Context, name string) ([]string, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeTXT)
	r, _, err := (&dns.Client{Timeout: 2 * time.Second}).ExchangeContext(ctx, m, b.Addr)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, rr := range r.Answer {
		if t, ok := rr.(*dns.TXT); ok {
			out = append(out, t.Txt...)
		}
	}
	return out, nil
}

// SetTXT replaces the TXT records of name with value, by a TSIG-signed
// dynamic update, as lego's RFC 2136 provider and many DNS APIs do: a
// value another challenge put there is gone.
func (b *BIND) SetTXT(ctx context.Context, name, value string) error {
	rr := b.txtRR(name, value)
	return b.update(ctx, func(m *dns.Msg) {
		m.RemoveRRset([]dns.RR{rr})
		m.Insert([]dns.RR{rr})
	})
}

// RemoveTXT removes the TXT record of name holding value, if any.
func (b *BIND) RemoveTXT(ctx context.Context, name, value string) error {
	return b.update(ctx, func(m *dns.Msg) { m.Remove([]dns.RR{b.txtRR(name, value)}) })
}

func (b *BIND) txtRR(name, value string) dns.RR {
	return &dns.TXT{
		Hdr: dns.RR_Header{Name: dns.Fqdn(name), Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 1},
		Txt: []string{value},
	}
}

// update sends the dynamic update that fill builds, signed with the key.
func (b *BIND) update(ctx context.Context, fill func(*dns.Msg)) error {
	m := new(dns.Msg).SetUpdate(b.Zone)
	fill(m)
	m.SetTsig(b.KeyName, dns.Fqdn(b.KeyAlgorithm), 300, time.Now().Unix())
	c := &dns.Client{TsigSecret: map[string]string{b.KeyName: b.KeySecret}, Timeout: 2 * time.Second}
	r, _, err := c.ExchangeContext(ctx, m, b.Addr)
	if err != nil {
		return fmt.Errorf("updating zone %s at %s: %w", b.Zone, b.Addr, err)
	}
	if r.Rcode != dns.RcodeSuccess {
		return fmt.Errorf("updating zone %s at %s: answered %s", b.Zone, b.Addr, dns.RcodeToString[r.Rcode])
	}
	return nil
}
