package manifest

import (
	"bytes"
	"testing"
)

// A manifest written by format 1 (before done marks) still loads, and
// what is marked on it is written in format 2.
func TestFormat1Loads(t *testing.T) {
	st := new(MemStore)
	st.WriteFile(t.Context(), snapshotName, readTestdata(t, "format1/manifest.json"))
	st.WriteFile(t.Context(), journalName("golden", 1), readTestdata(t, "format1/journal-golden-000001.jsonl"))
	es := goldenEntries()
	wantEntries(t, reload(t, st), es[1:]...)

	m := mustOpen(t, st, testOptions("upgrade"))
	if _, ok := m.DoneJob("gh/org/repo", 102, "sel-1"); ok {
		t.Error("a format 1 manifest has a done mark")
	}
	for _, d := range goldenMarks() {
		if err := m.Mark(d); err != nil {
			t.Fatal(err)
		}
	}
	mustClose(t, m)
	snap, _ := st.ReadFile(t.Context(), snapshotName)
	if !bytes.Contains(snap, []byte(`"format": 2,`)) {
		t.Errorf("the snapshot written after marking is not format 2:\n%s", snap)
	}
	wantEntries(t, reload(t, st), es[1:]...)
	m = mustOpen(t, st, testOptions("reader"))
	defer mustClose(t, m)
	if jobs, ok := m.DoneWorkflow("gh/org/repo", goldenMarks()[1].Workflow, "sel-1"); !ok || len(jobs) != 1 || jobs[0].JobNumber != 102 || jobs[0].Artifacts != 1 {
		t.Errorf("DoneWorkflow = %+v, %v; want job 102's mark", jobs, ok)
	}
}

// Marks are journaled like entries: a run that stops before Close (no
// snapshot) keeps them, and so does the snapshot Close writes; a mark made
// under one selection says nothing under another.
func TestDoneMarksSurvive(t *testing.T) {
	wf := goldenMarks()[1].Workflow
	check := func(t *testing.T, m *Manifest) {
		t.Helper()
		if d, ok := m.DoneJob("gh/org/repo", 102, "sel-1"); !ok || d.Workflow != wf || d.Run != "golden" {
			t.Errorf("DoneJob(102) = %+v, %v", d, ok)
		}
		if _, ok := m.DoneJob("gh/org/repo", 102, "sel-2"); ok {
			t.Error("job 102 is done under a selection it was never marked under")
		}
		if _, ok := m.DoneJob("gh/org/repo", 103, "sel-1"); ok {
			t.Error("job 103 is done though never marked")
		}
		if jobs, ok := m.DoneWorkflow("gh/org/repo", wf, "sel-1"); !ok || len(jobs) != 1 {
			t.Errorf("DoneWorkflow = %+v, %v", jobs, ok)
		}
		if _, ok := m.DoneWorkflow("gh/org/repo", wf, "sel-2"); ok {
			t.Error("the workflow is done under a selection it was never marked under")
		}
	}
	st := new(MemStore)
	m := mustOpen(t, st, testOptions("golden"))
	mustRecord(t, m, goldenEntries()...)
	for _, d := range goldenMarks() {
		if err := m.Mark(d); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Mark(Done{Project: "gh/org/repo", JobNumber: 5}); err == nil {
		t.Error("a mark without a selection was taken")
	}
	if err := m.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Run("journal", func(t *testing.T) {
		crashed := new(MemStore)
		names, _ := st.List(t.Context())
		for _, name := range names {
			b, _ := st.ReadFile(t.Context(), name)
			crashed.WriteFile(t.Context(), name, b)
		}
		r := mustOpen(t, crashed, testOptions("reader"))
		defer mustClose(t, r)
		check(t, r)
	})
	mustClose(t, m)
	t.Run("snapshot", func(t *testing.T) {
		if names, _ := st.List(t.Context()); len(names) != 1 {
			t.Fatalf("after Close: %v, want the snapshot alone", names)
		}
		r := mustOpen(t, st, testOptions("reader"))
		defer mustClose(t, r)
		check(t, r)
		if r.Len() != len(goldenEntries()) {
			t.Errorf("Len = %d: marks count as entries", r.Len())
		}
	})
}
