package tlsmgr

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// obtainer runs one background loop per ACME host that obtains the host's
// certificate, retrying with backoff until it succeeds. One loop per host
// means one slow CA response or one broken host never delays the others.
// It is shared by both engines; what "obtain" and "forget" mean is theirs.
type obtainer struct {
	logger *slog.Logger
	// obtain gets (or loads from storage) the certificate of host. It must
	// honour ctx.
	obtain func(ctx context.Context, host string) error
	// forget stops the engine's upkeep of hosts no longer configured.
	forget func(hosts []string)
	// base and max bound the retry delays; fields so tests shorten them.
	base, max time.Duration

	// ctx is the parent of every loop; cancel ends them all (Close).
	ctx    context.Context
	cancel context.CancelFunc
	// wg counts running loops.
	wg sync.WaitGroup

	// mu guards loops and closed, and serialises set and stop so a host
	// removed and re-added is never handled by two loops at once.
	mu     sync.Mutex
	loops  map[string]*hostLoop
	closed bool
}

// hostLoop is the loop of one host.
type hostLoop struct {
	cancel context.CancelFunc
	done   chan struct{} // closed when the loop returns
}

func newObtainer(logger *slog.Logger, base, max time.Duration, obtain func(context.Context, string) error, forget func([]string)) *obtainer {
	ctx, cancel := context.WithCancel(context.Background())
	return &obtainer{
		logger: logger, obtain: obtain, forget: forget, base: base, max: max,
		ctx: ctx, cancel: cancel, loops: map[string]*hostLoop{},
	}
}

// set makes hosts the managed set: loops of removed hosts are cancelled and
// awaited, then forgotten by the engine; new hosts get a loop. Hosts kept
// are left alone (their certificate is already obtained or being obtained).
func (o *obtainer) set(hosts []string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return
	}
	var removed []string
	for host, l := range o.loops {
		if !slices.Contains(hosts, host) {
			l.cancel()
			<-l.done
			delete(o.loops, host)
			removed = append(removed, host)
		}
	}
	if len(removed) > 0 {
		slices.Sort(removed)
		o.forget(removed)
		o.logger.Info("certificates no longer managed", "hosts", removed)
	}
	for _, host := range hosts {
		if _, ok := o.loops[host]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(o.ctx)
		l := &hostLoop{cancel: cancel, done: make(chan struct{})}
		o.loops[host] = l
		o.wg.Add(1)
		go func() {
			defer o.wg.Done()
			defer close(l.done)
			o.run(ctx, host)
		}()
	}
}

// run obtains the certificate of host, retrying until it succeeds or ctx is
// done. Renewal afterwards is the engine's own business.
func (o *obtainer) run(ctx context.Context, host string) {
	b := backoff{base: o.base, max: o.max}
	for {
		err := o.obtain(ctx, host)
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			return
		}
		d := b.next()
		// A CA that says "rate limited" is left alone for as long as it
		// asks, never retried on the short backoff.
		wait, limited := rateLimited(err, time.Now())
		if be, ok := errors.AsType[*BudgetError](err); ok {
			// Every Issuer's budget is spent: wait until the last one
			// tried has room again.
			wait, limited = min(max(time.Until(be.Until), time.Second), maxRateLimitDelay), true
		}
		d = max(d, wait)
		o.logger.Warn("obtaining certificate failed; will retry", "host", host, "retry_in", d.Round(time.Millisecond).String(),
			"rate_limited", limited, "error", err)
		if !sleep(ctx, d) {
			return
		}
	}
}

// stop cancels every loop and waits for them.
func (o *obtainer) stop() {
	o.mu.Lock()
	o.closed = true
	o.mu.Unlock()
	o.cancel()
	o.wg.Wait()
}
