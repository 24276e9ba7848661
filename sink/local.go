package sink

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"os"
	"path/filepath"
	"strings"
	stdsync "sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Local is a Sink that writes below a directory on the local filesystem.
//
// Put streams into a temporary file in DIR/.artifact-sync/tmp (the same
// filesystem as the destination), hashing as it goes, then fsyncs it,
// renames it into place and fsyncs the directory, so a crash leaves either
// the old object or the new one. Directories are created with mode 0o755
// and files with 0o644, both less the process umask.
//
// A write that fails or is cancelled keeps the bytes it received in
// DIR/.artifact-sync/partial/<sha256 of the key> (with the source's
// validator beside it) for Resumer.PutFrom; a stream longer than declared
// keeps nothing. Lock uses flock(2) on DIR/.artifact-sync/<name>, which the
// kernel releases when the process dies.
//
// Full disks, read-only filesystems, quota and permission errors are
// permanent (IsPermanent) and name the path.
type Local struct {
	root string

	// partials says whether partial writes may exist, so that the many
	// transfers of a run that has none (almost every run) skip the
	// syscalls of looking for and removing them.
	partials atomic.Int32 // partialsUnknown, partialsNone or partialsSome
	tmpReady atomic.Bool  // DEST/.artifact-sync/tmp was created
}

const (
	partialsUnknown = iota
	partialsNone
	partialsSome
)

// mayHavePartials reports whether a partial write may exist: false once the
// partial folder was found empty or missing, until this Local keeps one.
func (l *Local) mayHavePartials() bool {
	switch l.partials.Load() {
	case partialsNone:
		return false
	case partialsSome:
		return true
	}
	var names []string
	d, err := os.Open(l.stateDir("partial"))
	if err == nil {
		names, _ = d.Readdirnames(1)
		d.Close()
	}
	if errors.Is(err, fs.ErrNotExist) || (err == nil && len(names) == 0) {
		// Unless keepPartial stored one meanwhile.
		l.partials.CompareAndSwap(partialsUnknown, partialsNone)
		return l.partials.Load() != partialsNone
	}
	if err == nil {
		l.partials.Store(partialsSome)
	}
	return true
}

var (
	_ Sink    = (*Local)(nil)
	_ Resumer = (*Local)(nil)
	_ Locker  = (*Local)(nil)
)

// NewLocal returns a sink writing below dir, creating dir if it does not
// exist. dir must be (or become) a directory.
func NewLocal(dir string) (*Local, error) {
	if dir == "" {
		return nil, &PermanentError{Err: errors.New("local destination: empty path")}
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("local destination %s: %w", dir, err)
	}
	fi, err := os.Stat(abs)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(abs, 0o755); err != nil {
			return nil, localErr(fmt.Errorf("create destination directory: %w", err))
		}
		fi, err = os.Stat(abs)
	}
	if err != nil {
		return nil, localErr(fmt.Errorf("local destination: %w", err))
	}
	if !fi.IsDir() {
		return nil, &PermanentError{Err: fmt.Errorf("local destination %s is not a directory; pass a directory (or a path that does not exist yet) to --to", abs)}
	}
	return &Local{root: abs}, nil
}

func (l *Local) String() string { return l.root }

// path maps a valid key to its file.
func (l *Local) path(key string) string { return filepath.Join(l.root, filepath.FromSlash(key)) }

func (l *Local) stateDir(sub string) string { return filepath.Join(l.root, stateDir, sub) }

// isInternal reports keys the local sink keeps for itself.
func isInternal(key string) bool {
	return strings.HasPrefix(key, stateDir+"/tmp/") || strings.HasPrefix(key, stateDir+"/partial/")
}

func (l *Local) checkKey(key string) error {
	if err := ValidKey(key); err != nil {
		return err
	}
	if isInternal(key) {
		return &PermanentError{Err: fmt.Errorf("%w %q: reserved for the tool's own state", ErrInvalidKey, key)}
	}
	return nil
}

