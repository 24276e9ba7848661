package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

// foldFS is a FUSE file system over a backing folder that compares names
// as APFS does by default: "Report.html" and "report.html" are one file,
// and so are "é" composed (NFC) and decomposed (NFD). It keeps the name a
// file or folder was given (case-preserving): the backing folder holds each
// under its folded name, with the given one in an extended attribute that
// Readdir shows. Linux's own case-insensitive file systems are not
// available here (ext4 and tmpfs casefold need CONFIG_UNICODE, XFS dropped
// ascii-ci), so this is what a test has to run the tool on a folding
// destination.
type foldFS struct{ backing string }

// foldedName is the name a file is kept under: full Unicode case folding
// of the canonical decomposition, recomposed.
func foldedName(name string) string {
	return norm.NFC.String(cases.Fold().String(norm.NFD.String(name)))
}

// givenNameAttr holds the name a file was created or renamed under.
const givenNameAttr = "user.foldfs.name"

type foldNode struct {
	fs.Inode
	fsys *foldFS
}

// real is the node's path in the backing folder. Every spelling the
// kernel knows it by folds to it, so it needs no record of its own.
func (n *foldNode) real() string {
	p := n.Path(nil)
	if p == "" {
		return n.fsys.backing
	}
	elems := strings.Split(p, "/")
	for i, elem := range elems {
		elems[i] = foldedName(elem)
	}
	return filepath.Join(n.fsys.backing, filepath.Join(elems...))
}

func (n *foldNode) child(name string) string { return filepath.Join(n.real(), foldedName(name)) }

func (n *foldNode) newChild(ctx context.Context, st *syscall.Stat_t, out *fuse.EntryOut) *fs.Inode {
	out.Attr.FromStat(st)
	return n.NewInode(ctx, &foldNode{fsys: n.fsys}, fs.StableAttr{Mode: st.Mode & syscall.S_IFMT, Ino: st.Ino})
}

var (
	_ fs.NodeLookuper  = (*foldNode)(nil)
	_ fs.NodeGetattrer = (*foldNode)(nil)
	_ fs.NodeSetattrer = (*foldNode)(nil)
	_ fs.NodeReaddirer = (*foldNode)(nil)
	_ fs.NodeMkdirer   = (*foldNode)(nil)
	_ fs.NodeCreater   = (*foldNode)(nil)
	_ fs.NodeOpener    = (*foldNode)(nil)
	_ fs.NodeUnlinker  = (*foldNode)(nil)
	_ fs.NodeRmdirer   = (*foldNode)(nil)
	_ fs.NodeRenamer   = (*foldNode)(nil)
	_ fs.NodeStatfser  = (*foldNode)(nil)
	_ fs.NodeFsyncer   = (*foldNode)(nil)
)

func (n *foldNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	var st syscall.Stat_t
	if err := syscall.Lstat(n.child(name), &st); err != nil {
		return nil, fs.ToErrno(err)
	}
	return n.newChild(ctx, &st, out), 0
}

func (n *foldNode) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if g, ok := f.(fs.FileGetattrer); ok {
		return g.Getattr(ctx, out)
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(n.real(), &st); err != nil {
		return fs.ToErrno(err)
	}
	out.FromStat(&st)
	return 0
}

func (n *foldNode) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if s, ok := f.(fs.FileSetattrer); ok {
		return s.Setattr(ctx, in, out)
	}
	p := n.real()
	if size, ok := in.GetSize(); ok {
		if err := syscall.Truncate(p, int64(size)); err != nil {
			return fs.ToErrno(err)
		}
	}
	if mode, ok := in.GetMode(); ok {
		if err := syscall.Chmod(p, mode); err != nil {
			return fs.ToErrno(err)
		}
	}
	atime, aok := in.GetATime()
	mtime, mok := in.GetMTime()
	if aok || mok {
		ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_OMIT}}
		if aok {
			ts[0] = unix.NsecToTimespec(atime.UnixNano())
		}
		if mok {
			ts[1] = unix.NsecToTimespec(mtime.UnixNano())
		}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fs.ToErrno(err)
		}
	}
	return n.Getattr(ctx, nil, out)
}

func (n *foldNode) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	dir := n.real()
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fs.ToErrno(err)
	}
	list := make([]fuse.DirEntry, 0, len(entries))
	for _, e := range entries {
		name := e.Name()
		buf := make([]byte, 1024)
		if sz, err := unix.Lgetxattr(filepath.Join(dir, name), givenNameAttr, buf); err == nil {
			name = string(buf[:sz])
		}
		var st syscall.Stat_t
		if syscall.Lstat(filepath.Join(dir, e.Name()), &st) != nil {
			continue
		}
		list = append(list, fuse.DirEntry{Name: name, Mode: st.Mode, Ino: st.Ino})
	}
	return fs.NewListDirStream(list), 0
}

