package fleet

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/gatehouse-proxy/gatehouse/gateway"
)

// countingReporter is a running instance as the registry sees it, which
// counts how often its Certificates are counted (each count reads every
// Certificate from storage).
type countingReporter struct {
	mu     sync.Mutex // guards cfg
	cfg    *config.Config
	counts atomic.Int32
}

func (r *countingReporter) Running() *config.Config {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cfg
}

func (r *countingReporter) CertificatesHeld() int { return int(r.counts.Add(1)) }

// TestRegistryCountsSeldom runs the registry, which looks for a change to
// report every second: it counts the Certificates held once, then again
// when the config revision changes, not at every look.
func TestRegistryCountsSeldom(t *testing.T) {
	ft := newFleet(t)
	src, err := NewSource(ft.local, &gateway.File{Path: ft.local.File}, Options{Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	rep := &countingReporter{cfg: &config.Config{SharedRevision: 1}}
	src.Gateway = rep
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		src.register(ctx, slog.New(slog.DiscardHandler))
	}()
	defer func() {
		cancel()
		<-done
	}()
	reported := func(certs int) bool {
		st, err := ft.f.Status(context.Background())
		return err == nil && len(st.Instances) == 1 && st.Instances[0].Certificates == certs
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 10s (%d counts)", what, rep.counts.Load())
			}
		}
	}
	waitFor("the first report", func() bool { return reported(1) })
	time.Sleep(3 * reportEvery)
	if n := rep.counts.Load(); n != 1 {
		t.Errorf("%d counts in the registry's first three seconds, want 1", n)
	}
	rep.mu.Lock()
	rep.cfg = &config.Config{SharedRevision: 2}
	rep.mu.Unlock()
	waitFor("the count at the new revision", func() bool { return reported(2) })
}
