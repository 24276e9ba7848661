package sink

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"slices"
	"sort"
	"sync"
)

// RangeWriter is implemented by sinks that can take an object of known size
// in pieces written at any offset, in any order and concurrently: what lets
// one large artifact be downloaded over several connections at once.
type RangeWriter interface {
	// Create starts an object of exactly size bytes at key. Nothing is
	// visible at key until Commit.
	Create(ctx context.Context, key string, size int64, opts PutOptions) (Pending, error)
}

// Pending is an object being written by pieces.
type Pending interface {
	// WriteAt writes p at off; it is safe for concurrent use on disjoint
	// ranges.
	io.WriterAt
	// Commit makes the object durable and atomically visible at its key, and
	// returns its Info with the SHA-256 of the whole content. The caller
	// must have written every byte exactly once.
	Commit(ctx context.Context) (Info, error)
	// Abort gives the object up; it is safe after Commit (then it does
	// nothing). A sink that implements RangeResumer keeps what was written
	// for Reopen (DiscardPartial drops it); others drop it.
	Abort() error
}

// Create implements RangeWriter: a temporary file of the full size under
// .artifact-sync/tmp, written in place and renamed on Commit. The SHA-256
// is computed as the file fills: a goroutine hashes the written prefix of
// the file (read back from the page cache) as soon as it grows, and starts
// its writes to disk, so Commit is left with little to hash and to sync
// when the pieces arrive roughly in order. At every checkpoint the
// written spans are made durable and described (see keptFile), so Abort,
// a kill or a power cut keeps them for Reopen.
func (l *Local) Create(ctx context.Context, key string, size int64, opts PutOptions) (Pending, error) {
	if err := l.checkKey(key); err != nil {
		return nil, err
	}
	if size < 0 {
		return nil, fmt.Errorf("create %s: size must be known", l.path(key))
	}
	opts.Size = size
	f, rel, err := l.newTemp()
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", l.path(key), err)
	}
	k := l.newKept(key, f, rel, opts)
	if err := f.Truncate(size); err != nil {
		k.discard()
		return nil, localErr(fmt.Errorf("create %s: %w", l.path(key), err))
	}
	return l.newPending(k, size, nil), nil
}

func (l *Local) newPending(k *keptFile, size int64, spans []Span) *localPending {
	p := &localPending{l: l, key: k.key, k: k, f: k.f, size: size, spans: spans, h: sha256.New(), hashed: make(chan struct{})}
	p.cond = sync.NewCond(&p.mu)
	go p.hash()
	return p
}

type localPending struct {
	l    *Local
	key  string
	k    *keptFile
	f    *os.File
	size int64
	once sync.Once
	done bool

	mu      sync.Mutex
	cond    *sync.Cond // signalled when the written prefix grows or on stop
	spans   []Span     // written ranges, sorted and merged
	unsaved int64      // bytes written since the last checkpoint
	stopped bool
	lost    bool // a checkpoint's fsync failed: nothing of the file is kept
	h       hash.Hash
	hashErr error
	hashed  chan struct{} // closed when hash returns
}

func (p *localPending) WriteAt(b []byte, off int64) (int, error) {
	if off < 0 || int64(len(b)) > p.size-off {
		return 0, fmt.Errorf("write %s: bytes %d-%d past the declared size %d", p.l.path(p.key), off, off+int64(len(b)), p.size)
	}
	n, err := p.f.WriteAt(b, off)
	if n > 0 {
		p.mu.Lock()
		if p.add(Span{off, off + int64(n)}) {
			p.cond.Signal()
		}
		p.unsaved += int64(n)
		if err == nil && p.k.due(p.unsaved) {
			var started bool
			if started, err = p.k.checkpointLater(slices.Clone(p.spans)); started {
				p.unsaved = 0
			}
			if errors.As(err, new(*FlushError)) {
				p.lost = true
			}
		}
		p.mu.Unlock()
	}
	return n, localErr(err)
}

// add records s as written and reports whether the prefix [0, x) written
// in full grew. Pieces are written front to back, so s almost always
// extends a span's end.
func (p *localPending) add(s Span) bool {
	before := prefixOf(p.spans)
	i := sort.Search(len(p.spans), func(i int) bool { return p.spans[i].To >= s.From })
	switch {
	case i < len(p.spans) && p.spans[i].From <= s.To:
		p.spans[i].From = min(p.spans[i].From, s.From)
		p.spans[i].To = max(p.spans[i].To, s.To)
	default:
		p.spans = slices.Insert(p.spans, i, s)
	}
	// Merge the grown span with those it now touches.
	for i+1 < len(p.spans) && p.spans[i+1].From <= p.spans[i].To {
		p.spans[i].To = max(p.spans[i].To, p.spans[i+1].To)
		p.spans = slices.Delete(p.spans, i+1, i+2)
	}
	return prefixOf(p.spans) > before
}

// hash follows the written prefix to the end of the file, hashing it and
// starting its writes to disk.
func (p *localPending) hash() {
	defer close(p.hashed)
	buf := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(buf)
	var done, kicked int64
	for done < p.size {
		p.mu.Lock()
		for prefixOf(p.spans) <= done && !p.stopped {
			p.cond.Wait()
		}
		end, stopped := prefixOf(p.spans), p.stopped
		p.mu.Unlock()
		if stopped {
			return
		}
		if _, err := io.CopyBuffer(p.h, io.NewSectionReader(p.f, done, end-done), *buf); err != nil {
			p.hashErr = err
			return
		}
		done = end
		if done-kicked >= writebackStep || done == p.size {
			startWriteback(p.f, kicked, done-kicked)
			kicked = done
		}
	}
}

// stop ends hash early.
func (p *localPending) stop() {
	p.mu.Lock()
	p.stopped = true
	p.cond.Broadcast()
	p.mu.Unlock()
	<-p.hashed
}

func (p *localPending) Commit(ctx context.Context) (Info, error) {
	dst := p.l.path(p.key)
	fail := func(err error) (Info, error) {
		p.Abort()
		return Info{}, localErr(fmt.Errorf("put %s: %w", dst, err))
	}
	p.mu.Lock()
	complete := prefixOf(p.spans) == p.size
	p.mu.Unlock()
	if !complete {
		return fail(ErrShortStream)
	}
	select {
	case <-p.hashed:
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	if p.hashErr != nil {
		return fail(p.hashErr)
	}
	fi, err := p.l.place(ctx, p.k)
	if errors.As(err, new(*FlushError)) {
		// Not kept for a resume: see Local.write.
		p.done = true
		p.k.discard()
		return Info{}, fmt.Errorf("put %s: %w", dst, err)
	}
	if err != nil {
		return fail(err)
	}
	p.done = true
	return Info{Key: p.key, Size: p.size, SHA256: hex.EncodeToString(p.h.Sum(nil)), ModTime: fi.ModTime()}, nil
}

// Abort keeps what was written for Reopen.
func (p *localPending) Abort() error {
	if p.done {
		return nil
	}
	p.once.Do(func() {
		p.stop()
		p.mu.Lock()
		spans, lost := slices.Clone(p.spans), p.lost
		p.mu.Unlock()
		if lost {
			// A file whose flush failed may have lost pages that the
			// kernel now calls clean; a second fsync, to keep it, would
			// prove nothing (see Local.write).
			p.k.discard()
			return
		}
		p.k.keep(spans)
	})
	return nil
}
