package docker_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/gatehouse-proxy/gatehouse/admin"
	"github.com/gatehouse-proxy/gatehouse/gateway/dockertest"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr/pebbletest"
)

// TestContainersComeAndGo starts, scales and stops labelled containers
// and checks, through gatehouse's HTTPS Listener, that each change is
// served (how soon is bench/dockerbench's), that three containers share one balanced pool,
// that no request fails while the pool grows and shrinks, and that a host
// whose containers stopped answers 503 with Retry-After before it goes.
func TestContainersComeAndGo(t *testing.T) {
	e := newEnv(t)
	in := startGatehouse(t, e, options{})
	c := in.client(t)
	host := e.host("web")
	url := "https://" + host + "/hello"
	if code, _, _, err := fetch(c, url); err == nil && code != 404 {
		t.Fatalf("before any container: got %d, want 404 or no certificate", code)
	}

	// web1 answers for 8s after SIGTERM: the 503 below comes from its
	// drain, not from its being gone, and lasts long enough to be seen
	// on a loaded machine (with 2s, a kill event handled late left only
	// the tests' 400 ms Linger, and a CI run missed it).
	dockertest.Run(t, e.name("web1"), labels(host), "-e", "BACKEND_NAME=web1", "-e", "DRAIN=8s")
	waitStatus(t, c, url, 200, "web1 /hello", engineWait)
	if code, body, _, _ := fetch(c, "https://localhost/"); code != 200 || body != "file" {
		t.Errorf("the file's Site next to the container's: got %d %q", code, body)
	}

	// Requests run throughout the scaling; not one may fail. Hold keeps
	// them off while the balance is counted.
	load := startLoad(c, 0, url, url, url, url)
	for _, n := range []string{"web2", "web3"} {
		// They keep serving for a minute after SIGTERM, as apps behind a
		// load balancer do for a while, so only draining takes them out;
		// their stop timeout says so (podman's kill events name no
		// signal, and a drain on one lasts as long as a stop could).
		dockertest.Run(t, e.name(n), labels(host), "-e", "BACKEND_NAME="+n, "-e", "DRAIN=1m", "--stop-timeout", "60")
	}
	// Balanced: round robin over the three, counted with the load held
	// off (its requests take turns too, and skewed the count on a loaded
	// machine).
	waitFor(t, engineWait, "all three containers in the pool", func() bool { return len(served(t, c, url, 30)) == 3 })
	load.Hold.Lock()
	n := served(t, c, url, 60)
	load.Hold.Unlock()
	if n["web1"] < 18 || n["web2"] < 18 || n["web3"] < 18 {
		t.Errorf("60 requests over a pool of three: got %v, want 20 each", n)
	}
	if page := adminGet(t, in, "/"); !strings.Contains(page, "from docker: "+e.name("web1")+" (") || !strings.Contains(page, e.name("web3")) {
		t.Errorf("the dashboard does not name the containers as the route's source:\n%s", grepLines(page, "from "))
	}
	// The inventory says which containers each Certificate serves.
	var certs []tlsmgr.CertificateInfo
	if err := json.Unmarshal([]byte(adminGet(t, in, "/certs")), &certs); err != nil {
		t.Fatal(err)
	}
	routedBy := map[string]string{}
	for _, ci := range certs {
		for _, n := range ci.Names {
			routedBy[n] = ci.RoutedBy
		}
	}
	if got := routedBy[host]; !strings.HasPrefix(got, "docker: "+e.name("web1")+" (") || !strings.Contains(got, e.name("web3")+" (") {
		t.Errorf("GET /certs: %s's Certificate is routed by %q, want web1, web2 and web3 (all: %v)", host, got, routedBy)
	}
	if got := routedBy["localhost"]; got != "file" {
		t.Errorf("GET /certs: localhost's Certificate is routed by %q, want file", got)
	}
	if page := adminGet(t, in, "/"); !strings.Contains(page, "for docker: "+e.name("web1")+" (") {
		t.Errorf("the dashboard does not name the containers a Certificate serves:\n%s", grepLines(page, "for docker"))
	}
	if r := routeOf(t, in, host); len(r.Upstreams) != 3 || !strings.HasPrefix(r.Source, "docker: "+e.name("web1")+" (") || !strings.Contains(r.Source, e.name("web3")+" (") {
		t.Errorf("GET /routes for %s: got %+v, want three upstreams from web1, web2 and web3", host, r)
	}
	if r := routeOf(t, in, "localhost"); r.Source != "file" || r.Status != 200 {
		t.Errorf("GET /routes for localhost: got %+v, want the file's respond Route", r)
	}

	// Scale back to one: stopped as docker stop does (SIGTERM, a kill
	// event), so each is drained before it stops answering.
	for _, n := range []string{"web2", "web3"} {
		dockertest.Podman(t, "kill", "--signal", "TERM", e.name(n))
	}
	var last map[string]int
	waitFor(t, engineWait, "the pool back to web1 while web2 and web3 still answer", func() bool {
		// Thirty in a row: shared with the load, a few could reach web1 by
		// chance.
		last = served(t, c, url, 30)
		return last["web1"] == 30
	}, func() string {
		return fmt.Sprintf("last 30 requests: %v\n%s", last, grepLines(in.log.String(), "config reloaded"))
	})
	// Out of the pool, they may go at once.
	dockertest.Podman(t, "rm", "-f", "-t", "0", e.name("web2"), e.name("web3"))
	load.stop(t, "while the pool changed")

	// The last container stops: 503 with Retry-After while it might come
	// back, then the route goes.
	dockertest.Podman(t, "kill", "--signal", "TERM", e.name("web1"))
	var lastSeen string
	waitFor(t, engineWait, "503 with Retry-After once the pool is empty", func() bool {
		code, body, retry, err := fetch(c, url)
		lastSeen = fmt.Sprintf("%d %q Retry-After %q %v", code, body, retry, err)
		return err == nil && code == 503 && retry != ""
	}, func() string {
		return "last answer: " + lastSeen + "\n" + grepLines(in.log.String(), "config reloaded")
	})
	if r := routeOf(t, in, host); r.Status != 503 || !strings.Contains(r.Source, e.name("web1")) {
		t.Errorf("GET /routes while the pool is empty: got %+v, want 503 from web1", r)
	}
	waitGone(t, c, url, engineWait)
	if code, body, _, _ := fetch(c, "https://localhost/"); code != 200 || body != "file" {
		t.Errorf("the file's Site after the containers left: got %d %q", code, body)
	}
	// The periodic resync (every 2s in these tests) reopened the stream
	// under that load, quietly.
	if n := strings.Count(strings.Join(e.rec.requests(), "\n"), "/events"); n < 2 {
		t.Errorf("the event stream was opened %d times; want a periodic resync", n)
	}
	if strings.Contains(in.log.String(), "docker engine unreachable") {
		t.Errorf("the periodic resync was logged as an outage:\n%s", grepLines(in.log.String(), "docker engine"))
	}
}

