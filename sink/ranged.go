package sink

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
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
	// Abort drops the object; it is safe after Commit (then it does nothing).
	Abort() error
}

// Create implements RangeWriter: a temporary file of the full size under
// .artifact-sync/tmp, written in place, hashed, synced and renamed on Commit.
func (l *Local) Create(ctx context.Context, key string, size int64, opts PutOptions) (Pending, error) {
	if err := l.checkKey(key); err != nil {
		return nil, err
	}
	if size < 0 {
		return nil, fmt.Errorf("create %s: size must be known", l.path(key))
	}
	f, err := l.newTemp()
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", l.path(key), err)
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, localErr(fmt.Errorf("create %s: %w", l.path(key), err))
	}
	return &localPending{l: l, key: key, f: f, size: size}, nil
}

type localPending struct {
	l    *Local
	key  string
	f    *os.File
	size int64
	once sync.Once
	done bool
}

func (p *localPending) WriteAt(b []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(b)) > p.size {
		return 0, fmt.Errorf("write %s: bytes %d-%d past the declared size %d", p.l.path(p.key), off, off+int64(len(b)), p.size)
	}
	n, err := p.f.WriteAt(b, off)
	return n, localErr(err)
}

func (p *localPending) Commit(ctx context.Context) (Info, error) {
	dst := p.l.path(p.key)
	fail := func(err error) (Info, error) {
		p.Abort()
		return Info{}, localErr(fmt.Errorf("put %s: %w", dst, err))
	}
	if err := p.f.Sync(); err != nil {
		return fail(err)
	}
	// Hash what is on disk: the pieces arrived out of order.
	h := sha256.New()
	buf := make([]byte, 256<<10)
	n, err := io.CopyBuffer(h, io.NewSectionReader(p.f, 0, p.size), buf)
	if err != nil {
		return fail(err)
	}
	if n != p.size {
		return fail(ErrShortStream)
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	fi, err := p.f.Stat()
	if err != nil {
		return fail(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fail(err)
	}
	if err := os.Rename(p.f.Name(), dst); err != nil {
		return fail(err)
	}
	p.done = true
	p.f.Close()
	if err := syncDir(filepath.Dir(dst)); err != nil {
		return Info{}, localErr(fmt.Errorf("put %s: %w", dst, err))
	}
	p.l.removePartial(p.key)
	return Info{Key: p.key, Size: p.size, SHA256: hex.EncodeToString(h.Sum(nil)), ModTime: fi.ModTime()}, nil
}

func (p *localPending) Abort() error {
	if p.done {
		return nil
	}
	p.once.Do(func() {
		p.f.Close()
		os.Remove(p.f.Name())
	})
	return nil
}
