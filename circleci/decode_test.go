package circleci

import (
	"net/http"
	"testing"
	"time"
)

// The bodies below follow real CircleCI responses, including where they
// break the published schema.
const (
	approvalJobsPage = `{
  "next_page_token": null,
  "items": [
    {"dependencies": [], "job_number": 9012, "id": "1b9ba3e1-4d0c-4bde-8e8c-6b3b8a1b6c11",
     "started_at": "2021-02-01T10:00:02Z", "name": "build", "project_slug": "gh/LF-Engineering/da-ds",
     "status": "success", "type": "build", "stopped_at": "2021-02-01T10:03:12Z", "brand_new_field": {"x": 1}},
    {"dependencies": ["1b9ba3e1-4d0c-4bde-8e8c-6b3b8a1b6c11"], "id": "77b1f7f0-c6f2-4b36-8c7e-bd1b2c2e9f01",
     "started_at": null, "name": "hold", "approval_request_id": "77b1f7f0-c6f2-4b36-8c7e-bd1b2c2e9f01",
     "project_slug": "gh/LF-Engineering/da-ds", "status": "on_hold", "type": "approval"},
    {"dependencies": [], "job_number": 9013, "id": "c0ffee00-0000-4000-8000-000000000001",
     "started_at": "2021-02-01T10:00:02Z", "name": "deploy", "project_slug": "gh/LF-Engineering/da-ds",
     "status": "quantum_superposition", "type": "build", "stopped_at": null}
  ]
}`
	legacyWorkflow = `{"pipeline_id": null, "id": "0d8f7c5a-7b3e-4f36-a5f1-3c3c6c6a6a6a", "name": "build_and_test",
  "project_slug": "gh/thephpleague/php-client", "status": "success", "started_by": "4a1f0f3c-0000-4000-8000-000000000000",
  "pipeline_number": null, "created_at": "2019-05-14T09:12:23Z", "stopped_at": "2019-05-14T09:20:01Z"}`
	runningWorkflow = `{"pipeline_id": "5034460f-c7c4-4c43-9457-de07e2029e7b", "id": "w-2", "name": "nightly",
  "project_slug": "circleci/43G3kM5RtfFE7v5sa4nWAU/44n9pujWcTnVZ2b5S8Fnat", "status": "quantum",
  "pipeline_number": 1234, "created_at": "2026-08-01T09:12:23Z", "stopped_at": null, "tag": null,
  "auto_rerun_number": 0, "max_auto_reruns": 0}`
	pipelineBody = `{"id": "5034460f-c7c4-4c43-9457-de07e2029e7b", "errors": [], "project_slug": "gh/LF-Engineering/da-ds",
  "updated_at": "2020-12-24T12:59:23.906Z", "number": 1234, "state": "created", "created_at": "2020-12-24T12:59:23.906Z",
  "trigger": {"received_at": "2020-12-24T12:59:23.578Z", "type": "webhook", "actor": {"login": "lukaszgryglicki", "avatar_url": null}},
  "trigger_parameters": {"x": 1, "y": {"z": true}},
  "vcs": {"origin_repository_url": "https://github.com/LF-Engineering/da-ds", "target_repository_url": "https://github.com/LF-Engineering/da-ds",
          "revision": null, "provider_name": "GitHub", "commit": {"body": null, "subject": "Fix"}, "branch": "master"}}`
	jobDetailsBody = `{"web_url": "https://app.circleci.com/pipelines/gh/o/r/1/workflows/w/jobs/77", "project": {"external_url": "https://github.com/o/r", "slug": "gh/o/r", "name": "r", "id": "p-id"},
  "parallel_runs": [{"index": 0, "status": "success"}, {"index": 1, "status": "running"}], "started_at": null,
  "latest_workflow": {"name": "build", "id": "w-1"}, "name": "test", "executor": {"type": "docker", "resource_class": "medium"},
  "parallelism": 2, "status": null, "number": 77, "pipeline": {"id": "p-1"}, "duration": null,
  "created_at": "2021-02-01T10:00:00.123Z", "messages": [], "contexts": [], "organization": {"name": "o"},
  "queued_at": "2021-02-01T10:00:00.456Z", "stopped_at": null}`
)

