// Command origin is the benchmark's upstream: plain HTTP/1.1 with keep-alive
// on loopback, answering /1k with 1 KiB and /1m with 1 MiB of fixed bytes.
// GET /_conns answers how many connections it has accepted, so the harness
// can tell how often a proxy dials its upstream.
//
// With -cert and -key it serves the same over TLS (HTTP/1.1 and HTTP/2)
// instead: the harness's "direct" reference, Go's crypto/tls and net/http
// answering from memory with no proxy in between. No Go proxy can beat it on
// this machine, so it shows how far a target is reachable at all.
package main

import (
	"bytes"
	"crypto/tls"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18080", "listen address (loopback)")
	certFile := flag.String("cert", "", "serve TLS with this certificate (PEM); needs -key")
	keyFile := flag.String("key", "", "private key of -cert (PEM)")
	flag.Parse()
	if (*certFile == "") != (*keyFile == "") {
		log.Fatal("origin: -cert and -key go together")
	}

	small := bytes.Repeat([]byte("a"), 1<<10)
	large := bytes.Repeat([]byte("b"), 1<<20)
	mux := http.NewServeMux()
	mux.HandleFunc("/1k", body(small))
	mux.HandleFunc("/1m", body(large))
	mux.HandleFunc("/", body(small))
	var accepted atomic.Int64
	mux.HandleFunc("/_conns", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, accepted.Load())
	})

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       5 * time.Minute,
		ErrorLog:          log.New(log.Writer(), "origin: ", 0),
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				accepted.Add(1)
			}
		},
	}
	if *certFile != "" {
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		log.Printf("origin listening on %s with TLS", ln.Addr())
		log.Fatal(srv.ServeTLS(ln, *certFile, *keyFile))
	}
	log.Printf("origin listening on %s", ln.Addr())
	log.Fatal(srv.Serve(ln))
}

func body(b []byte) http.HandlerFunc {
	length := strconv.Itoa(len(b))
	return func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h["Content-Type"] = []string{"application/octet-stream"}
		h["Content-Length"] = []string{length}
		w.Write(b)
	}
}
