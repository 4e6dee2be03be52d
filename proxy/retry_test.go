package proxy

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// accessLines returns the access log lines written so far.
func accessLines(t *testing.T, f *frontend) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range f.log.lines(t) {
		if l["msg"] == "request" {
			out = append(out, l)
		}
	}
	return out
}

func TestRetryStatus(t *testing.T) {
	var flakyHits, flakyBodies atomic.Int64
	flaky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		flakyHits.Add(1)
		if b, _ := io.ReadAll(r.Body); len(b) > 0 {
			flakyBodies.Add(1)
		}
		http.Error(w, "busy", http.StatusServiceUnavailable)
	}))
	t.Cleanup(flaky.Close)
	good := newEcho(t, "good")
	f := newFrontend(t, proxyConfig(withLB(&config.LB{RetryStatus: []int{503}}, flaky.URL, good.URL)))

	t.Run("GET moves on", func(t *testing.T) {
		for i := range 4 {
			code, body := f.get(t, host, "/")
			if code != http.StatusOK || decodeSeen(t, body).Backend != "good" {
				t.Fatalf("request %d: %v %q, want 200 from good", i, code, body)
			}
		}
		if n := flakyHits.Load(); n != 2 {
			t.Errorf("flaky upstream got %d requests, want 2 (its round-robin turns)", n)
		}
		retries := 0
		for _, l := range accessLines(t, f) {
			retries += int(l["retries"].(float64))
		}
		if retries != 2 {
			t.Errorf("access log retries add up to %d, want 2", retries)
		}
	})
	t.Run("POST with a body is never retried", func(t *testing.T) {
		before := flakyHits.Load()
		got := make(map[int]int)
		for range 4 {
			req := f.request(t, http.MethodPost, host, "/", strings.NewReader("payload"))
			code, _ := do(t, f.client(host), req)
			got[code]++
		}
		if got[http.StatusServiceUnavailable] != 2 || got[http.StatusOK] != 2 {
			t.Errorf("statuses %v, want two 503s passed through and two 200s", got)
		}
		if n := flakyHits.Load() - before; n != 2 || flakyBodies.Load() != 2 {
			t.Errorf("flaky saw %d requests (%d with body), want 2 with the body", n, flakyBodies.Load())
		}
	})
	t.Run("last answer returned when every upstream fails", func(t *testing.T) {
		f := newFrontend(t, proxyConfig(withLB(&config.LB{RetryStatus: []int{503}}, flaky.URL, flaky.URL)))
		if code, _ := f.get(t, host, "/"); code != http.StatusServiceUnavailable {
			t.Errorf("status = %v, want the upstream's 503", code)
		}
	})
}

func TestRetryDialFailureCounted(t *testing.T) {
	live := newEcho(t, "live")
	f := newFrontend(t, proxyConfig(proxyTo("/", "http://"+closedAddr(t), live.URL)))
	if code, _ := f.get(t, host, "/"); code != http.StatusOK {
		t.Fatalf("status = %v", code)
	}
	lines := accessLines(t, f)
	if len(lines) != 1 || lines[0]["retries"] != float64(1) || lines[0]["upstream"] != live.URL {
		t.Errorf("access line = %v, want retries 1 and the live upstream", lines)
	}
}

// TestTryDuration restarts the only upstream while a request waits for it.
// The Upstream is a unix socket, so nothing else can take its address while
// it is down, and it comes back once gatehouse has found it unreachable:
// the request is waiting for it then.
func TestTryDuration(t *testing.T) {
	dir, err := os.MkdirTemp("", "gh-sock")
	if err != nil {
		t.Fatalf("creating the socket's directory: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "app.sock")
	up := "unix://" + sock
	f := newFrontend(t, proxyConfig(withLB(&config.LB{TryDuration: 5 * time.Second}, up)))
	without := newFrontend(t, proxyConfig(proxyTo("/", up)))
	if code, _ := without.get(t, host, "/"); code != http.StatusBadGateway {
		t.Fatalf("without try_duration: %v, want 502", code)
	}
	// One dial and the 502: no second round, so no wait for one.
	if n := strings.Count(without.log.String(), "upstream unreachable"); n != 1 {
		t.Errorf("without try_duration the upstream was dialed %d times, want 1:\n%s", n, without.log.String())
	}

	srv := &http.Server{Handler: echoHandler("restarted")}
	t.Cleanup(func() { srv.Close() })
	go func() {
		for !strings.Contains(f.log.String(), "upstream unreachable") {
			select {
			case <-f.log.written:
			case <-t.Context().Done():
				return
			}
		}
		ln, err := net.Listen("unix", sock)
		if err != nil {
			t.Errorf("listening again on %s: %v", sock, err)
			return
		}
		_ = srv.Serve(ln)
	}()
	code, body := f.get(t, host, "/")
	if code != http.StatusOK || decodeSeen(t, body).Backend != "restarted" {
		t.Fatalf("with try_duration: %v %q, want 200 from the restarted upstream", code, body)
	}
	if l := accessLines(t, f); len(l) != 1 || l[0]["retries"].(float64) < 1 {
		t.Errorf("access line = %v, want retries counted", l)
	}
}
