package sync

import (
	"context"
	"fmt"
	"time"
)

// NotStarted counts the artifacts the run did not get to: neither
// transferred, already done, failed nor in flight when it stopped.
func (s *Summary) NotStarted() int {
	return max(0, s.Artifacts-s.Transferred-s.Skipped-s.artifactsFailed()-s.InFlight)
}

// Unfinished is how the summary line ends for a run that left artifacts to
// the next one: ", in flight: 1 (12.0 MiB kept for resume), 3 not started";
// "" when it left none. A file stopped at 95 % is in flight, not "not
// started": the next run fetches only the rest of it.
func (s *Summary) Unfinished() string {
	var text string
	if s.InFlight > 0 {
		text += fmt.Sprintf(", in flight: %d (%s kept for resume)", s.InFlight, HumanBytes(s.KeptBytes))
	}
	if n := s.NotStarted(); n > 0 {
		text += fmt.Sprintf(", %d not started", n)
	}
	return text
}

// failUnfinished counts what the run did not finish, in flight or not
// started, as failed: for a run a lost lock or a failing disk stopped.
func (s *Summary) failUnfinished() {
	s.Failed += s.NotStarted() + s.InFlight
	s.InFlight = 0
}

// noteKept notes that an attempt at a, which has its download slot,
// continues n bytes kept before it (0: it starts from the first byte). The fewest any attempt continued are
// the bytes an earlier run kept that this transfer did not download.
func (a *Artifact) noteKept(n int64) {
	if !a.looked || n < a.earlier {
		a.earlier, a.looked = n, true
	}
}

// newBytes is how many of the size bytes a holds at the destination its
// transfer in this run downloaded.
func (a *Artifact) newBytes(size int64) int64 {
	if !a.looked {
		return 0 // no attempt got a download slot: what is kept is older
	}
	return max(0, size-a.earlier)
}

// inFlight counts a, whose transfer the end of the run cut short, as in
// flight, with what the destination keeps of it for the next run: unless
// it was still waiting for a download slot with nothing kept, and so not
// started.
func (e *engine) inFlight(ctx context.Context, a *Artifact) {
	kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	kept := e.kept(kctx, a)
	if !a.looked && kept == 0 {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.sum.InFlight++
	e.sum.KeptBytes += kept
	e.sum.Bytes += a.newBytes(kept)
}
