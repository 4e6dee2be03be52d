// Command backend is the tiny HTTP server in dockertest's test image. It
// answers every request with its name (BACKEND_NAME, else the container's
// host name) and the path, on :8080 (PORT). On SIGTERM it keeps serving for
// DRAIN (default 500ms), as an app behind a load balancer does, then
// finishes its requests and exits. "backend health" is a HEALTHCHECK
// command, which "backend sick" makes fail (and GET /healthz answer 500)
// until "backend well". "backend deaf" (or SIGUSR1) closes its port while
// the process keeps running, as a hung app's does; SIGHUP is a reload
// that changes nothing. With TLS=1 it serves HTTPS with a self-signed
// certificate (with TLS_CERT and TLS_KEY, those PEM files'), with H2C=1
// HTTP/2 without TLS as well as HTTP/1.1; every answer says in
// X-Backend-Proto and X-Backend-TLS how the request reached it.
package main

import (
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

// sickFile marks the backend unhealthy for its HEALTHCHECK.
const sickFile = "/tmp-sick"

func main() {
	// "backend health" is the container's health check command, and
	// "backend sick" makes it fail from then on (podman exec).
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "health":
			if _, err := os.Stat(sickFile); err == nil {
				os.Exit(1)
			}
			os.Exit(0)
		case "sick":
			if err := os.WriteFile(sickFile, nil, 0o644); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			os.Exit(0)
		case "deaf":
			// The server is PID 1 of the container.
			if err := syscall.Kill(1, syscall.SIGUSR1); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			os.Exit(0)
		case "well":
			if err := os.Remove(sickFile); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			os.Exit(0)
		}
	}
	host, _ := os.Hostname()
	name := cmp.Or(os.Getenv("BACKEND_NAME"), host)
	drain, err := time.ParseDuration(cmp.Or(os.Getenv("DRAIN"), "500ms"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "DRAIN:", err)
		os.Exit(2)
	}
	srv := &http.Server{
		Addr: ":" + cmp.Or(os.Getenv("PORT"), "8080"),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Backend-Proto", r.Proto)
			w.Header().Set("X-Backend-TLS", strconv.FormatBool(r.TLS != nil))
			if r.URL.Path == "/healthz" {
				if _, err := os.Stat(sickFile); err == nil {
					http.Error(w, name+" sick", http.StatusInternalServerError)
					return
				}
			}
			fmt.Fprintf(w, "%s %s", name, r.URL.Path)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	if os.Getenv("H2C") == "1" {
		srv.Protocols = new(http.Protocols)
		srv.Protocols.SetHTTP1(true)
		srv.Protocols.SetUnencryptedHTTP2(true)
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	signal.Ignore(syscall.SIGHUP)
	var deafened atomic.Bool
	deaf := make(chan os.Signal, 1)
	signal.Notify(deaf, syscall.SIGUSR1)
	go func() {
		select {
		case <-stop:
			time.Sleep(drain)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(ctx)
		case <-deaf:
			// The port closes, the process stays: connections are
			// refused while the container is still running.
			deafened.Store(true)
			_ = srv.Close()
			<-stop
			os.Exit(0)
		}
	}()
	switch {
	case os.Getenv("TLS_CERT") != "":
		err = srv.ListenAndServeTLS(os.Getenv("TLS_CERT"), os.Getenv("TLS_KEY"))
	case os.Getenv("TLS") == "1":
		cert, cerr := selfSigned(host)
		if cerr != nil {
			fmt.Fprintln(os.Stderr, "TLS:", cerr)
			os.Exit(2)
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
		err = srv.ListenAndServeTLS("", "")
	default:
		err = srv.ListenAndServe()
	}
	if err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if deafened.Load() {
		select {} // closed by SIGUSR1: the goroutine exits on SIGTERM
	}
}

// selfSigned makes a certificate for name, as an app serving HTTPS
// inside a container typically has: trusted by no one.
func selfSigned(name string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
