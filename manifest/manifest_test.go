package manifest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const testDest = "s3://bucket/backups"

var testTime = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// testEntry returns a distinct, valid entry for i.
func testEntry(run string, i int) Entry {
	path := fmt.Sprintf("dist/%s/file-%d.tgz", run, i)
	sum := sha256.Sum256([]byte(path))
	return Entry{
		ID:        ID{Project: "gh/org/repo", JobNumber: int64(100 + i%7), NodeIndex: int64(i % 3), Path: path},
		Key:       fmt.Sprintf("%d/%d/%s", 100+i%7, i%3, path),
		Size:      int64(i * 1000),
		SHA256:    hex.EncodeToString(sum[:]),
		Completed: testTime.Add(time.Duration(i) * time.Millisecond),
		Run:       run,
	}
}

func testOptions(run string) Options {
	return Options{
		Destination:   testDest,
		ToolVersion:   "artifact-sync test",
		Run:           run,
		FlushInterval: time.Hour, // tests flush by hand unless they say otherwise
		Now:           func() time.Time { return testTime },
	}
}

func mustOpen(t testing.TB, st Store, opts Options) *Manifest {
	t.Helper()
	m, err := Open(context.Background(), st, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return m
}

func mustClose(t testing.TB, m *Manifest) {
	t.Helper()
	if err := m.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func mustRecord(t testing.TB, m *Manifest, es ...Entry) {
	t.Helper()
	for _, e := range es {
		if err := m.Record(e); err != nil {
			t.Fatalf("Record(%v): %v", e.ID, err)
		}
	}
}

// crashCopy returns the files st holds now, as a process killed at this
// instant would leave them.
func crashCopy(t testing.TB, st *MemStore) *MemStore {
	t.Helper()
	st.mu.Lock()
	defer st.mu.Unlock()
	return &MemStore{files: maps.Clone(st.files)}
}

// reload opens st as a new run would and returns its entries.
func reload(t testing.TB, st Store) map[ID]Entry {
	t.Helper()
	m := mustOpen(t, st, testOptions("reader"))
	defer mustClose(t, m)
	got := make(map[ID]Entry)
	for e := range m.Entries() {
		got[e.ID] = e
	}
	return got
}

func wantEntries(t testing.TB, got map[ID]Entry, want ...Entry) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("manifest has %d entries, want %d", len(got), len(want))
	}
	for _, w := range want {
		g, ok := got[w.ID]
		if !ok {
			t.Errorf("missing %v", w.ID)
			continue
		}
		if !sameEntry(g, w) {
			t.Errorf("entry %v:\n got %+v\nwant %+v", w.ID, g, w)
		}
	}
}

func sameEntry(a, b Entry) bool {
	ac, bc := a.Completed, b.Completed
	a.Completed, b.Completed = time.Time{}, time.Time{}
	return a == b && ac.Equal(bc)
}

func journalsIn(t testing.TB, st Store) []string {
	t.Helper()
	names, err := st.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var js []string
	for _, n := range names {
		if _, _, ok := parseJournalName(n); ok {
			js = append(js, n)
		}
	}
	slices.Sort(js)
	return js
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		st   func(t *testing.T) Store
	}{
		{"MemStore", func(*testing.T) Store { return new(MemStore) }},
		{"DirStore", func(t *testing.T) Store { return DirStore{Dir: t.TempDir()} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := tc.st(t)
			m := mustOpen(t, st, testOptions("one"))
			if m.Len() != 0 {
				t.Fatalf("new manifest has %d entries", m.Len())
			}
			var want []Entry
			for i := range 50 {
				want = append(want, testEntry("one", i))
			}
			want[3].ETag = `"0x8D9"`
			want[3].LastModified = "Wed, 21 Oct 2015 07:28:00 GMT"
			want[4].ID.Path = "reports/ünïcode & <angle>.html"
			want[5].Size = 0
			want[6].SHA256 = ""
			mustRecord(t, m, want...)
			if e, ok := m.Lookup(want[3].ID); !ok || !sameEntry(e, want[3]) {
				t.Errorf("Lookup before flush = %+v, %v", e, ok)
			}
			mustClose(t, m)

			if js := journalsIn(t, st); len(js) != 0 {
				t.Errorf("journals left after Close: %q", js)
			}
			got := reload(t, st)
			wantEntries(t, got, want...)

			m = mustOpen(t, st, testOptions("two"))
			defer mustClose(t, m)
			var prev *ID
			n := 0
			for e := range m.Entries() {
				if prev != nil && compareID(*prev, e.ID) >= 0 {
					t.Errorf("Entries out of order: %v then %v", *prev, e.ID)
				}
				prev = &e.ID
				n++
			}
			if n != len(want) || m.Len() != len(want) {
				t.Errorf("Entries yielded %d, Len = %d, want %d", n, m.Len(), len(want))
			}
			for range m.Entries() {
				break // stopping early must not panic
			}
		})
	}
}

