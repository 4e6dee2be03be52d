package tlsmgr

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// waitRecorder stands in for an eventSink's sleep: it records each wait
// between webhook attempts and returns at once, so the schedule is seen
// without being slept.
type waitRecorder struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (w *waitRecorder) sleep(ctx context.Context, d time.Duration) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.waits = append(w.waits, d)
	return ctx.Err() == nil
}

// take returns the waits recorded so far and forgets them.
func (w *waitRecorder) take() []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.waits
	w.waits = nil
	return out
}

// newRecordedSink returns an eventSink with the default limits whose
// waits between webhook attempts the waitRecorder records, and a channel
// that gets the error of each event the webhook never took, as logged.
func newRecordedSink(t *testing.T) (*eventSink, *waitRecorder, <-chan string) {
	t.Helper()
	failed := make(chan string, 16)
	h := tapHandler{Handler: slog.NewTextHandler(t.Output(), nil), tap: func(r slog.Record) {
		if r.Message != "delivering event to webhook" {
			return
		}
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "error" {
				failed <- a.Value.String()
			}
			return true
		})
	}}
	s := newEventSink(slog.New(h))
	t.Cleanup(s.close)
	w := &waitRecorder{}
	s.sleep = w.sleep
	return s, w, failed
}

// receive returns the next value of ch; the bound only keeps a broken
// sink from hanging the test.
func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(30 * time.Second):
		t.Fatalf("still waiting for %s", what)
		panic("unreachable")
	}
}

// noneYet fails if ch holds a value.
func noneYet(t *testing.T, ch <-chan string, what string) {
	t.Helper()
	select {
	case v := <-ch:
		t.Errorf("%s: %s", what, v)
	default:
	}
}

// TestWebhookBackoff checks a webhook that keeps failing gets four
// attempts with 1 s, 2 s and 4 s between them, as the README says, after
// which the event is given up and logged as not delivered.
func TestWebhookBackoff(t *testing.T) {
	t.Parallel()
	var posts atomic.Int64
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		posts.Add(1)
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	defer down.Close()
	s, waits, failed := newRecordedSink(t)
	s.configure(&config.Events{Webhook: down.URL})
	s.enqueue(Event{Type: EventRenewed, Names: []string{"backoff.test"}})

	msg := receive(t, failed, "the webhook delivery to be given up")
	if got := posts.Load(); got != 4 {
		t.Errorf("webhook posts: got %d, want 4", got)
	}
	if got, want := waits.take(), []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}; !slices.Equal(got, want) {
		t.Errorf("waits between attempts: got %v, want %v", got, want)
	}
	if !strings.Contains(msg, "after 4 attempts") || !strings.Contains(msg, "503") {
		t.Errorf("delivery error: got %q, want it to say 4 attempts and the 503", msg)
	}
}

// TestWebhookNoRedirect checks a webhook answering a redirect is not
// followed, whether the redirect would turn the POST into a GET or keep
// it: the server redirected to hears nothing, and the answer is a failed
// attempt, retried like any other and then given up.
func TestWebhookNoRedirect(t *testing.T) {
	t.Parallel()
	reached := make(chan string, 16)
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached <- r.Method + " " + r.URL.Path
	}))
	defer other.Close()
	for _, code := range []int{http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			var posts atomic.Int64
			hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				posts.Add(1)
				http.Redirect(w, r, other.URL+"/elsewhere", code)
			}))
			defer hook.Close()
			s, waits, failed := newRecordedSink(t)
			s.configure(&config.Events{Webhook: hook.URL + "/hook"})
			s.enqueue(Event{Type: EventRevoked, Names: []string{"redirect.test"}})

			var msg string
			select {
			case got := <-reached:
				t.Fatalf("the webhook's redirect was followed: the other server got %s", got)
			case msg = <-failed:
			case <-time.After(30 * time.Second):
				t.Fatal("the delivery neither failed nor reached the other server")
			}
			if !strings.Contains(msg, "webhook answered "+strconv.Itoa(code)) || !strings.Contains(msg, "after 4 attempts") {
				t.Errorf("delivery error: got %q, want the %d answer after 4 attempts", msg, code)
			}
			if got := posts.Load(); got != 4 {
				t.Errorf("posts to the webhook: got %d, want 4 (a redirect is retried like any failure)", got)
			}
			if got, want := waits.take(), []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}; !slices.Equal(got, want) {
				t.Errorf("waits between attempts: got %v, want %v", got, want)
			}
			noneYet(t, reached, "the other server got a request")
		})
	}
}

