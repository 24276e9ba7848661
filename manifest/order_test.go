package manifest

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
)

// orderStore records when each write to a store returned (so the file is
// durable, by the Store contract) and when each file was removed.
type orderStore struct {
	MemStore
	mu     sync.Mutex
	events []string
}

func (s *orderStore) note(ev string) {
	s.mu.Lock()
	s.events = append(s.events, ev)
	s.mu.Unlock()
}

func (s *orderStore) WriteFile(ctx context.Context, name string, data []byte) error {
	if err := s.MemStore.WriteFile(ctx, name, data); err != nil {
		return err
	}
	s.note("durable " + name)
	return nil
}

func (s *orderStore) Remove(ctx context.Context, name string) error {
	s.note("remove " + name)
	return s.MemStore.Remove(ctx, name)
}

// A compaction removes the journals a snapshot replaces only once the
// snapshot is durable (its write returned: written, fsynced, renamed, its
// folder fsynced, which TestStateFilesAreDurableWhenBatching in sink and
// durable.WriteFile check for the stores in a directory), and a journal is
// durable before the manifest counts on it.
func TestJournalsGoOnlyAfterTheSnapshotIsDurable(t *testing.T) {
	st := new(orderStore)
	opts := testOptions("o")
	opts.MaxJournals = 2
	m := mustOpen(t, st, opts)
	for i := range 5 {
		mustRecord(t, m, testEntry("o", i))
		if err := m.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	mustClose(t, m)
	snap := slices.Index(st.events, "durable "+snapshotName)
	if snap < 0 {
		t.Fatalf("no snapshot written: %q", st.events)
	}
	removed := 0
	for i, ev := range st.events {
		name, ok := strings.CutPrefix(ev, "remove ")
		if !ok {
			continue
		}
		removed++
		if !slices.Contains(st.events[:i], "durable "+name) {
			t.Errorf("%s removed before it was ever durable: %q", name, st.events)
		}
		if last := slices.Index(st.events[:i], "durable "+snapshotName); last < 0 {
			t.Errorf("%s removed before any snapshot was durable: %q", name, st.events)
		}
	}
	if removed == 0 {
		t.Errorf("no journal was removed: %q", st.events)
	}
	wantEntries(t, reload(t, st), testEntry("o", 0), testEntry("o", 1), testEntry("o", 2), testEntry("o", 3), testEntry("o", 4))
}
