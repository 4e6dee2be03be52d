package client_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/gatehouse-proxy/gatehouse/admin"
	"github.com/gatehouse-proxy/gatehouse/admin/client"
)

// A tool calls a running gatehouse by the address of its admin endpoint,
// as the config's admin key gives it, and tells the endpoint's answers
// apart by their status.
func Example() {
	// A gatehouse without certificate management, for the example.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := &http.Server{
		Handler: admin.Handler(admin.Options{
			Addr:   ln.Addr().String(),
			Reload: func(context.Context) error { return nil },
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go srv.Serve(ln)
	defer srv.Close()

	base, err := client.BaseURL(ln.Addr().String())
	if err != nil {
		panic(err)
	}
	c := client.New(base, &http.Client{Timeout: time.Minute})
	ctx := context.Background()

	ready, err := c.Ready(ctx)
	fmt.Println("ready:", ready, err)
	fmt.Println("reload:", c.Reload(ctx))

	_, err = c.Renew(ctx, "app.example.com", true)
	if e, ok := errors.AsType[*client.Error](err); ok {
		switch e.Status {
		case http.StatusNotFound:
			fmt.Println("no such certificate")
		case http.StatusConflict:
			fmt.Println("refused:", e.Message)
		default:
			fmt.Println(e.Status, e.Message)
		}
	}
	// Output:
	// ready: true <nil>
	// reload: <nil>
	// 503 certificate management is not running
}
