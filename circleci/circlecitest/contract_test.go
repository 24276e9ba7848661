package circlecitest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
)

// The contract test checks every response shape the fake serves against
// CircleCI's own OpenAPI documents: the 2025-02 copy for job details and job
// artifacts (the 2026 document no longer lists them, though they are live),
// the 2026-08 copy for everything else.
//
// Two adjustments are made, both narrow:
//
//   - The documents mark nullable fields with the Swagger 2 vendor extension
//     "x-nullable: true" (next_page_token, stopped_at, avatar_url, revision,
//     duration, …), a leftover of their conversion to OpenAPI 3.0 that
//     kin-openapi rightly ignores. honourXNullable turns exactly those into
//     "nullable: true", which is what the authors meant and what the real API
//     sends; nothing else in the schemas changes.
//   - Real approval jobs in a workflow's job list have "started_at": null,
//     though the schema requires a date-time there. For approval jobs only,
//     the test asserts that the original body fails validation on started_at,
//     then validates a copy in which those nulls (and nothing else) are
//     replaced by a date-time. Every other field of every item is validated
//     unchanged.

const contractToken = "CCIPAT_contract_token"

var specs = struct {
	once         sync.Once
	v2025, v2026 *openapi3.T
	err          error
}{}

func loadSpecs(t *testing.T) (v2025, v2026 *openapi3.T) {
	t.Helper()
	specs.once.Do(func() {
		load := func(name string) *openapi3.T {
			if specs.err != nil {
				return nil
			}
			loader := openapi3.NewLoader()
			doc, err := loader.LoadFromFile(filepath.Join("testdata", name))
			if err == nil {
				err = doc.Validate(loader.Context, openapi3.DisableExamplesValidation())
			}
			if err != nil {
				specs.err = err
				return nil
			}
			honourXNullable(doc)
			return doc
		}
		specs.v2025 = load("openapi-v2-2025-02.json")
		specs.v2026 = load("openapi-v2-2026-08.json")
	})
	if specs.err != nil {
		t.Fatalf("loading the OpenAPI documents: %v", specs.err)
	}
	return specs.v2025, specs.v2026
}

// honourXNullable sets Nullable on every schema reachable from the
// document's operations that carries "x-nullable": true.
func honourXNullable(doc *openapi3.T) {
	seen := make(map[*openapi3.Schema]bool)
	var walk func(ref *openapi3.SchemaRef)
	walk = func(ref *openapi3.SchemaRef) {
		if ref == nil || ref.Value == nil || seen[ref.Value] {
			return
		}
		s := ref.Value
		seen[s] = true
		if v, ok := s.Extensions["x-nullable"].(bool); ok && v {
			s.Nullable = true
		}
		for _, p := range s.Properties {
			walk(p)
		}
		walk(s.Items)
		walk(s.AdditionalProperties.Schema)
		walk(s.Not)
		for _, group := range []openapi3.SchemaRefs{s.AllOf, s.AnyOf, s.OneOf} {
			for _, r := range group {
				walk(r)
			}
		}
	}
	for _, pi := range doc.Paths.Map() {
		for _, op := range pi.Operations() {
			for _, resp := range op.Responses.Map() {
				if resp.Value == nil {
					continue
				}
				for _, mt := range resp.Value.Content {
					walk(mt.Schema)
				}
			}
		}
	}
}

// contract fetches from a running fake and validates each response.
type contract struct {
	t            *testing.T
	srv          *circlecitest.Server
	v2025, v2026 *openapi3.T
	validated    map[string]int // operationId + " " + status
}

type fetchOpts struct {
	noAuth   bool
	header   http.Header
	query    url.Values
	spec2025 bool
	// patch returns the body to validate instead of the original; see
	// allowApprovalStartedAtNull.
	patch func(t *testing.T, body []byte) []byte
}

