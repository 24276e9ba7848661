package manifest

import (
	"bytes"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// rebuildHistory leaves in a directory what two runs leave there: "first"
// recorded 40 entries and closed (a snapshot holding them); "second"
// recorded 5 more, removed one of the first run's and replaced another,
// flushed its journal and was cut off before it compacted. It returns the
// directory, the snapshot's entries in file order and the second run's
// changes.
func rebuildHistory(t *testing.T) (dir string, first []Entry, removed ID, changed Entry, second []Entry) {
	t.Helper()
	st := new(MemStore)
	m := mustOpen(t, st, testOptions("first"))
	for i := range 40 {
		mustRecord(t, m, testEntry("first", i))
	}
	mustClose(t, m)
	for e := range mustOpen(t, st, testOptions("reader")).Entries() {
		first = append(first, e)
	}

	m = mustOpen(t, st, testOptions("second"))
	for i := range 5 {
		e := testEntry("second", i)
		second = append(second, e)
		mustRecord(t, m, e)
	}
	removed = first[3].ID
	m.Remove(removed)
	changed = first[1]
	changed.Size++
	changed.Run = "second"
	mustRecord(t, m, changed)
	if err := m.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	cut := crashCopy(t, st)
	mustClose(t, m)

	dir = t.TempDir()
	for name, data := range cut.files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if js := journalsIn(t, DirStore{dir}); len(js) != 1 {
		t.Fatalf("the cut-off run left journals %q, want one", js)
	}
	return dir, first, removed, changed, second
}

// dirFiles returns every file in dir and its content.
func dirFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := make(map[string][]byte)
	for _, de := range des {
		b, err := os.ReadFile(filepath.Join(dir, de.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[de.Name()] = b
	}
	return files
}

func rebuildOptions(run string, mode RebuildMode) Options {
	o := testOptions(run)
	o.Rebuild = mode
	return o
}

// TestRebuildUnreadableSnapshot damages the snapshot as power cuts do (a
// file system that does not write data before size leaves it empty, zero
// filled, or cut short with zeros after) and opens the manifest as verify,
// a dry run and a pull do. Verify refuses it and says a pull rebuilds it;
// a dry run rebuilds it in memory and writes nothing; a pull keeps the file
// aside byte for byte and writes the rebuilt manifest, which then loads as
// it is. What survives is kept: the entries at the snapshot's intact
// beginning, then the journals, in log order; journals that a power cut
// left empty or zero-filled count as lost.
func TestRebuildUnreadableSnapshot(t *testing.T) {
	damages := []struct {
		name    string
		damage  func(snap []byte) []byte
		salvage bool // entries at the beginning survive
	}{
		{"empty", func([]byte) []byte { return nil }, false},
		{"NUL-filled", func(s []byte) []byte { return make([]byte, len(s)) }, false},
		{"truncated", func(s []byte) []byte { return s[:len(s)/2] }, true},
		{"zero-filled tail", func(s []byte) []byte { return append(slices.Clone(s[:len(s)/2]), make([]byte, len(s)-len(s)/2)...) }, true},
		{"zero-filled beginning", func(s []byte) []byte { return append(make([]byte, 4096), s[4096:]...) }, false},
	}
	for _, d := range damages {
		for _, journals := range []bool{true, false} {
			name := d.name + "/without journals"
			if journals {
				name = d.name + "/with journals"
			}
			t.Run(name, func(t *testing.T) {
				dir, first, removed, changed, second := rebuildHistory(t)
				snapPath := filepath.Join(dir, snapshotName)
				snap, err := os.ReadFile(snapPath)
				if err != nil {
					t.Fatal(err)
				}
				bad := d.damage(snap)
				if err := os.WriteFile(snapPath, bad, 0o644); err != nil {
					t.Fatal(err)
				}
				if journals {
					// Two journals a power cut emptied.
					os.WriteFile(filepath.Join(dir, journalName("lost", 1)), nil, 0o644)
					os.WriteFile(filepath.Join(dir, journalName("lost", 2)), make([]byte, 700), 0o644)
				} else {
					for _, j := range journalsIn(t, DirStore{dir}) {
						os.Remove(filepath.Join(dir, j))
					}
				}
				before := dirFiles(t, dir)
				st := DirStore{dir}

				// Verify: refused, nothing touched.
				_, err = Open(t.Context(), st, testOptions("verify"))
				var me *Error
				if !errors.Is(err, ErrCorrupt) || !errors.As(err, &me) {
					t.Fatalf("Open for a reader = %v, want an *Error matching ErrCorrupt", err)
				}
				for _, s := range []string{snapPath, "cannot be read", "the next pull keeps it aside and rebuilds"} {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not say %q", err, s)
					}
				}
				if !maps.EqualFunc(dirFiles(t, dir), before, bytes.Equal) {
					t.Fatal("a refused Open changed the store")
				}

				// Dry run: rebuilt in memory, nothing touched.
				dry := mustOpen(t, st, rebuildOptions("dry", RebuildInMemory))
				dryEntries := slices.Collect(dry.Entries())
				if r := dry.Rebuilt(); r == nil || r.Aside != "" {
					t.Fatalf("dry run Rebuilt() = %+v, want a report with nothing kept aside", r)
				} else if !strings.Contains(r.String(), "a pull keeps it aside") {
					t.Errorf("dry run report %q does not say a pull keeps it aside", r)
				}
				mustClose(t, dry)
				if !maps.EqualFunc(dirFiles(t, dir), before, bytes.Equal) {
					t.Fatal("a dry run's Open changed the store")
				}

				// Pull: kept aside, rebuilt, written.
				m := mustOpen(t, st, rebuildOptions("20261205T221839Z-1a2b3c4d", RebuildAside))
				r := m.Rebuilt()
				if r == nil {
					t.Fatal("Rebuilt() = nil after rebuilding")
				}
				if d.salvage != (r.Salvaged > 0) || r.Salvaged >= len(first) {
					t.Errorf("salvaged %d of the snapshot's %d entries", r.Salvaged, len(first))
				}
				want := map[ID]Entry{}
				for _, e := range first[:r.Salvaged] {
					want[e.ID] = e
				}
				wantJournals := 0
				if journals {
					wantJournals = 1
					delete(want, removed)
					want[changed.ID] = changed
					for _, e := range second {
						want[e.ID] = e
					}
				}
				got := map[ID]Entry{}
				for e := range m.Entries() {
					got[e.ID] = e
				}
				wantEntries(t, got, slices.Collect(maps.Values(want))...)
				if len(dryEntries) != len(got) {
					t.Errorf("the dry run rebuilt %d entries, the pull %d", len(dryEntries), len(got))
				}

				aside := filepath.Join(dir, "manifest.json.unreadable-20261205T221839Z-1a2b3c4d")
				if kept, err := os.ReadFile(aside); err != nil || !bytes.Equal(kept, bad) {
					t.Errorf("the unreadable snapshot was not kept byte for byte at %s (%v)", aside, err)
				}
				if r.Snapshot != snapPath || r.Aside != aside || r.Journals != wantJournals || r.Entries != len(want) {
					t.Errorf("Rebuilt() = %+v, want snapshot %s kept at %s, %d journals, %d entries", r, snapPath, aside, wantJournals, len(want))
				}
				for _, s := range []string{snapPath, aside, "fetched again", plural(wantJournals, "from 1 journal", "from 0 journals")} {
					if !strings.Contains(r.String(), s) {
						t.Errorf("report %q does not say %q", r, s)
					}
				}
				mustClose(t, m)

				// The rebuilt manifest loads as it is, without the journals
				// it holds, and verify can read it.
				if js := journalsIn(t, st); len(js) != 0 {
					t.Errorf("journals %q remain after the rebuild", js)
				}
				wantEntries(t, reload(t, st), slices.Collect(maps.Values(want))...)
			})
		}
	}
}

// TestRebuildKeepsLoudWhatNoCrashMakes: a pull rebuilds only a snapshot that
// is not JSON. A newer format or another destination in a torn snapshot's
// intact header, a JSON snapshot that is wrong, and a journal with a bad
// line in the middle beside a torn snapshot are refused as before, and
// nothing is kept aside or rewritten.
func TestRebuildKeepsLoudWhatNoCrashMakes(t *testing.T) {
	snapshot := readTestdata(t, "manifest.golden")
	journal := readTestdata(t, "journal.golden")
	torn := func(b []byte) []byte { return b[:len(b)-200] }
	lines := bytes.SplitAfter(journal, []byte("\n"))
	for _, tc := range []struct {
		name  string
		files map[string][]byte
		err   error
	}{
		{"torn snapshot of a newer format", map[string][]byte{snapshotName: torn(bytes.Replace(snapshot, []byte(`"format": 2,`), []byte(`"format": 3,`), 1))}, ErrVersion},
		{"torn snapshot for another destination", map[string][]byte{snapshotName: torn(bytes.Replace(snapshot, []byte(testDest), []byte("/elsewhere"), 1))}, ErrDestination},
		{"JSON that is no manifest", map[string][]byte{snapshotName: []byte(`{"entries": []}`)}, ErrCorrupt},
		{"snapshot entry without a path", map[string][]byte{snapshotName: bytes.Replace(snapshot, []byte(`"path":"dist/golden/file-2.tgz"`), []byte(`"path":""`), 1)}, ErrCorrupt},
		{"torn snapshot and a bad journal line", map[string][]byte{
			snapshotName:                 nil,
			"journal-other-000001.jsonl": bytes.Join([][]byte{lines[0], []byte("{\"project\": garbage\n"), lines[1]}, nil),
		}, ErrCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, data := range tc.files {
				os.WriteFile(filepath.Join(dir, name), data, 0o644)
			}
			m, err := Open(t.Context(), DirStore{dir}, rebuildOptions("pull", RebuildAside))
			if err == nil {
				m.Close(t.Context())
				t.Fatalf("Open succeeded, want %v", tc.err)
			}
			if !errors.Is(err, tc.err) {
				t.Fatalf("Open = %v, want %v", err, tc.err)
			}
			if got := dirFiles(t, dir); !maps.EqualFunc(got, tc.files, bytes.Equal) {
				t.Errorf("the store changed: %q", slices.Sorted(maps.Keys(got)))
			}
		})
	}
}

