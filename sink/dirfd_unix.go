//go:build unix

package sink

import (
	"errors"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	stdsync "sync"

	"golang.org/x/sys/unix"
)

// dirFDs holds open folders of a local destination, so that creating a
// temporary file and moving it to its key cost one system call each.
// Through os.Root each of them opens and closes every folder from the
// destination down, and an os.File opened by name is first offered to the
// network poller (two fcntl pairs and a failing epoll_ctl for a regular
// file): about twenty calls per artifact, which for thousands of small
// artifacts is most of the tool's own time between two downloads.
//
// A held folder is the one ensureDir checked (a real folder, reached
// without links); a folder removed meanwhile refuses new entries (ENOENT),
// and the caller forgets it and walks again. Like os.Root's own handle on
// the destination, a held folder that someone moves elsewhere is followed:
// only someone who can already write in the destination can do that.
type dirFDs struct {
	mu   stdsync.Mutex
	m    map[string]*dirFD
	tick uint64
}

type dirFD struct {
	rel  string
	f    *os.File
	fd   int
	refs int
	used uint64
	gone bool // dropped from the map; closed when the last user is done
}

// maxDirFDs bounds the folders held open; the least recently used one that
// no call is using is closed first. A run writes into few folders at a
// time (one job's tree after another), so a small number is enough.
const maxDirFDs = 64

// newDirFDs returns the folder cache of l, closed when l is unreachable.
func newDirFDs(l *Local) *dirFDs {
	d := &dirFDs{m: map[string]*dirFD{}}
	runtime.AddCleanup(l, func(d *dirFDs) { d.closeAll() }, d)
	return d
}

// acquire returns the open folder rel of l (a slash path below the
// destination, "" for the destination), opening it if need be. Release it
// when done.
func (d *dirFDs) acquire(l *Local, rel string) (*dirFD, error) {
	d.mu.Lock()
	if e := d.m[rel]; e != nil {
		e.refs++
		d.tick++
		e.used = d.tick
		d.mu.Unlock()
		return e, nil
	}
	d.mu.Unlock()
	f, err := l.root.Open(native(rel))
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.tick++
	if e := d.m[rel]; e != nil { // opened meanwhile by another call
		f.Close()
		e.refs++
		e.used = d.tick
		return e, nil
	}
	e := &dirFD{rel: rel, f: f, fd: int(f.Fd()), refs: 1, used: d.tick}
	d.m[rel] = e
	d.evict()
	return e, nil
}

// release ends a use of e.
func (d *dirFDs) release(e *dirFD) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e.refs--
	if e.refs == 0 && e.gone {
		e.f.Close()
	}
}

// forget drops folder rel, which vanished or changed behind the run's back.
func (d *dirFDs) forget(rel string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e := d.m[rel]; e != nil {
		d.drop(e)
	}
}

func (d *dirFDs) drop(e *dirFD) {
	delete(d.m, e.rel)
	e.gone = true
	if e.refs == 0 {
		e.f.Close()
	}
}

// evict closes the least recently used idle folders beyond maxDirFDs. The
// caller holds d.mu.
func (d *dirFDs) evict() {
	for len(d.m) > maxDirFDs {
		var lru *dirFD
		for _, e := range d.m {
			if e.refs == 0 && (lru == nil || e.used < lru.used) {
				lru = e
			}
		}
		if lru == nil {
			return // all in use: over the bound until some are released
		}
		d.drop(lru)
	}
}

func (d *dirFDs) closeAll() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, e := range d.m {
		d.drop(e)
	}
}

// createFile creates rel (a slash path below the destination) for reading
// and writing with mode perm less the umask, failing if anything is there
// (a link included: O_EXCL never follows one).
func (l *Local) createFile(rel string, perm fs.FileMode) (*os.File, error) {
	dir, name := splitRel(rel)
	e, err := l.fds.acquire(l, dir)
	if err != nil {
		return nil, err
	}
	defer l.fds.release(e)
	var fd int
	for {
		fd, err = unix.Openat(e.fd, name, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, uint32(perm.Perm()))
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			l.fds.forget(dir)
		}
		return nil, &fs.PathError{Op: "open", Path: l.path(rel), Err: err}
	}
	return os.NewFile(uintptr(fd), l.path(rel)), nil
}

// rename moves from to to (slash paths below the destination, both folders
// checked by ensureDir), replacing a file at to.
func (l *Local) rename(from, to string) error {
	fromDir, fromName := splitRel(from)
	toDir, toName := splitRel(to)
	src, err := l.fds.acquire(l, fromDir)
	if err != nil {
		return err
	}
	defer l.fds.release(src)
	dst, err := l.fds.acquire(l, toDir)
	if err != nil {
		return err
	}
	defer l.fds.release(dst)
	for {
		err = unix.Renameat(src.fd, fromName, dst.fd, toName)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			l.fds.forget(fromDir)
			l.fds.forget(toDir)
		}
		return &os.LinkError{Op: "rename", Old: l.path(from), New: l.path(to), Err: err}
	}
	return nil
}

// splitRel splits a slash path below the destination into its folder ("" for
// the destination) and name.
func splitRel(rel string) (dir, name string) {
	dir, name = path.Split(rel)
	dir = path.Clean(dir)
	if dir == "." || dir == "/" {
		dir = ""
	}
	return dir, filepath.FromSlash(name)
}
