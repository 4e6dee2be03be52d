// Command idleconns opens many TLS keep-alive connections to a proxy on
// loopback, sends one HTTP/1.1 request on each, then holds them idle so the
// proxy's resident memory can be read. It prints "ready N" once they are open
// and exits on SIGINT/SIGTERM or after -hold.
package main

import (
	"bufio"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8443", "proxy address (must be loopback)")
	sni := flag.String("sni", "bench.test", "TLS server name and Host header")
	path := flag.String("path", "/1k", "request path")
	n := flag.Int("n", 10000, "connections to open")
	workers := flag.Int("workers", 64, "connections opened in parallel")
	hold := flag.Duration("hold", 2*time.Minute, "longest time to hold the connections")
	flag.Parse()

	host, _, err := net.SplitHostPort(*addr)
	if err != nil {
		log.Fatal(err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		log.Fatalf("refusing non-loopback address %s", *addr)
	}

	cfg := &tls.Config{
		ServerName:         *sni,
		InsecureSkipVerify: true, // self-signed benchmark certificate
		NextProtos:         []string{"http/1.1"},
		ClientSessionCache: nil, // a full handshake per connection
	}
	req := []byte("GET " + *path + " HTTP/1.1\r\nHost: " + *sni + "\r\n\r\n")

	conns := make([]net.Conn, *n)
	var next, failed atomic.Int64
	var firstErr sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for range *workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= *n {
					return
				}
				c, err := open(*addr, cfg, req)
				if err != nil {
					failed.Add(1)
					firstErr.Do(func() { log.Printf("connection %d: %v", i, err) })
					continue
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	ok := int64(*n) - failed.Load()
	fmt.Printf("ready %d failed %d in %s\n", ok, failed.Load(), time.Since(start).Round(time.Millisecond))

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case <-sig:
	case <-time.After(*hold):
	}
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}

// open dials one TLS connection, makes one request on it and reads the whole
// response, leaving the connection idle and open.
func open(addr string, cfg *tls.Config, req []byte) (net.Conn, error) {
	d := &net.Dialer{Timeout: 10 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(req); err != nil {
		c.Close()
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(c, 2048), nil)
	if err != nil {
		c.Close()
		return nil, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("status %s", resp.Status)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return c, nil
}