// TestRebuildInMemoryStore runs a rebuild through a store other than a
// directory, as the bucket's is: the copy kept aside and the new snapshot
// are written with the Store's own calls.
func TestRebuildInMemoryStore(t *testing.T) {
	st := namedStore{new(MemStore), "s3://b/p/.artifact-sync/manifest"}
	m := mustOpen(t, st, testOptions("first"))
	mustRecord(t, m, testEntry("first", 1))
	mustClose(t, m)
	m = mustOpen(t, st, testOptions("second"))
	mustRecord(t, m, testEntry("second", 1))
	if err := m.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	cut := namedStore{crashCopy(t, st.MemStore), st.name}
	mustClose(t, m)
	cut.WriteFile(t.Context(), snapshotName, nil)

	m = mustOpen(t, cut, rebuildOptions("pull", RebuildAside))
	r := m.Rebuilt()
	want := "the manifest s3://b/p/.artifact-sync/manifest/manifest.json could not be read (empty), as a power cut can leave it: " +
		"kept it as s3://b/p/.artifact-sync/manifest/manifest.json.unreadable-pull and rebuilt 1 entry from 1 journal; " +
		"artifacts not among them are fetched again"
	if r == nil || r.String() != want {
		t.Errorf("report %v\nwant %s", r, want)
	}
	mustClose(t, m)
	wantEntries(t, reload(t, cut), testEntry("second", 1))
	if kept, err := cut.ReadFile(t.Context(), "manifest.json.unreadable-pull"); err != nil || len(kept) != 0 {
		t.Errorf("the empty snapshot was not kept aside: %q, %v", kept, err)
	}
}

