// Command dockerbench measures the Docker Source against a real engine
// (podman's Docker Engine API, as the tests use it): the time from a
// container's start event to its first proxied 200 over HTTPS (local CA),
// and what a change costs, from the Sources' loads to the swap of the
// routing table, with few labelled containers running and with many.
//
//	go run ./bench/cmd/dockerbench [-few 10] [-many 300] [-samples 20]
//
// It starts its own `podman system service` on a socket in a temporary
// directory, runs gatehouse in-process with a docker block pointed at it,
// and removes every container it made when it ends. See bench/README.md.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/gatehouse-proxy/gatehouse/gateway"
	"github.com/gatehouse-proxy/gatehouse/gateway/docker"
	"github.com/gatehouse-proxy/gatehouse/gateway/dockertest"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr"
)

func main() {
	few := flag.Int("few", 10, "labelled containers running for the first series")
	many := flag.Int("many", 300, "labelled containers running for the second series")
	samples := flag.Int("samples", 20, "containers started and measured per series")
	flag.Parse()
	if err := run(*few, *many, *samples); err != nil {
		fmt.Fprintln(os.Stderr, "dockerbench:", err)
		os.Exit(1)
	}
}

// bench is one run: the engine, gatehouse and the containers made.
type bench struct {
	dir    string
	socket string
	image  string
	id     string // a random suffix for names and hosts
	api    *http.Client
	client *http.Client // through gatehouse's HTTPS Listener, trusting the local CA
	log    *reloads

	scaled int // base containers started so far

	mu   sync.Mutex // guards made
	made []string   // container names to remove at the end
}

func run(few, many, samples int) error {
	dir, err := os.MkdirTemp("", "dockerbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	b := &bench{dir: dir, socket: filepath.Join(dir, "engine.sock"), log: &reloads{}}
	rnd := make([]byte, 3)
	rand.Read(rnd)
	b.id = hex.EncodeToString(rnd)
	b.api = &http.Client{Timeout: time.Minute, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", b.socket)
	}}}

	logf("building the backend image")
	if b.image, err = dockertest.BuildImage(); err != nil {
		return err
	}
	stopEngine, err := b.startEngine()
	if err != nil {
		return err
	}
	defer stopEngine()
	defer b.removeAll()

	stop, err := b.startGatehouse()
	if err != nil {
		return err
	}
	defer stop()

	type series struct {
		running          int
		latency, changes []time.Duration
	}
	var results []series
	for _, n := range []int{few, many} {
		logf("scaling to %d labelled containers", n)
		if err := b.scaleTo(n); err != nil {
			return err
		}
		s := series{running: n}
		for i := range samples {
			lat, cost, err := b.sample(fmt.Sprintf("s%d-%02d", n, i))
			if err != nil {
				return err
			}
			s.latency, s.changes = append(s.latency, lat), append(s.changes, cost)
		}
		logf("%d running: start to first 200 median %s, change cost median %s", n, median(s.latency), median(s.changes))
		results = append(results, s)
	}

	fmt.Printf("| running | start event → first 200 over HTTPS (median of %d, p90) | one change, loads to swap (median) |\n|---|---|---|\n", samples)
	for _, s := range results {
		fmt.Printf("| %d | %s (%s) | %s |\n", s.running, ms(median(s.latency)), ms(percentile(s.latency, 0.9)), ms(median(s.changes)))
	}
	worst := slices.Max([]time.Duration{median(results[0].latency), median(results[1].latency)})
	ratio := float64(median(results[1].changes)) / float64(median(results[0].changes))
	fmt.Printf("\nstart to first 200 ≤ 1 s: %s (worst median %s)\n", verdict(worst <= time.Second), ms(worst))
	fmt.Printf("a change with %d running ≤ 2x one with %d: %s (%.2fx)\n", many, few, verdict(ratio <= 2), ratio)
	return nil
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%s] %s\n", time.Now().UTC().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// startEngine runs podman's API service and waits until it answers.
func (b *bench) startEngine() (stop func(), err error) {
	cmd := exec.Command("podman", "system", "service", "--time=0", "unix://"+b.socket)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting podman system service: %w", err)
	}
	stop = func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if resp, err := b.api.Get("http://engine/_ping"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return stop, nil
			}
		}
		if time.Now().After(deadline) {
			stop()
			return nil, errors.New("podman system service did not answer /_ping within 30s")
		}
	}
}

