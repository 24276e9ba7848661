package circlecitest

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// DefaultV3MaxLimit is the largest page[limit] the fake's API v3 takes when
// Options.V3MaxLimit is 0. CircleCI does not publish its maximum; this one
// is made up, only the 400 above it is documented.
const DefaultV3MaxLimit = 1000

// Notice is a Deprecation and Sunset announcement the fake adds to the
// answers of a route, as CircleCI signals removals. Empty fields are not
// sent.
type Notice struct {
	// Deprecation is sent verbatim: an HTTP date, "@<epoch>" (RFC 9745) or
	// "true" (older drafts).
	Deprecation string
	// Sunset is sent verbatim: an HTTP date (RFC 8594).
	Sunset string
	// Link is sent verbatim as the Link header.
	Link string
}

// RetireV2Artifacts makes API v2's job artifacts route answer status (404
// or 410) from now on, as when CircleCI removes it; 0 serves it again.
func (s *Server) RetireV2Artifacts(status int) { s.v2Gone.Store(int64(status)) }

// addNotice sets the headers of the Notice for rt, if Options.Notices has
// one for its name or for every route ("").
func (s *Server) addNotice(w http.ResponseWriter, rt apiRoute) {
	n, ok := s.opts.Notices[rt.name]
	if !ok {
		if n, ok = s.opts.Notices[""]; !ok {
			return
		}
	}
	for k, v := range map[string]string{"Deprecation": n.Deprecation, "Sunset": n.Sunset, "Link": n.Link} {
		if v != "" {
			w.Header().Set(k, v)
		}
	}
}

// parseV3Path parses an escaped path below /api/v3. Only the job artifacts
// route is known.
func parseV3Path(rest string) apiRoute {
	segs := strings.Split(rest, "/")
	if len(segs) == 3 && segs[0] == "jobs" && segs[2] == "artifacts" {
		if id, err := url.PathUnescape(segs[1]); err == nil {
			return apiRoute{name: "v3-artifacts", id: id, v3: true}
		}
	}
	return apiRoute{name: "not-found", v3: true}
}

// v3ErrorJSON is API v3's error envelope. The source object's fields are
// not known from any capture; the fake sends the parameter at fault, as
// JSON:API does.
type v3ErrorJSON struct {
	Error v3ErrorBody `json:"error"`
}

type v3ErrorBody struct {
	ID     string            `json:"id"`
	Type   string            `json:"type,omitempty"`
	Title  string            `json:"title"`
	Detail string            `json:"detail"`
	Source map[string]string `json:"source"`
}

func v3Error(status int, detail, param string) v3ErrorJSON {
	src := map[string]string{}
	if param != "" {
		src["parameter"] = param
	}
	sum := sha256.Sum256([]byte(strconv.Itoa(status) + detail))
	return v3ErrorJSON{Error: v3ErrorBody{
		ID:    hex.EncodeToString(sum[:8]),
		Title: http.StatusText(status), Detail: detail, Source: src,
	}}
}

