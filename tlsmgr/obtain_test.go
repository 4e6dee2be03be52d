package tlsmgr

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	b := backoff{base: time.Second, max: 10 * time.Second}
	for i, want := range []time.Duration{1, 2, 4, 8, 10, 10} {
		want *= time.Second
		d := b.next()
		if d < want/2 || d > want {
			t.Errorf("attempt %d: got %v, want in [%v, %v]", i, d, want/2, want)
		}
	}

	// The random part spans the whole upper half, the cap included.
	seen := map[time.Duration]bool{}
	for range 200 {
		b := backoff{base: 4, max: 4}
		seen[b.next()] = true
	}
	if len(seen) != 3 || !seen[2] || !seen[3] || !seen[4] {
		t.Errorf("delays of a 4ns step: got %v, want each of 2ns, 3ns and 4ns", seen)
	}

	// A step past the range of a Duration (a host failing for days) is
	// the cap, never a wrapped-around zero that would retry at once.
	huge := backoff{base: 1 << 62, max: math.MaxInt64}
	for i := range 70 {
		if d := huge.next(); d < 1<<61 {
			t.Fatalf("attempt %d: got %v, want at least half of 1<<62 ns", i, d)
		}
	}
}

func TestObtainerRetriesAndForgets(t *testing.T) {
	// mu guards attempts and forgotten.
	var mu sync.Mutex
	attempts := map[string]int{}
	var forgotten []string
	done := make(chan string, 4)
	o := newObtainer(slog.New(slog.DiscardHandler), time.Millisecond, 4*time.Millisecond,
		func(ctx context.Context, host string) error {
			mu.Lock()
			defer mu.Unlock()
			attempts[host]++
			if host == "flaky.test" && attempts[host] < 3 {
				return errors.New("CA unreachable")
			}
			if host == "stuck.test" {
				return errors.New("CA unreachable")
			}
			done <- host
			return nil
		},
		func(hosts []string) {
			mu.Lock()
			defer mu.Unlock()
			forgotten = append(forgotten, hosts...)
		})
	o.set([]string{"flaky.test", "ok.test", "stuck.test"})
	got := []string{<-done, <-done}
	slices.Sort(got)
	if want := []string{"flaky.test", "ok.test"}; !slices.Equal(got, want) {
		t.Fatalf("obtained: got %v, want %v", got, want)
	}
	o.set([]string{"ok.test"})
	mu.Lock()
	if want := []string{"flaky.test", "stuck.test"}; !slices.Equal(forgotten, want) {
		t.Errorf("forgotten: got %v, want %v", forgotten, want)
	}
	if attempts["flaky.test"] != 3 || attempts["ok.test"] != 1 {
		t.Errorf("attempts: got %v, want flaky 3, ok 1", attempts)
	}
	mu.Unlock()
	o.stop()
	o.set([]string{"new.test"}) // after stop: ignored, no goroutine
	mu.Lock()
	defer mu.Unlock()
	if attempts["new.test"] != 0 {
		t.Error("set after stop started a loop")
	}
}
