package sink

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	stdsync "sync"
	"syscall"
)

// A folder inside the destination may be another file system (a mount),
// where the rename of a finished file from DEST/.artifact-sync/ fails with
// EXDEV. placeAcross then copies it beside its key instead.
const (
	// acrossPrefix starts the name of the temporary copy placeAcross
	// writes beside a key; rand.Text (26 characters) ends it.
	acrossPrefix = ".artifact-sync-tmp-"
	// acrossDir holds a mark for each folder where such copies were
	// written, naming it, so that the next lock holder finds and removes
	// what a killed run left there.
	acrossDir = stateDir + "/across"
)

// placeAcross places k's complete file, fi, at its key in folder dir when
// dir is on another file system than the destination's state folder: the
// bytes are copied into a temporary file in dir (named in a mark first),
// which is fsynced, renamed over the key, and dir fsynced, so a crash
// leaves the old object or the new one at the key, as the rename would.
// Only then is the kept file removed; if anything fails it stays, for the
// next attempt to place again without fetching anything.
//
// These fsyncs are never left to a batch: Sync flushes the destination's
// own file system (one syncfs(2)), which does not cover this one. For the
// same reason the folders above dir, which a batching ensureDir may have
// made without syncing their parents, are synced once per run.
func (l *Local) placeAcross(ctx context.Context, k *keptFile, dir string, fi fs.FileInfo) (fs.FileInfo, error) {
	if err := l.markAcross(dir); err != nil {
		return nil, err
	}
	var tmp string
	var f *os.File
	for {
		tmp = path.Join(dir, acrossPrefix+rand.Text())
		var err error
		f, err = l.root.OpenFile(native(tmp), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		break
	}
	placed := false
	defer func() {
		if !placed {
			f.Close()
			l.root.Remove(native(tmp))
		}
	}()
	if err := copyFile(ctx, f, k.f, fi.Size()); err != nil {
		return nil, err
	}
	if err := f.Sync(); err != nil {
		return nil, err
	}
	out, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if err := l.root.Rename(native(tmp), native(k.key)); err != nil {
		if errors.Is(err, syscall.EISDIR) || errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, fs.ErrExist) {
			return nil, l.conflict(k.key, "move a file to", "a folder is in its place: move that folder away, or pick another --to or --layout")
		}
		return nil, err
	}
	placed = true
	f.Close()
	if err := l.syncDir(dir); err != nil {
		return nil, err
	}
	if err := l.syncAbove(dir); err != nil {
		return nil, err
	}
	src := k.path
	k.f.Close()
	k.path = k.key
	k.placed()
	l.root.Remove(native(src))
	return out, nil
}

// copyChunk is how much copyFile moves between two looks at its context,
// so that an interrupt does not wait for a whole large file.
const copyChunk = 64 << 20

// copyFile copies the first size bytes of src to dst, which is empty, by
// the kernel's own copy where it can (copy_file_range(2) on Linux).
func copyFile(ctx context.Context, dst, src *os.File, size int64) error {
	if _, err := src.Seek(0, io.SeekStart); err != nil {
		return err
	}
	for done := int64(0); done < size; {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := io.Copy(dst, io.LimitReader(src, min(copyChunk, size-done)))
		done += n
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("copy to %s: %w", dst.Name(), ErrShortStream)
		}
	}
	return nil
}

// acrossState is what placeAcross did once this run.
type acrossState struct {
	mu     stdsync.Mutex
	marked map[string]bool // folders named in a mark
	synced map[string]bool // folders whose entry in their parent was synced
}

// once reports whether key was done in m, and marks it done if do succeeds.
func (a *acrossState) once(m *map[string]bool, key string, do func() error) error {
	a.mu.Lock()
	done := (*m)[key]
	a.mu.Unlock()
	if done {
		return nil
	}
	if err := do(); err != nil {
		return err
	}
	a.mu.Lock()
	if *m == nil {
		*m = map[string]bool{}
	}
	(*m)[key] = true
	a.mu.Unlock()
	return nil
}

// markAcross notes durably, once per run and folder, that dir may hold
// temporary copies (see removeStaleAcross): the mark is synced, and so is
// its folder, before a copy exists that only it names.
func (l *Local) markAcross(dir string) error {
	return l.across.once(&l.across.marked, dir, func() error {
		if err := l.ensureDir(acrossDir); err != nil {
			return err
		}
		sum := sha256.Sum256([]byte(dir))
		if err := writeFileAtomic(l, acrossDir+"/"+hex.EncodeToString(sum[:16]), []byte(dir)); err != nil {
			return err
		}
		return l.syncDir(acrossDir)
	})
}

// syncAbove makes durable, once per run, the entries of the folders that
// lead to dir, up to the destination.
func (l *Local) syncAbove(dir string) error {
	for d := dir; d != ""; {
		parent := path.Dir(d)
		if parent == "." {
			parent = ""
		}
		if err := l.across.once(&l.across.synced, d, func() error { return l.syncDir(parent) }); err != nil {
			return err
		}
		d = parent
	}
	return nil
}

// removeStaleAcross deletes the temporary copies a killed run left beside
// keys on other file systems, in the folders the marks in acrossDir name,
// then the marks. Only the holder of the destination's lock writes them,
// so once it is held, every one is a leftover.
func (l *Local) removeStaleAcross() {
	for _, e := range l.readState(acrossDir) {
		mark := acrossDir + "/" + e.Name()
		if b, err := l.root.ReadFile(native(mark)); err == nil && e.Type().IsRegular() {
			if dir := string(b); (dir == "" || ValidKey(dir) == nil) && !isReserved(dir) {
				for _, f := range l.readState(dir) {
					name := f.Name()
					if strings.HasPrefix(name, acrossPrefix) && len(name) == len(acrossPrefix)+26 && f.Type().IsRegular() {
						l.root.Remove(native(path.Join(dir, name)))
					}
				}
			}
		}
		l.root.Remove(native(mark))
	}
}
