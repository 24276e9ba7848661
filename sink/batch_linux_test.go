package sink

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// failingExt2 mounts an ext2 file system of size MiB on a loop device whose
// backing file lies on a tmpfs of room MiB, so that once the tmpfs is full
// writeback to it fails with EIO, and returns where it is mounted. It skips
// the test without root or loop devices.
func failingExt2(t *testing.T, size, room int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root, for a loop device and mounts (.ci/run runs it as root)")
	}
	for _, tool := range []string{"losetup", "mkfs.ext2"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s: %v", tool, err)
		}
	}
	base := t.TempDir()
	backing, mnt := filepath.Join(base, "backing"), filepath.Join(base, "mnt")
	for _, dir := range []string{backing, mnt} {
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mount("tmpfs", backing, "tmpfs", 0, fmt.Sprintf("size=%dm", room)); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(backing, syscall.MNT_DETACH) })
	image := filepath.Join(backing, "disk.img")
	if err := os.WriteFile(image, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(image, int64(size)<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext2", "-q", "-F", "-b", "4096", image).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext2: %v\n%s", err, out)
	}
	out, err := exec.Command("losetup", "-f", "--show", image).CombinedOutput()
	if err != nil {
		t.Skipf("no loop device: losetup: %v: %s", err, out)
	}
	loop := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", loop).Run() })
	if err := syscall.Mount(loop, mnt, "ext2", 0, ""); err != nil {
		t.Fatalf("mount %s: %v", loop, err)
	}
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
	return mnt
}

// A writeback error reported to someone else first (another process's
// sync, the kernel's flusher reported through another descriptor) is still
// seen by Sync: by the kernel's errseq rules a syncfs(2) reports an error
// only to descriptors open when it happened, so Sync flushes through one
// opened by Batch, before anything was written, not one opened afresh.
func TestSyncSeesAWritebackErrorReportedElsewhere(t *testing.T) {
	t.Setenv("ARTIFACT_SYNC_BATCH_SYNC", batchSyncfs)
	mnt := failingExt2(t, 64, 12)
	l, err := NewLocal(filepath.Join(mnt, "mirror"))
	if err != nil {
		t.Fatal(err)
	}
	if !l.Batch() {
		t.Fatal("Batch() = false")
	}
	var keys []string
	for i := range 20 { // 20 MiB: more than the disk can hold
		key := fmt.Sprintf("f/%02d", i)
		if _, err := l.Put(t.Context(), key, bytes.NewReader(bytes.Repeat([]byte{byte(i + 1)}, 1<<20)), PutOptions{Size: 1 << 20}); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, key)
	}
	// Someone else flushes the file system first and is told of the
	// error: a descriptor opened now would not be.
	d, err := os.Open(mnt)
	if err != nil {
		t.Fatal(err)
	}
	other := unix.Syncfs(int(d.Fd()))
	d.Close()
	if other == nil {
		t.Skip("the disk did not fail: the backing tmpfs had room")
	}
	err = l.Sync(t.Context())
	var fe *FlushError
	if !errors.As(err, &fe) {
		t.Fatalf("Sync after a writeback error that another sync reported = %v, want a *FlushError", err)
	}
	if len(fe.Keys) != len(keys) {
		t.Errorf("the failed Sync names %d keys, want the %d placed", len(fe.Keys), len(keys))
	}
}
