package manifest

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Done marks a job, or a workflow, as finished for good: CircleCI will not
// change it any more and everything it has under one selection of artifacts
// is recorded. A nightly run passes over what is marked instead of asking
// the API again. A mark is a claim to check, not a fact: the entries it
// stands for can be removed since (Remove, a failed flush), so a reader
// compares a job's mark with the entries recorded for it (Artifacts).
//
// Marks are journaled and kept in snapshots like entries (format 2), each
// as one record line with a "done" kind: "job" or "workflow".
type Done struct {
	Project string
	// Workflow is the workflow's ID; for a job, the workflow it ran in
	// (empty if not known).
	Workflow string
	// JobNumber is the job's number; 0 marks the workflow itself.
	JobNumber int64
	// Selection names what selected the artifacts when the mark was made
	// (a digest of the path filters and layout, say): a mark made under
	// another selection says nothing about this one.
	Selection string
	// Artifacts is, for a job, how many artifacts it has under Selection:
	// all of them were recorded when the mark was made.
	Artifacts int64
	Completed time.Time // Mark sets it if zero
	Run       string    // Mark sets it if empty
}

// Kinds of done records, as the "done" field of a record line says.
const (
	doneJob      = "job"
	doneWorkflow = "workflow"
)

func (d *Done) kind() string {
	if d.JobNumber == 0 {
		return doneWorkflow
	}
	return doneJob
}

// doneKey identifies a mark: a job by its number, a workflow by its ID.
type doneKey struct {
	project, workflow, selection string
	job                          int64
}

func (d *Done) key() doneKey {
	if d.JobNumber != 0 {
		return doneKey{project: d.Project, job: d.JobNumber, selection: d.Selection}
	}
	return doneKey{project: d.Project, workflow: d.Workflow, selection: d.Selection}
}

// doneSet is the marks in memory, with the job marks of each workflow.
type doneSet struct {
	m    map[doneKey]Done
	jobs map[doneKey][]int64 // workflow key -> its jobs' numbers
}

func (s *doneSet) add(d Done) {
	if s.m == nil {
		s.m, s.jobs = map[doneKey]Done{}, map[doneKey][]int64{}
	}
	k := d.key()
	if _, ok := s.m[k]; !ok && d.JobNumber != 0 && d.Workflow != "" {
		wk := doneKey{project: d.Project, workflow: d.Workflow, selection: d.Selection}
		s.jobs[wk] = append(s.jobs[wk], d.JobNumber)
	}
	s.m[k] = d
}

// sorted returns every mark, workflows before jobs, in a stable order.
func (s *doneSet) sorted() []Done {
	ds := make([]Done, 0, len(s.m))
	for _, d := range s.m {
		ds = append(ds, d)
	}
	slices.SortFunc(ds, func(a, b Done) int {
		return cmp.Or(strings.Compare(a.Project, b.Project), cmp.Compare(a.JobNumber, b.JobNumber),
			strings.Compare(a.Workflow, b.Workflow), strings.Compare(a.Selection, b.Selection))
	})
	return ds
}

// Mark records d. Like Record, it only updates memory; the mark is written
// with the next journal, after every entry recorded before it.
func (m *Manifest) Mark(d Done) error {
	if d.Completed.IsZero() {
		d.Completed = m.opts.Now()
	}
	d.Completed = d.Completed.UTC()
	if d.Run == "" {
		d.Run = m.opts.Run
	}
	if p := checkDone(&d); p != "" {
		return fmt.Errorf("manifest: mark %s %s done: %s", d.kind(), d.name(), p)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	m.marks.add(d)
	m.pendingDone = append(m.pendingDone, d)
	m.dirty = true
	m.startFlusher()
	return nil
}

// DoneJob returns the mark of job number job of project under selection.
func (m *Manifest) DoneJob(project string, job int64, selection string) (Done, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	d, ok := m.marks.m[doneKey{project: project, job: job, selection: selection}]
	return d, ok
}

// DoneWorkflow reports whether workflow (an ID) of project is marked done
// under selection, and returns the marks of its jobs.
func (m *Manifest) DoneWorkflow(project, workflow, selection string) ([]Done, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	k := doneKey{project: project, workflow: workflow, selection: selection}
	if _, ok := m.marks.m[k]; !ok {
		return nil, false
	}
	var jobs []Done
	for _, n := range m.marks.jobs[k] {
		if d, ok := m.marks.m[doneKey{project: project, job: n, selection: selection}]; ok && d.Workflow == workflow {
			jobs = append(jobs, d)
		}
	}
	return jobs, true
}

func (d *Done) name() string {
	if d.JobNumber != 0 {
		return fmt.Sprintf("%s job %d", d.Project, d.JobNumber)
	}
	return fmt.Sprintf("%s workflow %s", d.Project, d.Workflow)
}

// checkDone returns what is wrong with d, or "".
func checkDone(d *Done) string {
	switch {
	case d.Project == "":
		return "no project"
	case d.JobNumber < 0:
		return fmt.Sprintf("negative job number %d", d.JobNumber)
	case d.JobNumber == 0 && d.Workflow == "":
		return "neither a job number nor a workflow"
	case d.Selection == "":
		return "no selection"
	case d.Artifacts < 0:
		return fmt.Sprintf("negative artifact count %d", d.Artifacts)
	case d.Completed.IsZero():
		return "no completion time"
	case d.Completed.Year() < 0 || d.Completed.Year() > 9999:
		return fmt.Sprintf("completion time %v is outside years 0 to 9999", d.Completed)
	}
	return ""
}

// checkDoneRecord returns what is wrong with r, a done record, or "".
func checkDoneRecord(r *record) string {
	d := r.done()
	switch {
	case r.Kind != d.kind():
		return fmt.Sprintf("done %q does not go with job number %d", r.Kind, r.JobNumber)
	case r.NodeIndex != 0 || r.Path != "" || r.Key != "" || r.Size != 0 || r.SHA256 != "" || !r.Removed.IsZero():
		return "a done record with an entry's fields"
	}
	return checkDone(&d)
}

// done is the mark a done record holds.
func (r *record) done() Done {
	return Done{Project: r.Project, Workflow: r.Workflow, JobNumber: r.JobNumber, Selection: r.Selection,
		Artifacts: r.Artifacts, Completed: r.Completed, Run: r.Run}
}

// appendDone appends d as one record line.
func appendDone(b []byte, d *Done) []byte {
	b = append(b, `{"done":`...)
	b = appendString(b, d.kind())
	b = append(b, `,"project":`...)
	b = appendString(b, d.Project)
	if d.Workflow != "" {
		b = append(b, `,"workflow":`...)
		b = appendString(b, d.Workflow)
	}
	if d.JobNumber != 0 {
		b = append(b, `,"job_number":`...)
		b = strconv.AppendInt(b, d.JobNumber, 10)
		b = append(b, `,"artifacts":`...)
		b = strconv.AppendInt(b, d.Artifacts, 10)
	}
	b = append(b, `,"selection":`...)
	b = appendString(b, d.Selection)
	b = append(b, `,"completed":`...)
	b = appendTime(b, d.Completed)
	if d.Run != "" {
		b = append(b, `,"run":`...)
		b = appendString(b, d.Run)
	}
	return append(b, '}')
}
