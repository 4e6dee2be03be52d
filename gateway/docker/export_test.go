package docker

import "time"

// The tests stop and restart the engine and run for seconds, not minutes:
// reconnect quickly, and resynchronise often enough that the periodic
// resync happens under their load.
func init() {
	maxBackoff = 300 * time.Millisecond
	resyncEvery = 2 * time.Second
}
