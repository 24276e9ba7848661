package circlecitest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Timestamp layouts: pipelines and job details carry milliseconds, workflows
// and workflow jobs whole seconds, as the real API does.
const (
	layoutMillis  = "2006-01-02T15:04:05.000Z07:00"
	layoutSeconds = time.RFC3339
)

// apiRoute is a parsed API path.
type apiRoute struct {
	name  string // see Server.Requests
	slug  string // as requested, decoded
	num   int64  // pipeline or job number
	numOK bool
	id    string // pipeline, workflow or job ID
	v3    bool   // below /api/v3
}

// parseAPIPath parses an escaped path below /api/v2. A project slug may come
// with raw slashes (gh/acme/widgets), %2F-escaped (gh%2Facme%2Fwidgets) or
// anything in between.
func parseAPIPath(escaped string) apiRoute {
	notFound := apiRoute{name: "not-found"}
	if rest, ok := strings.CutPrefix(escaped, "/api/v3/"); ok {
		return parseV3Path(rest)
	}
	rest, ok := strings.CutPrefix(escaped, "/api/v2/")
	if !ok {
		return notFound
	}
	raw := strings.Split(rest, "/")
	segs := make([]string, len(raw))
	for i, r := range raw {
		d, err := url.PathUnescape(r)
		if err != nil {
			return notFound
		}
		segs[i] = d
	}
	num := func(rt apiRoute, s string) apiRoute {
		n, err := strconv.ParseInt(s, 10, 64)
		rt.num, rt.numOK = n, err == nil && n > 0
		return rt
	}
	switch {
	case len(segs) == 1 && segs[0] == "me":
		return apiRoute{name: "me"}
	case len(segs) == 1 && segs[0] == "pipeline":
		return apiRoute{name: "org-pipelines"}
	case len(segs) == 2 && segs[0] == "pipeline":
		return apiRoute{name: "pipeline", id: segs[1]}
	case len(segs) == 3 && segs[0] == "pipeline" && segs[2] == "workflow":
		return apiRoute{name: "workflows", id: segs[1]}
	case len(segs) == 2 && segs[0] == "workflow":
		return apiRoute{name: "workflow", id: segs[1]}
	case len(segs) == 3 && segs[0] == "workflow" && segs[2] == "job":
		return apiRoute{name: "jobs", id: segs[1]}
	case len(segs) == 2 && segs[0] == "jobs":
		return apiRoute{name: "job-by-id", id: segs[1]}
	case len(segs) < 2 || segs[0] != "project":
		return notFound
	}
	var parts []string
	i := 1
	for len(parts) < 3 && i < len(segs) {
		parts = append(parts, strings.Split(segs[i], "/")...)
		i++
	}
	if len(parts) != 3 {
		return notFound
	}
	rt := apiRoute{slug: strings.Join(parts, "/")}
	tail := segs[i:]
	switch {
	case len(tail) == 0:
		rt.name = "project"
	case len(tail) == 1 && tail[0] == "pipeline":
		rt.name = "pipelines"
	case len(tail) == 2 && tail[0] == "pipeline":
		rt.name = "pipeline-by-number"
		rt = num(rt, tail[1])
	case len(tail) == 2 && tail[0] == "job":
		rt.name = "job"
		rt = num(rt, tail[1])
	case len(tail) == 2 && tail[1] == "artifacts":
		rt.name = "artifacts"
		rt = num(rt, tail[0])
	default:
		return notFound
	}
	return rt
}

type message struct {
	Message string `json:"message"`
}

func writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // the response types always marshal
	}
	writeBody(w, r, status, "application/json", b)
}

