package sink_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	stdsync "sync"
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
	if p, _ := l.Partial(t.Context(), "k/failed"); p.Size != 3<<20 {
		t.Errorf("Partial after a failed Put = %d, want %d kept for resuming", p.Size, 3<<20)
	}
}

// TestLocalLockMessage: a run refused by a held lock is told which
// destination, which process on which host holds it since when, and that
// stopping that process frees it.
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
	host, _ := os.Hostname()
	want := fmt.Sprintf("%s is being written by another artifact-sync (pid %d, host %s, since ", l.String(), os.Getpid(), host)
	if !errors.As(err, &le) || !strings.HasPrefix(err.Error(), want) || le.Since.IsZero() ||
		!strings.HasSuffix(err.Error(), "wait for it to finish, or stop it: its lock goes with its process, so a run started after that goes ahead") {
		t.Errorf("Lock of a held lock: %v\nwant: %s...", err, want)
	}
}

// TestLocalLockRemovesStaleTemps: a killed run leaves its temporary files
// in .artifact-sync/tmp; the next run to take the lock deletes them, and
// keeps the partial writes it may resume.
func TestLocalLockRemovesStaleTemps(t *testing.T) {
	dir := t.TempDir()
	tmp := filepath.Join(dir, ".artifact-sync", "tmp")
	partial := filepath.Join(dir, ".artifact-sync", "partial")
	for _, d := range []string{tmp, partial} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	stale := filepath.Join(tmp, "KILLEDRUNTEMPFILE")
	// A file a killed run moved to partial/ but never described holds
	// nothing a later run may trust.
	orphan := filepath.Join(partial, "0123abcd")
	for _, f := range []string{stale, orphan} {
		if err := os.WriteFile(f, bytes.Repeat([]byte("x"), 1<<20), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	l, _ := sink.NewLocal(dir)
	data := sinktest.Data(6, 4<<20)
	if _, err := l.Put(t.Context(), "k/failed", io.MultiReader(bytes.NewReader(data[:3<<20]), &errAfter{err: io.ErrUnexpectedEOF}), sink.PutOptions{Size: 4 << 20, Validator: `"v"`}); err == nil {
		t.Fatal("failing Put succeeded")
	}
	lease, err := l.Lock(t.Context(), sink.DefaultLockName, "second run", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer lease.Release(t.Context())
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the killed run's temporary file is still there: %v", err)
	}
	if _, err := os.Stat(orphan); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("an undescribed partial file is still there: %v", err)
	}
	if p, err := l.Partial(t.Context(), "k/failed"); err != nil || p.Size != 3<<20 {
		t.Errorf("a partial write kept for resuming was removed: Partial = %+v, %v", p, err)
	}
}

// TestLocalRangedWrite: an object written in pieces, out of order and
// concurrently, is committed with the SHA-256 of its whole content; one
// with a piece missing, or aborted, leaves nothing behind.
func TestLocalRangedWrite(t *testing.T) {
	const piece, pieces = 1 << 20, 20
	data := make([]byte, piece*pieces+777)
	for i := range data {
		data[i] = byte(i*7 + i>>12)
	}
	want := sha256.Sum256(data)
	order := rand.New(rand.NewPCG(1, 2)).Perm(pieces + 1)

	write := func(t *testing.T, p sink.Pending, skip int) {
		var wg stdsync.WaitGroup
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := w; k < len(order); k += 4 {
					i := order[k]
					if i == skip {
						continue
					}
					b := data[i*piece : min(len(data), (i+1)*piece)]
					// In two writes, as a stream's reads arrive.
					if _, err := p.WriteAt(b[:len(b)/2], int64(i*piece)); err != nil {
						t.Error(err)
					}
					if _, err := p.WriteAt(b[len(b)/2:], int64(i*piece+len(b)/2)); err != nil {
						t.Error(err)
					}
				}
			}()
		}
		wg.Wait()
	}

	dir := t.TempDir()
	l, err := sink.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	p, err := l.Create(t.Context(), "out/big.bin", int64(len(data)), sink.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	write(t, p, -1)
	info, err := p.Commit(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.SHA256 != hex.EncodeToString(want[:]) || info.Size != int64(len(data)) {
		t.Errorf("Commit: %+v, want size %d and sha256 %x", info, len(data), want)
	}
	got, err := os.ReadFile(filepath.Join(dir, "out/big.bin"))
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("the committed file differs from what was written (%d bytes, %v)", len(got), err)
	}

	p, err = l.Create(t.Context(), "out/holey.bin", int64(len(data)), sink.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	write(t, p, 7)
	if _, err := p.Commit(t.Context()); !errors.Is(err, sink.ErrShortStream) {
		t.Errorf("Commit with a piece missing: %v, want ErrShortStream", err)
	}
	p, err = l.Create(t.Context(), "out/aborted.bin", int64(len(data)), sink.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	write(t, p, 3)
	p.Abort()
	for _, name := range []string{"out/holey.bin", "out/aborted.bin"} {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: %v, want nothing there", name, err)
		}
	}
	if tmp, _ := os.ReadDir(filepath.Join(dir, ".artifact-sync", "tmp")); len(tmp) != 0 {
		t.Errorf("temporary files left behind: %v", tmp)
	}
}
