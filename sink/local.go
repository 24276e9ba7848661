package sink

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"os"
	"path"
	"path/filepath"
	"strings"
	stdsync "sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/artifact-sync/artifact-sync/manifest/durable"
)

// Local is a Sink that writes below a directory on the local filesystem.
//
// Every file operation goes through an os.Root opened on the directory, so
// no key, and no symbolic link met on the way, reaches outside it. Folders
// are checked as they are first used: a symbolic link, or a file where a
// folder is needed, fails the write of that key with ErrPathConflict (the
// link is never followed) instead of writing through it. Folders the sink
// creates are made durable in their parents (see durable.MkdirAll).
//
// Put streams into a temporary file in DIR/.artifact-sync/tmp (the same
// filesystem as the destination), hashing as it goes, then fsyncs it,
// renames it into place and fsyncs the directory, so a crash leaves either
// the old object or the new one. A key on another file system (a mount
// inside DIR) is placed by a copy beside it instead (placeAcross).
// Directories are created with mode 0o755 and files with 0o644, both less
// the process umask.
//
// A write that fails or is cancelled keeps the bytes it received in
// DIR/.artifact-sync/partial/<sha256 of the key>, described beside it
// (see keptFile), for Resumer.PutFrom and RangeResumer.Reopen; a stream
// longer than declared keeps nothing. Lock uses flock(2) (LockFileEx on
// Windows) on DIR/.artifact-sync/<name>, which the kernel releases when
// the process dies.
//
// Full disks, read-only filesystems, quota and permission errors are
// permanent (IsPermanent) and name the path.
type Local struct {
	dir  string   // the destination's absolute path, for messages
	root destRoot // every file operation goes through it

	mu   stdsync.Mutex
	dirs map[string]bool // folders (slash paths below dir) checked or made this run

	onSyncDir func(rel string) // tests: called after each folder sync
	// Tests: onSync sees (and may replace) the result of each batch
	// flush, and onStep each step of placing a file (fsync, rename,
	// syncdir) with the path it concerns.
	onSync func(error) error
	onStep func(step, rel string)

	// batch, if not nil, holds what was placed and awaits Sync (see
	// Batch): then files and folders are placed without their fsyncs.
	batch *batch

	// partials says whether partial writes may exist, so that the many
	// transfers of a run that has none (almost every run) skip the
	// syscalls of looking for and removing them.
	partials atomic.Int32 // partialsUnknown, partialsNone or partialsSome

	across acrossState // placeAcross: folders on other file systems

	fds *dirFDs // folders held open for creating and placing files
}

const (
	partialsUnknown = iota
	partialsNone
	partialsSome
)

// State folders, relative to the destination.
const (
	tmpDir     = stateDir + "/tmp"
	partialDir = stateDir + "/partial"
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
	d, err := l.root.Open(filepath.FromSlash(partialDir))
	if err == nil {
		names, _ = d.Readdirnames(1)
		d.Close()
	}
	if errors.Is(err, fs.ErrNotExist) || (err == nil && len(names) == 0) {
		// Unless a checkpoint stored one meanwhile.
		l.partials.CompareAndSwap(partialsUnknown, partialsNone)
		return l.partials.Load() != partialsNone
	}
	if err == nil {
		l.partials.Store(partialsSome)
	}
	return true
}

