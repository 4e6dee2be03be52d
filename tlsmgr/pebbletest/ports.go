package pebbletest

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago, for
// a listener the test opens later (or for [Options.Addr]). No two calls in
// a process return the same port.
//
// The port is picked below the kernel's ephemeral range, because the
// kernel hands ports from that range to every listener on port 0 (Pebble's,
// httptest's, those of other test binaries running alongside) and to every
// outgoing connection. A port from net.Listen("127.0.0.1:0") could be
// handed out again before the test binds it, and the program under test
// would fail to start with "address already in use".
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatalf("pebbletest: finding a free port: %v", err)
	}
	return port
}

// handedOut holds every port FreePort has returned.
var (
	handedOutMu sync.Mutex // guards handedOut
	handedOut   = map[int]bool{}
)

func freePort() (int, error) {
	lo, hi := staticPorts()
	handedOutMu.Lock()
	defer handedOutMu.Unlock()
	var lastErr error
	for range 100 {
		port := lo + rand.IntN(hi-lo)
		if handedOut[port] {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			lastErr = err
			continue
		}
		ln.Close()
		handedOut[port] = true
		return port, nil
	}
	return 0, fmt.Errorf("no free port in %d-%d after 100 tries: %w", lo, hi-1, lastErr)
}

// staticPorts returns the range FreePort picks from: from 10000, above the
// ports services commonly use, up to the start of the ephemeral range as
// Linux's ip_local_port_range says. It ends at 32768, Linux's default
// start and below the ranges of macOS and Windows, when the file cannot be
// read or leaves no room below (a range starting under 11000).
func staticPorts() (lo, hi int) {
	lo, hi = 10000, 32768
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return lo, hi
	}
	var first, last int
	if _, err := fmt.Sscan(string(b), &first, &last); err == nil && first >= lo+1000 {
		hi = first
	}
	return lo, hi
}

// SilentPort listens on a port of 127.0.0.1 that accepts connections and
// never answers them. Given as [Options.HTTPPort] and [Options.TLSPort],
// it keeps an order pending: each validation waits out Pebble's 15s
// timeout, so a test can act while an ACME client is mid-order. accepted
// receives once Pebble (or anything) has connected. Connections and
// listener are closed when the test ends.
func SilentPort(t testing.TB) (port int, accepted <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("pebbletest: listening for a silent port: %v", err)
	}
	signal := make(chan struct{}, 1)
	var mu sync.Mutex // guards conns
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			select {
			case signal <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().(*net.TCPAddr).Port, signal
}
