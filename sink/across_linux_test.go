package sink_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"testing/iotest"
	"time"

	"github.com/artifact-sync/artifact-sync/sink"
	"github.com/artifact-sync/artifact-sync/sink/sinktest"
)

// mountInside mounts a small file system of kind ("tmpfs", or "ext4" on a
// loop device) on folder rel of the destination dir, another file system
// than dir's own, for the rest of the test. It skips the test unless it may
// mount (root).
func mountInside(t *testing.T, dir, rel, kind string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a file system inside the destination")
	}
	mnt := filepath.Join(dir, rel)
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	switch kind {
	case "tmpfs":
		if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=64m"); err != nil {
			t.Skipf("cannot mount a tmpfs here: %v", err)
		}
	case "ext4":
		img := filepath.Join(t.TempDir(), "ext4.img")
		if err := os.WriteFile(img, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(img, 64<<20); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("mkfs.ext4", "-q", "-F", img).CombinedOutput(); err != nil {
			t.Skipf("cannot make an ext4 image here: %v %s", err, out)
		}
		if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
			t.Skipf("cannot mount an ext4 image on a loop device here: %v %s", err, out)
		}
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(mnt, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmounting %s: %v", mnt, err)
		}
	})
	return mnt
}

// wantOnly checks that the tree under dir, outside .artifact-sync, holds
// exactly want (key to bytes).
func wantOnly(t *testing.T, dir string, want map[string][]byte) {
	t.Helper()
	seen := map[string]bool{}
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			t.Error(err)
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if rel == ".artifact-sync" {
			return filepath.SkipDir
		}
		if d.IsDir() {
			return nil
		}
		data, ok := want[rel]
		if !ok {
			t.Errorf("unexpected file %s in the destination", rel)
			return nil
		}
		seen[rel] = true
		if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s: %d bytes (%v), want the %d written", rel, len(got), err, len(data))
		}
		return nil
	})
	for k := range want {
		if !seen[k] {
			t.Errorf("%s is missing", k)
		}
	}
}

// A folder inside the destination that is another file system (a mount)
// takes files like any other: small ones, ones written in ranges, and ones
// resumed from kept bytes, each whole at its key in one attempt, nothing
// left beside them. The rename from DEST/.artifact-sync used to fail there
// with EXDEV, every time.
func TestLocalPlacesFilesOnAMountInsideTheDestination(t *testing.T) {
	for _, tc := range []struct {
		fs      string
		batched bool
	}{{"tmpfs", false}, {"tmpfs", true}, {"ext4", false}, {"ext4", true}} {
		batched := tc.batched
		name := tc.fs + ", fsync per file"
		if batched {
			name = tc.fs + ", batched"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			mountInside(t, dir, "mnt", tc.fs)
			l, err := sink.NewLocal(dir)
			if err != nil {
				t.Fatal(err)
			}
			if batched && !l.Batch() {
				t.Skip("this platform does not batch")
			}
			ctx := t.Context()
			want := map[string][]byte{}

			small := sinktest.Data(1, 3000)
			if _, err := l.Put(ctx, "mnt/a/b/small.txt", bytes.NewReader(small), sink.PutOptions{Size: int64(len(small))}); err != nil {
				t.Fatalf("Put into the mount: %v", err)
			}
			want["mnt/a/b/small.txt"] = small
			if _, err := l.Put(ctx, "top.txt", bytes.NewReader(small), sink.PutOptions{Size: int64(len(small))}); err != nil {
				t.Fatalf("Put beside the mount: %v", err)
			}
			want["top.txt"] = small

			ranged := sinktest.Data(2, 5<<20+17)
			p, err := l.Create(ctx, "mnt/ranged.bin", int64(len(ranged)), sink.PutOptions{Validator: `"r"`})
			if err != nil {
				t.Fatal(err)
			}
			for off := len(ranged); off > 0; off -= 1 << 20 { // back to front
				from := max(0, off-1<<20)
				if _, err := p.WriteAt(ranged[from:off], int64(from)); err != nil {
					t.Fatal(err)
				}
			}
			info, err := p.Commit(ctx)
			if err != nil {
				t.Fatalf("Commit into the mount: %v", err)
			}
			if sum := sha256.Sum256(ranged); info.SHA256 != hex.EncodeToString(sum[:]) {
				t.Errorf("Commit reports SHA-256 %s, want %x", info.SHA256, sum)
			}
			want["mnt/ranged.bin"] = ranged

			resumed := sinktest.Data(3, 3<<20)
			errCut := errors.New("cut")
			_, err = l.Put(ctx, "mnt/c/resumed.bin", io.MultiReader(bytes.NewReader(resumed[:2<<20]), iotest.ErrReader(errCut)),
				sink.PutOptions{Size: int64(len(resumed)), Validator: `"v"`})
			if !errors.Is(err, errCut) {
				t.Fatalf("cut Put: %v", err)
			}
			kept, err := l.Partial(ctx, "mnt/c/resumed.bin")
			if err != nil || kept.Size != 2<<20 {
				t.Fatalf("kept %+v, %v; want 2 MiB", kept, err)
			}
			if _, err := l.PutFrom(ctx, "mnt/c/resumed.bin", kept.Size, bytes.NewReader(resumed[kept.Size:]),
				sink.PutOptions{Size: int64(len(resumed)), Validator: `"v"`}); err != nil {
				t.Fatalf("PutFrom into the mount: %v", err)
			}
			want["mnt/c/resumed.bin"] = resumed
			if err := l.Sync(ctx); err != nil {
				t.Fatal(err)
			}

			wantOnly(t, dir, want)
			if p, _ := l.Partial(ctx, "mnt/c/resumed.bin"); p.Size != 0 {
				t.Errorf("a partial is kept after the file was placed: %+v", p)
			}
			for _, state := range []string{"partial", "tmp"} {
				entries, _ := os.ReadDir(filepath.Join(dir, ".artifact-sync", state))
				for _, e := range entries {
					t.Errorf("%s left in .artifact-sync/%s", e.Name(), state)
				}
			}
		})
	}
}

