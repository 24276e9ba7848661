//go:build linux

package lazyfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	stdsync "sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// FS is a mounted lazy file system.
type FS struct {
	// Dir is where it is mounted.
	Dir string

	backing string
	server  *fuse.Server

	mu stdsync.Mutex
	// root is the backing folder's inode; data and names are the durable
	// state: the bytes of each file and the entries of each folder, by
	// backing inode (stable across renames).
	root  uint64
	data  map[uint64][]byte
	names map[uint64]map[string]entry
	// fail, if set, says which fsyncs fail (by path in the file system);
	// dropped are the files whose fsync failed: their data is lost.
	fail    func(path string) bool
	dropped map[fileID]bool
	// off: the power is cut; nothing more becomes durable.
	off   bool
	stats Stats
}

// entry is a durable name in a folder.
type entry struct {
	ino uint64
	dir bool
}

// Stats counts what reached the file system.
type Stats struct {
	Fsyncs, DirFsyncs int // that succeeded
	Failed            int // fsyncs and folder fsyncs that failed
	Dropped           int // fsyncs that succeeded on a file whose data was dropped
}

// Mount mounts a lazy file system over backing at dir. Everything backing
// holds when it is mounted is durable.
func Mount(backing, dir string) (*FS, error) {
	backing, err := filepath.Abs(backing)
	if err != nil {
		return nil, err
	}
	l := &FS{Dir: dir, backing: backing, dropped: map[fileID]bool{}}
	if err := l.Sync(); err != nil {
		return nil, err
	}
	var st syscall.Stat_t
	if err := syscall.Stat(backing, &st); err != nil {
		return nil, err
	}
	root := &fs.LoopbackRoot{Path: backing, Dev: uint64(st.Dev)}
	root.NewNode = func(r *fs.LoopbackRoot, parent *fs.Inode, name string, st *syscall.Stat_t) fs.InodeEmbedder {
		return &node{LoopbackNode: fs.LoopbackNode{RootData: r}, fs: l}
	}
	root.RootNode = &node{LoopbackNode: fs.LoopbackNode{RootData: root}, fs: l}
	l.server, err = fs.Mount(dir, root.RootNode, &fs.Options{
		MountOptions: fuse.MountOptions{DirectMount: true, FsName: "lazyfs", Name: "lazyfs"},
	})
	if err != nil {
		return nil, fmt.Errorf("lazyfs: mount %s: %w", dir, err)
	}
	return l, nil
}

// Stats returns what has reached the file system so far.
func (l *FS) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stats
}

// FailSyncs makes the fsync of a file or folder at path (relative to Dir,
// slash-separated) fail with EIO while fail(path) reports true; nil heals
// the disk. A file whose fsync failed has lost its data for good.
func (l *FS) FailSyncs(fail func(path string) bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fail = fail
}

// Sync makes everything durable, as syncfs(2) would.
func (l *FS) Sync() error {
	data := map[uint64][]byte{}
	names := map[uint64]map[string]entry{}
	var walk func(dir string) (uint64, error)
	walk = func(dir string) (uint64, error) {
		ino, err := inode(dir)
		if err != nil {
			return 0, err
		}
		es, err := os.ReadDir(dir)
		if err != nil {
			return 0, err
		}
		m := map[string]entry{}
		for _, e := range es {
			p := filepath.Join(dir, e.Name())
			switch {
			case e.IsDir():
				sub, err := walk(p)
				if err != nil {
					return 0, err
				}
				m[e.Name()] = entry{ino: sub, dir: true}
			case e.Type().IsRegular():
				sub, err := inode(p)
				if err != nil {
					return 0, err
				}
				b, err := os.ReadFile(p)
				if err != nil {
					return 0, err
				}
				data[sub] = b
				m[e.Name()] = entry{ino: sub}
			}
		}
		names[ino] = m
		return ino, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	root, err := walk(l.backing)
	if err != nil {
		return err
	}
	// A file whose data was dropped keeps what was durable before.
	for id := range l.dropped {
		if old, ok := l.data[id.ino]; ok {
			data[id.ino] = old
		} else {
			delete(data, id.ino)
		}
	}
	l.root, l.data, l.names = root, data, names
	return nil
}

// Cut cuts the power at this instant: from now on nothing becomes durable
// (fsyncs fail with EIO), while what runs on the file system is stopped;
// LosePower then leaves only what was durable at the cut.
func (l *FS) Cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.off = true
}

// LosePower cuts the power (if Cut has not), unmounts the file system and
// leaves in the backing folder only what was durable. Whatever still has
// files open in it is cut off.
func (l *FS) LosePower() error {
	l.Cut()
	if err := l.Unmount(); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	es, err := os.ReadDir(l.backing)
	if err != nil {
		return err
	}
	for _, e := range es {
		if err := os.RemoveAll(filepath.Join(l.backing, e.Name())); err != nil {
			return err
		}
	}
	var build func(dir string, ino uint64) error
	build = func(dir string, ino uint64) error {
		for name, e := range l.names[ino] {
			p := filepath.Join(dir, name)
			if e.dir {
				if err := os.Mkdir(p, 0o755); err != nil {
					return err
				}
				if err := build(p, e.ino); err != nil {
					return err
				}
				continue
			}
			// A name whose file's bytes were never made durable
			// is an empty file.
			if err := os.WriteFile(p, l.data[e.ino], 0o644); err != nil {
				return err
			}
		}
		return nil
	}
	return build(l.backing, l.root)
}