func TestLenientDecoding(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case apiPath("workflow/w-1/job"):
			w.Write([]byte(approvalJobsPage))
		case apiPath("workflow/legacy"):
			w.Write([]byte(legacyWorkflow))
		case apiPath("workflow/w-2"):
			w.Write([]byte(runningWorkflow))
		case apiPath("pipeline/p-1"):
			w.Write([]byte(pipelineBody))
		case apiPath("project/gh/o/r/job/77"):
			w.Write([]byte(jobDetailsBody))
		default:
			http.NotFound(w, r)
		}
	})
	c := newClient(t, srv)
	ctx := t.Context()

	jobs := collect(t, c.WorkflowJobs(ctx, "w-1"))
	if len(jobs) != 3 {
		t.Fatalf("got %d jobs, want 3", len(jobs))
	}
	build, approval, unknown := jobs[0], jobs[1], jobs[2]
	if build.JobNumber == nil || *build.JobNumber != 9012 || build.StartedAt == nil || !build.Terminal() {
		t.Errorf("build job = %+v", build)
	}
	if approval.JobNumber != nil || approval.StartedAt != nil || approval.Type != "approval" || approval.Terminal() {
		t.Errorf("approval job = %+v, want no number, no start, not terminal", approval)
	}
	if unknown.Status != "quantum_superposition" || unknown.Terminal() || unknown.StoppedAt != nil {
		t.Errorf("job with unknown status = %+v, want kept and not terminal", unknown)
	}

	legacy, err := c.Workflow(ctx, "legacy")
	if err != nil {
		t.Fatal(err)
	}
	if legacy.PipelineID != "" || legacy.PipelineNumber != nil || !legacy.Terminal() {
		t.Errorf("legacy workflow = %+v", legacy)
	}
	running, err := c.Workflow(ctx, "w-2")
	if err != nil {
		t.Fatal(err)
	}
	if running.StoppedAt != nil || running.Terminal() || running.PipelineNumber == nil || *running.PipelineNumber != 1234 || running.Tag != "" {
		t.Errorf("running workflow = %+v", running)
	}

	p, err := c.Pipeline(ctx, "p-1")
	if err != nil {
		t.Fatal(err)
	}
	wantCreated := time.Date(2020, 12, 24, 12, 59, 23, 906e6, time.UTC)
	if p.Number != 1234 || !p.CreatedAt.Equal(wantCreated) || p.VCS == nil || p.VCS.Revision != "" ||
		p.VCS.Branch != "master" || p.VCS.Commit == nil || p.VCS.Commit.Body != "" || p.Trigger.Actor.Login != "lukaszgryglicki" {
		t.Errorf("pipeline = %+v, vcs = %+v", p, p.VCS)
	}

	d, err := c.JobDetails(ctx, Slug{"gh", "o", "r"}, 77)
	if err != nil {
		t.Fatal(err)
	}
	if d.Status != "" || d.Duration != nil || d.StartedAt != nil || d.StoppedAt != nil || d.Parallelism != 2 ||
		len(d.ParallelRuns) != 2 || d.ParallelRuns[1] != (ParallelRun{1, "running"}) || d.LatestWorkflow.ID != "w-1" ||
		d.Pipeline.ID != "p-1" || d.Project.Slug != "gh/o/r" || d.Terminal() {
		t.Errorf("job details = %+v", d)
	}
}

func TestTerminal(t *testing.T) {
	jobs := map[string]bool{
		"success": true, "failed": true, "retried": true, "infrastructure_fail": true, "timedout": true,
		"terminated-unknown": true, "canceled": true, "not_run": true, "unauthorized": true,
		"running": false, "queued": false, "not_running": false, "on_hold": false, "blocked": false,
		"": false, "something_new": false,
	}
	for status, want := range jobs {
		if got := (Job{Status: status}).Terminal(); got != want {
			t.Errorf("Job{Status: %q}.Terminal() = %v, want %v", status, got, want)
		}
	}
	workflows := map[string]bool{
		"success": true, "failed": true, "error": true, "canceled": true, "not_run": true, "unauthorized": true,
		"running": false, "failing": false, "on_hold": false, "": false, "something_new": false,
	}
	for status, want := range workflows {
		if got := (Workflow{Status: status}).Terminal(); got != want {
			t.Errorf("Workflow{Status: %q}.Terminal() = %v, want %v", status, got, want)
		}
	}
}