// serveV3 answers a request below /api/v3, after faults and latency.
func (s *Server) serveV3(w http.ResponseWriter, r *http.Request, rt apiRoute) {
	if s.opts.NoV3 {
		// CircleCI Server has no API v3: its router answers as for any
		// unknown path.
		writeJSON(w, r, http.StatusNotFound, message{"Not Found"})
		return
	}
	// Token validation in front of v3 answers a bare message, not the
	// envelope; only a Bearer token passes it.
	if scheme, token := authScheme(r); scheme != "bearer" || token != s.opts.Token {
		writeJSON(w, r, http.StatusUnauthorized, message{"Unauthorized"})
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead || rt.name == "not-found" {
		writeJSON(w, r, http.StatusNotFound, v3Error(http.StatusNotFound, "Not found", ""))
		return
	}
	status, body := s.v3Artifacts(r, rt.id)
	writeJSON(w, r, status, body)
}

// v3ArtifactJSON is one item of the v3 artifact list.
type v3ArtifactJSON struct {
	ID         string `json:"id"`
	Attributes struct {
		Path      string `json:"path"`
		URL       string `json:"url"`
		Execution int64  `json:"execution"`
	} `json:"attributes"`
}

type v3PageJSON struct {
	Next *string `json:"next"`
	Prev *string `json:"prev"`
}

type v3ListJSON struct {
	Data []v3ArtifactJSON `json:"data"`
	Page v3PageJSON       `json:"page"`
}

// v3Artifacts answers one page of a job's artifacts: page[limit] items (by
// default Options.PageSize, or all), from the offset in page[cursor].
func (s *Server) v3Artifacts(r *http.Request, jobID string) (int, any) {
	w := s.world
	w.mu.RLock()
	defer w.mu.RUnlock()
	j := w.jobs[jobID]
	if j == nil {
		return http.StatusNotFound, v3Error(http.StatusNotFound, "Job not found", "job_id")
	}
	q := r.URL.Query() // page[limit] and page%5Blimit%5D alike
	size := s.opts.PageSize
	if v := q.Get("page[limit]"); v != "" {
		n, err := strconv.Atoi(v)
		max := s.opts.V3MaxLimit
		if max <= 0 {
			max = DefaultV3MaxLimit
		}
		if err != nil || n < 1 || n > max {
			return http.StatusBadRequest, v3Error(http.StatusBadRequest, "page[limit] must be between 1 and "+strconv.Itoa(max), "page[limit]")
		}
		size = n
	}
	listKey := "v3 artifacts " + j.id
	start := 0
	if c := q.Get("page[cursor]"); c != "" {
		off, ok := s.parsePageToken(listKey, c)
		if !ok || off > len(j.artifacts) {
			return http.StatusBadRequest, v3Error(http.StatusBadRequest, "Invalid cursor", "page[cursor]")
		}
		start = off
	}
	end := len(j.artifacts)
	if size > 0 {
		end = min(end, start+size)
	}
	out := v3ListJSON{Data: make([]v3ArtifactJSON, 0, end-start)}
	for i, a := range j.artifacts[start:end] {
		var it v3ArtifactJSON
		sum := sha256.Sum256([]byte(j.id + "\x00" + strconv.Itoa(start+i)))
		it.ID = hex.EncodeToString(sum[:16])
		it.Attributes.Path, it.Attributes.URL, it.Attributes.Execution = a.path, s.artifactURL(a), int64(a.node)
		out.Data = append(out.Data, it)
	}
	if end < len(j.artifacts) {
		next := s.pageToken(listKey, end)
		out.Page.Next = &next
	}
	if start > 0 {
		prev := s.pageToken(listKey, max(start-max(size, 1), 0))
		out.Page.Prev = &prev
	}
	return http.StatusOK, out
}

// jobByIDJSON is GET /api/v2/jobs/{job_id} (getJobResponse: no other
// fields are allowed, and the times are left out rather than null).
type jobByIDJSON struct {
	ID         string  `json:"id"`
	Name       string  `json:"name"`
	JobNumber  *int64  `json:"job_number,omitempty"`
	Type       string  `json:"type"`
	Status     string  `json:"status"`
	ProjectID  string  `json:"project_id"`
	PipelineID string  `json:"pipeline_id"`
	WorkflowID string  `json:"workflow_id"`
	StartedAt  *string `json:"started_at,omitempty"`
	StoppedAt  *string `json:"stopped_at,omitempty"`
}

func (s *Server) jobByIDJSON(j *Job) jobByIDJSON {
	wf := j.workflow
	out := jobByIDJSON{
		ID: j.id, Name: j.name, Type: j.typ, Status: j.status,
		ProjectID: wf.pipeline.project.id, PipelineID: wf.pipeline.id, WorkflowID: wf.id,
	}
	if j.typ != "approval" {
		n := j.number
		out.JobNumber = &n
		_, started, stopped := j.times()
		t := started.Format(layoutSeconds)
		out.StartedAt = &t
		if !jobRunning(j.status) {
			t := stopped.Format(layoutSeconds)
			out.StoppedAt = &t
		}
	}
	return out
}
