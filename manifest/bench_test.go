package manifest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

const benchEntries = 100_000

func benchEntrySet() []Entry {
	es := make([]Entry, benchEntries)
	for i := range es {
		es[i] = testEntry("bench", i)
		es[i].ETag = fmt.Sprintf(`"0x8DCB2A1F%07X"`, i)
	}
	return es
}

// BenchmarkLoad opens a manifest of 100,000 entries and looks up every one:
// what each run does before it decides what to transfer.
func BenchmarkLoad(b *testing.B) {
	es := benchEntrySet()
	sorted := slices.Clone(es)
	slices.SortFunc(sorted, func(a, b Entry) int { return compareID(a.ID, b.ID) })
	hdr := snapshotHeader{Format: formatVersion, Destination: testDest, Run: "bench", Generation: 1}

	b.Run("snapshot", func(b *testing.B) {
		st := new(MemStore)
		data, err := encodeSnapshot(hdr, sorted)
		if err != nil {
			b.Fatal(err)
		}
		st.WriteFile(context.Background(), snapshotName, data)
		b.SetBytes(int64(len(data)))
		benchLoad(b, st, es)
	})
	b.Run("64-journals", func(b *testing.B) {
		st := new(MemStore)
		per := (len(es) + 63) / 64
		size := 0
		for seq, chunk := range chunks(es, per) {
			recs := make([]record, len(chunk))
			for i, e := range chunk {
				recs[i] = record{Entry: e}
			}
			data, err := encodeJournal(journalHeader{Format: formatVersion, Destination: testDest, Run: "bench", Generation: 1, Seq: int64(seq + 1)}, recs)
			if err != nil {
				b.Fatal(err)
			}
			size += len(data)
			st.WriteFile(context.Background(), journalName("bench", int64(seq+1)), data)
		}
		b.SetBytes(int64(size))
		benchLoad(b, st, es)
	})
}

func chunks(es []Entry, n int) [][]Entry {
	var out [][]Entry
	for c := range slices.Chunk(es, n) {
		out = append(out, c)
	}
	return out
}

func benchLoad(b *testing.B, st Store, es []Entry) {
	b.ReportAllocs()
	for b.Loop() {
		m, err := Open(context.Background(), st, testOptions("reader"))
		if err != nil {
			b.Fatal(err)
		}
		for _, e := range es {
			if _, ok := m.Lookup(e.ID); !ok {
				b.Fatalf("%v missing", e.ID)
			}
		}
		if err := m.Close(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(es)), "ns/entry")
}

// BenchmarkRecord records 100,000 completions into a directory with the
// default flush settings (a journal per 1,000 records, a compaction per 64
// journals), then closes: one op is the whole run.
func BenchmarkRecord(b *testing.B) {
	es := benchEntrySet()
	root := b.TempDir()
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		n++
		dir := filepath.Join(root, fmt.Sprint(n))
		opts := testOptions("bench")
		opts.FlushInterval = time.Second
		m, err := Open(context.Background(), DirStore{Dir: dir}, opts)
		if err != nil {
			b.Fatal(err)
		}
		for _, e := range es {
			if err := m.Record(e); err != nil {
				b.Fatal(err)
			}
		}
		if err := m.Close(context.Background()); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if m.Len() != len(es) {
			b.Fatalf("Len = %d", m.Len())
		}
		os.RemoveAll(dir)
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(es)), "ns/record")
}

// BenchmarkCloseAfterJournals is the end of a run of 500 artifacts recorded
// in groups of 16 (as a pull with -j 16 does): one op is the Close that
// writes the snapshot and removes the 32 journals it replaces, into a
// directory and into a store that takes 1 ms per call (an object store).
func BenchmarkCloseAfterJournals(b *testing.B) {
	const n, group = 500, 16
	es := benchEntrySet()[:n]
	for _, kind := range []string{"dir", "1ms-store"} {
		b.Run(kind, func(b *testing.B) {
			root := b.TempDir()
			i := 0
			for b.Loop() {
				b.StopTimer()
				i++
				var st Store = DirStore{Dir: filepath.Join(root, fmt.Sprint(i))}
				if kind == "1ms-store" {
					st = slowStore{Store: new(MemStore), delay: time.Millisecond}
				}
				m, err := Open(context.Background(), st, testOptions("bench"))
				if err != nil {
					b.Fatal(err)
				}
				for j, e := range es {
					if err := m.Record(e); err != nil {
						b.Fatal(err)
					}
					if (j+1)%group == 0 {
						if err := m.Flush(context.Background()); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.StartTimer()
				if err := m.Close(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// slowStore answers every call after delay.
type slowStore struct {
	Store
	delay time.Duration
}

func (s slowStore) WriteFile(ctx context.Context, name string, data []byte) error {
	time.Sleep(s.delay)
	return s.Store.WriteFile(ctx, name, data)
}

func (s slowStore) Remove(ctx context.Context, name string) error {
	time.Sleep(s.delay)
	return s.Store.Remove(ctx, name)
}