// localErr marks errors that retrying cannot fix as permanent.
func localErr(err error) error {
	if err != nil && permanentOSError(err) && !IsPermanent(err) {
		return &PermanentError{Err: err}
	}
	return err
}

// newTemp creates an empty file in the tmp directory. O_EXCL with mode 0o644
// lets the kernel apply the umask, unlike os.CreateTemp's 0o600.
func (l *Local) newTemp() (*os.File, error) {
	dir := l.stateDir("tmp")
	for range 10 {
		if !l.tmpReady.Load() {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return nil, localErr(err)
			}
			l.tmpReady.Store(true)
		}
		name := filepath.Join(dir, rand.Text())
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		switch {
		case errors.Is(err, fs.ErrExist):
			continue
		case errors.Is(err, fs.ErrNotExist):
			l.tmpReady.Store(false) // someone removed it: create it again
			continue
		}
		return f, localErr(err)
	}
	return nil, fmt.Errorf("create temporary file in %s: too many collisions", dir)
}

// Put implements Sink.
func (l *Local) Put(ctx context.Context, key string, r io.Reader, opts PutOptions) (Info, error) {
	if err := l.checkKey(key); err != nil {
		return Info{}, err
	}
	f, err := l.newTemp()
	if err != nil {
		return Info{}, fmt.Errorf("put %s: %w", l.path(key), err)
	}
	return l.write(ctx, l.newKept(key, f, opts), newCheckedReader(ctx, r, opts.Size, 0, nil))
}

// write streams cr to the end of k's file and commits it at its key; on
// failure it keeps what was written as the key's partial.
func (l *Local) write(ctx context.Context, k *keptFile, cr *checkedReader) (Info, error) {
	dst := l.path(k.key)
	w := &writebackWriter{k: k, kicked: cr.n, wrote: cr.n, saved: cr.n}
	info, err := l.commit(ctx, k, w, cr)
	if err == nil {
		return info, nil
	}
	if errors.Is(err, ErrLongStream) {
		k.discard()
	} else {
		k.keep(w.spans())
	}
	return Info{}, localErr(fmt.Errorf("put %s: %w", dst, err))
}

func (l *Local) commit(ctx context.Context, k *keptFile, w *writebackWriter, cr *checkedReader) (Info, error) {
	buf := copyBuffers.Get().(*[]byte)
	_, err := io.CopyBuffer(w, cr, *buf)
	copyBuffers.Put(buf)
	if err != nil {
		return Info{}, err
	}
	if err := ctx.Err(); err != nil {
		return Info{}, err
	}
	fi, err := l.place(ctx, k)
	if err != nil {
		return Info{}, err
	}
	return Info{Key: k.key, Size: fi.Size(), SHA256: cr.sum(), ModTime: fi.ModTime()}, nil
}

// place makes k's complete file durable and moves it to its key: fsync,
// rename into place, close, fsync the folder.
func (l *Local) place(ctx context.Context, k *keptFile) (fs.FileInfo, error) {
	f := k.f
	if err := f.Sync(); err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// Most keys go to folders that exist by now: create the folder only
	// when the rename says it is missing.
	dst := l.path(k.key)
	err = os.Rename(k.path, dst)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return nil, err
		}
		err = os.Rename(k.path, dst)
	}
	if err != nil {
		return nil, err
	}
	k.path = dst
	f.Close()
	k.placed()
	return fi, syncDir(filepath.Dir(dst))
}

// copyBuffers are the buffers commit copies through: big enough that a
// large file moves in few syscalls, reused so that thousands of small files
// do not each allocate (and zero) one.
var copyBuffers = stdsync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// writebackStep is how much of a file arrives between two requests to the
// kernel to start writing it to disk.
const writebackStep = 8 << 20

// writebackWriter writes to the end of a kept file and starts the disk
// writes of every writebackStep bytes as they arrive, so that a large file's
// fsync does not have to write it all at the end; every checkpointStep bytes
// it checkpoints the file, so a kill keeps what arrived. It hides
// *os.File's ReadFrom, so io.CopyBuffer uses our buffer and the checked
// reader sees every read.
type writebackWriter struct {
	k                    *keptFile
	kicked, wrote, saved int64 // offsets: writeback started below kicked; written below wrote; checkpointed below saved
}

