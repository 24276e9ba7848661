package sync

import (
	"context"
	"os"
	"time"
)

// signalBurst is how long after a first SIGINT or SIGTERM further ones
// count as the same. One sender's burst (GNU timeout signals the child,
// then its process group; a process manager that signals the group)
// arrives within microseconds, and a person who presses Ctrl-C again to
// stop at once does so after a reaction time of about 200 ms or more, so
// 150 ms tells them apart. Counting a quick second press as the first is
// safe: the run is already stopping, and one more press stops it at once.
const signalBurst = 150 * time.Millisecond

// OnInterrupt waits on sigs (SIGINT and SIGTERM) and calls cancel at the
// first, so that the run stops, records what finished and releases its
// lock; then again at a later one, which asks to stop at once. Signals
// within signalBurst of the first are the same request: GNU timeout
// signals its child and then its process group, so the tool gets two
// microseconds apart.
func OnInterrupt(sigs <-chan os.Signal, cancel context.CancelFunc, again func()) {
	<-sigs
	cancel()
	burst := time.After(signalBurst)
	for later := false; !later; {
		select {
		case <-burst:
			burst = nil // blocks from now on
		case <-sigs:
			later = burst == nil
		}
	}
	again()
}
