package circlecitest_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
)

// loadV3Spec loads testdata/openapi-v3-artifacts.json, the shapes of API v3
// written from public sources (see its SOURCES file): CircleCI publishes no
// document of its own for them.
func loadV3Spec(t *testing.T) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(filepath.Join("testdata", "openapi-v3-artifacts.json"))
	if err == nil {
		err = doc.Validate(loader.Context)
	}
	if err != nil {
		t.Fatalf("loading openapi-v3-artifacts.json: %v", err)
	}
	return doc
}

// v3Get fetches a path below URL and validates the answer against the
// operation at template in doc.
func (c *contract) v3Get(doc *openapi3.T, template, path string, header http.Header) (int, []byte) {
	t := c.t
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, c.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header
	resp, body := rawDo(t, req)
	op := doc.Paths.Value(template).Get
	c.validate(doc, template, op, req, resp, body)
	c.validated[op.OperationID+" "+http.StatusText(resp.StatusCode)]++
	return resp.StatusCode, body
}

// TestContractV3 checks the fake's API v3 artifact list (cursor pages,
// the maximum limit, the Bearer-only 401, the error envelope) against
// testdata/openapi-v3-artifacts.json, and GET /api/v2/jobs/{job_id}
// against CircleCI's 2026 document.
func TestContractV3(t *testing.T) {
	_, v2026 := loadSpecs(t)
	v3 := loadV3Spec(t)
	w := contractWorld()
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: contractToken, PageSize: 2, V3MaxLimit: 50})
	c := &contract{t: t, srv: srv, v2026: v2026, validated: make(map[string]int)}
	bearer := http.Header{"Authorization": {"Bearer " + contractToken}}
	circle := http.Header{"Circle-Token": {contractToken}}

	var jobs, listed int
	for _, pl := range w.Project("gh/acme/widgets").Pipelines() {
		for _, wf := range pl.Workflows() {
			for _, j := range wf.Jobs() {
				jobs++
				c.v3Get(v2026, "/jobs/{job_id}", "/api/v2/jobs/"+j.ID(), circle)
				if j.Number() == 0 {
					continue // approval
				}
				cursor := ""
				for pages := 0; ; pages++ {
					q := url.Values{}
					if cursor != "" {
						q.Set("page[cursor]", cursor)
					}
					if pages%2 == 1 {
						q.Set("page[limit]", "3")
					}
					status, body := c.v3Get(v3, "/jobs/{job_id}/artifacts", "/api/v3/jobs/"+j.ID()+"/artifacts?"+q.Encode(), bearer)
					if status != http.StatusOK {
						t.Fatalf("page %d of job %s: %d %s", pages, j.ID(), status, body)
					}
					var pg struct {
						Data []json.RawMessage `json:"data"`
						Page struct{ Next *string }
					}
					json.Unmarshal(body, &pg)
					listed += len(pg.Data)
					if pg.Page.Next == nil || pages > 100 {
						break
					}
					cursor = *pg.Page.Next
				}
			}
		}
	}
	if jobs != 19 || listed != 39 {
		t.Errorf("walked %d jobs and %d artifacts, want 19 and 39", jobs, listed)
	}

	job := w.Project("gh/acme/widgets").Pipelines()[0].Workflows()[0].Jobs()[0]
	arts := "/api/v3/jobs/" + job.ID() + "/artifacts"
	unknown := "/api/v3/jobs/5034460f-c7c4-4c43-9457-de07e2029e7b/artifacts"
	for _, tc := range []struct {
		path   string
		header http.Header
		status int
		want   string
	}{
		{arts, nil, 401, `{"message":"Unauthorized"}`},
		{arts, circle, 401, `{"message":"Unauthorized"}`},
		{arts, http.Header{"Authorization": {"Bearer wrong"}}, 401, `{"message":"Unauthorized"}`},
		{unknown, bearer, 404, `"detail":"Job not found"`},
		{arts + "?page%5Blimit%5D=51", bearer, 400, `"title":"Bad Request"`},
		{arts + "?page[cursor]=bm9wZQ==", bearer, 400, `"detail":"Invalid cursor"`},
	} {
		status, body := c.v3Get(v3, "/jobs/{job_id}/artifacts", tc.path, tc.header)
		if status != tc.status || !strings.Contains(string(body), tc.want) {
			t.Errorf("GET %s = %d %s, want %d %s", tc.path, status, body, tc.status, tc.want)
		}
	}
	if status, body := c.v3Get(v2026, "/jobs/{job_id}", "/api/v2/jobs/5034460f-c7c4-4c43-9457-de07e2029e7b", circle); status != 404 {
		t.Errorf("unknown job by ID: %d %s", status, body)
	}
	srv.SetFaults(circlecitest.FailFirst(1, circlecitest.StatusFault(503, "1")))
	if status, _ := c.v3Get(v3, "/jobs/{job_id}/artifacts", arts, bearer); status != 503 {
		t.Errorf("injected 503: got %d", status)
	}
	srv.SetFaults(nil)

	// The schema is not vacuous: small breaks of a valid page fail.
	req, _ := http.NewRequest(http.MethodGet, srv.URL+arts, nil)
	req.Header = bearer
	resp, body := rawDo(t, req)
	op := v3.Paths.Value("/jobs/{job_id}/artifacts").Get
	for _, breakIt := range []struct{ from, to string }{
		{`"execution":`, `"executions":`},
		{`"execution":0`, `"execution":-1`},
		{`"url":"http`, `"url":"/rel`},
		{`"page":{`, `"pages":{`},
		{`"data":[`, `"data":{"x":[`},
	} {
		broken := strings.Replace(string(body), breakIt.from, breakIt.to, 1)
		if broken == string(body) {
			t.Fatalf("cannot break %q: not in %s", breakIt.from, truncate(body))
		}
		if breakIt.to == `"data":{"x":[` {
			broken = strings.Replace(broken, `],"page"`, `]},"page"`, 1)
		}
		if c.check(v3, "/jobs/{job_id}/artifacts", op, req, resp, []byte(broken)) == nil {
			t.Errorf("a v3 page with %q instead of %q passed validation", breakIt.to, breakIt.from)
		}
	}
	for _, op := range []string{"getJob OK", "getJob Not Found", "listJobArtifactsV3 OK", "listJobArtifactsV3 Unauthorized",
		"listJobArtifactsV3 Not Found", "listJobArtifactsV3 Bad Request", "listJobArtifactsV3 Service Unavailable"} {
		if c.validated[op] == 0 {
			t.Errorf("no %s response was validated", op)
		}
	}
}

// rawDo sends req and returns the response, whose body it has read.
func rawDo(t *testing.T, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req.Clone(t.Context()))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, body
}