func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	defer s.stats.enter(false)()
	escaped := r.URL.EscapedPath()
	rt := apiRoute{name: "not-found"}
	if rest, ok := strings.CutPrefix(escaped, s.opts.PathPrefix); ok {
		rt = parseAPIPath(rest)
	}
	f := s.fault(Call{Host: HostAPI, Route: rt.name, Key: escaped + "?" + r.URL.RawQuery, Request: r})
	bw := s.newBodyWriter(w, r, f)
	lr := logEntry(r, HostAPI, rt.name, escaped, f)
	defer func() { s.stats.recordAnswer(lr, bw) }()
	if !s.sleep(r.Context(), s.latency()) {
		panic(http.ErrAbortHandler)
	}
	s.addNotice(bw, rt)
	switch f.Kind {
	case FaultStatus:
		s.serveFaultStatus(bw, r, HostAPI, f)
		return
	case FaultHang:
		s.hang(r.Context())
		panic(http.ErrAbortHandler)
	}
	if s.rateLimit(bw, r) {
		return
	}
	defer bw.finish()
	switch {
	case rt.v3:
		s.serveV3(bw, r, rt)
		return
	case rt.name == "artifacts" && s.v2Gone.Load() != 0:
		// A retired route answers before any token check.
		gone := int(s.v2Gone.Load())
		writeJSON(bw, r, gone, message{http.StatusText(gone)})
		return
	}
	if (r.Method != http.MethodGet && r.Method != http.MethodHead) || rt.name == "not-found" {
		writeJSON(bw, r, http.StatusNotFound, message{"Not Found"})
		return
	}
	if msg := s.checkAuth(r, false, true); msg != "" {
		writeJSON(bw, r, http.StatusUnauthorized, message{msg})
		return
	}
	status, body := s.handleAPI(r, rt)
	writeJSON(bw, r, status, body)
}

// handleAPI answers an authenticated API request.
func (s *Server) handleAPI(r *http.Request, rt apiRoute) (int, any) {
	w := s.world
	w.mu.RLock()
	defer w.mu.RUnlock()
	switch rt.name {
	case "me":
		return http.StatusOK, userJSON{ID: w.user.id, Login: w.user.login, Name: w.user.name}

	case "pipeline", "workflows":
		pl := w.pipelines[rt.id]
		if pl == nil {
			return http.StatusNotFound, message{"Pipeline not found"}
		}
		if rt.name == "pipeline" {
			return http.StatusOK, s.pipelineJSON(pl)
		}
		wfs := make([]*Workflow, 0, len(pl.workflows))
		for i := len(pl.workflows) - 1; i >= 0; i-- {
			wfs = append(wfs, pl.workflows[i])
		}
		return page(s, r, "workflows "+pl.id, wfs, 20, s.workflowJSON)

	case "job-by-id":
		j := w.jobs[rt.id]
		if j == nil {
			return http.StatusNotFound, message{"Job not found"}
		}
		return http.StatusOK, s.jobByIDJSON(j)
	case "org-pipelines":
		return page(s, r, "org-pipelines "+canonicalOrg(r.URL.Query().Get("org-slug")), w.orgPipelines(r.URL.Query().Get("org-slug")), 20, s.pipelineJSON)

	case "workflow", "jobs":
		if rt.name == "workflow" && !isUUID(rt.id) {
			return http.StatusBadRequest, message{"Workflow ID provided is invalid."}
		}
		wf := w.workflows[rt.id]
		if wf == nil {
			return http.StatusNotFound, message{"Workflow not found"}
		}
		if rt.name == "workflow" {
			return http.StatusOK, s.workflowJSON(wf)
		}
		return page(s, r, "jobs "+wf.id, wf.jobs, 20, s.jobItemJSON)
	}

	p := w.project(rt.slug)
	if p == nil {
		return http.StatusNotFound, message{"Project not found"}
	}
	switch rt.name {
	case "project":
		return http.StatusOK, s.projectJSON(p)

	case "pipelines":
		branch := r.URL.Query().Get("branch")
		pls := make([]*Pipeline, 0, len(p.pipelines))
		for i := len(p.pipelines) - 1; i >= 0; i-- {
			if pl := p.pipelines[i]; branch == "" || pl.branch == branch {
				pls = append(pls, pl)
			}
		}
		return page(s, r, "pipelines "+p.slug+"\x00"+branch, pls, 20, s.pipelineJSON)

	case "pipeline-by-number":
		if !rt.numOK || rt.num > int64(len(p.pipelines)) {
			return http.StatusNotFound, message{"Pipeline not found"}
		}
		return http.StatusOK, s.pipelineJSON(p.pipelines[rt.num-1])

	case "job", "artifacts":
		j := p.byNumber[rt.num]
		if !rt.numOK || j == nil {
			return http.StatusNotFound, message{"Job not found."}
		}
		if rt.name == "job" {
			return http.StatusOK, s.jobDetailsJSON(j)
		}
		return page(s, r, "artifacts "+j.id, j.artifacts, 0, s.artifactJSON)
	}
	return http.StatusNotFound, message{"Not Found"}
}

// isUUID is the fake's own check of an ID's shape, kept apart from the
// client's circleci.IsUUID so that a bug in one is not hidden by the other.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
				return false
			}
		}
	}
	return true
}

// listJSON is the envelope of every list: next_page_token is null on the
// last page, never absent.
type listJSON[T any] struct {
	NextPageToken *string `json:"next_page_token"`
	Items         []T     `json:"items"`
}

