// Command origin is the benchmark's upstream: plain HTTP/1.1 with keep-alive
// on loopback, answering /1k with 1 KiB and /1m with 1 MiB of fixed bytes.
// GET /_conns answers how many connections it has accepted, so the harness
// can tell how often a proxy dials its upstream.
package main

import (
	"bytes"
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
	flag.Parse()

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
