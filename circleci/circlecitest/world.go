package circlecitest

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// A World is the in-memory state of a fake CircleCI: one user, its projects,
// their pipelines, workflows, jobs and artifacts. Everything in it (IDs,
// timestamps, artifact bytes) is derived from the order of the Add calls and
// the seed, so the same construction gives the same World.
//
// A World may be changed while a [Server] serves it: every method is safe for
// concurrent use. Setup mistakes (a malformed slug, a node outside a job's
// parallelism, an artifact on an approval job) panic, as they are bugs in the
// test, not conditions a test should handle.
type World struct {
	mu        sync.RWMutex
	seed      uint64
	ids       uint64
	clock     time.Time
	user      user
	projects  map[string]*Project // by canonical slug
	pipelines map[string]*Pipeline
	workflows map[string]*Workflow
	jobs      map[string]*Job
	artifacts map[artifactKey]*Artifact
}

type user struct {
	id, login, name string
}

type artifactKey struct {
	jobID string
	node  int
	path  string
}

// epoch is the creation time of the first object of every World.
var epoch = time.Date(2026, time.March, 2, 9, 30, 0, 0, time.UTC)

// NewWorld returns an empty World with seed 1.
func NewWorld() *World {
	w := &World{
		seed:      1,
		clock:     epoch,
		projects:  make(map[string]*Project),
		pipelines: make(map[string]*Pipeline),
		workflows: make(map[string]*Workflow),
		jobs:      make(map[string]*Job),
		artifacts: make(map[artifactKey]*Artifact),
	}
	w.user = user{id: w.newID("user"), login: "octo-fake", name: "Octo Fake"}
	return w
}

// SetSeed changes the seed that artifact contents derive from. Every
// artifact's bytes, SHA-256 and ETag change with it.
func (w *World) SetSeed(seed uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seed = seed
}

// UserID returns the ID of the World's only user, the owner of the token;
// GET /me answers with it.
func (w *World) UserID() string { return w.user.id }

