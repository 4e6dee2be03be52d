//go:build race

package fleet

import "time"

// applyBound under the race detector: the etcd members in this binary are
// instrumented too, and the few reads certificate management makes on
// each apply (its inventory) take some 400 ms each on a loaded machine.
const applyBound = 3 * time.Second