var (
	_ Sink         = (*Local)(nil)
	_ Resumer      = (*Local)(nil)
	_ RangeResumer = (*Local)(nil)
	_ Locker       = (*Local)(nil)
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
		if err := durable.MkdirAll(abs, 0o755); err != nil {
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
	root, err := os.OpenRoot(abs)
	if err != nil {
		return nil, localErr(fmt.Errorf("local destination: %w", err))
	}
	l := &Local{dir: abs, root: destRoot{root, abs}, dirs: map[string]bool{}}
	l.fds = newDirFDs(l)
	return l, nil
}

func (l *Local) String() string { return l.dir }

// path names a key's file in messages.
func (l *Local) path(key string) string { return filepath.Join(l.dir, filepath.FromSlash(key)) }

// native turns a slash path below the destination into the form os.Root
// takes.
func native(rel string) string {
	if rel == "" {
		return "."
	}
	return filepath.FromSlash(rel)
}

// isInternal reports keys the local sink keeps for itself.
func isInternal(key string) bool {
	return strings.HasPrefix(key, tmpDir+"/") || strings.HasPrefix(key, partialDir+"/")
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

// localErr tells file-system errors as sentences with their fix (see
// explainFS) and marks errors that retrying cannot fix as permanent. A failed
// flush is not one of them, whatever its errno (ENOSPC from an fsync is
// writeback failing, not a full file system): it fails what it covered,
// and the caller decides whether the destination keeps failing.
func localErr(err error) error {
	err = explainFS(err)
	if err != nil && permanentOSError(err) && !IsPermanent(err) && !errors.Is(err, ErrPathConflict) && !errors.As(err, new(*FlushError)) {
		return &PermanentError{Err: err}
	}
	return err
}

// conflict is the error of a key whose way in the destination is blocked
// at rel: what cannot be done there, and what is in the way and its fix.
func (l *Local) conflict(rel, what, why string) error {
	return &FSError{Path: l.path(rel), Err: ErrPathConflict, msg: fmt.Sprintf("cannot %s %s: %s", what, l.path(rel), why)}
}

// ensureDir makes sure rel (a slash path below the destination; "" is the
// destination) is a real folder, creating it and its missing parents
// durably. A symbolic link or a file on the way is an ErrPathConflict: it
// is never followed or replaced. What was checked is remembered for the
// run, so a folder costs its syscalls once.
func (l *Local) ensureDir(rel string) error {
	if rel == "" || rel == "." {
		return nil
	}
	l.mu.Lock()
	known := l.dirs[rel]
	l.mu.Unlock()
	if known {
		return nil
	}
	parent := path.Dir(rel)
	if parent == "." {
		parent = ""
	}
	if err := l.ensureDir(parent); err != nil {
		return err
	}
	fi, err := l.root.Lstat(native(rel))
	if errors.Is(err, fs.ErrNotExist) {
		if err := l.root.Mkdir(native(rel), 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return localErr(err)
		}
		fi, err = l.root.Lstat(native(rel))
	}
	switch {
	case err != nil:
		return localErr(err)
	case fi.Mode()&fs.ModeSymlink != 0:
		return l.conflict(rel, "create folder", "a symbolic link is in its place, and artifact-sync never follows links inside the destination: remove the link")
	case !fi.IsDir():
		return l.conflict(rel, "create folder", "a file is in its place: move that file away, or pick another --to or --layout")
	}
	// The folder's name is made durable in its parent whether this run
	// made it or found it: an earlier attempt or run whose fsync of the
	// parent failed leaves a folder that exists but that a power cut
	// can still take, with everything recorded inside it. The tool's own
	// folders are made durable at once: checkpoints rely on them,
	// outside any batch.
	batched := false
	if !isReserved(rel) {
		batched, _ = l.unsynced(nil, "", parent)
	}
	if !batched {
		if err := l.syncDir(parent); err != nil {
			return localErr(err)
		}
	}
	l.mu.Lock()
	l.dirs[rel] = true
	l.mu.Unlock()
	return nil
}

// forgetDir drops what ensureDir remembers of rel and of the folders above
// it, after rel vanished: whoever removed it may have removed them too, and
// the next ensureDir checks (and makes) each again.
func (l *Local) forgetDir(rel string) {
	for rel != "" && rel != "." {
		l.mu.Lock()
		delete(l.dirs, rel)
		l.mu.Unlock()
		l.fds.forget(rel)
		rel = path.Dir(rel)
	}
}

// syncDir makes the entries of folder rel durable.
func (l *Local) syncDir(rel string) error {
	d, err := l.root.Open(native(rel))
	if err != nil {
		return err
	}
	defer d.Close()
	err = durable.Sync(d)
	if l.onSyncDir != nil && err == nil {
		l.onSyncDir(rel)
	}
	return err
}

// newTemp creates an empty file in the tmp folder and returns it with its
// slash path below the destination. O_EXCL with mode 0o644 lets the kernel
// apply the umask, unlike os.CreateTemp's 0o600, and never follows a link.
func (l *Local) newTemp() (*os.File, string, error) {
	for range 10 {
		if err := l.ensureDir(tmpDir); err != nil {
			return nil, "", err
		}
		rel := tmpDir + "/" + rand.Text()
		f, err := l.createFile(rel, 0o644)
		switch {
		case errors.Is(err, fs.ErrExist):
			continue
		case errors.Is(err, fs.ErrNotExist):
			l.forgetDir(tmpDir) // someone removed it: create it again
			continue
		}
		return f, rel, localErr(err)
	}
	return nil, "", fmt.Errorf("create temporary file in %s: too many collisions", l.path(tmpDir))
}

// Put implements Sink.
func (l *Local) Put(ctx context.Context, key string, r io.Reader, opts PutOptions) (Info, error) {
	if err := l.checkKey(key); err != nil {
		return Info{}, err
	}
	f, rel, err := l.newTemp()
	if err != nil {
		return Info{}, fmt.Errorf("put %s: %w", l.path(key), err)
	}
	return l.write(ctx, l.newKept(key, f, rel, opts), newCheckedReader(ctx, r, opts.Size, 0, nil))
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
	if errors.Is(err, ErrLongStream) || errors.As(err, new(*FlushError)) {
		// A file whose flush failed may have lost pages that the kernel
		// now calls clean: nothing of it is kept for a resume.
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
// rename into place (into folders made durably), close, fsync the folder.
// A batching Local (see Batch) leaves the fsyncs to Sync, except for the
// tool's own state (the manifest's files), which is always made durable
// here: the manifest's snapshot and journals are relied on as soon as they
// are written. A failed fsync is a *FlushError.
// A key whose folder is a link or a file, or that is a folder itself, is an
// ErrPathConflict of that key alone.
func (l *Local) place(ctx context.Context, k *keptFile) (fs.FileInfo, error) {
	f := k.f
	if err := k.settle(); err != nil {
		return nil, err
	}
	batched := l.batch != nil && !isReserved(k.key)
	if !batched {
		if err := f.Sync(); err != nil {
			return nil, &FlushError{Dest: l.dir, Keys: []string{k.key}, Err: err}
		}
		l.step("fsync", k.path)
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	dir := path.Dir(k.key)
	if dir == "." {
		dir = ""
	}
	if err := l.ensureDir(dir); err != nil {
		return nil, err
	}
	if err := l.rename(k.path, k.key); err != nil {
		if crossDevice(err) { // a mount inside the destination
			return l.placeAcross(ctx, k, dir, fi)
		}
		if errors.Is(err, syscall.EISDIR) || errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, fs.ErrExist) {
			return nil, l.conflict(k.key, "move a file to", "a folder is in its place: move that folder away, or pick another --to or --layout")
		}
		if errors.Is(err, fs.ErrNotExist) {
			l.forgetDir(dir) // removed behind our back: the next attempt makes it again
		}
		return nil, err
	}
	l.step("rename", k.key)
	k.path = k.key
	if batched {
		if _, err := l.unsynced(f, k.key, dir); err != nil {
			return nil, err
		}
		if l.batch.mode != batchFsync { // which fsyncs and closes it in Sync
			f.Close()
		}
		k.placed()
		return fi, nil
	}
	f.Close()
	k.placed()
	if err := l.syncDir(dir); err != nil {
		return nil, &FlushError{Dest: l.dir, Keys: []string{k.key}, Err: err}
	}
	l.step("syncdir", dir)
	return fi, nil
}

// step tells a test's onStep about a step of placing a file.
func (l *Local) step(step, rel string) {
	if l.onStep != nil {
		l.onStep(step, rel)
	}
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
// fsync does not have to write it all at the end; when a checkpoint is due
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
	if err == nil && w.k.due(w.wrote-w.saved) {
		var started bool
		if started, err = w.k.checkpointLater(w.spans()); started {
			w.saved = w.wrote
		}
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

// writeFileAtomic replaces the state file rel (a slash path below the
// destination) with data: a synced temporary file renamed over it.
func writeFileAtomic(l *Local, rel string, data []byte) error {
	f, tmp, err := l.newTemp()
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
		err = l.root.Rename(native(tmp), native(rel))
	}
	if err != nil {
		l.root.Remove(native(tmp))
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
// empty. A symbolic link at the key is not an object.
func (l *Local) Stat(ctx context.Context, key string) (Info, error) {
	if err := l.checkKey(key); err != nil {
		return Info{}, err
	}
	fi, err := l.root.Lstat(native(key))
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
	if fi, err := l.root.Lstat(native(key)); err != nil || !fi.Mode().IsRegular() {
		if err == nil {
			err = fs.ErrNotExist
		}
		return nil, notExist("open", l.path(key), err)
	}
	f, err := l.root.Open(native(key))
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
	fi, err := l.root.Lstat(native(key))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return nil
		}
		return localErr(err)
	}
	if fi.IsDir() {
		return nil
	}
	if err := l.root.Remove(native(key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return localErr(err)
	}
	for dir := path.Dir(key); dir != "." && dir != stateDir; dir = path.Dir(dir) {
		if l.root.Remove(native(dir)) != nil {
			break
		}
		l.forgetDir(dir)
	}
	return nil
}

// List implements Sink. It walks only the directory the prefix names and
// yields regular files; the tool's state directory is left out unless the
// prefix lies in it. Symbolic links are neither followed nor listed.
func (l *Local) List(ctx context.Context, prefix string) iter.Seq2[Info, error] {
	return func(yield func(Info, error) bool) {
		start := "."
		if i := strings.LastIndexByte(prefix, '/'); i > 0 && ValidKey(prefix[:i]) == nil {
			start = prefix[:i]
		}
		inState := isReserved(prefix)
		err := fs.WalkDir(l.root.FS(), start, func(key string, d fs.DirEntry, err error) error {
			if cerr := ctx.Err(); cerr != nil {
				return cerr
			}
			if err != nil {
				if key == start && errors.Is(err, fs.ErrNotExist) {
					return fs.SkipAll
				}
				if !yield(Info{}, l.root.fix(err)) {
					return fs.SkipAll
				}
				return nil
			}
			if key == "." {
				return nil
			}
			if d.IsDir() {
				if (key == stateDir && !inState) || isInternal(key+"/") {
					return fs.SkipDir
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
				if !yield(Info{}, l.root.fix(err)) {
					return fs.SkipAll
				}
				return nil
			}
			if !yield(Info{Key: key, Size: fi.Size(), ModTime: fi.ModTime()}, nil) {
				return fs.SkipAll
			}
			return nil
		})
		if err != nil {
			yield(Info{}, localErr(l.root.fix(err)))
		}
	}
}

// Lock implements Locker with flock(2) (LockFileEx on Windows) on
// DIR/.artifact-sync/<name>. The holder and time are written into the file
// for the message others get. ttl is ignored: the kernel drops the lock
// when the process dies. A lock file that is a link, or not a file, is
// refused rather than followed.
func (l *Local) Lock(ctx context.Context, name, holder string, ttl time.Duration) (Lease, error) {
	if err := validLockName(name); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := l.ensureDir(stateDir); err != nil {
		return nil, &PermanentError{Err: explainFS(fmt.Errorf("lock: %w", err))}
	}
	rel := stateDir + "/" + name
	if fi, err := l.root.Lstat(native(rel)); err == nil && !fi.Mode().IsRegular() {
		return nil, &PermanentError{Err: fmt.Errorf("lock: %s is not a regular file (a link?); remove it", l.path(rel))}
	}
	f, err := l.root.OpenFile(native(rel), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, localErr(fmt.Errorf("lock: %w", err))
	}
	lease, err := lockFile(f, l.path(rel), name, holder)
	if le := (*LockedError)(nil); errors.As(err, &le) {
		le.Dest = l.dir
	}
	if err == nil && name == DefaultLockName {
		l.removeStaleAcross()
		l.removeStaleTemps()
		l.cleanPartials()
	}
	return lease, err
}

// lockFile takes the lock on f, the lock file at path, without waiting (see
// tryLock), and writes the holder into it; f is closed unless the lease is
// returned. Someone else's lock is a *LockedError naming them, as their
// record says.
func lockFile(f *os.File, path, name, holder string) (Lease, error) {
	held, err := tryLock(f)
	if held {
		var rec lockRecord
		b, _ := io.ReadAll(io.LimitReader(f, 4096))
		_ = json.Unmarshal(b, &rec)
		f.Close()
		return nil, &LockedError{Name: name, Holder: rec.Holder, PID: rec.PID, Host: rec.Host, Since: rec.Since}
	}
	if err != nil {
		f.Close()
		return nil, localErr(fmt.Errorf("lock %s: %w", path, err))
	}
	b, _ := json.Marshal(lockRecord{Holder: holder, Since: time.Now().UTC(), PID: os.Getpid(), Host: hostname()})
	if err := f.Truncate(0); err == nil {
		f.WriteAt(b, 0)
	}
	return &localLease{f: f, lost: make(chan struct{})}, nil
}

// removeStaleTemps deletes the temporary files a killed run left in
// DEST/.artifact-sync/tmp. Only the holder of the destination's lock writes
// there, so once it is held, every file in tmp is a leftover (a large one
// can be gigabytes). Partial writes kept for resuming live in partial/ and
// stay.
func (l *Local) removeStaleTemps() {
	for _, e := range l.readState(tmpDir) {
		if e.Type().IsRegular() || e.Type()&fs.ModeSymlink != 0 {
			l.root.Remove(native(tmpDir + "/" + e.Name()))
		}
	}
}

// readState lists a state folder; nothing if it cannot be read.
func (l *Local) readState(rel string) []fs.DirEntry {
	d, err := l.root.Open(native(rel))
	if err != nil {
		return nil
	}
	defer d.Close()
	entries, _ := d.ReadDir(-1)
	return entries
}

// lockRecord is what a lock file or lease object says about its holder.
type lockRecord struct {
	Holder  string    `json:"holder"`
	Since   time.Time `json:"since"`
	Expires time.Time `json:"expires,omitzero"` // S3 leases only
	Token   string    `json:"token,omitempty"`  // S3 leases only: tells our own writes apart
	// PID and Scope (see processScope) let a run on the same machine take
	// over the S3 lease of a holder that was killed, without waiting for it
	// to expire. PID and Host name the holder to whoever it keeps out.
	PID   int    `json:"pid,omitempty"`
	Scope string `json:"scope,omitempty"`
	Host  string `json:"host,omitempty"`
}

// hostname names this machine in lock records; "" if it cannot be told.
func hostname() string {
	h, _ := os.Hostname()
	return h
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
