package tlsmgr

import (
	"context"
	"errors"
	"log/slog"
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
