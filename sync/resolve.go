package sync

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"strconv"
	stdsync "sync"
	"time"

	"github.com/bmatcuk/doublestar/v4"
	"golang.org/x/sync/errgroup"

	"github.com/artifact-sync/artifact-sync/circleci"
)

// API is what the engine needs from the CircleCI client.
type API interface {
	Project(ctx context.Context, slug circleci.Slug) (*circleci.Project, error)
	Pipelines(ctx context.Context, slug circleci.Slug, branch string) iter.Seq2[circleci.Pipeline, error]
	PipelinesSince(ctx context.Context, slug circleci.Slug, branch string, since time.Time) iter.Seq2[circleci.Pipeline, error]
	PipelineByNumber(ctx context.Context, slug circleci.Slug, number int64) (*circleci.Pipeline, error)
	Pipeline(ctx context.Context, id string) (*circleci.Pipeline, error)
	Workflows(ctx context.Context, pipelineID string) iter.Seq2[circleci.Workflow, error]
	Workflow(ctx context.Context, id string) (*circleci.Workflow, error)
	WorkflowJobs(ctx context.Context, workflowID string) iter.Seq2[circleci.Job, error]
	JobDetails(ctx context.Context, slug circleci.Slug, number int64) (*circleci.JobDetails, error)
	// JobByID is a job by its UUID, for --job "$CIRCLE_WORKFLOW_JOB_ID".
	JobByID(ctx context.Context, id string) (*circleci.JobInfo, error)
	Artifacts(ctx context.Context, slug circleci.Slug, jobNumber int64) iter.Seq2[circleci.Artifact, error]
}

// Selection says which jobs to take artifacts from, following cli.md: at most
// one of Jobs, PipelineID, PipelineNumber, Workflows and Branch is set; none
// means the newest pipeline of the project's default branch. Since, alone or
// with Branch, takes every pipeline created since then instead.
type Selection struct {
	Jobs           []int64
	JobIDs         []string // jobs by UUID; one selection with Jobs
	PipelineID     string
	PipelineNumber int64 // 0: not given
	Workflows      []string
	Branch         string
	Pipelines      int // with Branch or the default: how many of the newest pipelines; 0 means 1
	// Since, when not zero, selects every pipeline created at or after it,
	// on Branch or on every branch.
	Since time.Time

	WorkflowNames []string // globs on workflow names
	JobNames      []string // globs on job names
	Include       []string // globs on artifact paths; ** crosses /
	Exclude       []string

	globs *globCounts // what Include and Exclude matched in the last Resolve
	// finished, when set, says which workflows and jobs an earlier run
	// finished for good: they are not listed again (see finished).
	finished finishedChecker
	// quietSkips logs the jobs passed over at debug level: a round of
	// --follow after the first, which reports what it waits for itself.
	quietSkips bool
}

// Validate checks the globs and the combination of selection flags.
func (s *Selection) Validate() error {
	n := 0
	for _, set := range []bool{len(s.Jobs) > 0 || len(s.JobIDs) > 0, s.PipelineID != "", s.PipelineNumber != 0, len(s.Workflows) > 0, s.Branch != ""} {
		if set {
			n++
		}
	}
	if n > 1 {
		return errors.New("give only one of --job, --pipeline, --pipeline-number, --workflow and --branch")
	}
	if s.Pipelines < 0 {
		return errors.New("--pipelines must be 1 or more")
	}
	if s.PipelineID != "" && !circleci.IsUUID(s.PipelineID) {
		if n, err := strconv.ParseInt(s.PipelineID, 10, 64); err == nil && n > 0 {
			return fmt.Errorf("--pipeline takes a pipeline's ID (a UUID); for pipeline number %d use --pipeline-number %d", n, n)
		}
		return fmt.Errorf("--pipeline %q is not a pipeline ID: give the UUID shown in the pipeline's page, or --pipeline-number N", s.PipelineID)
	}
	for _, id := range s.Workflows {
		if !circleci.IsUUID(id) {
			return fmt.Errorf("--workflow %q is not a workflow ID: give the UUID from the workflow's URL (inside a CircleCI job: \"$CIRCLE_WORKFLOW_ID\")", id)
		}
	}
	if s.Pipelines > 0 && n > 0 && s.Branch == "" {
		return errors.New("--pipelines goes with --branch (or with no selection, for the default branch)")
	}
	if err := s.validateSince(); err != nil {
		return err
	}
	for flag, globs := range map[string][]string{
		"--workflow-name": s.WorkflowNames, "--job-name": s.JobNames,
		"--include": s.Include, "--exclude": s.Exclude,
	} {
		for _, g := range globs {
			if !doublestar.ValidatePattern(g) {
				return fmt.Errorf("%s %q is not a valid glob: check its brackets and braces", flag, g)
			}
		}
	}
	return nil
}

