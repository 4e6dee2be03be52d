//go:build race

package fleet

import "time"

// applyBound under the race detector: the etcd members in this binary are
// instrumented too, and with `go test -race ./...` running every package
// at once on two cores, each of the few reads certificate management makes
// on every apply (its inventory scan, before the swap) takes 400 ms or
// more. The bound then only holds that the watch, not some later poll,
// brings the revision.
const applyBound = 10 * time.Second