const gwConfig = `listen: {http: "off", https: "127.0.0.1:%d"}
admin: "off"
storage: %s
log: {access: false}
docker:
  endpoint: unix://%s
  allowed_hosts: ["*.localhost"]
sites:
  - hosts: [localhost]
    routes:
      - {path: /, respond: {body: file}}
`

// startGatehouse runs gatehouse in-process and makes the client.
func (b *bench) startGatehouse() (stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	storage := filepath.Join(b.dir, "storage")
	cfg, err := config.Parse("dockerbench.yaml", fmt.Appendf(nil, gwConfig, port, storage, b.socket))
	if err != nil {
		return nil, err
	}
	src, err := docker.New(cfg)
	if err != nil {
		return nil, err
	}
	g, err := gateway.New(gateway.Options{Config: cfg, Sources: []gateway.Source{gateway.Static(cfg), src}, Log: b.log})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	stop = func() {
		cancel()
		<-done
	}
	select {
	case <-g.Started():
	case err := <-done:
		return nil, fmt.Errorf("gatehouse: %w", err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	// The local CA exists once a first handshake made it.
	var root []byte
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "localhost", InsecureSkipVerify: true}); err == nil {
			c.Close()
			if root, _, err = tlsmgr.LocalRoot(ctx, storage); err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			stop()
			return nil, errors.New("no local CA within 20s")
		}
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(root)
	dialer := &net.Dialer{Timeout: 2 * time.Second}
	b.client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, addr)
		},
	}}
	return stop, nil
}

func (b *bench) host(name string) string { return name + "-" + b.id + ".localhost" }
func (b *bench) name(name string) string { return "dockerbench-" + b.id + "-" + name }

// create makes a labelled container and returns its ID.
func (b *bench) create(name string) (string, error) {
	body, err := json.Marshal(map[string]any{
		"Image": b.image, "Env": []string{"BACKEND_NAME=" + name},
		"Labels": map[string]string{"gatehouse.enable": "true", "gatehouse.host": b.host(name)},
	})
	if err != nil {
		return "", err
	}
	var created struct {
		ID string `json:"Id"`
	}
	if err := b.post("/containers/create?name="+url.QueryEscape(b.name(name)), body, &created); err != nil {
		return "", err
	}
	b.mu.Lock()
	b.made = append(b.made, b.name(name))
	b.mu.Unlock()
	return created.ID, nil
}