// FuzzRebuild opens arbitrary bytes as a snapshot beside a journal, as a
// pull does. Open never panics; it fails with a classified *Error and
// changes nothing, or it loads valid entries; and when it rebuilt, the
// snapshot's bytes are kept aside as they were and the manifest it wrote
// loads as it is, for a reader, with the same entries.
func FuzzRebuild(f *testing.F) {
	snapshot := readTestdataF(f, "manifest.golden")
	journal := readTestdataF(f, "journal.golden")
	other := bytes.Replace(journal, []byte(`"run":"golden"`), []byte(`"run":"other"`), 1)
	f.Add(snapshot, other)
	f.Add([]byte{}, other)
	f.Add(make([]byte, len(snapshot)), other)
	f.Add(snapshot[:len(snapshot)/2], other)
	f.Add(snapshot[:len(snapshot)/2], []byte{})
	f.Add(append(slices.Clone(snapshot[:len(snapshot)/2]), make([]byte, 300)...), make([]byte, 300))
	f.Add(append(make([]byte, 100), snapshot[100:]...), other[:len(other)/2])
	f.Add(bytes.Replace(snapshot[:len(snapshot)-20], []byte(`"format": 2`), []byte(`"format": 9`), 1), other)
	f.Add(bytes.Replace(snapshot[:len(snapshot)-20], []byte(testDest), []byte("/elsewhere"), 1), other)
	f.Add([]byte("{\n,\n  \"entries\": [\n    {}\n"), []byte("\x00\n{}"))

	f.Fuzz(func(t *testing.T, snap, journal []byte) {
		st := new(MemStore)
		st.WriteFile(t.Context(), snapshotName, snap)
		if len(journal) > 0 {
			st.WriteFile(t.Context(), journalName("other", 1), journal)
		}
		before := crashCopy(t, st).files
		m, err := Open(t.Context(), st, rebuildOptions("pull", RebuildAside))
		if err != nil {
			var me *Error
			if !errors.As(err, &me) || !(errors.Is(err, ErrCorrupt) || errors.Is(err, ErrVersion) || errors.Is(err, ErrDestination)) {
				t.Fatalf("Open failed with an unclassified error: %v", err)
			}
			if !maps.EqualFunc(crashCopy(t, st).files, before, bytes.Equal) {
				t.Fatal("a refused Open changed the store")
			}
			return
		}
		var got []Entry
		for e := range m.Entries() {
			if p := checkEntry(e); p != "" {
				t.Fatalf("loaded an invalid entry %+v: %s", e, p)
			}
			got = append(got, e)
		}
		r := m.Rebuilt()
		mustClose(t, m)
		kept, err := st.ReadFile(t.Context(), unreadablePrefix+"pull")
		if r == nil {
			if err == nil {
				t.Fatal("a snapshot was kept aside without a rebuild")
			}
			return
		}
		if err != nil || !bytes.Equal(kept, snap) {
			t.Fatalf("the unreadable snapshot was not kept aside as it was (%v)", err)
		}
		if r.Entries != len(got) {
			t.Errorf("Rebuilt says %d entries, the manifest holds %d", r.Entries, len(got))
		}
		m = mustOpen(t, st, testOptions("reader"))
		defer mustClose(t, m)
		after := slices.Collect(m.Entries())
		if len(after) != len(got) {
			t.Fatalf("the rebuilt manifest reloads with %d entries, had %d", len(after), len(got))
		}
		for i := range after {
			if !sameEntry(after[i], got[i]) {
				t.Fatalf("the rebuilt manifest reloads entry %+v as %+v", got[i], after[i])
			}
		}
	})
}
