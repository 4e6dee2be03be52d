package proxy_test

import (
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/gatehouse-proxy/gatehouse/proxy"
)

// Example shows the wiring the command does: one long-lived Transports
// pool, a compiled Table, a Handler for the HTTPS Listener and its redirect
// handler for the HTTP Listener.
func Example() {
	cfg := &config.Config{
		Sites: []config.Site{{
			Hosts: []string{"app.example.com"},
			HSTS:  &config.HSTS{MaxAge: 365 * 24 * time.Hour},
			Routes: []config.Route{
				{Path: "/api/", Upstreams: []string{"http://127.0.0.1:9000"}, StripPrefix: true},
				{Path: "/", Respond: &config.Respond{Status: 200, Body: "hello"}},
			},
		}},
	}
	transports := proxy.NewTransports()
	defer transports.Close()

	table, err := proxy.Compile(cfg, proxy.Options{Transports: transports, HTTPSPort: "443"})
	if err != nil {
		fmt.Println(err)
		return
	}
	h := proxy.NewHandler(table, slog.Default())
	httpsServer := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	httpServer := &http.Server{Handler: h.RedirectHandler(), ReadHeaderTimeout: 10 * time.Second}
	_, _ = httpsServer, httpServer // ListenAndServeTLS / ListenAndServe in the command

	fmt.Print(table.Describe())
	// Output:
	// trusted_proxies: none
	// access_log: on
	// upstream_timeouts: dial=5s response_header=1m0s
	// site app.example.com
	//   hosts: app.example.com
	//   hsts: max-age=31536000
	//   route /api/ -> proxy http://127.0.0.1:9000 strip_prefix
	//   route / -> respond 200 text/plain; charset=utf-8 "hello"
}

// ExampleHandler_Swap shows a reload: compile the new config completely,
// then swap it in. On error the old Table keeps serving.
func ExampleHandler_Swap() {
	transports := proxy.NewTransports()
	defer transports.Close()
	compile := func(body string) (*proxy.Table, error) {
		return proxy.Compile(&config.Config{Sites: []config.Site{{
			Hosts:  []string{"app.example.com"},
			Routes: []config.Route{{Path: "/", Respond: &config.Respond{Status: 200, Body: body}}},
		}}}, proxy.Options{Transports: transports})
	}
	first, _ := compile("v1")
	h := proxy.NewHandler(first, nil)

	next, err := compile("v2")
	if err != nil {
		fmt.Println("reload failed, keeping the old table:", err)
		return
	}
	h.Swap(next)
	fmt.Println(h.Table() == next)
	// Output: true
}
