package gateway

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// FuzzProxyProtocol sends arbitrary bytes first on a connection to a
// PROXY protocol Listener, from a trusted peer and from an untrusted one.
// Nothing panics or hangs; an untrusted peer is always served as itself,
// whatever it sends; and a connection served from a trusted peer has a
// TCP client address.
func FuzzProxyProtocol(f *testing.F) {
	f.Add([]byte("PROXY TCP4 203.0.113.7 127.0.0.1 5555 443\r\nGET / HTTP/1.1\r\n\r\n"))
	f.Add([]byte("PROXY TCP6 2001:db8::1 ::1 5555 443\r\n"))
	f.Add([]byte("PROXY UNKNOWN\r\nhello"))
	f.Add([]byte("PROXY TCP4 999.0.0.1 127.0.0.1 5555 443\r\n"))
	f.Add([]byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\xcb\x00\x71\x07\x7f\x00\x00\x01\x15\xb3\x01\xbb"))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	defer ln.Close()
	var trusted trustedSet
	pln := proxyProtocol(ln, &trusted, time.Second)
	f.Fuzz(func(t *testing.T, first []byte) {
		for _, trust := range []bool{false, true} {
			cfg := &config.Config{}
			if trust {
				cfg.TrustedProxies = []string{"127.0.0.1"}
			}
			trusted.set(cfg)
			client, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			go func() {
				client.Write(first)
				client.(*net.TCPConn).CloseWrite()
			}()
			c, err := pln.Accept()
			if err != nil {
				client.Close()
				continue // refused at accept
			}
			c.SetDeadline(time.Now().Add(2 * time.Second))
			_, rerr := io.ReadAll(c)
			remote := c.RemoteAddr()
			if !trust && rerr == nil && remote.String() != client.LocalAddr().String() {
				t.Fatalf("untrusted peer %s served as %s", client.LocalAddr(), remote)
			}
			if trust && rerr == nil {
				if _, ok := remote.(*net.TCPAddr); !ok && remote.String() != client.LocalAddr().String() {
					t.Fatalf("trusted peer: client address %v (%T)", remote, remote)
				}
			}
			c.Close()
			client.Close()
		}
	})
}
