package tlsmgr

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// Limits of event delivery. A webhook gets webhookAttempts tries, each
// bounded by deliveryTimeout, with webhookBackoff doubling in between; a
// command gets one run bounded by deliveryTimeout.
const (
	deliveryTimeout = 10 * time.Second
	webhookAttempts = 4
	webhookBackoff  = time.Second
	// eventQueueSize bounds the events waiting for delivery; past it new
	// ones are dropped (and logged) rather than holding up issuance.
	eventQueueSize = 256
	// closeDrain is how long Close waits for queued events to go out.
	closeDrain = 5 * time.Second
)

// eventSink delivers Events to the configured webhook and command, one
// event at a time and in order, on its own goroutine: a slow or failing
// receiver never blocks issuance, only later events.
type eventSink struct {
	logger *slog.Logger
	// cfg is the events config in force, nil when none; Apply replaces
	// it, so a reload changes the receivers.
	cfg    atomic.Pointer[config.Events]
	client *http.Client
	// timeout, attempts and backoff are deliveryTimeout, webhookAttempts
	// and webhookBackoff; fields so tests shorten them.
	timeout  time.Duration
	attempts int
	backoff  time.Duration
	// sleep waits between webhook attempts and reports whether the wait
	// elapsed (ctx not done); [sleep] but in tests, which record the
	// waits instead of sleeping them.
	sleep func(ctx context.Context, d time.Duration) bool

	// mu guards closed and sending on queue.
	mu     sync.RWMutex
	closed bool
	queue  chan queued
	// ctx is cancelled when Close gives up waiting.
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

func newEventSink(logger *slog.Logger) *eventSink {
	ctx, cancel := context.WithCancel(context.Background())
	s := &eventSink{
		logger: logger,
		client: &http.Client{
			// A webhook that redirects is misconfigured; following it
			// would turn the POST into a GET.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		timeout: deliveryTimeout, attempts: webhookAttempts, backoff: webhookBackoff, sleep: sleep,
		queue: make(chan queued, eventQueueSize),
		ctx:   ctx, cancel: cancel, done: make(chan struct{}),
	}
	go s.run()
	return s
}

// configure sets the receivers; nil turns delivery off.
func (s *eventSink) configure(ev *config.Events) {
	if ev == nil || (ev.Webhook == "" && len(ev.Exec) == 0) {
		s.cfg.Store(nil)
		return
	}
	c := *ev
	c.Exec = append([]string(nil), ev.Exec...)
	s.cfg.Store(&c)
}

// queued is an event and the receivers in force when it happened.
type queued struct {
	ev  Event
	cfg *config.Events
}

// enqueue queues ev for delivery without blocking; a quiet event is not
// delivered.
func (s *eventSink) enqueue(ev Event) {
	cfg := s.cfg.Load()
	if cfg == nil || ev.quiet {
		return
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return
	}
	select {
	case s.queue <- queued{ev, cfg}:
	default:
		s.logger.Warn("event queue full; event not delivered", "event", ev.Type, "names", ev.Names)
	}
}

func (s *eventSink) run() {
	defer close(s.done)
	for q := range s.queue {
		s.deliver(s.ctx, q.cfg, q.ev)
	}
}

// close stops accepting events and waits up to closeDrain for the queued
// ones to be delivered.
func (s *eventSink) close() {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.queue)
	}
	s.mu.Unlock()
	t := time.NewTimer(closeDrain)
	defer t.Stop()
	select {
	case <-s.done:
	case <-t.C:
		s.logger.Warn("events still queued at shutdown; dropping them")
		s.cancel()
		<-s.done
	}
	s.cancel()
}

func (s *eventSink) deliver(ctx context.Context, cfg *config.Events, ev Event) {
	body, err := json.Marshal(ev)
	if err != nil {
		s.logger.Error("encoding event", "event", ev.Type, "error", err)
		return
	}
	if cfg.Webhook != "" {
		if err := s.post(ctx, cfg.Webhook, body); err != nil {
			s.logger.Error("delivering event to webhook", "event", ev.Type, "names", ev.Names, "error", err)
		}
	}
	if len(cfg.Exec) > 0 {
		if err := s.exec(ctx, cfg.Exec, ev, body); err != nil {
			s.logger.Error("running event command", "event", ev.Type, "names", ev.Names, "command", cfg.Exec[0], "error", err)
		}
	}
}

// post sends body to url, retrying with backoff until a 2xx answer or the
// attempts run out.
func (s *eventSink) post(ctx context.Context, url string, body []byte) error {
	wait := s.backoff
	var err error
	for attempt := 1; attempt <= s.attempts; attempt++ {
		if err = s.postOnce(ctx, url, body); err == nil {
			return nil
		}
		if attempt == s.attempts {
			break
		}
		s.logger.Warn("event webhook failed; will retry", "attempt", attempt, "retry_in", wait, "error", err)
		if !s.sleep(ctx, wait) {
			return ctx.Err()
		}
		wait *= 2
	}
	return fmt.Errorf("after %d attempts: %w", s.attempts, err)
}

func (s *eventSink) postOnce(ctx context.Context, url string, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "gatehouse")
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("webhook answered %s", resp.Status)
	}
	return nil
}

// exec runs the command with the event as JSON on stdin and its type and
// names in GATEHOUSE_EVENT and GATEHOUSE_NAMES (comma-separated).
func (s *eventSink) exec(ctx context.Context, argv []string, ev Event, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin = bytes.NewReader(body)
	cmd.Env = append(os.Environ(), "GATEHOUSE_EVENT="+ev.Type, "GATEHOUSE_NAMES="+strings.Join(ev.Names, ","))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// A child that keeps the output pipe open must not hold us past the
	// timeout.
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("timed out after %v", s.timeout)
	}
	if err != nil {
		msg := strings.TrimSpace(out.String())
		if len(msg) > 512 {
			msg = msg[:512] + "..."
		}
		if msg != "" {
			return fmt.Errorf("%w: %s", err, msg)
		}
		return err
	}
	return nil
}
