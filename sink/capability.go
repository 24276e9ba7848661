package sink

import (
	"context"
	"io"
	"time"
)

// Resumer is implemented by sinks that keep the bytes of a Put that failed
// or was cancelled, so a later run can continue where it stopped instead of
// transferring the whole object again.
//
// A typical resume:
//
//	p, err := r.Partial(ctx, key)
//	if p.Size > 0 && p.Validator == sourceETag && p.Total == sourceSize {
//		// fetch the source from byte p.Size (HTTP Range) and append it
//		info, err = r.PutFrom(ctx, key, p.Size, body, opts)
//	}
type Resumer interface {
	// Partial describes what an earlier unfinished write of key left behind
	// (the zero PartialInfo if none).
	Partial(ctx context.Context, key string) (PartialInfo, error)
	// PutFrom completes an unfinished write: it keeps the first off bytes of
	// the partial object (off must not exceed its size; anything after off is
	// dropped), appends r and commits the whole object atomically, like Put.
	// opts.Size, when >= 0, is the size of the whole object, not of r.
	// Info.SHA256 covers the whole object. If it fails, the bytes written so
	// far are kept for yet another attempt.
	PutFrom(ctx context.Context, key string, off int64, r io.Reader, opts PutOptions) (Info, error)
	// DiscardPartial drops what an unfinished write of key left behind.
	DiscardPartial(ctx context.Context, key string) error
}

// PartialInfo describes the bytes an unfinished write kept.
type PartialInfo struct {
	// Size is how many bytes from the start of the object are kept.
	Size int64
	// Total is the PutOptions.Size the write was given: the size of the
	// whole object, or -1 if it was not known.
	Total int64
	// Validator is the PutOptions.Validator the write was given.
	Validator string
	// Spans are the written ranges, sorted, when the sink keeps ranges
	// beyond Size (see RangeResumer); nil means just [0, Size).
	Spans []Span
}

// RangeResumer is implemented by RangeWriters whose unfinished objects keep
// the ranges written before a failure, a cancellation or a kill: Abort keeps
// them, and so does a checkpoint while the object is written. Partial
// reports them in Spans.
type RangeResumer interface {
	RangeWriter
	// Reopen continues key's unfinished object of size bytes: the Pending it
	// returns holds the spans Partial reports, and the caller writes the
	// rest. opts.Size must be size and opts.Validator the source's.
	Reopen(ctx context.Context, key string, size int64, opts PutOptions) (Pending, error)
}

// DefaultLockName is the lock name artifact-sync uses for a destination.
const DefaultLockName = "lock"

// Locker is implemented by sinks that can hand out an exclusive, named
// lease on the destination, so two runs do not write it at once.
type Locker interface {
	// Lock takes the lock called name (a single key segment, e.g.
	// DefaultLockName) for holder, a description of the caller such as
	// "host ci-7 pid 1234 run 5f3a". If someone else holds it, Lock fails with
	// a *LockedError naming them. ttl bounds how long a lease outlives a
	// holder that died without releasing it, where the sink needs that (S3);
	// the lease renews itself well before ttl until released.
	Lock(ctx context.Context, name, holder string, ttl time.Duration) (Lease, error)
}

// Lease is a lock held by this process.
type Lease interface {
	// Release gives the lock up. It is safe to call more than once.
	Release(ctx context.Context) error
	// Lost is closed if the lease was lost before Release, e.g. because a
	// renewal found someone else had taken it over; Err then says why.
	Lost() <-chan struct{}
	// Err is nil while the lease is held, and the reason it was lost after.
	Err() error
}

// Batcher is implemented by sinks that can leave the fsyncs that make an
// object durable to a later Sync, so that the many objects placed between
// two manifest writes share one flush to disk instead of two fsyncs each.
type Batcher interface {
	// Batch turns batching on, before the first Put, and reports whether
	// the sink batches (it may not, where nothing beats an fsync per file).
	// From then on Put and PutFrom return once the object is complete at
	// its key, safe from a crash of the process but not yet from a crash
	// of the machine.
	Batch() bool
	// Sync makes every object placed before it was called durable. If it
	// fails (a *FlushError names what it covered), those objects must be
	// taken as lost: a later Sync that succeeds does not cover them.
	Sync(ctx context.Context) error
}