// Job is one job selected for mirroring, with the context a layout needs.
type Job struct {
	Project        string `json:"project"`
	Branch         string `json:"branch,omitempty"`
	PipelineNumber int64  `json:"pipeline_number"`
	PipelineID     string `json:"pipeline_id,omitempty"`
	WorkflowName   string `json:"workflow_name"`
	WorkflowID     string `json:"workflow_id,omitempty"`
	JobName        string `json:"job_name"`
	JobNumber      int64  `json:"job_number"`
}

// Skipped is a job the selection reached but passed over.
type Skipped struct {
	Job
	Status string
	Reason string
}

// resolver turns a Selection into jobs. Independent lookups run concurrently;
// the API (see LimitAPI) bounds how many requests are in flight.
type resolver struct {
	api  API
	slug circleci.Slug
	sel  *Selection
	log  *slog.Logger

	mu      stdsync.Mutex
	skipped []Skipped
}

// Resolve lists the jobs sel selects in project slug, calling yield for each
// one as soon as it is known (from several goroutines, one at a time, and
// never after Resolve has returned, whether it failed or not). Jobs
// still running are passed over and returned in skipped so a later run picks
// them up; approval jobs, which never have artifacts, are passed over silently.
func Resolve(ctx context.Context, api API, slug circleci.Slug, sel *Selection, log *slog.Logger, yield func(Job)) (skipped []Skipped, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &resolver{api: api, slug: slug, sel: sel, log: log}
	sel.countGlobs()
	var ymu stdsync.Mutex
	emit := func(j Job) {
		ymu.Lock()
		defer ymu.Unlock()
		yield(j)
	}
	err = r.run(ctx, emit)
	return r.skipped, err
}

func (r *resolver) run(ctx context.Context, emit func(Job)) error {
	g, ctx := errgroup.WithContext(ctx)
	sel := r.sel
	switch {
	case len(sel.Jobs) > 0 || len(sel.JobIDs) > 0:
		pipelines := &pipelineCache{api: r.api, m: map[string]*pipelineEntry{}}
		for _, n := range sel.Jobs {
			g.Go(func() error { return r.job(ctx, n, pipelines, emit) })
		}
		for _, id := range sel.JobIDs {
			g.Go(func() error { return r.jobByID(ctx, id, pipelines, emit) })
		}
	case sel.PipelineID != "":
		p, err := r.api.Pipeline(ctx, sel.PipelineID)
		if err != nil {
			return fmt.Errorf("pipeline %s: %w", sel.PipelineID, err)
		}
		if p.ProjectSlug != "" && !sameProject(p.ProjectSlug, r.slug) {
			return &explainedError{fmt.Sprintf("pipeline %s belongs to %s, not %s: check the project slug", sel.PipelineID, p.ProjectSlug, r.slug), ErrOtherProject}
		}
		r.pipeline(ctx, g, p, emit)
	case sel.PipelineNumber != 0:
		p, err := r.api.PipelineByNumber(ctx, r.slug, sel.PipelineNumber)
		if errors.Is(err, circleci.ErrNotFound) {
			// The API's 404 does not say which of project and pipeline it
			// did not find; the project was found, so it is the pipeline.
			if _, perr := r.api.Project(ctx, r.slug); perr == nil {
				return &explainedError{fmt.Sprintf("%s has no pipeline %d: check the number (the web app shows it in the pipeline's URL)", r.slug, sel.PipelineNumber), err}
			}
		}
		if err != nil {
			return fmt.Errorf("pipeline %d of %s: %w", sel.PipelineNumber, r.slug, err)
		}
		r.pipeline(ctx, g, p, emit)
	case len(sel.Workflows) > 0:
		for _, id := range sel.Workflows {
			g.Go(func() error {
				w, err := r.api.Workflow(ctx, id)
				if err != nil {
					return fmt.Errorf("workflow %s: %w", id, err)
				}
				if w.ProjectSlug != "" && !sameProject(w.ProjectSlug, r.slug) {
					return &explainedError{fmt.Sprintf("workflow %s belongs to %s, not %s: check the project slug", id, w.ProjectSlug, r.slug), ErrOtherProject}
				}
				base := Job{Project: r.slug.String(), WorkflowName: w.Name, WorkflowID: w.ID, PipelineID: w.PipelineID}
				if w.PipelineNumber != nil {
					base.PipelineNumber = *w.PipelineNumber
				}
				if w.PipelineID != "" {
					p, err := r.api.Pipeline(ctx, w.PipelineID)
					if err != nil {
						return fmt.Errorf("pipeline %s of workflow %s: %w", w.PipelineID, id, err)
					}
					base.Branch = pipelineBranch(p)
					base.PipelineNumber = p.Number
				}
				return r.workflowJobs(ctx, *w, base, emit)
			})
		}
	default:
		// The listing runs in the group like every other lookup, so that
		// its failure cancels the lookups already started and Resolve
		// still waits for them: nothing calls yield after it returns.
		g.Go(func() error { return r.branch(ctx, g, emit) })
	}
	return g.Wait()
}

