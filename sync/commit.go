package sync

import (
	"context"
	"log/slog"
	stdsync "sync"
	"time"

	"github.com/artifact-sync/artifact-sync/manifest"
)

// committer makes manifest records durable in groups. The manifest writes
// what is recorded once a second on its own; a run killed within that second
// would fetch again everything that finished in it, which for small files is
// hundreds. So no more than limit records may wait for their journal: the
// transfer whose record goes over the limit writes one journal for every
// record waiting (group commit), and the transfers that finish meanwhile wait
// for it. A run killed at any instant thus leaves at most limit finished
// transfers, besides those in flight, to fetch again, at the cost of one
// journal write per limit transfers.
//
// A journal write that fails (a 503 from S3, a reset) stops nothing: its
// records stay pending in the manifest, the run goes on, and the write is
// tried again with backoff; only a manifest that cannot be closed at the
// end fails the run.
type committer struct {
	man   *manifest.Manifest
	limit uint64
	log   *slog.Logger
	disk  *disk // nil in tests of the committer alone

	mu       stdsync.Mutex
	recorded uint64        // records made
	durable  uint64        // records known to be in the store
	flushing chan struct{} // closed when the journal write under way ends; nil if none
	failures int           // journal writes failed in a row
	retryAt  time.Time     // no journal write before then, after failures
}

// record records e, the transfer of a, and waits until at most limit
// records are not yet durable. An artifact whose key a failed flush covered
// is not recorded: its error is a *fatalArtifact.
func (c *committer) record(ctx context.Context, a *Artifact, e manifest.Entry) error {
	c.mu.Lock()
	// Counted under mu with the Record itself, so that a flush that starts
	// after reading recorded holds every record it counts.
	if err := c.disk.record(a, e.Size, func() error { return c.man.Record(e) }); err != nil {
		c.mu.Unlock()
		return err
	}
	c.recorded++
	n := c.recorded
	c.mu.Unlock()
	if n <= c.limit {
		return nil
	}
	return c.sync(ctx, n-c.limit)
}

// sync waits until the first n records are durable, writing a journal if no
// write under way covers them. An interrupt does not cut the write short:
// the records are worth keeping.
func (c *committer) sync(ctx context.Context, n uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.durable < n {
		if time.Now().Before(c.retryAt) {
			return nil // the store is failing: the records wait in memory
		}
		if ch := c.flushing; ch != nil {
			c.mu.Unlock()
			<-ch
			c.mu.Lock()
			continue
		}
		ch := make(chan struct{})
		c.flushing = ch
		target := c.recorded
		c.mu.Unlock()
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		err := c.man.Flush(fctx)
		cancel()
		c.mu.Lock()
		c.flushing = nil
		close(ch)
		if err != nil {
			c.failures++
			wait := min(time.Second<<min(c.failures-1, 5), 30*time.Second)
			c.retryAt = time.Now().Add(wait)
			c.log.Warn("writing the manifest failed; the run goes on and tries again", "error", err, "retry_in", wait)
			return nil
		}
		c.failures, c.retryAt = 0, time.Time{}
		c.durable = max(c.durable, target)
	}
	return nil
}