// served sends n requests and counts the answers by backend name.
func served(t *testing.T, c *http.Client, url string, n int) map[string]int {
	t.Helper()
	out := map[string]int{}
	for range n {
		code, body, _, err := fetch(c, url)
		if err != nil || code != 200 {
			continue
		}
		name, _, _ := strings.Cut(body, " ")
		out[name]++
	}
	return out
}

// TestHealthcheck checks that a container whose Docker HEALTHCHECK has
// not passed yet, or fails, is not in its pool.
func TestHealthcheck(t *testing.T) {
	e := newEnv(t)
	in := startGatehouse(t, e, options{})
	c := in.client(t)
	host := e.host("health")
	url := "https://" + host + "/"
	dockertest.Run(t, e.name("plain"), labels(host), "-e", "BACKEND_NAME=plain")
	// Checks run only when the test says (interval 0), and one failure
	// makes it unhealthy.
	dockertest.Run(t, e.name("checked"), labels(host), "-e", "BACKEND_NAME=checked",
		"--health-cmd", `["/app", "health"]`, "--health-interval", "0", "--health-retries", "1")
	waitStatus(t, c, url, 200, "plain", engineWait)
	// Once gatehouse knows checked (the route's source names it), checked
	// still gets no requests.
	waitFor(t, engineWait, "checked among the route's containers", func() bool {
		return strings.Contains(adminGet(t, in, "/"), e.name("checked"))
	})
	if n := served(t, c, url, 10); n["plain"] != 10 {
		t.Errorf("while checked's health is starting: got %v, want plain alone", n)
	}
	dockertest.Podman(t, "healthcheck", "run", e.name("checked"))
	waitFor(t, engineWait, "checked in the pool once healthy", func() bool { return served(t, c, url, 4)["checked"] == 2 })

	dockertest.Podman(t, "exec", e.name("checked"), "/app", "sick")
	// The failing check exits 1, which podman healthcheck run reports.
	_ = exec.Command("podman", "healthcheck", "run", e.name("checked")).Run()
	waitFor(t, engineWait, "checked out of the pool once unhealthy", func() bool { return served(t, c, url, 10)["plain"] == 10 })
}