// page answers one page of items, following the page-token parameter.
// defSize is the page size when Options.PageSize is 0 (0: everything).
func page[I, T any](s *Server, r *http.Request, listKey string, items []I, defSize int, conv func(I) T) (int, any) {
	size := defSize
	if s.opts.PageSize > 0 {
		size = s.opts.PageSize
	}
	start := 0
	if tok := r.URL.Query().Get("page-token"); tok != "" {
		off, ok := s.parsePageToken(listKey, tok)
		if !ok || off > len(items) {
			return http.StatusNotFound, message{"Not Found"}
		}
		start = off
	}
	end := len(items)
	if size > 0 {
		end = min(end, start+size)
	}
	out := listJSON[T]{Items: make([]T, 0, end-start)}
	for _, it := range items[start:end] {
		out.Items = append(out.Items, conv(it))
	}
	if end < len(items) {
		tok := s.pageToken(listKey, end)
		out.NextPageToken = &tok
	}
	return http.StatusOK, out
}

// Page tokens are opaque to clients, like the real ones (base64, ~40
// characters here, ~130 there). The bytes are: 00 04 4b (the real tokens
// start "AAR"), the offset (8 bytes), a MAC of the list (7 bytes), fb ff bf
// (which always encodes as "+/+/"), a salt (7 bytes); 28 bytes, so the
// standard encoding ends in "==". A client that does not escape the token in
// the query string therefore breaks here as it would against CircleCI.
func (s *Server) tokenMAC(listKey string, offset int) (listMAC, salt []byte) {
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte(listKey))
	listMAC = m.Sum(nil)[:7]
	m.Write(binary.BigEndian.AppendUint64(nil, uint64(offset)))
	return listMAC, m.Sum(nil)[:7]
}

func (s *Server) pageToken(listKey string, offset int) string {
	listMAC, salt := s.tokenMAC(listKey, offset)
	b := []byte{0x00, 0x04, 0x4b}
	b = binary.BigEndian.AppendUint64(b, uint64(offset))
	b = append(b, listMAC...)
	b = append(b, 0xfb, 0xff, 0xbf)
	b = append(b, salt...)
	return base64.StdEncoding.EncodeToString(b)
}

func (s *Server) parsePageToken(listKey, tok string) (int, bool) {
	b, err := base64.StdEncoding.DecodeString(tok)
	if err != nil || len(b) != 28 || b[0] != 0x00 || b[1] != 0x04 || b[2] != 0x4b {
		return 0, false
	}
	off := binary.BigEndian.Uint64(b[3:11])
	if off > 1<<31 {
		return 0, false
	}
	listMAC, salt := s.tokenMAC(listKey, int(off))
	if !hmac.Equal(b[11:18], listMAC) || !hmac.Equal(b[21:28], salt) {
		return 0, false
	}
	return int(off), true
}

// The response shapes, field for field as in the OpenAPI documents. A
// pointer without omitempty is a nullable field sent as null.

type userJSON struct {
	ID        string  `json:"id"`
	Login     string  `json:"login"`
	Name      string  `json:"name"`
	AvatarURL *string `json:"avatar_url"`
}

type vcsInfoJSON struct {
	VCSURL        string `json:"vcs_url"`
	Provider      string `json:"provider"`
	DefaultBranch string `json:"default_branch"`
}

type projectJSON struct {
	Slug             string      `json:"slug"`
	Name             string      `json:"name"`
	ID               string      `json:"id"`
	OrganizationName string      `json:"organization_name"`
	OrganizationSlug string      `json:"organization_slug"`
	OrganizationID   string      `json:"organization_id"`
	VCSInfo          vcsInfoJSON `json:"vcs_info"`
}

func (s *Server) projectJSON(p *Project) projectJSON {
	vcs, org, repo := p.segments()
	return projectJSON{
		Slug: p.slug, Name: repo, ID: p.id,
		OrganizationName: org, OrganizationSlug: vcs + "/" + org, OrganizationID: p.orgID,
		VCSInfo: vcsInfoJSON{VCSURL: p.vcsURL(), Provider: p.provider(), DefaultBranch: p.defaultBranch},
	}
}

type noteJSON struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

type actorJSON struct {
	Login     string  `json:"login"`
	AvatarURL *string `json:"avatar_url"`
}

type triggerJSON struct {
	Type       string    `json:"type"`
	ReceivedAt string    `json:"received_at"`
	Actor      actorJSON `json:"actor"`
}

