package manifest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// plainStore hides the optional interfaces of the store it wraps, as a
// Store from elsewhere may lack them.
type plainStore struct{ st Store }

func (p plainStore) ReadFile(ctx context.Context, name string) ([]byte, error) {
	return p.st.ReadFile(ctx, name)
}
func (p plainStore) WriteFile(ctx context.Context, name string, data []byte) error {
	return p.st.WriteFile(ctx, name, data)
}
func (p plainStore) Remove(ctx context.Context, name string) error { return p.st.Remove(ctx, name) }
func (p plainStore) List(ctx context.Context) ([]string, error)    { return p.st.List(ctx) }
func (p plainStore) String() string                                { return p.st.String() }

// manyEntries returns n entries whose snapshot is larger than streamAbove
// once n is a few thousand.
func manyEntries(run string, n int) []Entry {
	es := make([]Entry, n)
	for i := range es {
		es[i] = testEntry(run, i)
		es[i].ETag = fmt.Sprintf(`"0x8DCB2A1F%07X"`, i)
		es[i].LastModified = "Thu, 02 Jan 2025 03:04:05 GMT"
	}
	return es
}

// TestLargeSnapshotThroughEveryStore: a snapshot too large to be written
// whole is streamed to a store that takes a stream, written whole to one
// that does not, holds the same entries byte for byte, and loads the same
// from either.
func TestLargeSnapshotThroughEveryStore(t *testing.T) {
	es := manyEntries("large", 5000)
	var files [][]byte
	for name, st := range map[string]Store{
		"dir":   DirStore{Dir: t.TempDir()},
		"plain": plainStore{DirStore{Dir: t.TempDir()}},
	} {
		t.Run(name, func(t *testing.T) {
			m := mustOpen(t, st, testOptions("large"))
			mustRecord(t, m, es...)
			mustClose(t, m)
			data, err := st.ReadFile(t.Context(), snapshotName)
			if err != nil {
				t.Fatal(err)
			}
			if len(data) <= streamAbove {
				t.Fatalf("the snapshot is %d bytes, want more than %d", len(data), streamAbove)
			}
			files = append(files, data)
			got := reload(t, st)
			wantEntries(t, got, es...)
		})
	}
	// The header names the journals, which background flushes write as
	// they happen; the entries must be the same bytes.
	entries := func(b []byte) []byte { return b[bytes.Index(b, []byte(snapshotEntriesStart)):] }
	if len(files) == 2 && !bytes.Equal(entries(files[0]), entries(files[1])) {
		t.Errorf("the streamed snapshot differs from the one written whole")
	}
}

// brokenStreamStore fails every write of a snapshot that reaches it as a
// stream, halfway through.
type brokenStreamStore struct{ *MemStore }

func (f brokenStreamStore) WriteFileFrom(ctx context.Context, name string, r io.Reader) error {
	return f.MemStore.WriteFileFrom(ctx, name, io.MultiReader(io.LimitReader(r, streamAbove), iotestErrReader{}))
}

type iotestErrReader struct{}

func (iotestErrReader) Read([]byte) (int, error) { return 0, fmt.Errorf("connection reset") }

// TestStreamedSnapshotFailureKeepsTheOldOne: a snapshot whose stream fails
// is not written, the journals it would have replaced stay, and everything
// still loads.
func TestStreamedSnapshotFailureKeepsTheOldOne(t *testing.T) {
	st := brokenStreamStore{new(MemStore)}
	es := manyEntries("fail", 5000)
	m := mustOpen(t, st, testOptions("fail"))
	mustRecord(t, m, es...)
	if err := m.Close(t.Context()); err == nil {
		t.Fatal("Close succeeded, want the snapshot's failure")
	}
	if _, err := st.ReadFile(t.Context(), snapshotName); err == nil {
		t.Fatal("a snapshot was written")
	}
	wantEntries(t, reload(t, st.MemStore), es...)
}

// heapRise runs f and returns by how much the heap in use rose at most
// above where it was before, and where it ended, after a collection.
func heapRise(f func()) (peak, kept uint64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var max atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		var ms runtime.MemStats
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > base && ms.HeapInuse-base > max.Load() {
				max.Store(ms.HeapInuse - base)
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	})
	f()
	close(done)
	wg.Wait()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	if ms.HeapInuse > base {
		kept = ms.HeapInuse - base
	}
	return max.Load(), kept
}

// TestMemoryFlatWithSize: a manifest of 100,000 entries holds a few hundred
// bytes per entry once loaded, and neither loading nor compacting it holds
// its files (about 35 MB) or a copy of its entries on top of that.
func TestMemoryFlatWithSize(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("measures the heap of 100,000 entries")
	}
	const (
		n             = 100_000
		MiB           = 1 << 20
		perEntry      = 320      // held per entry once loaded; 461 before the compact table
		transientMost = 12 * MiB // above what is held, while loading or compacting
	)
	// Collect often, so the rise measures what is held, not how much
	// garbage piles up between collections.
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	st := DirStore{Dir: t.TempDir()}
	m := mustOpen(t, st, testOptions("writer"))
	mustRecord(t, m, manyEntries("writer", n)...)
	mustClose(t, m)
	size := snapshotSize(t, st)

	var loaded *Manifest
	peak, kept := heapRise(func() { loaded = mustOpen(t, st, testOptions("reader")) })
	t.Logf("load of %d entries (a %.1f MiB snapshot): %d bytes held per entry, a peak %.1f MiB above that",
		n, float64(size)/MiB, kept/n, float64(peak-min(peak, kept))/MiB)
	if kept > perEntry*n {
		t.Errorf("a loaded manifest holds %d bytes per entry, want at most %d", kept/n, perEntry)
	}
	if peak > kept+transientMost {
		t.Errorf("loading peaked %.1f MiB above what it keeps, want at most %d MiB", float64(peak-kept)/MiB, transientMost/MiB)
	}

	e := testEntry("reader", n+1)
	mustRecord(t, loaded, e)
	peak, _ = heapRise(func() { mustClose(t, loaded) }) // a compaction
	t.Logf("compaction: a peak of %.1f MiB", float64(peak)/MiB)
	if peak > transientMost {
		t.Errorf("a compaction of %d entries peaked %.1f MiB above the manifest, want at most %d MiB", n, float64(peak)/MiB, transientMost/MiB)
	}
	runtime.KeepAlive(loaded)
}

func snapshotSize(t *testing.T, st Store) int {
	t.Helper()
	data, err := st.ReadFile(t.Context(), snapshotName)
	if err != nil {
		t.Fatal(err)
	}
	return len(data)
}
