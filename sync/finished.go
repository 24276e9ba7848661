package sync

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"
	stdsync "sync"

	"github.com/artifact-sync/artifact-sync/circleci"
	"github.com/artifact-sync/artifact-sync/manifest"
)

// finishedChecker is what the resolver asks of the manifest's done marks:
// whether a workflow or a job is finished for good, so that it is not
// listed again, and what each workflow it listed held, so that what
// finishes in this run is marked.
type finishedChecker interface {
	workflowDone(ctx context.Context, id string) bool
	jobDone(ctx context.Context, number int64) bool
	workflowListed(w circleci.Workflow, jobs []int64, whole bool)
}

// selectionDigest names what decides which artifacts of a job a run takes
// and where it puts them: --include, --exclude, --job-name and the layout.
// A mark made under one digest is no answer under another, so a narrower
// run never hides from a wider one what the wider one wants. (The
// workflow name filter and the choice of pipelines decide only whether a
// workflow is reached, not what finishing it means.)
func selectionDigest(sel *Selection, layout *Layout) string {
	h := sha256.New()
	for _, part := range [][]string{sel.Include, sel.Exclude, sel.JobNames, {layout.String()}} {
		part = slices.Sorted(slices.Values(part))
		h.Write([]byte(strings.Join(part, "\x00")))
		h.Write([]byte{0xff})
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// finished answers the resolver from the manifest's done marks, checking
// each against what it stands for: a job's mark holds only while the
// manifest records as many of its artifacts (under this selection) as the
// mark says, and the destination still holds each at its recorded size;
// a workflow's while each of its jobs' does. A job whose files went missing
// is so listed again and its files put back, as the plan does for every
// job it lists.
type finished struct {
	e         *engine
	project   string
	selection string
	sel       *Selection
	ready     <-chan struct{} // closed once the manifest is open and the destination probed

	byJob func() map[int64][]manifest.Entry // the manifest's entries of the project, by job

	mu     stdsync.Mutex
	listed []listedWorkflow
	passed map[int64]bool // jobs passed over as done
}

// listedWorkflow is a workflow whose jobs this run listed.
type listedWorkflow struct {
	w     circleci.Workflow
	jobs  []int64 // its selected jobs that ran, done or listed
	whole bool    // terminal, and every selected job in it terminal
}

func newFinished(e *engine, slug circleci.Slug, sel *Selection, ready <-chan struct{}) *finished {
	f := &finished{e: e, project: slug.String(), selection: selectionDigest(sel, e.opts.Layout), sel: sel, ready: ready,
		passed: map[int64]bool{}}
	f.byJob = stdsync.OnceValue(func() map[int64][]manifest.Entry {
		m := map[int64][]manifest.Entry{}
		for ent := range e.man.Entries() {
			if ent.Project == f.project {
				m[ent.JobNumber] = append(m[ent.JobNumber], ent)
			}
		}
		return m
	})
	return f
}

// wait waits for the manifest; false if ctx ended first, or if the marks
// are not to be used: --force and --verify look at everything again (and
// still mark what they finish).
func (f *finished) wait(ctx context.Context) bool {
	if f.e.opts.Force || f.e.opts.Verify {
		return false
	}
	select {
	case <-f.ready:
		return f.e.man != nil
	case <-ctx.Done():
		return false
	}
}

func (f *finished) workflowDone(ctx context.Context, id string) bool {
	if !f.wait(ctx) {
		return false
	}
	jobs, ok := f.e.man.DoneWorkflow(f.project, id, f.selection)
	if !ok {
		return false
	}
	for _, d := range jobs {
		if !f.holds(ctx, d) {
			return false
		}
	}
	f.pass(jobs...)
	f.e.mu.Lock()
	f.e.sum.FinishedWorkflows++
	f.e.mu.Unlock()
	return true
}

func (f *finished) jobDone(ctx context.Context, number int64) bool {
	if !f.wait(ctx) {
		return false
	}
	d, ok := f.e.man.DoneJob(f.project, number, f.selection)
	if !ok || !f.holds(ctx, d) {
		return false
	}
	f.pass(d)
	return true
}

// pass counts the artifacts of jobs passed over as done as already done,
// as a listing would have found them.
func (f *finished) pass(jobs ...manifest.Done) {
	f.sel.passOver()
	f.mu.Lock()
	for _, d := range jobs {
		f.passed[d.JobNumber] = true
	}
	f.mu.Unlock()
	f.e.mu.Lock()
	defer f.e.mu.Unlock()
	for _, d := range jobs {
		f.e.sum.FinishedJobs++
		f.e.sum.Artifacts += int(d.Artifacts)
		f.e.sum.Skipped += int(d.Artifacts)
	}
}

// holds reports whether job mark d still stands: the manifest records as
// many of its artifacts as when it was made (none removed since), the
// destination holds them, and no disk error since may have lost one.
func (f *finished) holds(ctx context.Context, d manifest.Done) bool {
	var n int64
	for _, ent := range f.byJob()[d.JobNumber] {
		if !f.sel.takesPath(ent.Path) {
			continue
		}
		n++
		if f.e.disk.suspect(ent.Key) {
			return false // an earlier disk error covered it: the plan re-hashes it
		}
		size, ok, err := f.e.present.size(ctx, ent.Key)
		if err != nil || !ok || size != ent.Size {
			return false
		}
	}
	return n == d.Artifacts
}

func (f *finished) workflowListed(w circleci.Workflow, jobs []int64, whole bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.listed = append(f.listed, listedWorkflow{w: w, jobs: jobs, whole: whole})
}

// mark records as done, after a run that ended well, each job of a listed
// workflow whose every selected artifact (listed) is recorded and none
// failed, then each terminal workflow whose every selected job is done.
func (f *finished) mark(listed map[int64][]listedArtifact) {
	failed := map[int64]bool{}
	f.e.mu.Lock()
	for _, fl := range f.e.sum.Failures {
		failed[fl.JobNumber] = true
	}
	f.e.mu.Unlock()
	// A job's mark counts what the manifest records for it, which is
	// more than the listing when CircleCI has expired some of its
	// artifacts since an earlier run mirrored them.
	recorded := map[int64]int64{}
	for ent := range f.e.man.Entries() {
		if ent.Project == f.project && f.sel.takesPath(ent.Path) {
			recorded[ent.JobNumber]++
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, lw := range f.listed {
		all := true
		for _, n := range lw.jobs {
			if f.passed[n] {
				continue
			}
			arts, ok := listed[n]
			if !ok || failed[n] || !f.recorded(n, arts) {
				all = false
				continue
			}
			f.markOne(manifest.Done{Project: f.project, Workflow: lw.w.ID, JobNumber: n, Selection: f.selection, Artifacts: recorded[n]})
		}
		if all && lw.whole {
			f.markOne(manifest.Done{Project: f.project, Workflow: lw.w.ID, Selection: f.selection})
		}
	}
}

func (f *finished) markOne(d manifest.Done) {
	if err := f.e.man.Mark(d); err != nil {
		f.e.log.Debug("not marked done", "job", d.JobNumber, "workflow", d.Workflow, "error", err)
	}
}

// recorded reports whether the manifest records every one of arts, of job
// number job, at the key this run gives it.
func (f *finished) recorded(job int64, arts []listedArtifact) bool {
	for _, a := range arts {
		if a.key == "" {
			return false // refused
		}
		id := manifest.ID{Project: f.project, JobNumber: job, NodeIndex: a.node, Path: a.path}
		if ent, ok := f.e.man.Lookup(id); !ok || ent.Key != a.key {
			return false
		}
	}
	return true
}

// listedArtifact is what marking needs of a listed artifact: a run keeps
// it for every job it lists, so it is small.
type listedArtifact struct {
	node      int64
	path, key string
}

func listedArtifacts(arts []*Artifact) []listedArtifact {
	out := make([]listedArtifact, len(arts))
	for i, a := range arts {
		out[i] = listedArtifact{a.NodeIndex, a.Path, a.Key}
	}
	return out
}

// takesPath applies --include and --exclude to path as keepsPath does,
// without counting what the globs match: the manifest's entries are no
// listing.
func (s *Selection) takesPath(path string) bool {
	return (len(s.Include) == 0 || matchAny(s.Include, path)) && (len(s.Exclude) == 0 || !matchAny(s.Exclude, path))
}
