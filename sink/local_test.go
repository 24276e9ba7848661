package sink_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/artifact-sync/artifact-sync/sink"
	"github.com/artifact-sync/artifact-sync/sink/sinktest"
)

func TestValidKey(t *testing.T) {
	for _, k := range []string{"a", "a/b", "a..b", "..a", "a..", ".a", "a b/c d", "ünï/日本", "a/b.c/d"} {
		if err := sink.ValidKey(k); err != nil {
			t.Errorf("ValidKey(%q) = %v", k, err)
		}
	}
	for _, k := range sinktest.BadKeys {
		err := sink.ValidKey(k)
		if !errors.Is(err, sink.ErrInvalidKey) || !sink.IsPermanent(err) {
			t.Errorf("ValidKey(%q) = %v, want a permanent ErrInvalidKey", k, err)
		}
	}
}

func TestNewLocal(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new", "dest")
	if _, err := sink.NewLocal(dir); err != nil {
		t.Fatalf("NewLocal of a missing directory: %v", err)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Fatalf("NewLocal did not create %s", dir)
	}
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o644)
	_, err := sink.NewLocal(file)
	if err == nil || !strings.Contains(err.Error(), "not a directory") || !strings.Contains(err.Error(), file) {
		t.Errorf("NewLocal of a file: %v; want an error naming it as not a directory", err)
	}
}

// TestLocalKilledWriter stops writes midway and checks the directory:
// nothing at the key and nothing outside .artifact-sync/.
func TestLocalKilledWriter(t *testing.T) {
	dir := t.TempDir()
	l, _ := sink.NewLocal(dir)
	data := sinktest.Data(5, 9<<20)
	ctx, cancel := context.WithCancel(t.Context())
	if _, err := l.Put(ctx, "k/cancelled", &cancelAfter{r: bytes.NewReader(data), after: 4 << 20, cancel: cancel}, sink.PutOptions{Size: -1}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Put: %v", err)
	}
	if _, err := l.Put(t.Context(), "k/failed", io.MultiReader(bytes.NewReader(data[:3<<20]), &errAfter{err: io.ErrUnexpectedEOF}), sink.PutOptions{Size: -1}); err == nil {
		t.Errorf("failing Put succeeded")
	}
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		rel, _ := filepath.Rel(dir, path)
		if d.IsDir() && rel == ".artifact-sync" {
			return filepath.SkipDir
		}
		if rel != "." {
			t.Errorf("%s left in the destination", rel)
		}
		return nil
	})
	if n, _, _ := l.Partial(t.Context(), "k/failed"); n != 3<<20 {
		t.Errorf("Partial after a failed Put = %d, want %d kept for resuming", n, 3<<20)
	}
}

func TestLocalLockMessage(t *testing.T) {
	l, _ := sink.NewLocal(t.TempDir())
	lease, err := l.Lock(t.Context(), sink.DefaultLockName, "host ci-7 pid 1234 run abc", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer lease.Release(t.Context())
	l2, _ := sink.NewLocal(l.String())
	_, err = l2.Lock(t.Context(), sink.DefaultLockName, "me", 0)
	var le *sink.LockedError
	if !errors.As(err, &le) || !strings.Contains(err.Error(), "host ci-7 pid 1234 run abc") || le.Since.IsZero() {
		t.Errorf("Lock of a held lock: %v", err)
	}
}