type commitJSON struct {
	Subject *string `json:"subject"`
	Body    *string `json:"body"`
}

type pipelineVCSJSON struct {
	ProviderName        string      `json:"provider_name"`
	OriginRepositoryURL string      `json:"origin_repository_url"`
	TargetRepositoryURL string      `json:"target_repository_url"`
	Revision            *string     `json:"revision"`
	Branch              string      `json:"branch,omitempty"`
	Commit              *commitJSON `json:"commit,omitempty"`
}

type pipelineJSON struct {
	ID          string           `json:"id"`
	Errors      []noteJSON       `json:"errors"`
	ProjectSlug string           `json:"project_slug"`
	UpdatedAt   string           `json:"updated_at"`
	Number      int64            `json:"number"`
	State       string           `json:"state"`
	CreatedAt   string           `json:"created_at"`
	Warnings    []noteJSON       `json:"warnings"`
	Trigger     triggerJSON      `json:"trigger"`
	VCS         *pipelineVCSJSON `json:"vcs,omitempty"`
}

func (s *Server) pipelineJSON(pl *Pipeline) pipelineJSON {
	p := pl.project
	rev := pl.revision
	subject := "Build " + pl.branch
	errs := []noteJSON{}
	if pl.state == "errored" {
		errs = append(errs, noteJSON{Type: "config", Message: "Config does not conform to schema"})
	}
	return pipelineJSON{
		ID: pl.id, Errors: errs, ProjectSlug: p.slug,
		UpdatedAt: pl.created.Add(2 * time.Second).Format(layoutMillis),
		Number:    pl.number, State: pl.state,
		CreatedAt: pl.created.Format(layoutMillis),
		Warnings:  []noteJSON{},
		Trigger: triggerJSON{
			Type: "webhook", ReceivedAt: pl.created.Add(-time.Second).Format(layoutMillis),
			Actor: actorJSON{Login: s.world.user.login},
		},
		VCS: &pipelineVCSJSON{
			ProviderName: p.provider(), OriginRepositoryURL: p.vcsURL(), TargetRepositoryURL: p.vcsURL(),
			Revision: &rev, Branch: pl.branch, Commit: &commitJSON{Subject: &subject},
		},
	}
}

type workflowJSON struct {
	PipelineID     string  `json:"pipeline_id"`
	ID             string  `json:"id"`
	Name           string  `json:"name"`
	ProjectSlug    string  `json:"project_slug"`
	Status         string  `json:"status"`
	StartedBy      string  `json:"started_by"`
	PipelineNumber int64   `json:"pipeline_number"`
	CreatedAt      string  `json:"created_at"`
	StoppedAt      *string `json:"stopped_at"`
}

func (s *Server) workflowJSON(wf *Workflow) workflowJSON {
	pl := wf.pipeline
	out := workflowJSON{
		PipelineID: pl.id, ID: wf.id, Name: wf.name, ProjectSlug: pl.project.slug,
		Status: wf.status, StartedBy: s.world.user.id, PipelineNumber: pl.number,
		CreatedAt: wf.created.Format(layoutSeconds),
	}
	switch wf.status {
	case "running", "failing", "on_hold":
	default:
		t := wf.created.Add(10 * time.Minute).Format(layoutSeconds)
		out.StoppedAt = &t
	}
	return out
}

// jobRunning reports whether a job status is one where the job has not
// stopped.
func jobRunning(status string) bool {
	switch status {
	case "running", "queued", "not_running", "on_hold", "blocked":
		return true
	}
	return false
}

// times returns a build job's queued, started and stopped times.
func (j *Job) times() (queued, started, stopped time.Time) {
	queued = j.created
	started = queued.Add(7*time.Second + 250*time.Millisecond)
	stopped = started.Add(time.Duration(30+j.number%60)*time.Second + 500*time.Millisecond)
	return
}

type jobItemJSON struct {
	CanceledBy        string              `json:"canceled_by,omitempty"`
	Dependencies      []string            `json:"dependencies"`
	JobNumber         *int64              `json:"job_number,omitempty"`
	ID                string              `json:"id"`
	StartedAt         *string             `json:"started_at"`
	Name              string              `json:"name"`
	ApprovedBy        string              `json:"approved_by,omitempty"`
	ProjectSlug       string              `json:"project_slug"`
	Status            string              `json:"status"`
	Type              string              `json:"type"`
	Requires          map[string][]string `json:"requires,omitempty"`
	StoppedAt         *string             `json:"stopped_at"`
	ApprovalRequestID string              `json:"approval_request_id,omitempty"`
}

