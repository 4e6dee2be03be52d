package tlsmgr

import (
	"context"
	"math/rand/v2"
	"time"
)

// Default retry delays for obtaining a certificate: a CA that is down or
// rate limiting is retried soon at first, then at most every ten minutes.
const (
	defaultBackoffBase = 2 * time.Second
	defaultBackoffMax  = 10 * time.Minute
)

// backoff computes exponential delays with jitter, so many hosts failing
// together (the CA is down) do not retry in lockstep.
type backoff struct {
	base, max time.Duration
	attempt   int
}

// next returns the delay before the next attempt: base doubled per attempt,
// capped at max, of which the upper half is random.
func (b *backoff) next() time.Duration {
	d := b.max
	if b.attempt < 32 {
		if x := b.base << b.attempt; x > 0 && x < b.max {
			d = x
		}
	}
	b.attempt++
	half := d / 2
	return half + rand.N(half+1)
}

// sleep waits for d or until ctx is done, and reports whether d elapsed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
