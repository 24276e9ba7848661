//go:build unix

package sink_test

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/artifact-sync/artifact-sync/sink"
)

// TestFileSystemErrorsKeepTheirCause: the sentence a file-system error
// becomes (sink.FSError) still matches the errno and the *fs.PathError it
// explains, and stays permanent, so callers that decide by them (retry or
// stop, exit codes) decide as before.
func TestFileSystemErrorsKeepTheirCause(t *testing.T) {
	file := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(file, []byte("a file"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := sink.NewLocal(filepath.Join(file, "mirror"))
	var fe *sink.FSError
	var pe *fs.PathError
	switch {
	case !errors.As(err, &fe):
		t.Fatalf("NewLocal below a file: %v; want a *sink.FSError", err)
	case !errors.Is(err, syscall.ENOTDIR) || !errors.As(err, &pe) || !sink.IsPermanent(err):
		t.Errorf("NewLocal below a file: %v; want it to match ENOTDIR and *fs.PathError, and be permanent", err)
	case fe.Path != filepath.Join(file, "mirror") || !strings.Contains(err.Error(), file+" is a file where a folder belongs: move it away"):
		t.Errorf("NewLocal below a file: %q (path %q); want the file named and the fix", err, fe.Path)
	}

	// A name too long fails that key alone, as a conflict does.
	l, err := sink.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	long := "out/" + strings.Repeat("n", 300)
	_, err = l.Put(t.Context(), long, bytes.NewReader([]byte("x")), sink.PutOptions{Size: 1})
	if !errors.Is(err, syscall.ENAMETOOLONG) || !errors.Is(err, sink.ErrPathConflict) || sink.IsPermanent(err) ||
		!strings.Contains(err.Error(), "file name too long: its longest name is 300 bytes") {
		t.Errorf("Put of a name too long: %v; want ENAMETOOLONG, ErrPathConflict, not permanent, and the name's length", err)
	}
	if _, err := l.Put(t.Context(), "out/short", bytes.NewReader([]byte("x")), sink.PutOptions{Size: 1}); err != nil {
		t.Errorf("Put of a short name beside it: %v", err)
	}
}