func (b *bench) post(path string, body []byte, out any) error {
	resp, err := b.api.Post("http://engine/v1.41"+path, "application/json", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("POST %s: %w", path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("POST %s: %s: %s", path, resp.Status, bytes.TrimSpace(data))
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

// scaleTo starts base containers until n run, eight at a time, and waits
// until the last is routed.
func (b *bench) scaleTo(n int) error {
	var names []string
	for ; b.scaled < n; b.scaled++ {
		names = append(names, fmt.Sprintf("base%03d", b.scaled))
	}
	errs := make(chan error, len(names))
	sem := make(chan struct{}, 8)
	for _, name := range names {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			id, err := b.create(name)
			if err == nil {
				err = b.post("/containers/"+id+"/start", nil, nil)
			}
			errs <- err
		}()
	}
	for range names {
		if err := <-errs; err != nil {
			return err
		}
	}
	for _, name := range names {
		if _, err := b.waitOK(b.host(name), time.Minute); err != nil {
			return err
		}
	}
	time.Sleep(time.Second) // the debounce and any late rounds settle
	return nil
}

// waitOK polls https://host/ through gatehouse until it answers 200, and
// returns when it did.
func (b *bench) waitOK(host string, within time.Duration) (time.Time, error) {
	deadline := time.Now().Add(within)
	var last string
	for {
		resp, err := b.client.Get("https://" + host + "/")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return time.Now(), nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("%s did not answer 200 within %s: %s", host, within, last)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// sample creates one more container, starts it and measures the time
// from its start event to the first 200 for its host, and the cost of the
// round that applied it; then removes it again.
func (b *bench) sample(name string) (latency, cost time.Duration, err error) {
	id, err := b.create(name)
	if err != nil {
		return 0, 0, err
	}
	time.Sleep(300 * time.Millisecond) // the create's round is over
	// The start event's time is the engine's; it runs on this machine.
	f, _ := json.Marshal(map[string][]string{"container": {id}, "event": {"start"}})
	resp, err := b.api.Get("http://engine/v1.41/events?filters=" + url.QueryEscape(string(f)))
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	mark := b.log.mark()
	if err := b.post("/containers/"+id+"/start", nil, nil); err != nil {
		return 0, 0, err
	}
	var ev struct {
		TimeNano int64 `json:"timeNano"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&ev); err != nil {
		return 0, 0, fmt.Errorf("reading the start event: %w", err)
	}
	ok, err := b.waitOK(b.host(name), 10*time.Second)
	if err != nil {
		return 0, 0, err
	}
	latency = ok.Sub(time.Unix(0, ev.TimeNano))
	cost, err = b.log.round(mark, "docker: start "+b.name(name))
	if err != nil {
		return 0, 0, err
	}
	if out, err := exec.Command("podman", "rm", "-f", "-t", "0", b.name(name)).CombinedOutput(); err != nil {
		return 0, 0, fmt.Errorf("podman rm: %v: %s", err, out)
	}
	time.Sleep(300 * time.Millisecond) // the removal's round is over
	return latency, cost, nil
}

// removeAll removes every container the run made, in one command.
func (b *bench) removeAll() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.made) > 0 {
		logf("removing %d containers", len(b.made))
		_ = exec.Command("podman", append([]string{"rm", "-f", "-t", "0", "--ignore"}, b.made...)...).Run()
	}
}

// reloads is gatehouse's log sink; it keeps each "config reloaded" line's
// trigger and duration_ms.
type reloads struct {
	mu      sync.Mutex // guards partial and rounds
	partial []byte
	rounds  []round
}

type round struct {
	trigger string
	cost    time.Duration
}

var reloadLine = regexp.MustCompile(`msg="config reloaded" trigger=("(?:[^"\\]|\\.)*"|\S+) .*duration_ms=([0-9.]+)`)

func (r *reloads) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.partial = append(r.partial, p...)
	sc := bufio.NewScanner(bytes.NewReader(r.partial))
	consumed := 0
	for sc.Scan() {
		line := sc.Bytes()
		if consumed+len(line) >= len(r.partial) || r.partial[consumed+len(line)] != '\n' {
			break // an unfinished line
		}
		consumed += len(line) + 1
		m := reloadLine.FindSubmatch(line)
		if m == nil {
			continue
		}
		trigger := string(m[1])
		if t, err := strconv.Unquote(trigger); err == nil {
			trigger = t
		}
		msec, _ := strconv.ParseFloat(string(m[2]), 64)
		r.rounds = append(r.rounds, round{trigger: trigger, cost: time.Duration(msec * float64(time.Millisecond))})
	}
	r.partial = r.partial[consumed:]
	return len(p), nil
}

func (r *reloads) mark() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.rounds)
}

// round waits briefly for the round after mark that trigger caused, and
// returns its cost. When another change (another run's containers: the
// engine's store is shared) shared that round and was named instead, it
// takes the dearest round after mark.
func (r *reloads) round(mark int, trigger string) (time.Duration, error) {
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		r.mu.Lock()
		for _, rd := range r.rounds[mark:] {
			if rd.trigger == trigger {
				r.mu.Unlock()
				return rd.cost, nil
			}
		}
		r.mu.Unlock()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.rounds) == mark {
		return 0, fmt.Errorf("no round after %q was logged", trigger)
	}
	var dearest time.Duration
	for _, rd := range r.rounds[mark:] {
		dearest = max(dearest, rd.cost)
	}
	return dearest, nil
}

func median(ds []time.Duration) time.Duration { return percentile(ds, 0.5) }

func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
