// Command probe polls a proxy on loopback over TLS until GET path answers
// 200, then prints how long that took. It exits 1 if -timeout passes first.
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8443", "proxy address (must be loopback)")
	sni := flag.String("sni", "bench.test", "TLS server name and Host header")
	path := flag.String("path", "/1k", "request path")
	timeout := flag.Duration("timeout", 30*time.Second, "give up after this long")
	flag.Parse()

	host, _, err := net.SplitHostPort(*addr)
	if err != nil {
		log.Fatal(err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		log.Fatalf("refusing non-loopback address %s", *addr)
	}

	dialer := &net.Dialer{Timeout: time.Second}
	client := &http.Client{
		Timeout: 2 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return dialer.DialContext(ctx, network, *addr)
			},
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, // self-signed benchmark certificate
			DisableKeepAlives: true,
		},
	}
	url := "https://" + *sni + *path
	start := time.Now()
	var last error
	for time.Since(start) < *timeout {
		resp, err := client.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				fmt.Printf("%d\n", time.Since(start).Milliseconds())
				return
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		last = err
		time.Sleep(5 * time.Millisecond)
	}
	fmt.Fprintf(os.Stderr, "probe %s: no 200 within %s: %v\n", *addr, *timeout, last)
	os.Exit(1)
}
