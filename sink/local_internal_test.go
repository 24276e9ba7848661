package sink

import (
	"errors"
	"slices"
	"strings"
	stdsync "sync"
	"testing"
)

// New folders are made durable: when a Put creates a/b/c for a/b/c/file,
// the parent of each new folder is synced after the folder is made, and
// the file's folder after the rename, so a power cut cannot leave a
// recorded file in a folder its parent never recorded.
func TestLocalSyncsNewFolders(t *testing.T) {
	l, err := NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// The state folders first, the same way.
	if _, err := l.Put(t.Context(), "first", strings.NewReader("x"), PutOptions{Size: 1}); err != nil {
		t.Fatal(err)
	}
	var mu stdsync.Mutex
	var synced []string
	l.onSyncDir = func(rel string) {
		mu.Lock()
		synced = append(synced, rel)
		mu.Unlock()
	}
	if _, err := l.Put(t.Context(), "a/b/c/file", strings.NewReader("x"), PutOptions{Size: 1}); err != nil {
		t.Fatal(err)
	}
	want := []string{"", "a", "a/b", "a/b/c"}
	if !slices.Equal(synced, want) {
		t.Errorf("synced folders %q, want %q: each new folder's parent, then the file's folder", synced, want)
	}
	// A second file in the same folder syncs only that folder.
	synced = nil
	if _, err := l.Put(t.Context(), "a/b/c/other", strings.NewReader("y"), PutOptions{Size: 1}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(synced, []string{"a/b/c"}) {
		t.Errorf("second file synced %q, want only its folder", synced)
	}
}

// A batching Local places files at once, readable at their keys, and
// leaves their fsyncs and their folders' to Sync: with per-file fsyncs
// (the fsync way of batching, which can be watched) no folder is synced by
// a Put, and Sync syncs each folder that received a file or a folder once.
func TestLocalBatchLeavesFsyncsToSync(t *testing.T) {
	t.Setenv("ARTIFACT_SYNC_BATCH_SYNC", "off")
	l, err := NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if l.Batch() {
		t.Fatal("Batch() = true with ARTIFACT_SYNC_BATCH_SYNC=off")
	}
	t.Setenv("ARTIFACT_SYNC_BATCH_SYNC", "fsync")
	if l, err = NewLocal(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if !l.Batch() {
		t.Fatal("Batch() = false with ARTIFACT_SYNC_BATCH_SYNC=fsync")
	}
	// The state folders first: those are made durable at once.
	if _, err := l.Put(t.Context(), "0/first", strings.NewReader("x"), PutOptions{Size: 1}); err != nil {
		t.Fatal(err)
	}
	var mu stdsync.Mutex
	var synced []string
	l.onSyncDir = func(rel string) {
		mu.Lock()
		synced = append(synced, rel)
		mu.Unlock()
	}
	for _, key := range []string{"1/0/a.txt", "1/0/b.txt", "1/0/d/c.txt", "2/0/e.txt"} {
		if _, err := l.Put(t.Context(), key, strings.NewReader(key), PutOptions{Size: int64(len(key))}); err != nil {
			t.Fatal(err)
		}
		if got, err := l.Open(t.Context(), key); err != nil {
			t.Fatalf("%s not readable after Put: %v", key, err)
		} else {
			got.Close()
		}
	}
	mu.Lock()
	for _, rel := range synced {
		if rel != stateDir && !strings.HasPrefix(rel, stateDir+"/") {
			t.Errorf("Put synced folder %q; a batching Local leaves that to Sync", rel)
		}
	}
	synced = nil
	mu.Unlock()
	if err := l.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	slices.Sort(synced)
	if want := []string{"", "0", "1", "1/0", "1/0/d", "2", "2/0"}; !slices.Equal(synced, want) {
		t.Errorf("Sync synced folders %q, want %q", synced, want)
	}
	synced = nil
	if err := l.Sync(t.Context()); err != nil || len(synced) != 0 {
		t.Errorf("a second Sync with nothing placed synced %q (%v)", synced, err)
	}
}

// A Sync that fails keeps its folders for the next one, and that next Sync
// flushes them even when nothing was placed since: a flush of the
// manifest's removals alone (after a failed flush) calls Sync with nothing
// new, and returning at once dropped the folders untried. Files placed
// later into their subfolders then became durable in folders whose own
// names never were, and a power cut took files the manifest recorded.
func TestLocalFailedSyncKeepsItsFoldersUntilOneSucceeds(t *testing.T) {
	t.Setenv("ARTIFACT_SYNC_BATCH_SYNC", "fsync")
	l, err := NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if !l.Batch() {
		t.Fatal("no batch")
	}
	put := func(key string) {
		t.Helper()
		if _, err := l.Put(t.Context(), key, strings.NewReader(key), PutOptions{Size: int64(len(key))}); err != nil {
			t.Fatal(err)
		}
	}
	put("0/first") // the state folders, made durable at once
	if err := l.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	var mu stdsync.Mutex
	var synced []string
	l.onSyncDir = func(rel string) {
		mu.Lock()
		synced = append(synced, rel)
		mu.Unlock()
	}
	put("1/0/dist/a.bin")
	l.onSync = func(error) error { return errors.New("injected flush failure") }
	if err := l.Sync(t.Context()); err == nil {
		t.Fatal("the injected failure was not reported")
	}
	l.onSync = nil
	mu.Lock()
	synced = nil
	mu.Unlock()
	// Nothing placed since the failure: the folders must still be flushed.
	if err := l.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	got := slices.Clone(synced)
	mu.Unlock()
	for _, want := range []string{"", "1", "1/0", "1/0/dist"} {
		if !slices.Contains(got, want) {
			t.Errorf("the Sync after a failed one flushed folders %q, not %q: its name may be lost in a power cut", got, want)
		}
	}
}