// Unmount unmounts the file system, keeping the backing folder as it is
// (everything written, durable or not).
func (l *FS) Unmount() error {
	if l.server == nil {
		return nil
	}
	var err error
	for range 50 {
		if err = l.server.Unmount(); err == nil {
			break
		}
		if !errors.Is(err, syscall.EBUSY) {
			break
		}
		time.Sleep(100 * time.Millisecond) // a killed process's files are closing
	}
	if err != nil {
		// A lazy unmount: the mount goes away as soon as it is idle.
		syscall.Unmount(l.Dir, syscall.MNT_DETACH)
	}
	l.server.Wait()
	l.server = nil
	return nil
}

// fsyncFile makes the current bytes of file ino durable, or fails. They
// are read from path in the backing folder (rel in the file system) while
// that is still the file, else through its open handle h (it was renamed
// or removed since; a handle opened write-only cannot be read, so the path
// comes first).
func (l *FS) fsyncFile(ctx context.Context, id fileID, rel, path string, h fs.FileHandle) syscall.Errno {
	ino := id.ino
	var b []byte
	if at, err := inode(path); err == nil && at == ino {
		if b, err = os.ReadFile(path); err != nil {
			return fs.ToErrno(err)
		}
	} else if r, ok := h.(interface {
		fs.FileGetattrer
		fs.FileReader
	}); ok {
		var out fuse.AttrOut
		if errno := r.Getattr(ctx, &out); errno != 0 {
			return errno
		}
		b = make([]byte, out.Size)
		for off := 0; off < len(b); {
			res, errno := r.Read(ctx, b[off:], int64(off))
			if errno != 0 {
				return errno
			}
			got, _ := res.Bytes(b[off:])
			n := copy(b[off:], got)
			res.Done()
			if n == 0 {
				b = b[:off]
				break
			}
			off += n
		}
	} else {
		return syscall.EIO
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.off:
		return syscall.EIO
	case l.fail != nil && l.fail(rel):
		l.stats.Failed++
		l.dropped[id] = true
		return syscall.EIO
	case l.dropped[id]:
		l.stats.Dropped++
		return 0
	}
	l.stats.Fsyncs++
	l.data[ino] = b
	return 0
}

// fsyncDir makes the current names in the folder at path durable, or
// fails.
func (l *FS) fsyncDir(rel, path string) syscall.Errno {
	ino, err := inode(path)
	if err != nil {
		return fs.ToErrno(err)
	}
	es, err := os.ReadDir(path)
	if err != nil {
		return fs.ToErrno(err)
	}
	m := map[string]entry{}
	for _, e := range es {
		if !e.IsDir() && !e.Type().IsRegular() {
			continue
		}
		sub, err := inode(filepath.Join(path, e.Name()))
		if err != nil {
			continue // removed meanwhile
		}
		m[e.Name()] = entry{ino: sub, dir: e.IsDir()}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.off {
		return syscall.EIO
	}
	if l.fail != nil && l.fail(rel) {
		l.stats.Failed++
		return syscall.EIO
	}
	l.stats.DirFsyncs++
	l.names[ino] = m
	for _, e := range m {
		// A folder made durable before its own entries were is empty.
		if _, ok := l.names[e.ino]; e.dir && !ok {
			l.names[e.ino] = map[string]entry{}
		}
	}
	return 0
}

// fileID tells a file apart from one that later takes its inode number
// (go-fuse's generation comes from the birth time), as the kernel's
// write-back error state belongs to the inode, not to its number.
type fileID struct{ ino, gen uint64 }

func inode(path string) (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// node is a LoopbackNode whose fsyncs make things durable.
type node struct {
	fs.LoopbackNode
	fs *FS
}

var (
	_ fs.NodeFsyncer        = (*node)(nil)
	_ fs.NodeOpendirHandler = (*node)(nil)
)

// rel is n's path in the file system, and path its path in the backing
// folder.
func (n *node) paths() (rel, path string) {
	rel = n.Path(n.Root())
	return rel, filepath.Join(n.RootData.Path, filepath.FromSlash(rel))
}

func (n *node) Fsync(ctx context.Context, h fs.FileHandle, flags uint32) syscall.Errno {
	rel, path := n.paths()
	if n.IsDir() {
		return n.fs.fsyncDir(rel, path)
	}
	attr := n.StableAttr()
	return n.fs.fsyncFile(ctx, fileID{attr.Ino, attr.Gen}, rel, path, h)
}

// OpendirHandle wraps the loopback's folder handle, whose own Fsyncdir
// would otherwise take the folder's fsync past n.
func (n *node) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	h, fl, errno := n.LoopbackNode.OpendirHandle(ctx, flags)
	if errno != 0 {
		return nil, 0, errno
	}
	return &dirHandle{h: h, n: n}, fl, 0
}

// dirHandle is a folder's open handle: the loopback's, but for Fsyncdir.
type dirHandle struct {
	h fs.FileHandle
	n *node
}

var (
	_ fs.FileReaddirenter = (*dirHandle)(nil)
	_ fs.FileSeekdirer    = (*dirHandle)(nil)
	_ fs.FileReleasedirer = (*dirHandle)(nil)
	_ fs.FileFsyncdirer   = (*dirHandle)(nil)
)

func (d *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	return d.h.(fs.FileReaddirenter).Readdirent(ctx)
}

func (d *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	return d.h.(fs.FileSeekdirer).Seekdir(ctx, off)
}

func (d *dirHandle) Releasedir(ctx context.Context, flags uint32) {
	d.h.(fs.FileReleasedirer).Releasedir(ctx, flags)
}

func (d *dirHandle) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno {
	rel, path := d.n.paths()
	return d.n.fs.fsyncDir(rel, path)
}
