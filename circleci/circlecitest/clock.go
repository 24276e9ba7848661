package circlecitest

import "time"

// Every object a World creates takes its created_at from the World's clock,
// which moves on by about a minute at each creation. SetClock and Advance
// move it further, so that a test builds pipelines across simulated days
// (and a pipeline and its reruns days apart). The lists keep the order of
// creation whatever the clock says: newest created, first listed. A clock
// set back therefore gives a listing a little out of created_at order, as
// the real one may be.

// Now returns the World's clock: the created_at of the object created last.
func (w *World) Now() time.Time {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.clock
}

// SetClock sets the World's clock to t (in UTC): the next object is created
// a minute after it.
func (w *World) SetClock(t time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.clock = t.UTC()
}

// Advance moves the World's clock on by d.
func (w *World) Advance(d time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.clock = w.clock.Add(d)
}

// Created returns when the pipeline was created (its created_at).
func (pl *Pipeline) Created() time.Time { return pl.created }

// Rerun adds to the workflow's pipeline a new workflow of the same name,
// created now by the World's clock, with status success and no jobs yet,
// as a rerun of a workflow does: the pipeline keeps its created_at and
// lists both workflows, the rerun first.
func (wf *Workflow) Rerun() *Workflow {
	return wf.pipeline.AddWorkflow(wf.name)
}