func TestRecordFillsDefaults(t *testing.T) {
	m := mustOpen(t, new(MemStore), testOptions("defaults"))
	defer mustClose(t, m)
	e := testEntry("", 1)
	e.Completed = time.Time{}
	mustRecord(t, m, e)
	got, _ := m.Lookup(e.ID)
	if got.Run != "defaults" || !got.Completed.Equal(testTime) || got.Completed.Location() != time.UTC {
		t.Errorf("Record stored Run %q Completed %v, want the manifest's run and Now in UTC", got.Run, got.Completed)
	}
}

func TestRecordRejectsInvalid(t *testing.T) {
	m := mustOpen(t, new(MemStore), testOptions("r"))
	defer mustClose(t, m)
	bad := map[string]func(*Entry){
		"no project": func(e *Entry) { e.Project = "" },
		"no path":    func(e *Entry) { e.Path = "" },
		"negative":   func(e *Entry) { e.Size = -1 },
		"short sha":  func(e *Entry) { e.SHA256 = "abc" },
		"upper sha":  func(e *Entry) { e.SHA256 = strings.ToUpper(e.SHA256) },
		"year 10000": func(e *Entry) { e.Completed = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) },
	}
	for name, f := range bad {
		e := testEntry("r", 1)
		f(&e)
		if err := m.Record(e); err == nil {
			t.Errorf("%s: Record succeeded", name)
		}
	}
	if m.Len() != 0 {
		t.Errorf("invalid entries were recorded: Len = %d", m.Len())
	}
}

// TestClockOutOfRange: a clock JSON cannot represent fails the flush; it
// does not write a broken file.
func TestClockOutOfRange(t *testing.T) {
	st := new(MemStore)
	opts := testOptions("clock")
	opts.Now = func() time.Time { return time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }
	m := mustOpen(t, st, opts)
	mustRecord(t, m, testEntry("clock", 1))
	if err := m.Flush(t.Context()); err == nil || !strings.Contains(err.Error(), "cannot encode") {
		t.Errorf("Flush = %v, want an encoding error", err)
	}
	if err := m.Close(t.Context()); err == nil {
		t.Errorf("Close succeeded")
	}
	if names, _ := st.List(t.Context()); len(names) != 0 {
		t.Errorf("files written: %q", names)
	}
}

func TestOpenOptions(t *testing.T) {
	ctx := t.Context()
	if _, err := Open(ctx, new(MemStore), Options{}); err == nil {
		t.Errorf("Open without a destination succeeded")
	}
	for _, run := range []string{"a/b", "../x", ".hidden", "with space", strings.Repeat("x", 65)} {
		if _, err := Open(ctx, new(MemStore), Options{Destination: "d", Run: run}); err == nil {
			t.Errorf("Open with run %q succeeded", run)
		}
	}
	m, err := Open(ctx, new(MemStore), Options{Destination: "d"})
	if err != nil {
		t.Fatal(err)
	}
	if !validName(m.opts.Run) {
		t.Errorf("generated run name %q is not a valid file name part", m.opts.Run)
	}
	mustClose(t, m)
}

// TestMergeSnapshotAndJournals loads what a crash leaves: a snapshot from an
// earlier run plus the journals of the run that crashed.
func TestMergeSnapshotAndJournals(t *testing.T) {
	st := new(MemStore)
	a, b, c := testEntry("one", 1), testEntry("one", 2), testEntry("one", 3)
	m := mustOpen(t, st, testOptions("one"))
	mustRecord(t, m, a, b, c)
	mustClose(t, m)

	m = mustOpen(t, st, testOptions("two"))
	b2 := b
	b2.Size, b2.Run = 777, "two"
	d := testEntry("two", 4)
	mustRecord(t, m, b2)
	if err := m.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	m.Remove(a.ID)
	m.Remove(ID{Project: "gh/org/repo", Path: "never/recorded"}) // no effect
	mustRecord(t, m, d)
	if err := m.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	crashed := crashCopy(t, st)
	mustClose(t, m)

	if n := len(journalsIn(t, crashed)); n != 2 {
		t.Fatalf("crashed store has %d journals, want 2", n)
	}
	wantEntries(t, reload(t, crashed), b2, c, d)
	wantEntries(t, reload(t, st), b2, c, d)
}

