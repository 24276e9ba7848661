package sink

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
)

// Memory is a Sink that keeps objects in memory: a fake for tests of code
// that writes to a sink. It passes the same conformance suite as the real
// sinks and implements Resumer and Locker. The zero value is not usable;
// call NewMemory.
type Memory struct {
	mu      sync.Mutex
	objects map[string]memObject
	partial map[string]memPartial
	locks   map[string]*memLease
}

type memObject struct {
	data    []byte
	sha256  string
	modTime time.Time
}

type memPartial struct {
	data      []byte
	validator string
	total     int64
}

var (
	_ Sink    = (*Memory)(nil)
	_ Resumer = (*Memory)(nil)
	_ Locker  = (*Memory)(nil)
)

// NewMemory returns an empty in-memory sink.
func NewMemory() *Memory {
	return &Memory{
		objects: map[string]memObject{},
		partial: map[string]memPartial{},
		locks:   map[string]*memLease{},
	}
}

func (m *Memory) String() string { return "memory" }

// Put implements Sink.
func (m *Memory) Put(ctx context.Context, key string, r io.Reader, opts PutOptions) (Info, error) {
	if err := ValidKey(key); err != nil {
		return Info{}, err
	}
	return m.put(ctx, key, nil, r, opts)
}

func (m *Memory) put(ctx context.Context, key string, prefix []byte, r io.Reader, opts PutOptions) (Info, error) {
	h := sha256.New()
	h.Write(prefix)
	cr := newCheckedReader(ctx, r, opts.Size, int64(len(prefix)), h)
	buf := bytes.NewBuffer(prefix)
	_, err := io.Copy(buf, cr)
	if err == nil {
		err = ctx.Err()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		if errors.Is(err, ErrLongStream) {
			delete(m.partial, key)
		} else {
			m.partial[key] = memPartial{data: buf.Bytes(), validator: opts.Validator, total: opts.Size}
		}
		return Info{}, fmt.Errorf("put %q: %w", key, err)
	}
	o := memObject{data: buf.Bytes(), sha256: cr.sum(), modTime: time.Now()}
	m.objects[key] = o
	delete(m.partial, key)
	return o.info(key), nil
}

func (o memObject) info(key string) Info {
	return Info{Key: key, Size: int64(len(o.data)), SHA256: o.sha256, ModTime: o.modTime}
}

// Stat implements Sink.
func (m *Memory) Stat(ctx context.Context, key string) (Info, error) {
	if err := ValidKey(key); err != nil {
		return Info{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.objects[key]
	if !ok {
		return Info{}, &fs.PathError{Op: "stat", Path: key, Err: fs.ErrNotExist}
	}
	return o.info(key), nil
}

// Open implements Sink.
func (m *Memory) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := ValidKey(key); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.objects[key]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: key, Err: fs.ErrNotExist}
	}
	return io.NopCloser(bytes.NewReader(o.data)), nil
}

// Delete implements Sink.
func (m *Memory) Delete(ctx context.Context, key string) error {
	if err := ValidKey(key); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.objects, key)
	return nil
}

// List implements Sink. It yields a snapshot taken when iteration starts.
func (m *Memory) List(ctx context.Context, prefix string) iter.Seq2[Info, error] {
	return func(yield func(Info, error) bool) {
		m.mu.Lock()
		var infos []Info
		for _, k := range slices.Sorted(maps.Keys(m.objects)) {
			if strings.HasPrefix(k, prefix) && (!isReserved(k) || isReserved(prefix)) {
				infos = append(infos, m.objects[k].info(k))
			}
		}
		m.mu.Unlock()
		for _, info := range infos {
			if err := ctx.Err(); err != nil {
				yield(Info{}, err)
				return
			}
			if !yield(info, nil) {
				return
			}
		}
	}
}

// Partial implements Resumer.
func (m *Memory) Partial(ctx context.Context, key string) (PartialInfo, error) {
	if err := ValidKey(key); err != nil {
		return PartialInfo{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.partial[key]
	if !ok {
		return PartialInfo{}, nil
	}
	return PartialInfo{Size: int64(len(p.data)), Total: p.total, Validator: p.validator}, nil
}

// PutFrom implements Resumer.
func (m *Memory) PutFrom(ctx context.Context, key string, off int64, r io.Reader, opts PutOptions) (Info, error) {
	if err := ValidKey(key); err != nil {
		return Info{}, err
	}
	m.mu.Lock()
	p := m.partial[key]
	m.mu.Unlock()
	if off < 0 || off > int64(len(p.data)) {
		return Info{}, fmt.Errorf("resume %q at byte %d: only %d bytes kept", key, off, len(p.data))
	}
	return m.put(ctx, key, slices.Clip(p.data[:off:off]), r, opts)
}

// DiscardPartial implements Resumer.
func (m *Memory) DiscardPartial(ctx context.Context, key string) error {
	if err := ValidKey(key); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.partial, key)
	return nil
}

// Lock implements Locker. The lease lasts until released; ttl is ignored
// because a memory sink dies with its holder.
func (m *Memory) Lock(ctx context.Context, name, holder string, ttl time.Duration) (Lease, error) {
	if err := validLockName(name); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if l, ok := m.locks[name]; ok {
		return nil, &LockedError{Name: name, Holder: l.holder, Since: l.since}
	}
	l := &memLease{m: m, name: name, holder: holder, since: time.Now(), lost: make(chan struct{})}
	m.locks[name] = l
	return l, nil
}

type memLease struct {
	m      *Memory
	name   string
	holder string
	since  time.Time
	lost   chan struct{}
}

func (l *memLease) Release(ctx context.Context) error {
	l.m.mu.Lock()
	defer l.m.mu.Unlock()
	if l.m.locks[l.name] == l {
		delete(l.m.locks, l.name)
	}
	return nil
}

func (l *memLease) Lost() <-chan struct{} { return l.lost }
func (l *memLease) Err() error            { return nil }
