package manifest

import (
	"bytes"
	"cmp"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The reflection-based forms appendRecord must match.
type removalJSON struct {
	Project   string    `json:"project"`
	JobNumber int64     `json:"job_number"`
	NodeIndex int64     `json:"node_index"`
	Path      string    `json:"path"`
	Removed   time.Time `json:"removed"`
	Run       string    `json:"run,omitempty"`
}

func toJSON(e Entry) recordJSON {
	return recordJSON{
		Project: e.Project, JobNumber: e.JobNumber, NodeIndex: e.NodeIndex, Path: e.Path,
		Key: e.Key, Size: e.Size, SHA256: e.SHA256, ETag: e.ETag, LastModified: e.LastModified,
		Completed: e.Completed, Run: e.Run,
	}
}

func encodingJSON(t testing.TB, r record) []byte {
	var v any = toJSON(r.Entry)
	if !r.Removed.IsZero() {
		v = removalJSON{Project: r.Project, JobNumber: r.JobNumber, NodeIndex: r.NodeIndex, Path: r.Path, Removed: r.Removed, Run: r.Run}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func checkAppendRecord(t testing.TB, r record) {
	t.Helper()
	got := appendRecord(nil, r)
	want := encodingJSON(t, r)
	if !bytes.Equal(got, want) {
		t.Errorf("appendRecord differs from encoding/json:\n got %s\nwant %s", got, want)
	}
}

func TestAppendRecordMatchesEncodingJSON(t *testing.T) {
	for _, e := range goldenEntries() {
		checkAppendRecord(t, record{Entry: e})
	}
	odd := testEntry("odd", 1)
	odd.Path = "tab\there\nnl \x01 \u2028 \u2029 <&> \xff\xfe bad utf8 \\ \" é 日本"
	odd.ETag = `W/"weak\"etag"`
	odd.JobNumber, odd.NodeIndex, odd.Size = -1, 1<<62, 0
	odd.Key, odd.SHA256, odd.Run = "", "", ""
	odd.Completed = time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)
	checkAppendRecord(t, record{Entry: odd})
	odd.Completed = time.Date(0, 1, 1, 0, 0, 0, 1, time.UTC)
	checkAppendRecord(t, record{Entry: odd})
	checkAppendRecord(t, record{Entry: Entry{ID: odd.ID, Run: "r"}, Removed: testTime})
	checkAppendRecord(t, record{Entry: Entry{ID: odd.ID}, Removed: testTime.Add(123 * time.Nanosecond)})
}

func FuzzAppendRecord(f *testing.F) {
	f.Add("gh/org/repo", int64(12), int64(0), "dist/app.tgz", "12/0/dist/app.tgz", int64(5), `"etag"`, "Thu, 02 Jan 2025 03:04:05 GMT", "run", int64(0), false)
	f.Add("p", int64(-1), int64(1<<40), "\x00\u2028\xff<>&", "", int64(0), "", "", "", int64(1e18), true)
	f.Fuzz(func(t *testing.T, project string, job, node int64, path, key string, size int64, etag, lastMod, run string, nanos int64, removed bool) {
		e := Entry{
			ID:  ID{Project: project, JobNumber: job, NodeIndex: node, Path: path},
			Key: key, Size: size, ETag: etag, LastModified: lastMod, Run: run,
			Completed: time.Unix(0, nanos).UTC(),
		}
		r := record{Entry: e}
		if removed {
			r = record{Entry: Entry{ID: e.ID, Run: run}, Removed: e.Completed}
		}
		checkAppendRecord(t, r)
		// And what is written reads back as written.
		var back record
		if err := decodeRecord(appendRecord(nil, r), &back); err != nil {
			t.Fatalf("decoding what appendRecord wrote: %v", err)
		}
		var viaJSON recordJSON
		if err := json.Unmarshal(appendRecord(nil, r), &viaJSON); err != nil {
			t.Fatal(err)
		}
		if want := viaJSON.record(); !sameEntry(back.Entry, want.Entry) || !back.Removed.Equal(want.Removed) {
			t.Errorf("fast decoding differs from encoding/json:\n got %+v\nwant %+v", back, want)
		}
	})
}

// FuzzDecodeRecord checks that the fast path of decodeRecord accepts only
// what encoding/json accepts, with the same result.
func FuzzDecodeRecord(f *testing.F) {
	for _, line := range bytes.Split(readTestdataF(f, "journal.golden"), []byte("\n")) {
		f.Add(line)
	}
	f.Add([]byte(`{"project":"p","job_number":012,"path":"a"}`))
	f.Add([]byte(`{"project":"p","job_number":-0,"size":1e3,"path":"a\/b\u00e9"}`))
	f.Add([]byte(`{"Project":"p","path":"a","path":"b","completed":"2025-01-02T03:04:05.1+01:00"}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		var fast record
		if !fastDecodeRecord(line, &fast) {
			return
		}
		fast.Completed, fast.Removed = fast.Completed.UTC(), fast.Removed.UTC()
		var rj recordJSON
		if err := json.Unmarshal(line, &rj); err != nil {
			t.Fatalf("fast path accepted what encoding/json rejects (%v): %s", err, line)
		}
		want := rj.record()
		if !sameEntry(fast.Entry, want.Entry) || !fast.Removed.Equal(want.Removed) {
			t.Fatalf("fast path differs from encoding/json on %s:\n got %+v\nwant %+v", line, fast, want)
		}
	})
}

func readTestdataF(f *testing.F, name string) []byte {
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		f.Fatal(err)
	}
	return b
}

// encodeSnapshot returns the snapshot of h and entries, which must be
// sorted, as snapshotReader writes it.
func encodeSnapshot(h snapshotHeader, entries []Entry) ([]byte, error) {
	r, err := newSnapshotReader(h, func(b []byte) ([]byte, bool) {
		if len(entries) == 0 {
			return b, false
		}
		b = appendRecord(b, record{Entry: entries[0]})
		entries = entries[1:]
		return b, true
	})
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

// encodeJournal writes the header line and one line per record.
func encodeJournal(h journalHeader, recs []record) ([]byte, error) {
	return encodeJournalFunc(h, len(recs), func(b []byte, i int) []byte { return appendRecord(b, recs[i]) })
}

// decodeJournal parses and checks a journal file held in memory; see
// readJournal.
func decodeJournal(loc string, data []byte, destination string) (*journalHeader, []record, error) {
	var recs []record
	h, err := readJournal(loc, bytes.NewReader(data), destination, func(r *record) { recs = append(recs, *r) })
	if err != nil {
		return nil, nil, err
	}
	return h, recs, nil
}

// compareID orders IDs as snapshots and Entries do.
func compareID(a, b ID) int {
	return cmp.Or(
		strings.Compare(a.Project, b.Project),
		cmp.Compare(a.JobNumber, b.JobNumber),
		cmp.Compare(a.NodeIndex, b.NodeIndex),
		strings.Compare(a.Path, b.Path),
	)
}