// TestLaterWins checks that a later run's record wins even if its journal
// sorts first by name and its clock is behind.
func TestLaterWins(t *testing.T) {
	st := new(MemStore)
	x := testEntry("zzz", 1)
	m := mustOpen(t, st, testOptions("zzz"))
	mustRecord(t, m, x)
	if err := m.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	crashed := crashCopy(t, st) // run "zzz" dies: journal, no snapshot
	mustClose(t, m)

	m = mustOpen(t, crashed, testOptions("aaa"))
	x2 := x
	x2.Size, x2.Run = 42, "aaa"
	x2.Completed = x.Completed.Add(-time.Hour)
	mustRecord(t, m, x2)
	if err := m.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	crashed2 := crashCopy(t, crashed)
	mustClose(t, m)

	wantEntries(t, reload(t, crashed2), x2)
	wantEntries(t, reload(t, crashed), x2)

	// Within a run, the last call wins: record, remove, record again.
	m = mustOpen(t, st, testOptions("again"))
	x3 := x
	x3.Size = 3
	m.Remove(x.ID)
	mustRecord(t, m, x3)
	m.Remove(x.ID)
	mustRecord(t, m, x)
	m.Remove(x.ID)
	mustRecord(t, m, x2)
	if err := m.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	crashed3 := crashCopy(t, st)
	mustClose(t, m)
	wantEntries(t, reload(t, crashed3), x2)
}

func TestCompaction(t *testing.T) {
	st := new(MemStore)
	opts := testOptions("compact")
	opts.MaxJournals = 3
	m := mustOpen(t, st, opts)
	var want []Entry
	for i := range 20 {
		e := testEntry("compact", i)
		want = append(want, e)
		mustRecord(t, m, e)
		if err := m.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
		if js := journalsIn(t, st); len(js) > opts.MaxJournals {
			t.Fatalf("after flush %d: %d journals, want at most %d", i, len(js), opts.MaxJournals)
		}
		wantEntries(t, reload(t, crashCopy(t, st)), want...)
	}
	if _, err := st.ReadFile(t.Context(), snapshotName); err != nil {
		t.Fatalf("no snapshot after compactions: %v", err)
	}
	mustClose(t, m)
	if js := journalsIn(t, st); len(js) != 0 {
		t.Errorf("journals left after Close: %q", js)
	}
	wantEntries(t, reload(t, st), want...)
}

// failingStore wraps a MemStore and fails the operations it is told to.
type failingStore struct {
	*MemStore
	failWrite  atomic.Bool
	failRemove func(name string) bool
	writes     atomic.Int64
	removes    atomic.Int64
}

var errInjected = errors.New("injected failure")

// WriteFileFrom fails as WriteFile does; MemStore's would not.
func (f *failingStore) WriteFileFrom(ctx context.Context, name string, r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	return f.WriteFile(ctx, name, data)
}

func (f *failingStore) WriteFile(ctx context.Context, name string, data []byte) error {
	f.writes.Add(1)
	if f.failWrite.Load() {
		return errInjected
	}
	return f.MemStore.WriteFile(ctx, name, data)
}

func (f *failingStore) Remove(ctx context.Context, name string) error {
	f.removes.Add(1)
	if f.failRemove != nil && f.failRemove(name) {
		return errInjected
	}
	return f.MemStore.Remove(ctx, name)
}

