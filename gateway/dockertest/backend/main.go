// Command backend is the tiny HTTP server in dockertest's test image. It
// answers every request with its name (BACKEND_NAME, else the container's
// host name) and the path, on :8080 (PORT). On SIGTERM it keeps serving for
// DRAIN (default 500ms), as an app behind a load balancer does, then
// finishes its requests and exits. "backend health" is a HEALTHCHECK
// command, which "backend sick" makes fail.
package main

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/signal"
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
			fmt.Fprintf(w, "%s %s", name, r.URL.Path)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stop
		time.Sleep(drain)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()
	if err := srv.ListenAndServe(); err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
