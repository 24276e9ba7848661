package circleci

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"iter"
	"net/url"
	"time"
)

// JobInfo describes a job by its UUID (GET /api/v2/jobs/{job_id}, listed in
// CircleCI's 2026 document and not in older ones; CircleCI Server may not
// have it).
type JobInfo struct {
	// ID is the job's UUID: CIRCLE_WORKFLOW_JOB_ID inside the job, the id
	// of a workflow's job list.
	ID   string `json:"id"`
	Name string `json:"name"`
	// Status and Type are free strings in the document (no enum).
	Status string `json:"status"`
	Type   string `json:"type"`
	// JobNumber is nil for approval jobs and jobs that never ran.
	JobNumber  *int64     `json:"job_number"`
	ProjectID  string     `json:"project_id"`
	PipelineID string     `json:"pipeline_id"`
	WorkflowID string     `json:"workflow_id"`
	StartedAt  *time.Time `json:"started_at"`
	StoppedAt  *time.Time `json:"stopped_at"`
}

// JobByID returns the job with the given UUID.
func (c *Client) JobByID(ctx context.Context, id string) (*JobInfo, error) {
	if err := checkID("job", id); err != nil {
		return nil, err
	}
	return getOne[JobInfo](ctx, c, endpoint{path: escapePath("jobs", id), job: id})
}

// JobArtifacts iterates over the artifacts of the job with the given UUID
// through API v3 (GET /api/v3/jobs/{id}/artifacts, with the token as
// Authorization: Bearer), as the official CircleCI CLI lists them. Each
// Artifact is what [Client.Artifacts] gives for the same file: execution,
// the node index, becomes NodeIndex, and there is no size either. CircleCI
// Server has no API v3: it answers 404.
//
// Whether this list is paged at all is unconfirmed; page.next is followed
// (as page[cursor]) whenever it is present. No page[limit] is sent: the
// largest the API takes is not published, and a limit above it fails with
// 400.
func (c *Client) JobArtifacts(ctx context.Context, jobID string) iter.Seq2[Artifact, error] {
	if err := checkID("job", jobID); err != nil {
		return failed[Artifact](err)
	}
	ep := endpoint{path: escapePath("jobs", jobID, "artifacts"), job: jobID, v3: true}
	return func(yield func(Artifact, error) bool) {
		cursor := ""
		seen := map[string]bool{}
		for pages := 1; ; pages++ {
			page := ep
			if cursor != "" {
				page.query = url.Values{"page[cursor]": {cursor}}
			}
			var items []Artifact
			var next string
			err := c.get(ctx, page, c.limits.PageBytes, func(r io.Reader) error {
				items = items[:0]
				var err error
				next, err = decodeV3Page(r, func(a v3Artifact) {
					items = append(items, Artifact{Path: a.Attributes.Path, NodeIndex: a.Attributes.Execution, URL: a.Attributes.URL})
				})
				return err
			})
			if err != nil {
				yield(Artifact{}, err)
				return
			}
			for _, it := range items {
				if !yield(it, nil) {
					return
				}
			}
			if next == "" {
				return
			}
			path := c.v3base.EscapedPath() + "/" + ep.path
			if seen[next] {
				yield(Artifact{}, fmt.Errorf("CircleCI API at %s sent a page cursor for GET %s that it had sent before, so the listing would never end: "+
					"stopped; check that --host is the CircleCI API (not a proxy), or report it to its administrator", c.host(), path))
				return
			}
			if pages >= c.limits.Pages {
				yield(Artifact{}, fmt.Errorf("CircleCI API at %s sent more than %d pages for GET %s: stopped; "+
					"check that --host is the CircleCI API (not a proxy)", c.host(), c.limits.Pages, path))
				return
			}
			seen[next] = true
			cursor = next
		}
	}
}

// v3Artifact is one item of API v3's artifact list.
type v3Artifact struct {
	ID         string `json:"id"`
	Attributes struct {
		Path      string `json:"path"`
		URL       string `json:"url"`
		Execution int64  `json:"execution"`
	} `json:"attributes"`
}

// decodeV3Page streams a {"data": [...], "page": {"next": ...}} envelope
// one item at a time, as decodePage does v2's. A next that is null or ""
// ends the listing.
func decodeV3Page(r io.Reader, each func(v3Artifact)) (next string, err error) {
	dec := json.NewDecoder(r)
	defer func() {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
	}()
	if err := expectDelim(dec, '{'); err != nil {
		return "", err
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return "", err
		}
		key, _ := tok.(string)
		switch key {
		case "data":
			if err := decodeArray(dec, key, each); err != nil {
				return "", err
			}
		case "page":
			var p *struct {
				Next *string `json:"next"`
			}
			if err := dec.Decode(&p); err != nil {
				return "", fmt.Errorf("page: %w", err)
			}
			if p != nil && p.Next != nil {
				next = *p.Next
			}
		default:
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return "", err
			}
		}
	}
	return next, expectDelim(dec, '}')
}
