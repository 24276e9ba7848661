package sink

import (
	"errors"
	"slices"
	"strings"
	stdsync "sync"
	"syscall"
	"testing"
)

// A Sync that fails names every object placed since the last good one, and
// those objects leave the batch: the next Sync, which succeeds, covers only
// what was placed after, and never makes the failed ones look durable.
// Once a Sync has failed, every file placed is also fsynced through the
// descriptor that wrote it, so a page lost before the failure was seen is
// still reported, for that file alone.
func TestFailedSyncNamesWhatItCoveredOnce(t *testing.T) {
	for _, mode := range []string{batchSyncfs, batchFsync} {
		t.Run(mode, func(t *testing.T) {
			if mode == batchSyncfs && !haveSyncfs {
				t.Skip("no syncfs(2) on this platform")
			}
			t.Setenv("ARTIFACT_SYNC_BATCH_SYNC", mode)
			l, err := NewLocal(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			if !l.Batch() {
				t.Fatalf("Batch() = false in mode %s", mode)
			}
			put := func(key string) {
				t.Helper()
				if _, err := l.Put(t.Context(), key, strings.NewReader(key), PutOptions{Size: int64(len(key))}); err != nil {
					t.Fatal(err)
				}
			}
			var fail bool
			l.onSync = func(err error) error {
				if fail {
					fail = false
					return syscall.EIO
				}
				return err
			}
			put("a/1")
			if err := l.Sync(t.Context()); err != nil {
				t.Fatal(err)
			}
			put("a/2")
			put("b/3")
			fail = true
			var fe *FlushError
			if err := l.Sync(t.Context()); !errors.As(err, &fe) || !errors.Is(err, syscall.EIO) {
				t.Fatalf("failing Sync = %v, want a *FlushError of EIO", err)
			}
			if !slices.Equal(fe.Keys, []string{"a/2", "b/3"}) || fe.Dest != l.dir || !strings.Contains(fe.Error(), l.dir) {
				t.Errorf("FlushError %+v (%q), want keys a/2 b/3 of %s", fe, fe.Error(), l.dir)
			}
			if err := l.Sync(t.Context()); err != nil {
				t.Fatalf("Sync after the failed one, with nothing new placed = %v", err)
			}
			var steps []string
			l.onStep = func(step, rel string) { steps = append(steps, step+" "+rel) }
			put("c/4")
			if !slices.Contains(steps, "fsync c/4") {
				t.Errorf("a file placed after a failed Sync was not fsynced through its own descriptor: %q", steps)
			}
			fail = true
			l.onSync = func(err error) error {
				if fail {
					fail = false
					return syscall.EIO
				}
				return err
			}
			err = l.Sync(t.Context())
			if !errors.As(err, &fe) || !slices.Equal(fe.Keys, []string{"c/4"}) {
				t.Fatalf("second failing Sync = %v, want one naming c/4 alone", err)
			}
			put("c/5")
			if err := l.Sync(t.Context()); err != nil {
				t.Fatal(err)
			}
			if len(l.batch.keys) != 0 || len(l.batch.files) != 0 {
				t.Errorf("after a good Sync the batch still holds %q and %d files", l.batch.keys, len(l.batch.files))
			}
		})
	}
}

// The tool's own files (the manifest's snapshot and journals go through
// Put under DEST/.artifact-sync/) are durable when Put returns, batching or
// not: the file is fsynced, renamed into place, and its folder fsynced, in
// that order. Anything relies on them as soon as they are written: the
// manifest removes the journals a snapshot replaces right after it.
func TestStateFilesAreDurableWhenBatching(t *testing.T) {
	for _, mode := range []string{batchSyncfs, batchFsync, batchOff} {
		t.Run(mode, func(t *testing.T) {
			t.Setenv("ARTIFACT_SYNC_BATCH_SYNC", mode)
			l, err := NewLocal(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			l.Batch()
			var mu stdsync.Mutex
			var steps []string
			l.onStep = func(step, rel string) {
				mu.Lock()
				defer mu.Unlock()
				if strings.HasPrefix(rel, tmpDir+"/") {
					rel = tmpDir + "/*"
				}
				steps = append(steps, step+" "+rel)
			}
			const key = stateDir + "/manifest/manifest.json"
			if _, err := l.Put(t.Context(), key, strings.NewReader("{}"), PutOptions{Size: 2}); err != nil {
				t.Fatal(err)
			}
			want := []string{"fsync " + tmpDir + "/*", "rename " + key, "syncdir " + stateDir + "/manifest"}
			if !slices.Equal(steps, want) {
				t.Errorf("placing %s: %q, want %q", key, steps, want)
			}
		})
	}
}