// TestSnapshotNamesItsJournals crashes between writing a snapshot and
// removing the journals it includes: a journal that survives must not be
// applied again over the snapshot, or a removed entry would come back.
func TestSnapshotNamesItsJournals(t *testing.T) {
	st := &failingStore{MemStore: new(MemStore)}
	a, b := testEntry("r", 1), testEntry("r", 2)
	m := mustOpen(t, st, testOptions("r"))
	mustRecord(t, m, a, b)
	if err := m.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	m.Remove(a.ID)
	if err := m.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	first := journalsIn(t, st)[0]
	st.failRemove = func(name string) bool { return name == first }
	err := m.Close(t.Context())
	if !errors.Is(err, errInjected) || !strings.Contains(err.Error(), first) {
		t.Errorf("Close = %v, want the failure to remove %s", err, first)
	}
	if js := journalsIn(t, st); !slices.Equal(js, []string{first}) {
		t.Fatalf("journals after Close = %q, want only %s", js, first)
	}
	wantEntries(t, reload(t, st.MemStore), b)

	// The next run that writes removes the leftover, and still agrees.
	st.failRemove = nil
	m = mustOpen(t, st, testOptions("r")) // same run name: must not reuse file names
	c := testEntry("r", 3)
	mustRecord(t, m, c)
	if err := m.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	crashed := crashCopy(t, st.MemStore)
	mustClose(t, m)
	wantEntries(t, reload(t, crashed), b, c)
	wantEntries(t, reload(t, st.MemStore), b, c)
	if js := journalsIn(t, st); len(js) != 0 {
		t.Errorf("journals left: %q", js)
	}
}

func TestReusedRunNameAfterClose(t *testing.T) {
	st := new(MemStore)
	a, b := testEntry("r", 1), testEntry("r", 2)
	m := mustOpen(t, st, testOptions("r"))
	mustRecord(t, m, a)
	mustClose(t, m)

	m = mustOpen(t, st, testOptions("r"))
	mustRecord(t, m, b)
	if err := m.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	crashed := crashCopy(t, st)
	mustClose(t, m)
	wantEntries(t, reload(t, crashed), a, b)
}

func TestFlushErrorSurfaces(t *testing.T) {
	st := &failingStore{MemStore: new(MemStore)}
	m := mustOpen(t, st, testOptions("f"))
	a, b, c := testEntry("f", 1), testEntry("f", 2), testEntry("f", 3)
	mustRecord(t, m, a)

	st.failWrite.Store(true)
	err := m.Flush(t.Context())
	var me *Error
	if !errors.As(err, &me) || !errors.Is(err, errInjected) || !strings.Contains(err.Error(), "memory/journal-f-") {
		t.Fatalf("Flush = %v, want an *Error naming the journal and wrapping the store's error", err)
	}
	// A failed flush fails no later record: it stays pending.
	if err := m.Record(b); err != nil {
		t.Errorf("Record after a failed flush = %v, want nil", err)
	}

	st.failWrite.Store(false)
	if err := m.Flush(t.Context()); err != nil {
		t.Fatalf("Flush after recovery: %v", err)
	}
	mustRecord(t, m, c) // the error is cleared
	crashed := crashCopy(t, st.MemStore)
	mustClose(t, m)
	wantEntries(t, reload(t, crashed), a, b)
	wantEntries(t, reload(t, st.MemStore), a, b, c)
}

func TestBackgroundFlush(t *testing.T) {
	st := &failingStore{MemStore: new(MemStore)}
	opts := testOptions("bg")
	opts.FlushInterval = 5 * time.Millisecond
	m := mustOpen(t, st, opts)
	a := testEntry("bg", 1)
	mustRecord(t, m, a)
	waitFor(t, "a background flush", func() bool { return len(journalsIn(t, st)) == 1 })
	wantEntries(t, reload(t, crashCopy(t, st.MemStore)), a)

	st.failWrite.Store(true)
	b := testEntry("bg", 2)
	mustRecord(t, m, b)
	waitFor(t, "a background flush to fail", func() bool {
		return errors.Is(m.Flush(t.Context()), errInjected)
	})
	if err := m.Record(b); err != nil {
		t.Errorf("Record after a failed background flush = %v, want nil: the record waits for the next flush", err)
	}
	err := m.Close(t.Context())
	if !errors.Is(err, errInjected) {
		t.Errorf("Close with a failing store = %v, want the store's error", err)
	}
	if err2 := m.Close(t.Context()); !errors.Is(err2, errInjected) {
		t.Errorf("second Close = %v, want the first one's result", err2)
	}
	if err := m.Record(a); !errors.Is(err, ErrClosed) {
		t.Errorf("Record after Close = %v, want ErrClosed", err)
	}
	if err := m.Flush(t.Context()); !errors.Is(err, ErrClosed) {
		t.Errorf("Flush after Close = %v, want ErrClosed", err)
	}
}

