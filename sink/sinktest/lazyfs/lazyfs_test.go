//go:build linux

package lazyfs_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/artifact-sync/artifact-sync/sink/sinktest/lazyfs"
)

func mount(t *testing.T) (*lazyfs.FS, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("lazyfs needs root to mount")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
	backing, dir := t.TempDir(), t.TempDir()
	l, err := lazyfs.Mount(backing, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Unmount() })
	return l, backing
}

func write(t *testing.T, path, data string, sync bool) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(data); err != nil {
		t.Fatal(err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func syncDir(t *testing.T, dir string) error {
	t.Helper()
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	return d.Sync()
}

func want(t *testing.T, path, data string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if data == "<absent>" {
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: %q, %v; want it absent", filepath.Base(path), b, err)
		}
		return
	}
	if err != nil || string(b) != data {
		t.Errorf("%s: %q, %v; want %q", filepath.Base(path), b, err, data)
	}
}

// TestLosePower: after a power cut only what was fsynced is there: a file's
// bytes once the file was fsynced, a name once its folder was.
func TestLosePower(t *testing.T) {
	l, backing := mount(t)
	d := l.Dir
	write(t, filepath.Join(d, "synced"), "file and folder", true)
	write(t, filepath.Join(d, "nameonly"), "folder only", false)
	write(t, filepath.Join(d, "old"), "to be replaced", true)
	if err := syncDir(t, d); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(d, "dataonly"), "file only", true)
	write(t, filepath.Join(d, "neither"), "neither", false)
	write(t, filepath.Join(d, "new"), "replacement", true)
	if err := os.Rename(filepath.Join(d, "new"), filepath.Join(d, "old")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(d, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(d, "sub", "f"), "in a new folder", true)
	if err := syncDir(t, filepath.Join(d, "sub")); err != nil {
		t.Fatal(err)
	}
	// syncfs(2) of a FUSE mount does not reach the server: nothing changes.
	f, err := os.Open(d)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		t.Fatal(err)
	}
	f.Close()
	want(t, filepath.Join(d, "neither"), "neither") // until the power goes

	if err := l.LosePower(); err != nil {
		t.Fatal(err)
	}
	want(t, filepath.Join(backing, "synced"), "file and folder")
	want(t, filepath.Join(backing, "nameonly"), "")
	want(t, filepath.Join(backing, "dataonly"), "<absent>")
	want(t, filepath.Join(backing, "neither"), "<absent>")
	want(t, filepath.Join(backing, "old"), "to be replaced")
	want(t, filepath.Join(backing, "sub"), "<absent>")
}

// TestFailedFsyncDropsData: a failed fsync loses the file's data for good,
// and a later fsync of the same file says nothing of it, as on Linux.
func TestFailedFsyncDropsData(t *testing.T) {
	l, backing := mount(t)
	d := l.Dir
	l.FailSyncs(func(p string) bool { return p == "bad" })
	f, err := os.Create(filepath.Join(d, "bad"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.WriteString("lost")
	if err := f.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("fsync: %v, want EIO", err)
	}
	l.FailSyncs(nil)
	if err := f.Sync(); err != nil {
		t.Fatalf("second fsync: %v, want success (the error was reported)", err)
	}
	f.Close()
	write(t, filepath.Join(d, "good"), "kept", true)
	if err := syncDir(t, d); err != nil {
		t.Fatal(err)
	}
	if s := l.Stats(); s.Failed != 1 || s.Dropped != 1 {
		t.Errorf("stats %+v, want 1 failed and 1 dropped", s)
	}
	if err := l.LosePower(); err != nil {
		t.Fatal(err)
	}
	want(t, filepath.Join(backing, "bad"), "")
	want(t, filepath.Join(backing, "good"), "kept")
}

// TestFsyncFollowsTheFile: an fsync makes durable the bytes of the file the
// descriptor names, wherever it has been renamed to since it was opened,
// and whether it was opened for writing only.
func TestFsyncFollowsTheFile(t *testing.T) {
	l, backing := mount(t)
	d := l.Dir
	f, err := os.OpenFile(filepath.Join(d, "tmp"), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("renamed before its fsync"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(d, "tmp"), filepath.Join(d, "final")); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := syncDir(t, d); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := l.LosePower(); err != nil {
		t.Fatal(err)
	}
	want(t, filepath.Join(backing, "final"), "renamed before its fsync")
	want(t, filepath.Join(backing, "tmp"), "<absent>")
}