// TestBadLabels checks that a bad label refuses only its own Route, with
// one error naming the container and the label, while the container's
// other Routes and every other container keep working.
func TestBadLabels(t *testing.T) {
	e := newEnv(t)
	in := startGatehouse(t, e, options{allowedExtra: `, "localhost"`})
	c := in.client(t)
	good, bad, mixed := e.host("good"), e.host("bad"), e.host("mixed")
	// A container claiming the file's host and path: the file keeps it,
	// and the conflict is logged once, naming the container.
	dockertest.Run(t, e.name("shadow"), labels("localhost"), "-e", "BACKEND_NAME=shadow")
	dockertest.Run(t, e.name("bad"), labels(bad, "gatehouse.port", "abc"))
	dockertest.Run(t, e.name("mixed"), labels(mixed,
		"gatehouse.routes.api.path", "api", // not starting with /
		"gatehouse.routes.docs.path", "/docs"))
	dockertest.Run(t, e.name("good"), labels(good), "-e", "BACKEND_NAME=good")

	waitStatus(t, c, "https://"+good+"/", 200, "good /", engineWait)
	waitStatus(t, c, "https://"+mixed+"/docs/x", 200, "", engineWait)
	if code, _, _, _ := fetch(c, "https://"+mixed+"/"); code != 200 {
		t.Errorf("the mixed container's gatehouse.host Route: got %d, want 200", code)
	}
	if code, _, _, err := fetch(c, "https://"+bad+"/"); err == nil && code != 404 {
		t.Errorf("the container with gatehouse.port=abc: got %d, want 404 or no certificate (not routed)", code)
	}
	waitFor(t, engineWait, "the conflict with the file logged", func() bool {
		return strings.Contains(in.log.String(), `source="docker: `+e.name("shadow")+` (`)
	})
	if code, body, _, _ := fetch(c, "https://localhost/"); code != 200 || body != "file" {
		t.Errorf("localhost, claimed by a container too: got %d %q, want the file's 200 \"file\"", code, body)
	}
	log := in.log.String()
	conflicts := grepLines(log, e.name("shadow"))
	if n := strings.Count(conflicts, "the earlier one keeps it"); n != 1 || !strings.Contains(conflicts, "host=localhost") || !strings.Contains(conflicts, "served_by=file") {
		t.Errorf("the conflict should be logged once with host and winner; got %d lines:\n%s", n, conflicts)
	}
	for _, want := range []string{
		`container=` + e.name("bad") + ` id=`,
		`label=gatehouse.port problem="\"abc\" is not a port number from 1 to 65535"`,
		`container=` + e.name("mixed"),
		`label=gatehouse.routes.api.path problem="\"api\" must start with /"`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %s\n%s", want, log)
		}
	}
	// Counted on this container's lines: other runs' containers on this
	// machine are seen too.
	if n := strings.Count(grepLines(log, "container="+e.name("bad")+" "), "label=gatehouse.port "); n != 1 {
		t.Errorf("the bad port was logged %d times; want once while it lasts", n)
	}
}

