package admin_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/gatehouse-proxy/gatehouse/admin"
)

// The command wires the admin endpoint to certificate management, the
// proxy and its reload loop; each source is optional.
func ExampleHandler() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	metrics := admin.NewMetrics(admin.MetricsOptions{}) // pass the inventory and upstreams here
	srv := &http.Server{
		Handler: admin.Handler(admin.Options{
			Addr:    ln.Addr().String(),
			Metrics: metrics,
			Ready:   func() bool { return true },
			Reload:  func(context.Context) error { return nil },
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go srv.Serve(ln)
	defer srv.Close()

	// proxy.Options.Observe = metrics.ObserveRequest counts every request.
	metrics.ObserveRequest("app.example.com", 200, 12*time.Millisecond)

	resp, err := http.Get("http://" + ln.Addr().String() + "/readyz")
	if err != nil {
		panic(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Print(string(body))
	// Output: ready
}