// TestWebhookRetries checks a webhook answering 503 is retried with
// backoff until it takes the event, that enqueue returns while a webhook
// holds a delivery (events queue behind it, in order), and that a webhook
// that never answers holds later events only until its timeout.
func TestWebhookRetries(t *testing.T) {
	t.Parallel()
	hook := startEventReceiver(t)
	hook.fail = 2
	s, waits, failed := newRecordedSink(t)
	s.configure(&config.Events{Webhook: hook.url})
	s.enqueue(Event{Type: EventRenewed, Names: []string{"retry.test"}})
	hook.wait(t, EventRenewed, "retry.test", 10*time.Second)
	hook.mu.Lock()
	posts := hook.posts
	hook.mu.Unlock()
	if posts != 3 {
		t.Errorf("webhook posts: got %d, want 3 (two refused, then accepted)", posts)
	}
	if got, want := waits.take(), []time.Duration{time.Second, 2 * time.Second}; !slices.Equal(got, want) {
		t.Errorf("waits between attempts: got %v, want %v", got, want)
	}
	// Events go out in order, so once this one is in, the first one's
	// delivery has ended, and it must have ended well.
	s.enqueue(Event{Type: EventRetired, Names: []string{"sentinel.test"}})
	hook.wait(t, EventRetired, "sentinel.test", 10*time.Second)
	noneYet(t, failed, "an event the webhook took was logged as not delivered")

	// A webhook holding the request: enqueue returns while the delivery
	// waits for the answer, which only comes once the test releases it,
	// and the next event goes out after it.
	entered := make(chan string, 4)
	release := make(chan struct{})
	holding := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		entered <- r.URL.Query().Get("n")
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer holding.Close()
	releaseOnce := sync.OnceFunc(func() { close(release) })
	defer releaseOnce()
	held, _, heldFailed := newRecordedSink(t)
	// Far longer than the test takes to enqueue, so an attempt can only
	// end by the release.
	held.timeout, held.attempts = 20*time.Second, 1
	held.configure(&config.Events{Webhook: holding.URL + "?n=first"})
	held.enqueue(Event{Type: EventExpiring, Names: []string{"held.test"}})
	if got := receive(t, entered, "the held webhook to get the first event"); got != "first" {
		t.Fatalf("held webhook got %q first", got)
	}
	held.configure(&config.Events{Webhook: holding.URL + "?n=second"})
	held.enqueue(Event{Type: EventExpiring, Names: []string{"queued.test"}})
	noneYet(t, heldFailed, "a delivery ended before enqueue returned; enqueue must not wait for the webhook")
	noneYet(t, entered, "the second event went out while the first was held")
	releaseOnce()
	if got := receive(t, entered, "the second event after the release"); got != "second" {
		t.Errorf("after the release the webhook got %q, want the second event", got)
	}

	// A webhook that never answers: only the timeout lets the event after
	// it through.
	silent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// With the body read, the server notices the client hanging up
		// and cancels r's context.
		_, _ = io.Copy(io.Discard, r.Body)
		<-r.Context().Done()
	}))
	defer silent.Close()
	cut, cutWaits, cutFailed := newRecordedSink(t)
	cut.timeout, cut.attempts = 200*time.Millisecond, 2
	cut.configure(&config.Events{Webhook: silent.URL})
	cut.enqueue(Event{Type: EventExpiring, Names: []string{"stuck.test"}})
	cut.configure(&config.Events{Webhook: hook.url})
	cut.enqueue(Event{Type: EventRetired, Names: []string{"after.test"}})
	hook.wait(t, EventRetired, "after.test", 10*time.Second)
	if msg := receive(t, cutFailed, "the silent webhook's delivery to be given up"); !strings.Contains(msg, "after 2 attempts") {
		t.Errorf("silent webhook's delivery error: got %q, want it given up after 2 attempts", msg)
	}
	if got, want := cutWaits.take(), []time.Duration{time.Second}; !slices.Equal(got, want) {
		t.Errorf("waits between attempts at the silent webhook: got %v, want %v", got, want)
	}
}

// TestEventExecTimeout checks an event command that hangs is killed after
// the timeout and the next event's command still runs.
func TestEventExecTimeout(t *testing.T) {
	t.Parallel()
	s := newEventSink(slog.New(slog.NewTextHandler(t.Output(), nil)))
	defer s.close()
	s.timeout = time.Second
	pidFile := filepath.Join(t.TempDir(), "hang.pid")
	// It never ends by itself: only the timeout lets the next event through.
	s.configure(&config.Events{Exec: []string{"/bin/sh", "-c", "echo $$ > " + pidFile + "; exec sleep 3600"}})
	s.enqueue(Event{Type: EventExpiring, Names: []string{"hang.test"}})
	out := filepath.Join(t.TempDir(), "events.log")
	s.configure(&config.Events{Exec: []string{writeEventScript(t, out)}})
	s.enqueue(Event{Type: EventRenewed, Names: []string{"next.test", "www.next.test"}})
	waitExecLine(t, out, EventRenewed, "next.test,www.next.test")

	// The next command runs once the hanging one has been waited for, so
	// by now it must be gone.
	b, err := os.ReadFile(pidFile)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	if len(strings.TrimSpace(string(b))) == 0 {
		t.Log("the hanging command was killed before it wrote its pid")
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pid file: %v", err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("the hanging command (pid %d) after the timeout: kill -0 says %v, want it gone", pid, err)
	}
}