// get fetches path (below /api/v2, already escaped) and validates the answer
// against the operation at template.
func (c *contract) get(template, path string, o fetchOpts) (int, []byte) {
	t := c.t
	t.Helper()
	u := c.srv.URL + "/api/v2" + path
	if len(o.query) > 0 {
		u += "?" + o.query.Encode()
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !o.noAuth {
		req.Header.Set("Circle-Token", contractToken)
	}
	for k, vs := range o.header {
		req.Header[k] = vs
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	doc := c.v2026
	if o.spec2025 {
		doc = c.v2025
	}
	pi := doc.Paths.Value(template)
	if pi == nil || pi.Get == nil {
		t.Fatalf("no GET %s in the document", template)
	}
	checked := body
	if o.patch != nil && resp.StatusCode == http.StatusOK {
		checked = o.patch(t, body)
	}
	c.validate(doc, template, pi.Get, req, resp, checked)
	c.validated[pi.Get.OperationID+" "+http.StatusText(resp.StatusCode)]++
	return resp.StatusCode, body
}

func (c *contract) validate(doc *openapi3.T, template string, op *openapi3.Operation, req *http.Request, resp *http.Response, body []byte) {
	c.t.Helper()
	if err := c.check(doc, template, op, req, resp, body); err != nil {
		c.t.Errorf("GET %s: %d response does not match %s: %v\nbody: %s", req.URL.EscapedPath(), resp.StatusCode, op.OperationID, err, truncate(body))
	}
}

func (c *contract) check(doc *openapi3.T, template string, op *openapi3.Operation, req *http.Request, resp *http.Response, body []byte) error {
	route := &routers.Route{Spec: doc, Path: template, PathItem: doc.Paths.Value(template), Method: http.MethodGet, Operation: op}
	opts := &openapi3filter.Options{
		IncludeResponseStatus: true,
		MultiError:            true,
		SchemaValidationOptions: []openapi3.SchemaValidationOption{
			openapi3.WithStringFormatValidator("uuid", openapi3.NewRegexpFormatValidator(openapi3.FormatOfStringForUUIDOfRFC4122)),
		},
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, Route: route, Options: opts},
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Options:                opts,
	}
	in.SetBodyBytes(body)
	return openapi3filter.ValidateResponse(context.Background(), in)
}

func truncate(b []byte) string {
	if len(b) > 600 {
		return string(b[:600]) + "…"
	}
	return string(b)
}

// allowApprovalStartedAtNull is the one documented deviation: approval jobs
// with "started_at": null. It checks that every approval item has exactly
// that (and no job_number), that every other item has a started_at string,
// and returns a copy with the approval nulls replaced.
func allowApprovalStartedAtNull(t *testing.T, body []byte) []byte {
	t.Helper()
	var page map[string]json.RawMessage
	if err := json.Unmarshal(body, &page); err != nil {
		t.Fatal(err)
	}
	var items []map[string]json.RawMessage
	if err := json.Unmarshal(page["items"], &items); err != nil {
		t.Fatal(err)
	}
	for _, it := range items {
		var typ string
		json.Unmarshal(it["type"], &typ)
		sa, ok := it["started_at"]
		if !ok {
			t.Errorf("job %s has no started_at at all", it["id"])
			continue
		}
		if typ != "approval" {
			if string(sa) == "null" {
				t.Errorf("build job %s has started_at null; only approval jobs may", it["id"])
			}
			continue
		}
		if string(sa) != "null" {
			t.Errorf("approval job %s: started_at = %s, want null as real approval jobs have", it["id"], sa)
		}
		if _, ok := it["job_number"]; ok {
			t.Errorf("approval job %s has a job_number", it["id"])
		}
		it["started_at"] = json.RawMessage(`"1970-01-01T00:00:00Z"`)
	}
	ib, err := json.Marshal(items)
	if err != nil {
		t.Fatal(err)
	}
	page["items"] = ib
	out, err := json.Marshal(page)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// contractWorld has parallel nodes, approval jobs on hold and approved,
// running, blocked and failed jobs, running workflows, several branches,
// three kinds of slug and hostile artifact paths.
func contractWorld() *circlecitest.World {
	w := circlecitest.NewWorld()
	p := w.AddProject("gh/acme/widgets", "main")
	for i := range 5 {
		branch := "main"
		if i%2 == 1 {
			branch = "feature/x"
		}
		pl := p.AddPipeline(branch)
		wf := pl.AddWorkflow("build-and-test")
		build := wf.AddJob("build", circlecitest.JobOptions{Parallelism: 3})
		for n := range 3 {
			build.AddArtifact(n, "dist/app.tgz", int64(1000+n))
			build.AddArtifact(n, "logs/test.txt", 10)
		}
		hold := wf.AddApproval("hold")
		deploy := wf.AddJob("deploy", circlecitest.JobOptions{Requires: []*circlecitest.Job{build, hold}, Status: "blocked"})
		_ = deploy
		if i == 4 {
			wf.SetStatus("on_hold")
			nightly := pl.AddWorkflow("nightly")
			nightly.SetStatus("running")
			long := nightly.AddJob("long", circlecitest.JobOptions{Status: "running", Parallelism: 2})
			long.AddArtifact(1, "partial.bin", 5)
			nightly.AddJob("lint", circlecitest.JobOptions{Status: "failed"})
			ok := nightly.AddApproval("approved")
			ok.SetStatus("success")
			hostile := nightly.AddJob("hostile", circlecitest.JobOptions{})
			for _, path := range hostilePaths {
				hostile.AddArtifact(0, path, 3)
			}
		}
	}
	gl := w.AddProject("circleci/43G3kM5RtfFE7v5sa4nWAU/44n9pujWcTnVZ2b5S8Fnat", "trunk")
	wf := gl.AddPipeline("trunk").AddWorkflow("ci")
	wf.AddJob("only", circlecitest.JobOptions{}).AddArtifact(0, "out.txt", 1)
	bb := w.AddProject("bitbucket/acme/legacy", "master")
	bb.AddPipeline("master").AddWorkflow("empty") // a workflow with no jobs
	bb.AddPipeline("master")                      // a pipeline with no workflows
	return w
}

var hostilePaths = []string{"../../x", "/etc/x", `a\..\b`, "", "a\x00b", "./a/../../b", "sp ace/%41?#&=.txt", "ünï/cødé"}

func TestContract(t *testing.T) {
	v2025, v2026 := loadSpecs(t)
	w := contractWorld()
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: contractToken, PageSize: 2})
	c := &contract{t: t, srv: srv, v2025: v2025, v2026: v2026, validated: make(map[string]int)}

	c.get("/me", "/me", fetchOpts{})

	type pageJSON struct {
		Items         []map[string]any `json:"items"`
		NextPageToken *string          `json:"next_page_token"`
	}
	// all follows next_page_token, checking that it is present on every
	// page and null only on the last.
	all := func(template, path string, o fetchOpts) []map[string]any {
		t.Helper()
		var items []map[string]any
		tok := ""
		for pages := 0; ; pages++ {
			q := url.Values{}
			for k, v := range o.query {
				q[k] = v
			}
			if tok != "" {
				q.Set("page-token", tok)
			}
			o := o
			o.query = q
			status, body := c.get(template, path, o)
			if status != http.StatusOK {
				t.Fatalf("GET %s: %d %s", path, status, body)
			}
			var raw map[string]json.RawMessage
			json.Unmarshal(body, &raw)
			if _, ok := raw["next_page_token"]; !ok {
				t.Fatalf("GET %s: next_page_token absent: %s", path, body)
			}
			var pg pageJSON
			if err := json.Unmarshal(body, &pg); err != nil {
				t.Fatal(err)
			}
			items = append(items, pg.Items...)
			if pg.NextPageToken == nil {
				return items
			}
			if len(pg.Items) == 0 || pages > 100 {
				t.Fatalf("GET %s: endless pages", path)
			}
			tok = *pg.NextPageToken
		}
	}

	type project struct{ raw, escaped string }
	projects := []project{
		{"gh/acme/widgets", "gh%2Facme%2Fwidgets"},
		{"circleci/43G3kM5RtfFE7v5sa4nWAU/44n9pujWcTnVZ2b5S8Fnat", "circleci%2F43G3kM5RtfFE7v5sa4nWAU%2F44n9pujWcTnVZ2b5S8Fnat"},
		{"bb/acme/legacy", "bitbucket%2Facme%2Flegacy"},
	}
	var buildJobs, approvals int
	for _, p := range projects {
		for _, slug := range []string{p.raw, p.escaped, strings.Replace(p.raw, "gh/", "github/", 1)} {
			c.get("/project/{project-slug}", "/project/"+slug, fetchOpts{})
		}
		all("/project/{project-slug}/pipeline", "/project/"+p.escaped+"/pipeline", fetchOpts{query: url.Values{"branch": {"main"}}})
		pipelines := all("/project/{project-slug}/pipeline", "/project/"+p.raw+"/pipeline", fetchOpts{})
		for _, pl := range pipelines {
			num := jsonNumber(pl["number"])
			c.get("/project/{project-slug}/pipeline/{pipeline-number}", "/project/"+p.raw+"/pipeline/"+num, fetchOpts{})
			id := pl["id"].(string)
			c.get("/pipeline/{pipeline-id}", "/pipeline/"+id, fetchOpts{})
			for _, wf := range all("/pipeline/{pipeline-id}/workflow", "/pipeline/"+id+"/workflow", fetchOpts{}) {
				wid := wf["id"].(string)
				c.get("/workflow/{id}", "/workflow/"+wid, fetchOpts{})
				jobs := all("/workflow/{id}/job", "/workflow/"+wid+"/job", fetchOpts{patch: allowApprovalStartedAtNull})
				for _, j := range jobs {
					if j["type"] == "approval" {
						approvals++
						continue
					}
					jn := jsonNumber(j["job_number"])
					buildJobs++
					c.get("/project/{project-slug}/job/{job-number}", "/project/"+p.raw+"/job/"+jn, fetchOpts{spec2025: true})
					all("/project/{project-slug}/{job-number}/artifacts", "/project/"+p.escaped+"/"+jn+"/artifacts", fetchOpts{spec2025: true})
				}
			}
		}
	}
	if buildJobs != 14 || approvals != 6 {
		t.Errorf("walked %d build jobs and %d approvals, want 14 and 6", buildJobs, approvals)
	}

	// The deviation is real: the unpatched job list fails validation, on
	// started_at and nothing else.
	wf := w.Project("gh/acme/widgets").Pipelines()[0].Workflows()[0]
	resp, body := rawGet(t, srv.URL+"/api/v2/workflow/"+wf.ID()+"/job", contractToken)
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/v2/workflow/"+wf.ID()+"/job", nil)
	op := v2026.Paths.Value("/workflow/{id}/job").Get
	err := c.check(v2026, "/workflow/{id}/job", op, req, resp, body)
	if err == nil {
		t.Error("an approval job's null started_at passed validation; the deviation handling is obsolete")
	} else if strings.Count(err.Error(), "started_at") == 0 || strings.Contains(err.Error(), "job_number") {
		t.Errorf("unpatched job list failed for another reason: %v", err)
	}

	// The validation is not vacuous: small breaks of a valid body fail.
	resp, body = rawGet(t, srv.URL+"/api/v2/project/gh/acme/widgets/pipeline", contractToken)
	req, _ = http.NewRequest(http.MethodGet, srv.URL+"/api/v2/project/gh/acme/widgets/pipeline", nil)
	op = v2026.Paths.Value("/project/{project-slug}/pipeline").Get
	for _, breakIt := range []struct{ from, to string }{
		{`"next_page_token":`, `"next_page_tokens":`},
		{`"number":5`, `"number":"5"`},
		{`"state":"created"`, `"state":"bogus"`},
		{`"id":"`, `"id":"x`},
		{`"created_at":"2026-`, `"created_at":"26-`},
	} {
		broken := strings.Replace(string(body), breakIt.from, breakIt.to, 1)
		if broken == string(body) {
			t.Fatalf("cannot break %q: not in %s", breakIt.from, truncate(body))
		}
		if c.check(v2026, "/project/{project-slug}/pipeline", op, req, resp, []byte(broken)) == nil {
			t.Errorf("a pipeline list with %q instead of %q passed validation", breakIt.to, breakIt.from)
		}
	}

	// Errors, against the operation's default or explicit responses.
	uuid := "5034460f-c7c4-4c43-9457-de07e2029e7b"
	pipelineID := w.Project("gh/acme/widgets").Pipelines()[0].ID()
	errorCases := []struct {
		template, path string
		o              fetchOpts
		status         int
		message        string
	}{
		{"/me", "/me", fetchOpts{noAuth: true}, 401, "You must log in first"},
		{"/me", "/me", fetchOpts{noAuth: true, header: http.Header{"Circle-Token": {"wrong"}}}, 401, "Invalid token provided."},
		{"/project/{project-slug}", "/project/gh/acme/nope", fetchOpts{}, 404, "Project not found"},
		{"/project/{project-slug}/pipeline", "/project/gh/acme/widgets/pipeline", fetchOpts{query: url.Values{"page-token": {"bm9wZQ=="}}}, 404, "Not Found"},
		{"/project/{project-slug}/pipeline/{pipeline-number}", "/project/gh/acme/widgets/pipeline/999", fetchOpts{}, 404, "Pipeline not found"},
		{"/pipeline/{pipeline-id}", "/pipeline/" + uuid, fetchOpts{}, 404, "Pipeline not found"},
		{"/pipeline/{pipeline-id}/workflow", "/pipeline/" + uuid + "/workflow", fetchOpts{}, 404, "Pipeline not found"},
		{"/pipeline/{pipeline-id}/workflow", "/pipeline/" + pipelineID + "/workflow", fetchOpts{noAuth: true, header: http.Header{"Authorization": {"Bearer wrong"}}}, 401, "Invalid token provided."},
		{"/workflow/{id}", "/workflow/" + uuid, fetchOpts{}, 404, "Workflow not found"},
		{"/workflow/{id}", "/workflow/nope", fetchOpts{}, 400, "Workflow ID provided is invalid."},
		{"/workflow/{id}", "/workflow/" + uuid, fetchOpts{noAuth: true}, 401, "You must log in first"},
		{"/workflow/{id}/job", "/workflow/" + uuid + "/job", fetchOpts{}, 404, "Workflow not found"},
		{"/project/{project-slug}/job/{job-number}", "/project/gh/acme/widgets/job/999", fetchOpts{spec2025: true}, 404, "Job not found."},
		{"/project/{project-slug}/job/{job-number}", "/project/gh/acme/nope/job/1", fetchOpts{spec2025: true}, 404, "Project not found"},
		{"/project/{project-slug}/{job-number}/artifacts", "/project/gh/acme/widgets/999/artifacts", fetchOpts{spec2025: true}, 404, "Job not found."},
		{"/project/{project-slug}/{job-number}/artifacts", "/project/gh/acme/widgets/1/artifacts", fetchOpts{spec2025: true, noAuth: true}, 401, "You must log in first"},
		{"/project/{project-slug}/{job-number}/artifacts", "/project/gh/acme/widgets/1/artifacts", fetchOpts{spec2025: true, query: url.Values{"page-token": {"AAR+/=="}}}, 404, "Not Found"},
	}
	for _, tc := range errorCases {
		status, body := c.get(tc.template, tc.path, tc.o)
		if status != tc.status || !strings.Contains(string(body), `"message":"`+tc.message+`"`) {
			t.Errorf("GET %s = %d %s, want %d %q", tc.path, status, body, tc.status, tc.message)
		}
	}

	// Injected faults answer in the documented shapes too.
	srv.SetFaults(circlecitest.FailFirst(1, circlecitest.StatusFault(429, "1")))
	if status, _ := c.get("/workflow/{id}", "/workflow/"+wf.ID(), fetchOpts{}); status != 429 {
		t.Errorf("injected 429: got %d", status)
	}
	srv.SetFaults(circlecitest.FailFirst(1, circlecitest.StatusFault(500, "")))
	if status, _ := c.get("/workflow/{id}", "/workflow/"+wf.ID(), fetchOpts{}); status != 500 {
		t.Errorf("injected 500: got %d", status)
	}
	srv.SetFaults(circlecitest.FailFirst(1, circlecitest.StatusFault(503, "2")))
	if status, _ := c.get("/project/{project-slug}/{job-number}/artifacts", "/project/gh/acme/widgets/1/artifacts", fetchOpts{spec2025: true}); status != 503 {
		t.Errorf("injected 503: got %d", status)
	}
	srv.SetFaults(nil)

	for _, op := range []string{
		"getCurrentUser", "getProjectBySlug", "listPipelinesForProject", "getPipelineByNumber",
		"getPipelineById", "listWorkflowsByPipelineId", "getWorkflowById", "listWorkflowJobs",
		"getJobDetails", "getJobArtifacts",
	} {
		if c.validated[op+" OK"] == 0 {
			t.Errorf("no 200 response of %s was validated", op)
		}
	}
	n := 0
	for _, v := range c.validated {
		n += v
	}
	t.Logf("validated %d responses: %v", n, c.validated)
}

func jsonNumber(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// rawGet fetches u with token (none if "") and returns the response, whose
// body it has read.
func rawGet(t *testing.T, u, token string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Circle-Token", token)
	}
	resp, err := http.DefaultClient.Do(req)
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