// branch schedules the lookup of the newest pipelines on the selected branch
// (the project's default branch when none is given), or of those in the
// window of --since.
func (r *resolver) branch(ctx context.Context, g *errgroup.Group, emit func(Job)) error {
	sel := r.sel
	if !sel.Since.IsZero() {
		return r.since(ctx, g, emit)
	}
	branch := sel.Branch
	if branch == "" {
		p, err := r.api.Project(ctx, r.slug)
		if err != nil {
			return fmt.Errorf("project %s: %w", r.slug, err)
		}
		branch = p.VCSInfo.DefaultBranch
		if branch == "" {
			return fmt.Errorf("project %s reports no default branch: give --branch", r.slug)
		}
	}
	k := max(sel.Pipelines, 1)
	n := 0
	for p, err := range r.api.Pipelines(ctx, r.slug, branch) {
		if err != nil {
			return fmt.Errorf("pipelines of %s on %s: %w", r.slug, branch, err)
		}
		r.pipeline(ctx, g, &p, emit)
		if n++; n >= k {
			break
		}
	}
	if n == 0 {
		r.log.Warn("no pipelines on branch", "project", r.slug.String(), "branch", branch)
	}
	return nil
}

// pipeline schedules the lookup of every workflow of p.
func (r *resolver) pipeline(ctx context.Context, g *errgroup.Group, p *circleci.Pipeline, emit func(Job)) {
	g.Go(func() error {
		base := Job{Project: r.slug.String(), Branch: pipelineBranch(p), PipelineNumber: p.Number, PipelineID: p.ID}
		for w, err := range r.api.Workflows(ctx, p.ID) {
			if err != nil {
				return fmt.Errorf("workflows of pipeline %d: %w", p.Number, err)
			}
			if !r.sel.matchWorkflow(w.Name) {
				continue
			}
			// A workflow finished for good costs nothing more; a rerun
			// added to an old pipeline is a new workflow, listed as any.
			if r.sel.finished != nil && r.sel.finished.workflowDone(ctx, w.ID) {
				continue
			}
			wb := base
			wb.WorkflowName, wb.WorkflowID = w.Name, w.ID
			g.Go(func() error { return r.workflowJobs(ctx, w, wb, emit) })
		}
		return nil
	})
}