func (s *Server) jobItemJSON(j *Job) jobItemJSON {
	out := jobItemJSON{
		Dependencies: []string{}, ID: j.id, Name: j.name,
		ProjectSlug: j.workflow.pipeline.project.slug, Status: j.status, Type: j.typ,
	}
	for _, d := range j.requires {
		out.Dependencies = append(out.Dependencies, d.id)
		if out.Requires == nil {
			out.Requires = make(map[string][]string)
		}
		out.Requires[d.id] = []string{"success"}
	}
	_, started, stopped := j.times()
	if j.typ == "approval" {
		// Real approval jobs: no job_number, started_at null.
		out.ApprovalRequestID = j.id
		if j.status == "success" {
			out.ApprovedBy = s.world.user.id
		}
	} else {
		n := j.number
		out.JobNumber = &n
		t := started.Format(layoutSeconds)
		out.StartedAt = &t
	}
	if !jobRunning(j.status) {
		t := stopped.Format(layoutSeconds)
		out.StoppedAt = &t
	}
	return out
}

type jobDetailsJSON struct {
	WebURL  string `json:"web_url"`
	Project struct {
		ID          string `json:"id"`
		Slug        string `json:"slug"`
		Name        string `json:"name"`
		ExternalURL string `json:"external_url"`
	} `json:"project"`
	ParallelRuns   []parallelRunJSON `json:"parallel_runs"`
	StartedAt      string            `json:"started_at"`
	LatestWorkflow struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"latest_workflow"`
	Name     string `json:"name"`
	Executor struct {
		ResourceClass string `json:"resource_class"`
		Type          string `json:"type"`
	} `json:"executor"`
	Parallelism int64  `json:"parallelism"`
	Status      string `json:"status"`
	Number      int64  `json:"number"`
	Pipeline    struct {
		ID string `json:"id"`
	} `json:"pipeline"`
	Duration     *int64     `json:"duration"`
	CreatedAt    string     `json:"created_at"`
	Messages     []noteJSON `json:"messages"`
	Contexts     []struct{} `json:"contexts"`
	Organization struct {
		Name string `json:"name"`
	} `json:"organization"`
	QueuedAt  string  `json:"queued_at"`
	StoppedAt *string `json:"stopped_at"`
}

type parallelRunJSON struct {
	Index  int64  `json:"index"`
	Status string `json:"status"`
}

func (s *Server) jobDetailsJSON(j *Job) jobDetailsJSON {
	wf := j.workflow
	pl := wf.pipeline
	p := pl.project
	_, org, repo := p.segments()
	queued, started, stopped := j.times()
	var out jobDetailsJSON
	out.WebURL = "https://app.circleci.com/pipelines/" + p.slug + "/" + strconv.FormatInt(pl.number, 10) +
		"/workflows/" + wf.id + "/jobs/" + strconv.FormatInt(j.number, 10)
	out.Project.ID, out.Project.Slug, out.Project.Name, out.Project.ExternalURL = p.id, p.slug, repo, p.vcsURL()
	out.ParallelRuns = make([]parallelRunJSON, j.parallelism)
	for i := range out.ParallelRuns {
		out.ParallelRuns[i] = parallelRunJSON{Index: int64(i), Status: j.status}
	}
	out.StartedAt = started.Format(layoutMillis)
	out.LatestWorkflow.ID, out.LatestWorkflow.Name = wf.id, wf.name
	out.Name = j.name
	out.Executor.ResourceClass, out.Executor.Type = "medium", "docker"
	out.Parallelism = int64(j.parallelism)
	out.Status = j.status
	out.Number = j.number
	out.Pipeline.ID = pl.id
	out.CreatedAt = queued.Format(layoutMillis)
	out.Messages = []noteJSON{}
	out.Contexts = []struct{}{}
	out.Organization.Name = org
	out.QueuedAt = queued.Format(layoutMillis)
	if !jobRunning(j.status) {
		d := stopped.Sub(started).Milliseconds()
		out.Duration = &d
		t := stopped.Format(layoutMillis)
		out.StoppedAt = &t
	}
	return out
}

type artifactJSON struct {
	Path      string `json:"path"`
	NodeIndex int64  `json:"node_index"`
	URL       string `json:"url"`
}

func (s *Server) artifactJSON(a *Artifact) artifactJSON {
	return artifactJSON{Path: a.path, NodeIndex: int64(a.node), URL: s.artifactURL(a)}
}
