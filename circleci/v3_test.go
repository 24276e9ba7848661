package circleci_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	stdsync "sync"
	"testing"
	"time"

	"github.com/artifact-sync/artifact-sync/circleci"
	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
)

const v3Token = "CCIPAT_v3-t0ken-0123456789abcdef"

// v3World is one job with seven artifacts over three nodes, and an
// approval job.
func v3World() (*circlecitest.World, *circlecitest.Job) {
	w := circlecitest.NewWorld()
	wf := w.AddProject("gh/acme/widgets", "main").AddPipeline("main").AddWorkflow("build")
	j := wf.AddJob("build", circlecitest.JobOptions{Parallelism: 3})
	for i, p := range []string{"a.txt", "dir/b.bin", "sp ace/%41.txt", "ünï.txt", "c", "d/e/f.txt", "g"} {
		j.AddArtifact(i%3, p, int64(10+i))
	}
	wf.AddApproval("hold")
	return w, j
}

func v3Client(t *testing.T, srv *circlecitest.Server, token string) *circleci.Client {
	t.Helper()
	c, err := circleci.New(circleci.Config{Host: srv.URL, Token: token,
		Retry: circleci.RetryPolicy{MaxAttempts: 5, InitialInterval: time.Millisecond, MaxInterval: 5 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func collect(t *testing.T, seq func(func(circleci.Artifact, error) bool)) ([]circleci.Artifact, error) {
	t.Helper()
	var out []circleci.Artifact
	for a, err := range seq {
		if err != nil {
			return out, err
		}
		out = append(out, a)
	}
	return out, nil
}

// TestJobArtifactsV3 lists through API v3 over four cursor pages, with
// faults on every page's first try, and gets what API v2 lists for the
// same job: the same paths, nodes and URLs.
func TestJobArtifactsV3(t *testing.T) {
	w, job := v3World()
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: v3Token, PageSize: 2, PathPrefix: "/ci"})
	c := v3Client(t, srv, v3Token)
	slug, _ := circleci.ParseSlug("gh/acme/widgets")
	v2, err := collect(t, c.Artifacts(t.Context(), slug, job.Number()))
	if err != nil {
		t.Fatal(err)
	}
	faults := []circlecitest.Fault{
		circlecitest.StatusFault(500, ""), circlecitest.CutFault(20), circlecitest.StatusFault(429, "0"), circlecitest.TruncateFault(30),
	}
	srv.SetFaults(func(c circlecitest.Call) circlecitest.Fault {
		if c.Route == "v3-artifacts" && c.Attempt == 1 {
			return faults[(c.Seq-1)%len(faults)]
		}
		return circlecitest.Fault{}
	})
	v3, err := collect(t, c.JobArtifacts(t.Context(), job.ID()))
	if err != nil {
		t.Fatal(err)
	}
	if len(v3) != 7 || !slices.Equal(v2, v3) {
		t.Errorf("v3 listed %v\nv2 listed %v", v3, v2)
	}
	if n := srv.Requests("v3-artifacts"); n != 8 {
		t.Errorf("%d v3 requests, want 4 pages each failed once: 8", n)
	}
}

// TestV3ErrorsAreTheClientsErrors: the v3 envelope and the bare 401 of the
// routes in front of v3 decode into the same *Error as v2's answers, with
// the same advice for a rejected token.
func TestV3ErrorsAreTheClientsErrors(t *testing.T) {
	w, job := v3World()
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: v3Token})
	c := v3Client(t, srv, v3Token)
	_, err := collect(t, c.JobArtifacts(t.Context(), "5034460f-c7c4-4c43-9457-de07e2029e7b"))
	var e *circleci.Error
	if !errors.As(err, &e) || e.StatusCode != 404 || e.Message != "Job not found" || !errors.Is(err, circleci.ErrNotFound) {
		t.Errorf("unknown job: %v", err)
	}
	if _, err := c.JobByID(t.Context(), "5034460f-c7c4-4c43-9457-de07e2029e7b"); !errors.Is(err, circleci.ErrNotFound) ||
		!strings.Contains(err.Error(), "check the job ID") {
		t.Errorf("JobByID of an unknown job: %v", err)
	}

	bad := v3Client(t, srv, "CCIPAT_wrong")
	_, v3err := collect(t, bad.JobArtifacts(t.Context(), job.ID()))
	slug, _ := circleci.ParseSlug("gh/acme/widgets")
	_, v2err := collect(t, bad.Artifacts(t.Context(), slug, job.Number()))
	for _, err := range []error{v3err, v2err} {
		if !errors.Is(err, circleci.ErrUnauthorized) || !strings.Contains(err.Error(), "the CircleCI API token was rejected; create a new personal API token") {
			t.Errorf("rejected token: %v", err)
		}
	}
}

