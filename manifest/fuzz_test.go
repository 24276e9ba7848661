package manifest

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
)

// FuzzLoad feeds arbitrary bytes as a snapshot and a journal. Loading must
// never panic; it either succeeds or fails with a classified *Error. What
// loads must survive a compaction unchanged.
func FuzzLoad(f *testing.F) {
	snapshot, err := os.ReadFile(filepath.Join("testdata", "manifest.golden"))
	if err != nil {
		f.Fatal(err)
	}
	journal, err := os.ReadFile(filepath.Join("testdata", "journal.golden"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(snapshot, journal)
	f.Add(snapshot, []byte{})
	f.Add([]byte{}, journal)
	f.Add(snapshot[:len(snapshot)/2], journal[:len(journal)/2])
	f.Add(bytes.Replace(snapshot, []byte(`"format": 2`), []byte(`"format": 9`), 1), journal)
	f.Add(snapshot, bytes.Replace(journal, []byte(`"format":2`), []byte(`"format":9`), 1))
	f.Add(bytes.Replace(snapshot, []byte(`"journals": [`), []byte(`"journals": [ "journal-fuzz-000001.jsonl",`), 1), journal)
	f.Add([]byte(`{"format":1,"destination":"s3://bucket/backups","entries":[{"project":"p","path":"a","completed":"2025-01-02T03:04:05+01:00","job_number":9223372036854775807}]}`), []byte(nil))
	f.Add([]byte(`{"format":1,"destination":"s3://bucket/backups","entries":[{"project":"p","path":"\xff\xfe","completed":"2025-01-02T03:04:05Z"},{"project":"p","path":"\xff\xfe","size":4,"completed":"2025-01-02T03:04:05Z"}]}`), []byte(nil))
	f.Add([]byte("null"), []byte("null\nnull\n"))
	f.Add([]byte("{}"), []byte("\n\n\n"))
	f.Add([]byte(`{"format":1e400}`), []byte(`{"format":-1}`))

	f.Fuzz(func(t *testing.T, snapshot, journal []byte) {
		st := new(MemStore)
		if len(snapshot) > 0 {
			st.WriteFile(t.Context(), snapshotName, snapshot)
		}
		if len(journal) > 0 {
			st.WriteFile(t.Context(), journalName("fuzz", 1), journal)
		}
		m, err := Open(t.Context(), st, testOptions("reader"))
		if err != nil {
			var me *Error
			if !errors.As(err, &me) || !(errors.Is(err, ErrCorrupt) || errors.Is(err, ErrVersion) || errors.Is(err, ErrDestination)) {
				t.Fatalf("Open failed with an unclassified error: %v", err)
			}
			return
		}
		var before []Entry
		for e := range m.Entries() {
			if p := checkEntry(e); p != "" {
				t.Fatalf("loaded an invalid entry %+v: %s", e, p)
			}
			before = append(before, e)
		}
		// Force a compaction: record one entry and remove it again.
		extra := testEntry("reader", 1)
		extra.Path = "fuzz/extra"
		if _, had := m.Lookup(extra.ID); !had {
			mustRecord(t, m, extra)
			m.Remove(extra.ID)
		}
		mustClose(t, m)

		m = mustOpen(t, st, testOptions("again"))
		defer mustClose(t, m)
		var after []Entry
		for e := range m.Entries() {
			after = append(after, e)
		}
		if len(after) != len(before) {
			t.Fatalf("after compaction %d entries, before %d", len(after), len(before))
		}
		for i := range after {
			if !sameEntry(after[i], before[i]) {
				t.Fatalf("compaction changed an entry:\n got %+v\nwant %+v", after[i], before[i])
			}
		}
	})
}

// FuzzReadSnapshot: whenever the streaming decoder takes a snapshot, its
// answer (header, entries, or the error and its message) is the one
// decoding the document as a whole gives.
func FuzzReadSnapshot(f *testing.F) {
	snapshot, err := os.ReadFile(filepath.Join("testdata", "manifest.golden"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(snapshot)
	f.Add(bytes.Replace(snapshot, []byte(`"format": 2`), []byte(`"format": 9`), 1))
	f.Add(bytes.Replace(snapshot, []byte(testDest), []byte("/elsewhere"), 1))
	f.Add(bytes.Replace(snapshot, []byte(`"size":0`), []byte(`"size":-1`), 1))
	f.Add(bytes.Replace(snapshot, []byte(`"key":`), []byte(`"removed":"2025-01-02T03:04:05Z","key":`), 1))
	f.Add(bytes.Replace(snapshot, []byte("},\n"), []byte("}\n"), 1))
	f.Add(bytes.Replace(snapshot, []byte("}\n  ]"), []byte("},\n  ]"), 1))
	f.Add(bytes.Replace(snapshot, []byte(`"path":"dist`), []byte(`"path":"\u0064ist`), 1))
	f.Add(snapshot[:len(snapshot)-1])
	f.Add(append(slices.Clip(snapshot), ' '))
	f.Add([]byte("{\n  \"format\": 1,\n  \"destination\": \"s3://bucket/backups\",\n  \"entries\": [\n  ]\n}\n"))

	f.Fuzz(func(t *testing.T, data []byte) {
		var got []record
		h, err := readSnapshot("loc", bytes.NewReader(data), testDest, func(r *record) { got = append(got, *r) })
		if err == errOtherLayout {
			return
		}
		wantH, want, wantErr := decodeSnapshot("loc", data, testDest)
		if (err == nil) != (wantErr == nil) || err != nil && err.Error() != wantErr.Error() {
			t.Fatalf("readSnapshot: %v\ndecodeSnapshot: %v", err, wantErr)
		}
		if err != nil {
			return
		}
		if !reflect.DeepEqual(h, wantH) {
			t.Errorf("header %+v, want %+v", h, wantH)
		}
		if len(got) != len(want) {
			t.Fatalf("%d entries, want %d", len(got), len(want))
		}
		for i := range got {
			if !sameEntry(got[i].Entry, want[i].Entry) || !got[i].Removed.Equal(want[i].Removed) {
				t.Errorf("entry %d: %+v, want %+v", i, got[i], want[i])
			}
		}
	})
}