// TestDisallowedHost checks that a label host outside allowed_hosts gets
// no route, no certificate and no ACME order, and is logged and counted.
func TestDisallowedHost(t *testing.T) {
	e := newEnv(t)
	ca := pebbletest.Start(t, pebbletest.Options{})
	in := startGatehouse(t, e, options{acme: fmt.Sprintf("acme: {ca: %s, ca_root: %s, challenges: [tls-alpn-01]}", ca.DirectoryURL(), ca.ClientRootFile())})
	c := in.client(t)
	ok, evil := e.host("ok"), "evil-"+e.id+".example.com"
	// One container asks for both: the allowed host proves its labels
	// were applied.
	dockertest.Run(t, e.name("mixed"), labels(ok+","+evil))
	waitStatus(t, c, "https://"+ok+"/", 200, "", engineWait)

	if n := ca.Orders(); n != 0 {
		t.Errorf("Pebble received %d orders; want none for a host outside allowed_hosts", n)
	}
	certs := adminGet(t, in, "/certs")
	if strings.Contains(certs, evil) {
		t.Errorf("the certificate inventory holds %s, which allowed_hosts refuses:\n%s", evil, certs)
	}
	if !strings.Contains(in.log.String(), fmt.Sprintf(`host \"%s\" is not in docker.allowed_hosts`, evil)) {
		t.Errorf("the refusal is not logged:\n%s", in.log)
	}
	// Every test on this machine shares podman's containers, so other
	// runs' refused hosts may be counted too: the metric must count each
	// refusal the log names, once.
	var counted, logged int
	waitFor(t, engineWait, "the metric counting each logged refusal once", func() bool {
		counted = refusedMetric(adminGet(t, in, "/metrics"))
		logged = strings.Count(in.log.String(), "is not in docker.allowed_hosts")
		return counted >= 1 && counted == logged
	}, func() string {
		return fmt.Sprintf("gatehouse_source_refused_hosts_total is %d; %d refusals logged:\n%s", counted, logged, grepLines(in.log.String(), "allowed_hosts"))
	})
}