// given records the name p was created or renamed under.
func given(p, name string) syscall.Errno {
	return fs.ToErrno(unix.Lsetxattr(p, givenNameAttr, []byte(name), 0))
}

func (n *foldNode) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	p := n.child(name)
	if err := syscall.Mkdir(p, mode); err != nil {
		return nil, fs.ToErrno(err)
	}
	if errno := given(p, name); errno != 0 {
		return nil, errno
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		return nil, fs.ToErrno(err)
	}
	return n.newChild(ctx, &st, out), 0
}

func (n *foldNode) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	p := n.child(name)
	var before syscall.Stat_t
	existed := syscall.Lstat(p, &before) == nil
	fd, err := syscall.Open(p, int(flags&^syscall.O_APPEND)|syscall.O_CREAT, mode)
	if err != nil {
		return nil, nil, 0, fs.ToErrno(err)
	}
	if !existed {
		if errno := given(p, name); errno != 0 {
			syscall.Close(fd)
			return nil, nil, 0, errno
		}
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		syscall.Close(fd)
		return nil, nil, 0, fs.ToErrno(err)
	}
	return n.newChild(ctx, &st, out), fs.NewLoopbackFile(fd), 0, 0
}

func (n *foldNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	fd, err := syscall.Open(n.real(), int(flags&^syscall.O_APPEND), 0)
	if err != nil {
		return nil, 0, fs.ToErrno(err)
	}
	return fs.NewLoopbackFile(fd), 0, 0
}

func (n *foldNode) Unlink(ctx context.Context, name string) syscall.Errno {
	return fs.ToErrno(syscall.Unlink(n.child(name)))
}

func (n *foldNode) Rmdir(ctx context.Context, name string) syscall.Errno {
	return fs.ToErrno(syscall.Rmdir(n.child(name)))
}

// Rename replaces what the new name folds to, as APFS does, and gives
// the file the new name.
func (n *foldNode) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	to := newParent.(*foldNode).child(newName)
	if err := unix.Renameat2(unix.AT_FDCWD, n.child(name), unix.AT_FDCWD, to, uint(flags)); err != nil {
		return fs.ToErrno(err)
	}
	return given(to, newName)
}

func (n *foldNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	var s syscall.Statfs_t
	if err := syscall.Statfs(n.real(), &s); err != nil {
		return fs.ToErrno(err)
	}
	out.FromStatfsT(&s)
	return 0
}

func (n *foldNode) Fsync(ctx context.Context, f fs.FileHandle, flags uint32) syscall.Errno {
	if s, ok := f.(fs.FileFsyncer); ok {
		return s.Fsync(ctx, flags)
	}
	fd, err := syscall.Open(n.real(), syscall.O_RDONLY, 0)
	if err != nil {
		return fs.ToErrno(err)
	}
	defer syscall.Close(fd)
	return fs.ToErrno(syscall.Fsync(fd))
}

// mountFoldFS mounts a foldFS over a new backing folder and returns the
// mount point and the backing folder; the test skips where FUSE cannot be
// mounted (not root, no /dev/fuse).
func mountFoldFS(t *testing.T) (mnt, backing string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount the case-insensitive FUSE file system (CI runs it as root)")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("needs /dev/fuse to mount the case-insensitive FUSE file system: %v", err)
	}
	backing, mnt = t.TempDir(), t.TempDir()
	if err := unix.Lsetxattr(backing, givenNameAttr, []byte("probe"), 0); err != nil {
		t.Skipf("the backing folder %s takes no user extended attributes, which the FUSE file system needs: %v", backing, err)
	}
	zero := time.Duration(0)
	srv, err := fs.Mount(mnt, &foldNode{fsys: &foldFS{backing: backing}}, &fs.Options{
		EntryTimeout: &zero, AttrTimeout: &zero, NegativeTimeout: &zero,
		MountOptions: fuse.MountOptions{DirectMount: true, DirectMountStrict: true, FsName: "foldfs", Name: "foldfs"},
	})
	if err != nil {
		t.Skipf("cannot mount the case-insensitive FUSE file system: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			// Something of the test still holds a descriptor in it (a
			// sink's os.Root): detach it now, it goes when that does.
			if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
				t.Errorf("unmounting %s: %v", mnt, err)
			}
		}
	})
	return mnt, backing
}