func (w *writebackWriter) Write(p []byte) (int, error) {
	n, err := w.k.f.Write(p)
	w.wrote += int64(n)
	if w.wrote-w.kicked >= writebackStep {
		startWriteback(w.k.f, w.kicked, w.wrote-w.kicked)
		w.kicked = w.wrote
	}
	if err == nil && w.wrote-w.saved >= checkpointStep {
		err = w.k.checkpoint(w.spans())
		w.saved = w.wrote
	}
	return n, err
}

// spans is what was written.
func (w *writebackWriter) spans() []Span {
	if w.wrote == 0 {
		return nil
	}
	return []Span{{0, w.wrote}}
}

func writeFileAtomic(l *Local, path string, data []byte) error {
	f, err := l.newTemp()
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// PutFrom implements Resumer.
func (l *Local) PutFrom(ctx context.Context, key string, off int64, r io.Reader, opts PutOptions) (Info, error) {
	if err := l.checkKey(key); err != nil {
		return Info{}, err
	}
	dst := l.path(key)
	if off == 0 {
		l.removePartial(key)
		return l.Put(ctx, key, r, opts)
	}
	k, spans, err := l.claimPartial(key, off, opts)
	if err != nil {
		return Info{}, fmt.Errorf("resume %s: %w", dst, err)
	}
	if prefixOf(spans) < off {
		k.keep(spans)
		return Info{}, fmt.Errorf("resume %s: only %d bytes kept, cannot resume at byte %d", dst, prefixOf(spans), off)
	}
	h := sha256.New()
	err = k.f.Truncate(off)
	if err == nil {
		_, err = io.Copy(h, io.NewSectionReader(k.f, 0, off))
	}
	if err == nil {
		_, err = k.f.Seek(off, io.SeekStart)
	}
	if err != nil {
		k.keep(spans)
		return Info{}, localErr(fmt.Errorf("resume %s: %w", dst, err))
	}
	return l.write(ctx, k, newCheckedReader(ctx, r, opts.Size, off, h))
}

// notExist turns "a parent is a file" and "is a directory" into not-exist.
func notExist(op, key string, err error) error {
	if errors.Is(err, syscall.ENOTDIR) {
		return &fs.PathError{Op: op, Path: key, Err: fs.ErrNotExist}
	}
	return localErr(err)
}

// Stat implements Sink. It reads only the file's metadata, so SHA256 is
// empty.
func (l *Local) Stat(ctx context.Context, key string) (Info, error) {
	if err := l.checkKey(key); err != nil {
		return Info{}, err
	}
	fi, err := os.Stat(l.path(key))
	if err != nil {
		return Info{}, notExist("stat", l.path(key), err)
	}
	if !fi.Mode().IsRegular() {
		return Info{}, &fs.PathError{Op: "stat", Path: l.path(key), Err: fs.ErrNotExist}
	}
	return Info{Key: key, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// Open implements Sink.
func (l *Local) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := l.checkKey(key); err != nil {
		return nil, err
	}
	f, err := os.Open(l.path(key))
	if err != nil {
		return nil, notExist("open", l.path(key), err)
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, &fs.PathError{Op: "open", Path: l.path(key), Err: fs.ErrNotExist}
	}
	return f, nil
}

// Delete implements Sink. It also removes directories the deletion left
// empty, up to (not including) the destination itself.
func (l *Local) Delete(ctx context.Context, key string) error {
	if err := l.checkKey(key); err != nil {
		return err
	}
	p := l.path(key)
	fi, err := os.Lstat(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return nil
		}
		return localErr(err)
	}
	if fi.IsDir() {
		return nil
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return localErr(err)
	}
	state := filepath.Join(l.root, stateDir)
	for dir := filepath.Dir(p); dir != l.root && dir != state && strings.HasPrefix(dir, l.root); dir = filepath.Dir(dir) {
		if os.Remove(dir) != nil {
			break
		}
	}
	return nil
}

// List implements Sink. It walks only the directory the prefix names and
// yields regular files; the tool's state directory is left out unless the
// prefix lies in it.
func (l *Local) List(ctx context.Context, prefix string) iter.Seq2[Info, error] {
	return func(yield func(Info, error) bool) {
		start := l.root
		if i := strings.LastIndexByte(prefix, '/'); i > 0 && ValidKey(prefix[:i]) == nil {
			start = l.path(prefix[:i])
		}
		inState := isReserved(prefix)
		err := filepath.WalkDir(start, func(path string, d fs.DirEntry, err error) error {
			if cerr := ctx.Err(); cerr != nil {
				return cerr
			}
			if err != nil {
				if path == start && errors.Is(err, fs.ErrNotExist) {
					return filepath.SkipAll
				}
				if !yield(Info{}, err) {
					return filepath.SkipAll
				}
				return nil
			}
			rel, rerr := filepath.Rel(l.root, path)
			if rerr != nil || rel == "." {
				return nil
			}
			key := filepath.ToSlash(rel)
			if d.IsDir() {
				if (key == stateDir && !inState) || isInternal(key+"/") {
					return filepath.SkipDir
				}
				return nil
			}
			if !d.Type().IsRegular() || !strings.HasPrefix(key, prefix) || ValidKey(key) != nil {
				return nil
			}
			fi, err := d.Info()
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				if !yield(Info{}, err) {
					return filepath.SkipAll
				}
				return nil
			}
			if !yield(Info{Key: key, Size: fi.Size(), ModTime: fi.ModTime()}, nil) {
				return filepath.SkipAll
			}
			return nil
		})
		if err != nil {
			yield(Info{}, localErr(err))
		}
	}
}