// TestJobByID resolves a job's UUID to its number, workflow and pipeline.
func TestJobByID(t *testing.T) {
	w, job := v3World()
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: v3Token})
	c := v3Client(t, srv, v3Token)
	info, err := c.JobByID(t.Context(), job.ID())
	if err != nil {
		t.Fatal(err)
	}
	wf := job.Workflow()
	if info.JobNumber == nil || *info.JobNumber != job.Number() || info.Name != "build" || info.WorkflowID != wf.ID() ||
		info.PipelineID != wf.Pipeline().ID() || info.ProjectID == "" {
		t.Errorf("JobByID = %+v", info)
	}
}

// credLog records the credentials requests arrive with.
type credLog struct {
	mu  stdsync.Mutex
	got []string
}

func (l *credLog) add(r *http.Request) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.got = append(l.got, "Circle-Token="+r.Header.Get("Circle-Token")+" Authorization="+r.Header.Get("Authorization"))
}

func (l *credLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.got)
}

// TestTokenStaysOnTheAPIHostOnBothVersions: v2 sends Circle-Token, v3
// Authorization: Bearer, and neither reaches another host that an API
// answer redirects to.
func TestTokenStaysOnTheAPIHostOnBothVersions(t *testing.T) {
	var elsewhere, api credLog
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.add(r)
		io.WriteString(w, `{"items":[],"next_page_token":null,"data":[],"page":{"next":null}}`)
	}))
	t.Cleanup(other.Close)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		api.add(r)
		http.Redirect(w, r, other.URL+"/moved", http.StatusFound)
	}))
	t.Cleanup(srv.Close)
	c, err := circleci.New(circleci.Config{Host: srv.URL, Token: v3Token})
	if err != nil {
		t.Fatal(err)
	}
	slug, _ := circleci.ParseSlug("gh/acme/widgets")
	if _, err := collect(t, c.Artifacts(t.Context(), slug, 7)); err != nil {
		t.Fatal(err)
	}
	if _, err := collect(t, c.JobArtifacts(t.Context(), "5034460f-c7c4-4c43-9457-de07e2029e7b")); err != nil {
		t.Fatal(err)
	}
	want := []string{"Circle-Token=" + v3Token + " Authorization=", "Circle-Token= Authorization=Bearer " + v3Token}
	if got := api.all(); !slices.Equal(got, want) {
		t.Errorf("the API host saw %q, want %q", got, want)
	}
	if got := elsewhere.all(); !slices.Equal(got, []string{"Circle-Token= Authorization=", "Circle-Token= Authorization="}) {
		t.Errorf("another host saw %q", got)
	}
}

// TestDeprecationNotices: Deprecation (an RFC 9745 @epoch, an HTTP date or
// "true") and Sunset (an HTTP date) are kept once per endpoint, whatever
// the job or project in the path, with the Link.
func TestDeprecationNotices(t *testing.T) {
	w, job := v3World()
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: v3Token, Notices: map[string]circlecitest.Notice{
		"artifacts":    {Deprecation: "@1767225600", Sunset: "Mon, 01 Mar 2027 00:00:00 GMT", Link: `<https://circleci.com/changelog>; rel="deprecation"`},
		"job-by-id":    {Deprecation: "true"},
		"v3-artifacts": {Deprecation: "Tue, 01 Sep 2026 00:00:00 GMT"},
	}})
	c := v3Client(t, srv, v3Token)
	slug, _ := circleci.ParseSlug("gh/acme/widgets")
	for range 2 {
		collect(t, c.Artifacts(t.Context(), slug, job.Number()))
		collect(t, c.JobArtifacts(t.Context(), job.ID()))
		c.JobByID(t.Context(), job.ID())
		c.Project(t.Context(), slug)
	}
	got := c.Deprecations()
	var lines []string
	for _, d := range got {
		lines = append(lines, d.String())
	}
	want := []string{
		`CircleCI marks GET /api/v2/jobs/{id} as deprecated`,
		`CircleCI marks GET /api/v2/project/{project-slug}/{number}/artifacts as deprecated since 2026-01-01, for removal on 2027-03-01 (see <https://circleci.com/changelog>; rel="deprecation")`,
		`CircleCI marks GET /api/v3/jobs/{id}/artifacts as deprecated since 2026-09-01`,
	}
	if !slices.Equal(lines, want) {
		t.Errorf("notices:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	if len(got) == 3 && (got[1].Endpoint != circleci.RouteV2Artifacts || got[1].SunsetPassed(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)) ||
		!got[1].SunsetPassed(time.Date(2027, 3, 2, 0, 0, 0, 0, time.UTC))) {
		t.Errorf("v2 artifacts notice: %+v", got[1])
	}
}
