package pebbletest_test

import (
	"fmt"
	"net"
	"os"
	"testing"

	"github.com/gatehouse-proxy/gatehouse/tlsmgr/pebbletest"
)

// TestFreePort checks that the ports are distinct, bindable and outside
// the ephemeral range, where no listener on port 0 and no outgoing
// connection can be given them before the test binds them.
func TestFreePort(t *testing.T) {
	ephemeralStart := 0
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		var last int
		if _, err := fmt.Sscan(string(b), &ephemeralStart, &last); err != nil {
			t.Fatalf("reading ip_local_port_range %q: %v", b, err)
		}
	}
	seen := map[int]bool{}
	for range 50 {
		port := pebbletest.FreePort(t)
		if seen[port] {
			t.Fatalf("port %d handed out twice", port)
		}
		seen[port] = true
		if ephemeralStart >= 11000 && port >= ephemeralStart {
			t.Errorf("got port %d, want one below the ephemeral range starting at %d", port, ephemeralStart)
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatalf("binding the port FreePort returned: %v", err)
		}
		ln.Close()
	}
}