// Lock implements Locker with flock(2) on DIR/.artifact-sync/<name>. The
// holder and time are written into the file for the message others get. ttl
// is ignored: the kernel drops the lock when the process dies.
func (l *Local) Lock(ctx context.Context, name, holder string, ttl time.Duration) (Lease, error) {
	if err := validLockName(name); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	dir := filepath.Join(l.root, stateDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, localErr(fmt.Errorf("lock: %w", err))
	}
	lease, err := lockFile(filepath.Join(dir, name), name, holder)
	if err == nil && name == DefaultLockName {
		l.removeStaleTemps()
		l.cleanPartials()
	}
	return lease, err
}

// removeStaleTemps deletes the temporary files a killed run left in
// DEST/.artifact-sync/tmp. Only the holder of the destination's lock writes
// there, so once it is held, every file in tmp is a leftover (a large one
// can be gigabytes). Partial writes kept for resuming live in partial/ and
// stay.
func (l *Local) removeStaleTemps() {
	dir := l.stateDir("tmp")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if e.Type().IsRegular() {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// lockRecord is what a lock file or lease object says about its holder.
type lockRecord struct {
	Holder  string    `json:"holder"`
	Since   time.Time `json:"since"`
	Expires time.Time `json:"expires,omitzero"` // S3 leases only
	Token   string    `json:"token,omitempty"`  // S3 leases only: tells our own writes apart
	// PID and Scope (see processScope) let a run on the same machine take
	// over the S3 lease of a holder that was killed, without waiting for it
	// to expire.
	PID   int    `json:"pid,omitempty"`
	Scope string `json:"scope,omitempty"`
}

// localLease is a held flock.
type localLease struct {
	f    *os.File
	lost chan struct{}
}

func (l *localLease) Lost() <-chan struct{} { return l.lost }
func (l *localLease) Err() error            { return nil }

func (l *localLease) Release(ctx context.Context) error {
	if l.f == nil {
		return nil
	}
	f := l.f
	l.f = nil
	f.Truncate(0)
	return f.Close() // closing the last descriptor drops the flock
}
