package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/gateway/dockertest"
)

// TestRunWithDocker runs `gatehouse run` on a config with a docker block
// against a real engine: a labelled container is routed, and a host
// outside allowed_hosts is counted in the metrics.
func TestRunWithDocker(t *testing.T) {
	engine := dockertest.Start(t)
	p := newPorts(t)
	suffix := fmt.Sprint(p.HTTPS)
	host := "cmd-" + suffix + ".localhost"
	dockertest.Run(t, "gh-cmd-"+suffix, map[string]string{
		"gatehouse.enable": "true",
		"gatehouse.host":   host + ",cmd-" + suffix + ".example.net",
	}, "-e", "BACKEND_NAME=cmd")
	in := start(t, p, fmt.Sprintf(`listen: {http: "off", https: "127.0.0.1:{{HTTPS}}"}
admin: "127.0.0.1:{{ADMIN}}"
storage: {{STORAGE}}
docker:
  endpoint: %s
  allowed_hosts: ["*.localhost"]
sites:
  - hosts: [localhost]
    routes: [{respond: {body: local}}]
`, engine.Endpoint()))
	c := in.Client(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := c.Get("https://" + host + "/x")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the container was not routed within 10s: %v\n%s", err, in.Stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", p.Admin))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	metrics, _ := io.ReadAll(resp.Body)
	// The engine's storage is the machine's: containers of tests running
	// beside this one may be refused too, so the count is at least one and
	// the log names this container's refused host.
	var refused int
	if _, err := fmt.Sscanf(grepLines(string(metrics), `gatehouse_source_refused_hosts_total{source="docker"}`), `gatehouse_source_refused_hosts_total{source="docker"} %d`, &refused); err != nil || refused < 1 {
		t.Errorf("metrics lack the refused host (%v):\n%s", err, grepLines(string(metrics), "gatehouse_source"))
	}
	refusedHost := "cmd-" + suffix + ".example.net"
	if !strings.Contains(in.Stderr.String(), refusedHost) {
		t.Errorf("no log names the refused host %s:\n%s", refusedHost, in.Stderr)
	}
}
