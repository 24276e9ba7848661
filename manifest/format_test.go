package manifest

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// goldenEntries are the entries behind the golden files: plain, with the
// source's headers, with characters JSON could escape, and an empty file.
func goldenEntries() []Entry {
	a := testEntry("golden", 1)
	b := testEntry("golden", 2)
	b.ETag = `"0x8DCB2A1F3E7C5A0"`
	b.LastModified = "Thu, 02 Jan 2025 03:04:05 GMT"
	c := testEntry("golden", 3)
	c.Path = "reports/ünïcode & <angle> \"quoted\".html"
	c.Key = "103/0/" + c.Path
	d := testEntry("golden", 4)
	d.Size = 0
	d.SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	return []Entry{a, b, c, d}
}

// goldenMarks are the done marks behind the golden files: a job and the
// workflow it ran in.
func goldenMarks() []Done {
	return []Done{
		{Project: "gh/org/repo", Workflow: "5e1f0a2b-0000-4000-8000-000000000001", JobNumber: 102, Selection: "sel-1", Artifacts: 1},
		{Project: "gh/org/repo", Workflow: "5e1f0a2b-0000-4000-8000-000000000001", Selection: "sel-1"},
	}
}

// goldenFiles records the golden entries and returns the journal written by
// a flush and the snapshot written by Close.
func goldenFiles(t *testing.T) (journal, snapshot []byte) {
	st := new(MemStore)
	m := mustOpen(t, st, testOptions("golden"))
	es := goldenEntries()
	mustRecord(t, m, es...)
	m.Remove(es[0].ID)
	for _, d := range goldenMarks() {
		if err := m.Mark(d); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	journal, err := st.ReadFile(t.Context(), journalName("golden", 1))
	if err != nil {
		t.Fatal(err)
	}
	mustClose(t, m)
	snapshot, err = st.ReadFile(t.Context(), snapshotName)
	if err != nil {
		t.Fatal(err)
	}
	return journal, snapshot
}

// TestGolden pins the on-disk format: a change to these files is a format
// change that old manifests and other versions of the tool must survive.
func TestGolden(t *testing.T) {
	journal, snapshot := goldenFiles(t)
	for name, got := range map[string][]byte{"journal.golden": journal, "manifest.golden": snapshot} {
		path := filepath.Join("testdata", name)
		if *update {
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test -update to create it)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s changed; if the format change is intended, run go test -update.\n--- got\n%s\n--- want\n%s", path, got, want)
		}
	}
}

// TestGoldenLoads checks that files in the pinned format load, alone and
// together, so that manifests already in buckets stay readable.
func TestGoldenLoads(t *testing.T) {
	journal := readTestdata(t, "journal.golden")
	snapshot := readTestdata(t, "manifest.golden")
	es := goldenEntries()

	onlyJournal := new(MemStore)
	onlyJournal.WriteFile(t.Context(), journalName("golden", 1), journal)
	wantEntries(t, reload(t, onlyJournal), es[1:]...)

	onlySnapshot := new(MemStore)
	onlySnapshot.WriteFile(t.Context(), snapshotName, snapshot)
	wantEntries(t, reload(t, onlySnapshot), es[1:]...)

	// The snapshot names the journal it includes, so the journal is not
	// applied again: the removal in it (of an entry written earlier in the
	// same journal) must not be undone by anything.
	both := new(MemStore)
	both.WriteFile(t.Context(), snapshotName, snapshot)
	both.WriteFile(t.Context(), journalName("golden", 1), journal)
	wantEntries(t, reload(t, both), es[1:]...)
}

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// namedStore is a MemStore that reports another location, as an S3 adapter
// would.
type namedStore struct {
	*MemStore
	name string
}

func (n namedStore) String() string { return n.name }

