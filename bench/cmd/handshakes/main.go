// Command handshakes measures new TLS connections per second against a proxy
// on loopback: each of -c workers loops for -d dialing a new connection with
// a full handshake (no session resumption; X25519 and the server's ECDSA
// P-256 key, as OpenSSL clients negotiate), sending one HTTP/1.1 request
// with Connection: close and reading the whole response.
//
// It prints one line: "rps R p50_ms P p99_ms Q requests N errors E".
package main

import (
	"bufio"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8443", "proxy address (must be loopback)")
	sni := flag.String("sni", "bench.test", "TLS server name and Host header")
	path := flag.String("path", "/1k", "request path")
	conns := flag.Int("c", 32, "concurrent connections")
	duration := flag.Duration("d", 10*time.Second, "how long to run")
	resume := flag.Bool("resume", false, "resume TLS sessions (one cache per worker) instead of full handshakes")
	flag.Parse()

	host, _, err := net.SplitHostPort(*addr)
	if err != nil {
		log.Fatal(err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		log.Fatalf("refusing non-loopback address %s", *addr)
	}
	req := []byte("GET " + *path + " HTTP/1.1\r\nHost: " + *sni + "\r\nConnection: close\r\n\r\n")

	var (
		mu        sync.Mutex
		latencies []time.Duration
		errCount  int
		firstErr  error
		wg        sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(*duration)
	for range *conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg := &tls.Config{
				ServerName:         *sni,
				InsecureSkipVerify: true, // self-signed benchmark certificate
				NextProtos:         []string{"http/1.1"},
				CurvePreferences:   []tls.CurveID{tls.X25519},
			}
			if *resume {
				cfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
			}
			var lat []time.Duration
			var errs int
			var first error
			for time.Now().Before(deadline) {
				t0 := time.Now()
				if err := once(*addr, cfg, req); err != nil {
					errs++
					if first == nil {
						first = err
					}
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			latencies = append(latencies, lat...)
			errCount += errs
			if firstErr == nil {
				firstErr = first
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		log.Printf("first error: %v", firstErr)
	}
	slices.Sort(latencies)
	fmt.Printf("rps %.2f p50_ms %.3f p99_ms %.3f requests %d errors %d\n",
		float64(len(latencies))/elapsed.Seconds(),
		ms(percentile(latencies, 0.50)), ms(percentile(latencies, 0.99)),
		len(latencies), errCount)
}

// once makes one request on a new TLS connection.
func once(addr string, cfg *tls.Config, req []byte) error {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(req); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return errors.New("status " + resp.Status)
	}
	return nil
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
