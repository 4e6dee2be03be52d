package docker_test

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/gateway/dockertest"
)

// TestBurst starts 30 labelled containers at once, as `docker compose up`
// does, while clients hammer a container's Route and the file's: the burst
// is applied in a few atomic swaps of the routing table, not one per
// event, and not one request to the other Routes fails meanwhile.
func TestBurst(t *testing.T) {
	const n = 30
	e := newEnv(t)
	in := startGatehouse(t, e, options{})
	c := in.client(t)
	steady := "https://" + e.host("steady") + "/"
	dockertest.Run(t, e.name("steady"), labels(e.host("steady")), "-e", "BACKEND_NAME=steady")
	waitStatus(t, c, steady, 200, "steady", engineWait)

	// Created first (not yet routed), so the burst is the starts alone;
	// through the API, as compose does.
	img := dockertest.Image(t)
	names := make([]string, n)
	for i := range names {
		names[i] = e.name(fmt.Sprintf("burst%02d", i))
	}
	t.Cleanup(func() {
		_ = exec.Command("podman", append([]string{"rm", "-f", "-t", "0", "--ignore"}, names...)...).Run()
	})
	ids := make([]string, n)
	parallel(names, func(i int, name string) {
		var created struct {
			ID string `json:"Id"`
		}
		body, err := e.engine.Post("/v1.41/containers/create?name="+name, map[string]any{
			"Image": img, "Env": []string{"BACKEND_NAME=" + name}, "Labels": labels(e.host(fmt.Sprintf("burst%02d", i))),
		})
		if err == nil {
			err = json.Unmarshal(body, &created)
		}
		if err != nil || created.ID == "" {
			t.Errorf("creating %s: %v %s", name, err, body)
		}
		ids[i] = created.ID
	})
	if t.Failed() {
		t.FailNow()
	}
	// Wait until the creations are applied (created containers have no
	// Routes) and the log is quiet, then count from there.
	waitFor(t, engineWait, "the created containers known", func() bool {
		return strings.Count(strings.Join(e.rec.requests(), "\n"), "/containers/") >= n
	})
	reloads := func() int { return strings.Count(in.log.String(), "msg=\"config reloaded\"") }
	quiet := reloads()
	waitFor(t, engineWait, "no reload for 500ms", func() bool {
		time.Sleep(500 * time.Millisecond)
		now := reloads()
		defer func() { quiet = now }()
		return now == quiet
	})

	load := startLoad(c, 0, steady, "https://localhost/", steady)

	before := reloads()
	start := time.Now()
	parallel(ids, func(_ int, id string) {
		if _, err := e.engine.Post("/v1.41/containers/"+id+"/start", nil); err != nil {
			t.Error(err)
		}
	})
	started := time.Since(start)
	for i := range names {
		waitStatus(t, c, "https://"+e.host(fmt.Sprintf("burst%02d", i))+"/", 200, names[i], engineWait)
	}
	routed := time.Since(start)
	load.stop(t, "on the other Routes during the burst")
	swaps := reloads() - before
	t.Logf("%d containers started in %s, all routed after %s, in %d swaps", n, started.Round(time.Millisecond), routed.Round(time.Millisecond), swaps)
	// The debounce waits for 100ms without a change, at most 1s: however
	// the engine spreads the starts out, far fewer swaps than starts.
	if swaps > n/3 {
		t.Errorf("the burst of %d starts took %d swaps of the routing table; want at most %d\n%s", n, swaps, n/3, grepLines(in.log.String(), "config reloaded"))
	}
}

// parallel calls f for every item, eight at a time, and waits for them:
// compose sends its starts side by side too, and a loaded engine answers
// eight in flight sooner than thirty.
func parallel(items []string, f func(i int, item string)) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i, item := range items {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			f(i, item)
		}()
	}
	wg.Wait()
}