func TestFlushEntriesFlushesEarly(t *testing.T) {
	st := new(MemStore)
	opts := testOptions("early")
	opts.FlushEntries = 10
	m := mustOpen(t, st, opts)
	defer mustClose(t, m)
	for i := range 10 {
		mustRecord(t, m, testEntry("early", i))
	}
	waitFor(t, "an early flush", func() bool { return len(journalsIn(t, st)) > 0 })
}

// TestCloseUnchangedWritesNothing: lookups alone never write, so a
// read-only store works for them and a leftover journal is left for the
// next run that writes.
func TestCloseUnchangedWritesNothing(t *testing.T) {
	st := &failingStore{MemStore: new(MemStore)}
	m := mustOpen(t, st, testOptions("w"))
	mustRecord(t, m, testEntry("w", 1))
	if err := m.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	crashed := &failingStore{MemStore: crashCopy(t, st.MemStore)}
	mustClose(t, m)

	for _, s := range []*failingStore{st, crashed} {
		s.writes.Store(0)
		s.removes.Store(0)
		m := mustOpen(t, s, testOptions("ro"))
		if _, ok := m.Lookup(testEntry("w", 1).ID); !ok {
			t.Errorf("entry missing")
		}
		mustClose(t, m)
		if w, r := s.writes.Load(), s.removes.Load(); w != 0 || r != 0 {
			t.Errorf("unchanged manifest: Close made %d writes and %d removals", w, r)
		}
	}
}

func TestConcurrentRecord(t *testing.T) {
	st := DirStore{Dir: t.TempDir()}
	opts := testOptions("conc")
	opts.FlushInterval = time.Millisecond
	opts.FlushEntries = 100
	opts.MaxJournals = 5
	m := mustOpen(t, st, opts)

	const workers, each = 16, 300
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				e := testEntry(fmt.Sprintf("w%d", w), i)
				if err := m.Record(e); err != nil {
					t.Error(err)
					return
				}
				if _, ok := m.Lookup(e.ID); !ok {
					t.Errorf("Lookup right after Record: %v missing", e.ID)
				}
				if i%100 == 0 {
					_ = m.Len()
					for range m.Entries() {
					}
					if err := m.Flush(t.Context()); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
	mustClose(t, m)

	var want []Entry
	for w := range workers {
		for i := range each {
			want = append(want, testEntry(fmt.Sprintf("w%d", w), i))
		}
	}
	wantEntries(t, reload(t, st), want...)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// Options.Durable runs before every journal and snapshot write, after the
// entries the write holds were taken; when it fails nothing is written, and
// the entries it covered are dropped for good: a flush that succeeds after
// a failed one proves nothing about the data the failed one covered (the
// kernel may have dropped those pages), so they must never reach the store,
// not with the next journal and not in the snapshot.
func TestDurableBeforeEveryWrite(t *testing.T) {
	st := new(MemStore)
	opts := testOptions("d")
	var fail atomic.Bool
	var calls atomic.Int32
	opts.Durable = func(context.Context) error {
		calls.Add(1)
		if fail.Load() {
			return errInjected
		}
		return nil
	}
	old := testEntry("d", 1)
	old.Run, old.Size = "earlier", 7
	seed := mustOpen(t, st, testOptions("earlier"))
	mustRecord(t, seed, old)
	mustClose(t, seed)

	m := mustOpen(t, st, opts)
	a, b := testEntry("d", 1), testEntry("d", 2) // a replaces old
	mustRecord(t, m, a)
	fail.Store(true)
	if err := m.Flush(t.Context()); !errors.Is(err, errInjected) || !strings.Contains(err.Error(), "durable") {
		t.Fatalf("Flush with Durable failing = %v, want its error", err)
	}
	if names, _ := st.List(t.Context()); len(names) != 1 {
		t.Fatalf("a journal was written although Durable failed: %v", names)
	}
	if e, ok := m.Lookup(a.ID); ok {
		t.Fatalf("after a failed Durable the manifest still records %v (size %d)", e.ID, e.Size)
	}
	fail.Store(false)
	mustRecord(t, m, b)
	if err := m.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	wantEntries(t, reload(t, crashCopy(t, st)), b)
	before := calls.Load()
	mustClose(t, m) // the snapshot
	if calls.Load() == before {
		t.Error("Close wrote a snapshot without calling Durable first")
	}
	wantEntries(t, reload(t, st), b)
}