func (r *resolver) workflowJobs(ctx context.Context, w circleci.Workflow, base Job, emit func(Job)) error {
	if !r.sel.matchWorkflow(w.Name) {
		return nil
	}
	// What the workflow held, for marking it done once this run has
	// finished its jobs: in a terminal workflow, approval jobs and jobs
	// that never ran stay as they are (a rerun is a new workflow).
	var ran []int64
	whole := w.Terminal()
	for j, err := range r.api.WorkflowJobs(ctx, w.ID) {
		if err != nil {
			return fmt.Errorf("jobs of workflow %s (%s): %w", w.Name, w.ID, err)
		}
		if j.JobNumber == nil || j.Type == "approval" {
			continue // approval jobs and jobs that never ran have no artifacts
		}
		if !r.sel.matchJob(j.Name) {
			continue
		}
		job := base
		job.JobName, job.JobNumber = j.Name, *j.JobNumber
		if !j.Terminal() {
			whole = false
			r.skip(Skipped{Job: job, Status: j.Status, Reason: "still " + j.Status + ": run again when it has finished"})
			continue
		}
		ran = append(ran, job.JobNumber)
		if r.sel.finished != nil && r.sel.finished.jobDone(ctx, job.JobNumber) {
			continue
		}
		emit(job)
	}
	if r.sel.finished != nil {
		r.sel.finished.workflowListed(w, ran, whole)
	}
	return nil
}

func (r *resolver) job(ctx context.Context, n int64, pipelines *pipelineCache, emit func(Job)) error {
	d, err := r.api.JobDetails(ctx, r.slug, n)
	if err != nil {
		return fmt.Errorf("job %d of %s: %w", n, r.slug, err)
	}
	job := Job{
		Project: r.slug.String(), JobName: d.Name, JobNumber: n,
		WorkflowName: d.LatestWorkflow.Name, WorkflowID: d.LatestWorkflow.ID, PipelineID: d.Pipeline.ID,
	}
	if !r.sel.matchWorkflow(job.WorkflowName) || !r.sel.matchJob(job.JobName) {
		return nil
	}
	if d.Pipeline.ID != "" {
		p, err := pipelines.get(ctx, d.Pipeline.ID)
		if err != nil {
			return fmt.Errorf("pipeline %s of job %d: %w", d.Pipeline.ID, n, err)
		}
		job.Branch, job.PipelineNumber = pipelineBranch(p), p.Number
	}
	emit(job)
	return nil
}

func (r *resolver) skip(s Skipped) {
	r.mu.Lock()
	r.skipped = append(r.skipped, s)
	r.mu.Unlock()
	level := slog.LevelWarn
	if r.sel.quietSkips {
		level = slog.LevelDebug
	}
	r.log.Log(context.Background(), level, "job passed over", "project", s.Project, "job", s.JobNumber, "job_name", s.JobName, "status", s.Status)
}

// pipelineCache fetches each pipeline once however many selected jobs share it.
type pipelineCache struct {
	api API
	mu  stdsync.Mutex
	m   map[string]*pipelineEntry
}

type pipelineEntry struct {
	once stdsync.Once
	p    *circleci.Pipeline
	err  error
}

func (c *pipelineCache) get(ctx context.Context, id string) (*circleci.Pipeline, error) {
	c.mu.Lock()
	e, ok := c.m[id]
	if !ok {
		e = &pipelineEntry{}
		c.m[id] = e
	}
	c.mu.Unlock()
	e.once.Do(func() { e.p, e.err = c.api.Pipeline(ctx, id) })
	return e.p, e.err
}

func pipelineBranch(p *circleci.Pipeline) string {
	if p.VCS == nil {
		return ""
	}
	if p.VCS.Branch != "" {
		return p.VCS.Branch
	}
	return p.VCS.Tag
}

// sameProject compares slugs treating gh/github and bb/bitbucket as one.
func sameProject(s string, slug circleci.Slug) bool {
	o, err := circleci.ParseSlug(s)
	if err != nil {
		return false
	}
	return canonicalVCS(o.VCS) == canonicalVCS(slug.VCS) && o.Org == slug.Org && o.Repo == slug.Repo
}

func canonicalVCS(v string) string {
	switch v {
	case "github":
		return "gh"
	case "bitbucket":
		return "bb"
	}
	return v
}

// explainedError says in its own words what err means here (which of
// project and pipeline a 404 did not find, who holds a lock), and still
// matches err with errors.Is and errors.As.
type explainedError struct {
	msg string
	err error
}

func (e *explainedError) Error() string { return e.msg }
func (e *explainedError) Unwrap() error { return e.err }

// matchAny reports whether name matches one of globs; no globs match everything.
func matchAny(globs []string, name string) bool {
	if len(globs) == 0 {
		return true
	}
	for _, g := range globs {
		if ok, _ := doublestar.Match(g, name); ok {
			return true
		}
	}
	return false
}
