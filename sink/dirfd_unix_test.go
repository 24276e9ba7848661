//go:build unix

package sink

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd here")
	}
	return len(ents)
}

// Files spread over many folders keep at most maxDirFDs folders open: a
// nightly run over thousands of jobs must not run out of descriptors.
func TestLocalHoldsFewFoldersOpen(t *testing.T) {
	l, err := NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	before := openFDs(t)
	for i := range 3 * maxDirFDs {
		key := fmt.Sprintf("%d/0/out/file", i)
		if _, err := l.Put(t.Context(), key, strings.NewReader("x"), PutOptions{Size: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if n := openFDs(t) - before; n > maxDirFDs+2 {
		t.Errorf("%d descriptors open after writing into %d folders, want at most %d", n, 3*maxDirFDs, maxDirFDs+2)
	}
	if got := len(l.fds.m); got > maxDirFDs {
		t.Errorf("%d folders held, want at most %d", got, maxDirFDs)
	}
}

// A folder removed (or replaced by a link) behind the run's back while the
// sink holds it open is made again on the next attempt, and nothing is
// written through a link.
func TestLocalFolderRemovedWhileHeld(t *testing.T) {
	dir := t.TempDir()
	l, err := NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	put := func(key, body string) error {
		_, err := l.Put(t.Context(), key, strings.NewReader(body), PutOptions{Size: int64(len(body))})
		return err
	}
	if err := put("job/out/a", "a"); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "job")); err != nil {
		t.Fatal(err)
	}
	// The first attempt may find the held folder gone; the next makes it.
	if err := put("job/out/b", "b"); err != nil {
		if err := put("job/out/b", "b"); err != nil {
			t.Fatalf("second attempt after the folder vanished: %v", err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "job/out/b")); err != nil || string(b) != "b" {
		t.Fatalf("job/out/b = %q, %v", b, err)
	}

	// The same folder replaced by a link to elsewhere: never written through.
	outside := t.TempDir()
	if err := os.RemoveAll(filepath.Join(dir, "job/out")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "job/out")); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		put("job/out/c", "c")
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Fatalf("a file was written through the link into %s: %v", outside, ents)
	}
	// Temporary files go to a held tmp folder; removing it is survived too.
	if err := os.RemoveAll(filepath.Join(dir, tmpDir)); err != nil {
		t.Fatal(err)
	}
	if err := put("other/d", "d"); err != nil {
		t.Fatalf("after the tmp folder vanished: %v", err)
	}
}

// BenchmarkLocalPutSmall places many 16 KiB files, the small-artifact case
// where the sink's own system calls are most of a transfer's local cost.
func BenchmarkLocalPutSmall(b *testing.B) {
	l, err := NewLocal(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	l.Batch()
	body := strings.Repeat("x", 16<<10)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		key := fmt.Sprintf("%d/0/out/file-%d.bin", i%10, i)
		if _, err := l.Put(b.Context(), key, strings.NewReader(body), PutOptions{Size: int64(len(body))}); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
