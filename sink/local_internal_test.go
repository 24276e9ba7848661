package sink

import (
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
