//go:build unix

package sink_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/artifact-sync/artifact-sync/sink"
)

func TestLocalModes(t *testing.T) {
	umask := syscall.Umask(0o022)
	syscall.Umask(umask)
	dir := t.TempDir()
	l, _ := sink.NewLocal(dir)
	if _, err := l.Put(t.Context(), "a/b/c.txt", strings.NewReader("x"), sink.PutOptions{Size: 1}); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]fs.FileMode{"a": 0o755, "a/b": 0o755, "a/b/c.txt": 0o644} {
		fi, err := os.Stat(filepath.Join(dir, path))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want&^fs.FileMode(umask) {
			t.Errorf("%s: mode %v, want %v", path, got, want&^fs.FileMode(umask))
		}
	}
}

func TestLocalPermanentErrors(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root ignores permissions")
	}
	dir := t.TempDir()
	l, _ := sink.NewLocal(dir)
	os.Mkdir(filepath.Join(dir, "ro"), 0o555)
	_, err := l.Put(t.Context(), "ro/x", strings.NewReader("x"), sink.PutOptions{Size: 1})
	if !sink.IsPermanent(err) || !strings.Contains(err.Error(), filepath.Join(dir, "ro")) {
		t.Errorf("Put into a read-only directory: %v; want a permanent error naming the path", err)
	}
}