// newID returns the next deterministic UUID (version 4 layout, so that
// schema validators accept it). The caller holds w.mu or owns w.
func (w *World) newID(kind string) string {
	w.ids++
	sum := sha256.Sum256(fmt.Appendf(nil, "%s/%d", kind, w.ids))
	b := sum[:16]
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// tick advances the World's clock and returns the new time. The caller holds
// w.mu or owns w.
func (w *World) tick() time.Time {
	w.clock = w.clock.Add(61*time.Second + 123*time.Millisecond)
	return w.clock
}

// canonicalSlug maps the long VCS names to the short ones the API answers
// with: github/… is gh/…, bitbucket/… is bb/….
func canonicalSlug(slug string) string {
	vcs, rest, ok := strings.Cut(slug, "/")
	if !ok {
		return slug
	}
	switch vcs {
	case "github":
		vcs = "gh"
	case "bitbucket":
		vcs = "bb"
	}
	return vcs + "/" + rest
}

// AddProject adds a project. slug is vcs/org/repo (gh, github, bb, bitbucket)
// or circleci/<org-id>/<project-id>; it is stored in its canonical form (gh/…
// and bb/…), which is what the API answers with whichever form a request uses.
func (w *World) AddProject(slug, defaultBranch string) *Project {
	parts := strings.Split(slug, "/")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		panic(fmt.Sprintf("circlecitest: project slug %q is not vcs/org/repo", slug))
	}
	switch parts[0] {
	case "gh", "github", "bb", "bitbucket", "circleci":
	default:
		panic(fmt.Sprintf("circlecitest: project slug %q has unknown VCS %q", slug, parts[0]))
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	slug = canonicalSlug(slug)
	if w.projects[slug] != nil {
		panic(fmt.Sprintf("circlecitest: project %q added twice", slug))
	}
	p := &Project{
		w:             w,
		slug:          slug,
		id:            w.newID("project"),
		orgID:         w.orgID(slug),
		defaultBranch: defaultBranch,
		byNumber:      make(map[int64]*Job),
	}
	w.projects[slug] = p
	return p
}

// Project returns the project with slug (github/… and bitbucket/… name the
// gh/… and bb/… projects), or nil.
func (w *World) Project(slug string) *Project {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.project(slug)
}

// project returns the project a request names, accepting github/ for gh/ and
// bitbucket/ for bb/. The caller holds w.mu.
func (w *World) project(slug string) *Project {
	return w.projects[canonicalSlug(slug)]
}

// A Project is a CircleCI project.
type Project struct {
	w             *World
	slug          string
	id, orgID     string
	defaultBranch string
	pipelines     []*Pipeline // oldest first
	byNumber      map[int64]*Job
	nextJob       int64
	forgotten     int64 // the newest pipeline number Forget removed
}

// Slug returns the canonical project slug (gh/… rather than github/…).
func (p *Project) Slug() string { return p.slug }

// ID returns the project's UUID.
func (p *Project) ID() string { return p.id }

// DefaultBranch returns the branch given to AddProject.
func (p *Project) DefaultBranch() string { return p.defaultBranch }

// Pipelines returns the project's pipelines, oldest first.
func (p *Project) Pipelines() []*Pipeline {
	p.w.mu.RLock()
	defer p.w.mu.RUnlock()
	return append([]*Pipeline(nil), p.pipelines...)
}

func (p *Project) segments() (vcs, org, repo string) {
	parts := strings.SplitN(p.slug, "/", 3)
	return parts[0], parts[1], parts[2]
}

func (p *Project) provider() string {
	switch vcs, _, _ := p.segments(); vcs {
	case "gh":
		return "GitHub"
	case "bb":
		return "Bitbucket"
	default:
		return "CircleCI"
	}
}

func (p *Project) vcsURL() string {
	vcs, org, repo := p.segments()
	switch vcs {
	case "gh":
		return "https://github.com/" + org + "/" + repo
	case "bb":
		return "https://bitbucket.org/" + org + "/" + repo
	default:
		return "https://gitlab.com/" + org + "/" + repo
	}
}

// AddPipeline adds the project's newest pipeline, on branch. Pipeline numbers
// count from 1 per project.
func (p *Project) AddPipeline(branch string) *Pipeline {
	w := p.w
	w.mu.Lock()
	defer w.mu.Unlock()
	pl := &Pipeline{
		project: p,
		id:      w.newID("pipeline"),
		number:  p.nextPipeline(),
		branch:  branch,
		created: w.tick(),
		state:   "created",
	}
	sum := sha256.Sum256([]byte(pl.id))
	pl.revision = hex.EncodeToString(sum[:20])
	p.pipelines = append(p.pipelines, pl)
	w.pipelines[pl.id] = pl
	return pl
}

// A Pipeline is one run of a project's configuration.
type Pipeline struct {
	project   *Project
	id        string
	number    int64
	branch    string
	revision  string
	created   time.Time
	state     string
	workflows []*Workflow // oldest first
}

// ID returns the pipeline's UUID.
func (pl *Pipeline) ID() string { return pl.id }

// Number returns the pipeline's number within its project.
func (pl *Pipeline) Number() int64 { return pl.number }

// Branch returns the pipeline's branch.
func (pl *Pipeline) Branch() string { return pl.branch }

// Project returns the pipeline's project.
func (pl *Pipeline) Project() *Project { return pl.project }

// SetState sets the pipeline's state (created, errored, setup-pending, setup,
// pending); it starts as created.
func (pl *Pipeline) SetState(state string) {
	pl.project.w.mu.Lock()
	defer pl.project.w.mu.Unlock()
	pl.state = state
}

// Workflows returns the pipeline's workflows, oldest first.
func (pl *Pipeline) Workflows() []*Workflow {
	pl.project.w.mu.RLock()
	defer pl.project.w.mu.RUnlock()
	return append([]*Workflow(nil), pl.workflows...)
}

// AddWorkflow adds a workflow with status success.
func (pl *Pipeline) AddWorkflow(name string) *Workflow {
	w := pl.project.w
	w.mu.Lock()
	defer w.mu.Unlock()
	wf := &Workflow{
		pipeline: pl,
		id:       w.newID("workflow"),
		name:     name,
		status:   "success",
		created:  w.tick(),
	}
	pl.workflows = append(pl.workflows, wf)
	w.workflows[wf.id] = wf
	return wf
}

// A Workflow is a named graph of jobs inside a pipeline.
type Workflow struct {
	pipeline *Pipeline
	id       string
	name     string
	status   string
	created  time.Time
	jobs     []*Job
}

// ID returns the workflow's UUID.
func (wf *Workflow) ID() string { return wf.id }

// Name returns the workflow's name.
func (wf *Workflow) Name() string { return wf.name }

// Pipeline returns the workflow's pipeline.
func (wf *Workflow) Pipeline() *Pipeline { return wf.pipeline }

func (wf *Workflow) world() *World { return wf.pipeline.project.w }

// Status returns the workflow's status.
func (wf *Workflow) Status() string {
	wf.world().mu.RLock()
	defer wf.world().mu.RUnlock()
	return wf.status
}

// SetStatus sets the workflow's status (success, running, failed, on_hold,
// …). While it is running, failing or on_hold its stopped_at is null.
func (wf *Workflow) SetStatus(status string) {
	wf.world().mu.Lock()
	defer wf.world().mu.Unlock()
	wf.status = status
}

// Jobs returns the workflow's jobs in the order they were added.
func (wf *Workflow) Jobs() []*Job {
	wf.world().mu.RLock()
	defer wf.world().mu.RUnlock()
	return append([]*Job(nil), wf.jobs...)
}

// JobOptions describe a build job.
type JobOptions struct {
	// Parallelism is the number of nodes (node_index 0…Parallelism-1);
	// 0 means 1.
	Parallelism int
	// Status is the job's status; "" means success.
	Status string
	// Requires lists the jobs this one depends on (dependencies and
	// requires in the listing).
	Requires []*Job
}

// AddJob adds a build job. Job numbers count from 1 per project, across all
// its pipelines.
func (wf *Workflow) AddJob(name string, opts JobOptions) *Job {
	if opts.Parallelism == 0 {
		opts.Parallelism = 1
	}
	if opts.Parallelism < 0 {
		panic(fmt.Sprintf("circlecitest: job %q: parallelism %d", name, opts.Parallelism))
	}
	if opts.Status == "" {
		opts.Status = "success"
	}
	w := wf.world()
	w.mu.Lock()
	defer w.mu.Unlock()
	p := wf.pipeline.project
	p.nextJob++
	j := &Job{
		workflow:    wf,
		id:          w.newID("job"),
		name:        name,
		typ:         "build",
		number:      p.nextJob,
		status:      opts.Status,
		parallelism: opts.Parallelism,
		requires:    append([]*Job(nil), opts.Requires...),
		created:     w.tick(),
	}
	p.byNumber[j.number] = j
	wf.jobs = append(wf.jobs, j)
	w.jobs[j.id] = j
	return j
}

// AddApproval adds an approval job: it has no job number, a null started_at
// (as real approval jobs do, against the schema) and status on_hold until
// SetStatus("success").
func (wf *Workflow) AddApproval(name string) *Job {
	w := wf.world()
	w.mu.Lock()
	defer w.mu.Unlock()
	j := &Job{
		workflow:    wf,
		id:          w.newID("job"),
		name:        name,
		typ:         "approval",
		status:      "on_hold",
		parallelism: 1,
		created:     w.tick(),
	}
	wf.jobs = append(wf.jobs, j)
	w.jobs[j.id] = j
	return j
}

// A Job is a build job or an approval job of a workflow.
type Job struct {
	workflow    *Workflow
	id          string
	name        string
	typ         string
	number      int64 // 0 for approval jobs
	status      string
	parallelism int
	requires    []*Job
	created     time.Time
	artifacts   []*Artifact
}

// ID returns the job's UUID, the <job-uuid> of its artifact URLs.
func (j *Job) ID() string { return j.id }

// Number returns the job number, 0 for an approval job.
func (j *Job) Number() int64 { return j.number }

// Name returns the job's name.
func (j *Job) Name() string { return j.name }

// Type returns "build" or "approval".
func (j *Job) Type() string { return j.typ }

// Parallelism returns the job's number of nodes.
func (j *Job) Parallelism() int { return j.parallelism }

// Workflow returns the job's workflow.
func (j *Job) Workflow() *Workflow { return j.workflow }

func (j *Job) world() *World { return j.workflow.world() }

// Status returns the job's status.
func (j *Job) Status() string {
	j.world().mu.RLock()
	defer j.world().mu.RUnlock()
	return j.status
}

// SetStatus sets the job's status. While it is running, queued, not_running,
// on_hold or blocked its stopped_at and duration are null.
func (j *Job) SetStatus(status string) {
	j.world().mu.Lock()
	defer j.world().mu.Unlock()
	j.status = status
}

// Artifacts returns the job's artifacts in the order they were added, which
// is the order the API lists them in.
func (j *Job) Artifacts() []*Artifact {
	j.world().mu.RLock()
	defer j.world().mu.RUnlock()
	return append([]*Artifact(nil), j.artifacts...)
}

// AddArtifact adds an artifact of size bytes that node stored at path. The
// path is kept verbatim, however hostile ("../../x", "/etc/x", "a\\..\\b",
// "", "a\x00b"), since the real API returns paths as they were uploaded; it
// must be valid UTF-8, as it travels in JSON. The bytes are never stored:
// they are generated from the seed, the project, the job number, node, path
// and the artifact's revision (see [Artifact.Replace]).
func (j *Job) AddArtifact(node int, path string, size int64) *Artifact {
	if j.typ != "build" {
		panic(fmt.Sprintf("circlecitest: approval job %q cannot have artifacts", j.name))
	}
	if node < 0 || node >= j.parallelism {
		panic(fmt.Sprintf("circlecitest: job %d has parallelism %d, no node %d", j.number, j.parallelism, node))
	}
	if !utf8.ValidString(path) {
		panic(fmt.Sprintf("circlecitest: artifact path %q is not UTF-8", path))
	}
	if size < 0 {
		panic(fmt.Sprintf("circlecitest: artifact %q has size %d", path, size))
	}
	w := j.world()
	w.mu.Lock()
	defer w.mu.Unlock()
	k := artifactKey{jobID: j.id, node: node, path: path}
	if w.artifacts[k] != nil {
		panic(fmt.Sprintf("circlecitest: job %d node %d already has artifact %q", j.number, node, path))
	}
	a := &Artifact{job: j, node: node, path: path, size: size, modified: w.tick().Truncate(time.Second)}
	j.artifacts = append(j.artifacts, a)
	w.artifacts[k] = a
	return a
}

// An Artifact is a file a job node stored. Its bytes are generated on demand.
type Artifact struct {
	job      *Job
	node     int
	path     string
	size     int64
	revision int
	modified time.Time
}

// Job returns the artifact's job.
func (a *Artifact) Job() *Job { return a.job }

// Node returns the artifact's node_index.
func (a *Artifact) Node() int { return a.node }

// Path returns the artifact's path, verbatim.
func (a *Artifact) Path() string { return a.path }

// Size returns the artifact's current size.
func (a *Artifact) Size() int64 {
	a.job.world().mu.RLock()
	defer a.job.world().mu.RUnlock()
	return a.size
}

// Replace gives the artifact new contents of size bytes, as if the job had
// been re-run into the same path: its bytes, ETag and Last-Modified change,
// so a resumed download with If-Range gets the whole new file.
func (a *Artifact) Replace(size int64) {
	w := a.job.world()
	w.mu.Lock()
	defer w.mu.Unlock()
	a.size = size
	a.revision++
	a.modified = w.tick().Truncate(time.Second)
}

// Content returns a reader of the artifact's current bytes. It is also an
// io.Seeker.
func (a *Artifact) Content() io.ReadSeeker {
	v := a.version()
	return &contentReader{key: v.key, size: v.size}
}

// SHA256 returns the hex SHA-256 of the artifact's current bytes.
func (a *Artifact) SHA256() string {
	h := sha256.New()
	if _, err := io.Copy(h, a.Content()); err != nil {
		panic(err) // contentReader never fails
	}
	return hex.EncodeToString(h.Sum(nil))
}

// ETag returns the strong ETag the artifact hosts send for the current bytes.
func (a *Artifact) ETag() string { return a.version().etag() }

// version is a consistent snapshot of what the artifact's bytes derive from.
type version struct {
	key      uint64
	size     int64
	modified time.Time
}

func (v version) etag() string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], v.key)
	binary.BigEndian.PutUint64(b[8:], uint64(v.size))
	sum := sha256.Sum256(b[:])
	return `"` + hex.EncodeToString(sum[:16]) + `"`
}

func (a *Artifact) version() version {
	w := a.job.world()
	w.mu.RLock()
	defer w.mu.RUnlock()
	return a.versionLocked()
}

// versionLocked is version for a caller that holds the World's lock.
func (a *Artifact) versionLocked() version {
	w := a.job.world()
	h := sha256.New()
	fmt.Fprintf(h, "%d\x00%s\x00%d\x00%d\x00%d\x00", w.seed, a.job.workflow.pipeline.project.slug, a.job.number, a.node, a.revision)
	io.WriteString(h, a.path)
	return version{key: binary.BigEndian.Uint64(h.Sum(nil)), size: a.size, modified: a.modified}
}
