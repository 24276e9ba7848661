package circlecitest

// CircleCI keeps pipelines and artifacts for a while only: artifacts expire
// after 30 days at most, and old pipelines age out of its API. A mirror
// outlives both; these let a test make the fake forget.

// Forget makes the project's pipeline pl unknown to the API, as one that
// has aged out: it is no longer listed, nor are its workflows, jobs and
// artifacts found by ID or number. Pipelines added later number on after
// the newest, as CircleCI's do.
func (p *Project) Forget(pl *Pipeline) {
	w := p.w
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, q := range p.pipelines {
		if q == pl {
			p.forgotten = max(p.forgotten, pl.number)
			p.pipelines = append(p.pipelines[:i:i], p.pipelines[i+1:]...)
			break
		}
	}
	delete(w.pipelines, pl.id)
	for _, wf := range pl.workflows {
		delete(w.workflows, wf.id)
		for _, j := range wf.jobs {
			delete(w.jobs, j.id)
			delete(p.byNumber, j.number)
			w.expire(j)
		}
	}
}

// ExpireArtifacts deletes the job's artifacts, as CircleCI does when they
// reach the end of their retention: the job is still listed, with none.
func (j *Job) ExpireArtifacts() {
	w := j.world()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.expire(j)
}

// expire deletes j's artifacts. w.mu must be held.
func (w *World) expire(j *Job) {
	for _, a := range j.artifacts {
		delete(w.artifacts, artifactKey{jobID: j.id, node: a.node, path: a.path})
	}
	j.artifacts = nil
}

// nextPipeline is the number of the project's next pipeline. w.mu must be
// held.
func (p *Project) nextPipeline() int64 {
	n := p.forgotten
	if k := len(p.pipelines); k > 0 {
		n = max(n, p.pipelines[k-1].number)
	}
	return n + 1
}