// refusedMetric reads gatehouse_source_refused_hosts_total{source="docker"}
// from the metrics text, 0 when absent.
func refusedMetric(metrics string) int {
	for _, l := range strings.Split(metrics, "\n") {
		if v, ok := strings.CutPrefix(l, `gatehouse_source_refused_hosts_total{source="docker"} `); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	return 0
}

func adminGet(t *testing.T, in *instance, path string) string {
	t.Helper()
	resp, err := http.Get("http://" + in.admin + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	_, _ = io.Copy(&b, resp.Body)
	return b.String()
}

// routeOf returns host's Route from the admin API's GET /routes.
func routeOf(t *testing.T, in *instance, host string) admin.Route {
	t.Helper()
	var routes []admin.Route
	if err := json.Unmarshal([]byte(adminGet(t, in, "/routes")), &routes); err != nil {
		t.Fatalf("GET /routes: %v", err)
	}
	for _, r := range routes {
		if slices.Contains(r.Hosts, host) {
			return r
		}
	}
	t.Errorf("GET /routes has no Route for %s: %+v", host, routes)
	return admin.Route{}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestEngineAway stops the engine's API: routes keep serving, the outage
// is logged once, and when it is back a full list brings in what changed
// meanwhile.
func TestEngineAway(t *testing.T) {
	e := newEnv(t)
	in := startGatehouse(t, e, options{})
	c := in.client(t)
	before, after := e.host("before"), e.host("after")
	dockertest.Run(t, e.name("before"), labels(before), "-e", "BACKEND_NAME=before")
	waitStatus(t, c, "https://"+before+"/", 200, "before", engineWait)

	e.engine.Stop()
	waitFor(t, engineWait, "the outage logged", func() bool { return strings.Contains(in.log.String(), "docker engine unreachable") })
	// While it is away: the last routes serve; changes wait. Three more
	// retries (100ms apart at least) outlast the debounce of any change
	// the outage could have made.
	pings := func() int { return strings.Count(strings.Join(e.rec.requests(), "\n"), "GET /_ping") }
	seen := pings()
	waitFor(t, engineWait, "three reconnect attempts", func() bool { return pings() >= seen+3 })
	if code, body, _, err := fetch(c, "https://"+before+"/"); err != nil || code != 200 || body != "before /" {
		t.Errorf("the known route while the engine is away: got %d %q %v, want 200", code, body, err)
	}
	dockertest.Run(t, e.name("after"), labels(after), "-e", "BACKEND_NAME=after")
	dockertest.Podman(t, "rm", "-f", "-t", "0", e.name("before"))
	if n := strings.Count(in.log.String(), "docker engine unreachable"); n != 1 {
		t.Errorf("the outage was logged %d times; want once:\n%s", n, grepLines(in.log.String(), "docker engine"))
	}

	e.engine.Restart()
	waitStatus(t, c, "https://"+after+"/", 200, "after", engineWait)
	waitGone(t, c, "https://"+before+"/", engineWait)
	if !strings.Contains(in.log.String(), "docker engine reachable again") {
		t.Errorf("the return is not logged:\n%s", in.log)
	}
}

// TestEngineDownAtStart starts gatehouse while the engine is away: the
// file's Sites serve, and the containers' join once the engine is up.
func TestEngineDownAtStart(t *testing.T) {
	e := newEnv(t)
	host := e.host("late")
	dockertest.Run(t, e.name("late"), labels(host), "-e", "BACKEND_NAME=late")
	e.engine.Stop()
	in := startGatehouse(t, e, options{})
	c := in.client(t)
	if code, body, _, err := fetch(c, "https://localhost/"); err != nil || code != 200 || body != "file" {
		t.Errorf("the file's Site with the engine away: got %d %q %v", code, body, err)
	}
	waitFor(t, engineWait, "the outage logged", func() bool { return strings.Contains(in.log.String(), "docker engine unreachable") })
	e.engine.Restart()
	waitStatus(t, c, "https://"+host+"/", 200, "late", engineWait)
}

// TestGatehouseRestart restarts gatehouse: the new process finds the
// same routes from the container list.
func TestGatehouseRestart(t *testing.T) {
	e := newEnv(t)
	in := startGatehouse(t, e, options{})
	c := in.client(t)
	host := e.host("kept")
	dockertest.Run(t, e.name("kept"), labels(host, "gatehouse.path", "/app", "gatehouse.strip_prefix", "true"), "-e", "BACKEND_NAME=kept")
	waitStatus(t, c, "https://"+host+"/app/x", 200, "kept /x", engineWait)
	in.stop()

	// No event tells the new process about the container: the list does.
	again := startGatehouse(t, e, options{storage: in.storage})
	waitStatus(t, again.client(t), "https://"+host+"/app/x", 200, "kept /x", engineWait)
}

// TestReloadSignal sends a container the signal of a reload (docker kill
// -s HUP): it is not stopping, so it serves on. podman's kill events do
// not name their signal, so gatehouse drains it for as long as a stop
// could take (its stop timeout, here 1s, and a grace); then it is back.
func TestReloadSignal(t *testing.T) {
	e := newEnv(t)
	in := startGatehouse(t, e, options{})
	c := in.client(t)
	host := e.host("hup")
	url := "https://" + host + "/"
	for _, n := range []string{"a", "b"} {
		dockertest.Run(t, e.name(n), labels(host), "-e", "BACKEND_NAME="+n, "--stop-timeout", "1")
	}
	waitFor(t, engineWait, "a and b in the pool", func() bool { n := served(t, c, url, 10); return n["a"] > 0 && n["b"] > 0 })
	dockertest.Podman(t, "kill", "--signal", "HUP", e.name("a"))
	// On podman's kill event (the engine these tests run) a leaves; on
	// Docker's, which names SIGHUP, it would stay.
	waitFor(t, engineWait, "a drained on the kill event", func() bool { return len(routeOf(t, in, host).Upstreams) == 1 })
	waitFor(t, engineWait, "a serving again after its reload", func() bool {
		r := routeOf(t, in, host)
		return len(r.Upstreams) == 2 && served(t, c, url, 10)["a"] > 0
	}, func() string { return fmt.Sprintf("%+v", routeOf(t, in, host)) })
	if st := dockertest.Podman(t, "inspect", "--format", "{{.State.Status}}", e.name("a")); st != "running" {
		t.Errorf("a after SIGHUP: %s, want running", st)
	}
}
