//go:build !race

package fleet

import "time"

// applyBound is how soon after a push every instance serves it: the watch
// reports the revision at once, the gateway's debounce applies it after
// 100 ms of quiet, then validate, compile and swap.
const applyBound = time.Second