// A copy into a mount that a killed run left beside its key is removed by
// the next run once it holds the lock; the artifacts beside it stay.
func TestLocalRemovesCopiesAKilledRunLeftOnAMount(t *testing.T) {
	dir := t.TempDir()
	mountInside(t, dir, "mnt", "tmpfs")
	l, err := sink.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	lease, err := l.Lock(t.Context(), sink.DefaultLockName, "first", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	data := sinktest.Data(4, 1000)
	if _, err := l.Put(t.Context(), "mnt/a/kept.txt", bytes.NewReader(data), sink.PutOptions{Size: int64(len(data))}); err != nil {
		t.Fatal(err)
	}
	// What a run killed while copying leaves: a copy beside the key.
	left := filepath.Join(dir, "mnt", "a", ".artifact-sync-tmp-"+rand.Text())
	if err := os.WriteFile(left, data[:10], 0o644); err != nil {
		t.Fatal(err)
	}
	lease.Release(t.Context())

	l2, err := sink.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	lease, err = l2.Lock(t.Context(), sink.DefaultLockName, "second", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer lease.Release(t.Context())
	wantOnly(t, dir, map[string][]byte{"mnt/a/kept.txt": data})
}

// The tool's own folders split over file systems (a mount on
// DEST/.artifact-sync/partial) fail a large write at once with a permanent
// error naming the path, rather than as a hiccup worth retrying: EXDEV
// fails the same way every time.
func TestLocalStateOverTwoMountsIsPermanent(t *testing.T) {
	dir := t.TempDir()
	mountInside(t, dir, ".artifact-sync/partial", "tmpfs")
	l, err := sink.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	data := sinktest.Data(5, 20<<20) // past the first checkpoint, which moves it to partial/
	_, err = l.Put(t.Context(), "big.bin", bytes.NewReader(data), sink.PutOptions{Size: int64(len(data)), Validator: `"v"`})
	if err == nil {
		t.Skip("the write never moved to partial/: nothing to check")
	}
	if !sink.IsPermanent(err) || !errors.Is(err, syscall.EXDEV) || !strings.Contains(err.Error(), dir) {
		t.Errorf("error %v (permanent: %v): want a permanent EXDEV naming the destination", err, sink.IsPermanent(err))
	}
}