func TestCorrupt(t *testing.T) {
	journal := readTestdata(t, "journal.golden")
	snapshot := readTestdata(t, "manifest.golden")
	jname := journalName("golden", 1)
	lines := bytes.SplitAfter(journal, []byte("\n"))
	if len(lines) < 5 {
		t.Fatalf("journal.golden has %d lines, want at least 5", len(lines))
	}
	replace := func(b []byte, old, new string) []byte {
		if !bytes.Contains(b, []byte(old)) {
			t.Fatalf("golden file lacks %q", old)
		}
		return bytes.Replace(b, []byte(old), []byte(new), 1)
	}
	join := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	es := goldenEntries()

	for _, tc := range []struct {
		name  string
		files map[string][]byte
		err   error    // nil: loads
		msg   []string // in the error message
		want  []Entry  // when it loads
	}{
		{
			name:  "garbage snapshot",
			files: map[string][]byte{snapshotName: []byte("\x00\x01 this is not JSON")},
			err:   ErrCorrupt,
			msg:   []string{"manifest s3://b/p/.artifact-sync/manifest.json: cannot be read (invalid JSON at line 1", "the next pull keeps it aside and rebuilds"},
		},
		{
			name:  "truncated snapshot",
			files: map[string][]byte{snapshotName: snapshot[:len(snapshot)*2/3]},
			err:   ErrCorrupt,
			msg:   []string{"manifest.json: cannot be read (invalid JSON at line", "truncated JSON", "the next pull"},
		},
		{
			name:  "empty snapshot",
			files: map[string][]byte{snapshotName: {}},
			err:   ErrCorrupt,
			msg:   []string{"cannot be read (empty)", "the next pull"},
		},
		{
			name:  "NUL-filled snapshot",
			files: map[string][]byte{snapshotName: make([]byte, len(snapshot))},
			err:   ErrCorrupt,
			msg:   []string{"cannot be read (only NUL bytes)", "the next pull"},
		},
		{
			name:  "snapshot of another shape",
			files: map[string][]byte{snapshotName: []byte(`["format", 1]`)},
			err:   ErrCorrupt,
		},
		{
			name:  "snapshot without a format",
			files: map[string][]byte{snapshotName: []byte(`{"entries": []}`)},
			err:   ErrCorrupt,
			msg:   []string{"no format version: not an artifact-sync manifest", "move it aside"},
		},
		{
			name:  "newer snapshot",
			files: map[string][]byte{snapshotName: replace(snapshot, `"format": 2,`, `"format": 3,`)},
			err:   ErrVersion,
			msg:   []string{"manifest s3://b/p/.artifact-sync/manifest.json: written by format 3, this artifact-sync reads up to 2: upgrade artifact-sync"},
		},
		{
			name:  "newer snapshot of another shape",
			files: map[string][]byte{snapshotName: []byte(`{"format": 3, "entries": {"by-id": {}}}`)},
			err:   ErrVersion,
			msg:   []string{"written by format 3"},
		},
		{
			name:  "snapshot for another destination",
			files: map[string][]byte{snapshotName: replace(snapshot, testDest, "/mnt/elsewhere")},
			err:   ErrDestination,
			msg:   []string{`records destination "/mnt/elsewhere", not "s3://bucket/backups"`, "manifest location of its own"},
		},
		{
			name:  "snapshot entry without a path",
			files: map[string][]byte{snapshotName: replace(snapshot, `"path":"dist/golden/file-2.tgz"`, `"path":""`)},
			err:   ErrCorrupt,
			msg:   []string{"entry 1: no path"},
		},
		{
			name:  "snapshot holding a removal",
			files: map[string][]byte{snapshotName: replace(snapshot, `"key":`, `"removed":"2025-01-02T03:04:05Z","key":`)},
			err:   ErrCorrupt,
		},
		{
			name:  "garbage in the middle of a journal",
			files: map[string][]byte{jname: join(lines[0], lines[1], []byte("{\"project\": garbage\n"), lines[2], lines[3])},
			err:   ErrCorrupt,
			msg:   []string{"manifest s3://b/p/.artifact-sync/" + jname + ": line 3: invalid JSON"},
		},
		{
			name:  "invalid record in the middle of a journal",
			files: map[string][]byte{jname: join(lines[0], []byte(`{"project":"p","path":"x","size":-5,"completed":"2025-01-02T03:04:05Z"}`+"\n"), lines[2])},
			err:   ErrCorrupt,
			msg:   []string{"line 2: negative size"},
		},
		{
			name:  "journal with a garbage header",
			files: map[string][]byte{jname: join([]byte("not a header\n"), lines[1])},
			err:   ErrCorrupt,
			msg:   []string{"line 1: header"},
		},
		{
			name:  "newer journal",
			files: map[string][]byte{jname: replace(journal, `"format":2,`, `"format":3,`)},
			err:   ErrVersion,
			msg:   []string{jname + ": written by format 3"},
		},
		{
			name:  "journal for another destination",
			files: map[string][]byte{snapshotName: snapshot, "journal-other-000001.jsonl": replace(journal, testDest, "s3://other")},
			err:   ErrDestination,
		},
		{
			name:  "torn journal tail",
			files: map[string][]byte{jname: join(lines[0], lines[1], lines[2], lines[3][:len(lines[3])/2])},
			want:  es[0:2],
		},
		{
			name:  "torn journal tail that still parses",
			files: map[string][]byte{jname: join(lines[0], lines[1], lines[2], []byte(`{"project":"p","path":"x","size":-`))},
			want:  es[0:2],
		},
		{
			name:  "journal without its last newline",
			files: map[string][]byte{jname: journal[:len(journal)-1]},
			want:  es[1:],
		},
		{
			name:  "journal with a zero-filled tail",
			files: map[string][]byte{jname: join(lines[0], lines[1], make([]byte, 512))},
			want:  es[0:1],
		},
		{
			name:  "journal with a zero-filled block in the middle",
			files: map[string][]byte{jname: join(lines[0], lines[1], lines[2][:10], make([]byte, 512), lines[2][10:], lines[3])},
			want:  es[0:1],
		},
		{
			name:  "journal with zero-filled lines after its header",
			files: map[string][]byte{jname: join(lines[0], make([]byte, 100), []byte("\n"), lines[1], lines[2])},
			want:  nil,
		},
		{
			name:  "journal with a zero-filled header",
			files: map[string][]byte{snapshotName: snapshot, "journal-other-000001.jsonl": join(make([]byte, 40), lines[0][40:], lines[1], lines[2])},
			want:  es[1:],
		},
		{
			name:  "NUL-filled journal",
			files: map[string][]byte{snapshotName: snapshot, "journal-other-000001.jsonl": make([]byte, len(journal))},
			want:  es[1:],
		},
		{
			name:  "journal torn in its header",
			files: map[string][]byte{snapshotName: snapshot, "journal-other-000001.jsonl": lines[0][:20]},
			want:  es[1:],
		},
		{
			name:  "empty journal",
			files: map[string][]byte{"journal-other-000001.jsonl": {}},
			want:  nil,
		},
		{
			name:  "files the manifest does not own",
			files: map[string][]byte{"lock": []byte("garbage"), "journal-x.json": []byte("garbage"), "journal-nonumber.jsonl": []byte("garbage")},
			want:  nil,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := namedStore{new(MemStore), "s3://b/p/.artifact-sync/"}
			for name, data := range tc.files {
				if err := st.WriteFile(t.Context(), name, data); err != nil {
					t.Fatal(err)
				}
			}
			m, err := Open(t.Context(), st, testOptions("reader"))
			if tc.err == nil {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				got := make(map[ID]Entry)
				for e := range m.Entries() {
					got[e.ID] = e
				}
				wantEntries(t, got, tc.want...)
				mustClose(t, m)
				return
			}
			if err == nil {
				m.Close(t.Context())
				t.Fatalf("Open succeeded, want %v", tc.err)
			}
			var me *Error
			if !errors.Is(err, tc.err) || !errors.As(err, &me) {
				t.Fatalf("Open = %v (%T), want an *Error matching %v", err, err, tc.err)
			}
			if !strings.HasPrefix(me.Location, "s3://b/p/.artifact-sync/") {
				t.Errorf("Location = %q, want the file in the store", me.Location)
			}
			for _, s := range tc.msg {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q\ndoes not say %q", err, s)
				}
			}
			// Nothing was overwritten.
			for name, data := range tc.files {
				if got, _ := st.ReadFile(t.Context(), name); !bytes.Equal(got, data) {
					t.Errorf("%s was changed", name)
				}
			}
		})
	}
}
