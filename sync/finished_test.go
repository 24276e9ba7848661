package sync_test

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
	"github.com/artifact-sync/artifact-sync/manifest"
	ccsync "github.com/artifact-sync/artifact-sync/sync"
)

// What a run marks finished is finished for what it selected only: a run
// of the same selection passes over it (and does not call its globs
// unmatched for what it did not list), a wider one (no --include) still
// gets the rest, and a job with an artifact that failed is listed again
// until it is whole.
func TestFinishedIsFinishedForTheSelectionOnly(t *testing.T) {
	w := circlecitest.NewWorld()
	p := w.AddProject("gh/acme/widgets", "main")
	wf := p.AddPipeline("main").AddWorkflow("build")
	var broken *circlecitest.Artifact
	for _, name := range []string{"test", "package"} {
		job := wf.AddJob(name, circlecitest.JobOptions{})
		job.AddArtifact(0, "report.txt", 10)
		a := job.AddArtifact(0, "app.bin", 20)
		if name == "package" {
			broken = a
		}
	}
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: token})
	client := newClient(t, srv.URL)
	dest, _ := localSink(t)
	opts := pullOpts()
	opts.Retries = 1
	opts.Manifest = new(manifest.MemStore)
	pull := func(sel ccsync.Selection) *ccsync.Summary {
		t.Helper()
		srv.ResetStats()
		sum, err := ccsync.Pull(t.Context(), client, client, slug, &sel, dest, opts)
		if err != nil {
			t.Fatalf("pull %+v: %v", sel, err)
		}
		return sum
	}

	txt := ccsync.Selection{PipelineNumber: 1, Include: []string{"*.txt"}}
	if sum := pull(txt); sum.Transferred != 2 {
		t.Fatalf("--include '*.txt': %+v", sum)
	}
	if sum := pull(txt); sum.FinishedWorkflows != 1 || sum.Skipped != 2 || srv.Requests("jobs") != 0 || srv.Requests("artifacts") != 0 {
		t.Errorf("the same selection again: %+v, %d job and %d artifact listings; want the workflow passed over as finished",
			sum, srv.Requests("jobs"), srv.Requests("artifacts"))
	}

	// A new pipeline whose artifacts --include does not take: the globs
	// matched in the jobs passed over, so none is called unmatched.
	p.AddPipeline("main").AddWorkflow("lint").AddJob("lint", circlecitest.JobOptions{}).AddArtifact(0, "lint.log", 5)
	var logs bytes.Buffer
	opts.Log = slog.New(slog.NewTextHandler(&logs, nil))
	if sum := pull(ccsync.Selection{Branch: "main", Pipelines: 2, Include: []string{"*.txt"}}); sum.FinishedWorkflows != 1 || sum.Transferred != 0 {
		t.Errorf("a new pipeline with nothing to take: %+v", sum)
	}
	if strings.Contains(logs.String(), "matched none") {
		t.Errorf("a glob that matched in the jobs passed over is called unmatched:\n%s", logs.String())
	}
	opts.Log = nil

	srv.SetFaults(circlecitest.OnDownloads(func(c circlecitest.Call) circlecitest.Fault {
		if c.Artifact == broken {
			return circlecitest.StatusFault(403, "")
		}
		return circlecitest.Fault{}
	}))
	all := ccsync.Selection{PipelineNumber: 1}
	if sum := pull(all); sum.Transferred != 1 || sum.Failed != 1 || sum.FinishedWorkflows != 0 {
		t.Fatalf("without --include, one download refused: %+v; want the other .bin transferred, nothing passed over", sum)
	}
	srv.SetFaults(nil)
	sum := pull(all)
	if sum.Transferred != 1 || srv.Requests("artifacts") != 1 || sum.FinishedJobs != 1 {
		t.Errorf("after the failure: %+v, %d artifact listings; want the failed job listed again and its file fetched, the other passed over",
			sum, srv.Requests("artifacts"))
	}
	if sum := pull(all); sum.FinishedWorkflows != 1 || sum.Transferred != 0 || srv.Requests("jobs") != 0 {
		t.Errorf("once whole: %+v; want the workflow passed over", sum)
	}
}

// A layout that is not one folder per job node plans the whole run at
// once; what it finishes is marked all the same, jobs without artifacts
// included.
func TestFinishedUnderAWholeRunPlan(t *testing.T) {
	w := circlecitest.NewWorld()
	p := w.AddProject("gh/acme/widgets", "main")
	wf := p.AddPipeline("main").AddWorkflow("build")
	wf.AddJob("test", circlecitest.JobOptions{}).AddArtifact(0, "report.txt", 10)
	wf.AddJob("lint", circlecitest.JobOptions{})
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: token})
	client := newClient(t, srv.URL)
	dest, _ := localSink(t)
	opts := pullOpts()
	opts.Manifest = new(manifest.MemStore)
	layout, err := ccsync.ParseLayout("{workflow_name}/{job_name}/{path}")
	if err != nil {
		t.Fatal(err)
	}
	opts.Layout = layout
	sel := ccsync.Selection{PipelineNumber: 1}
	if sum, err := ccsync.Pull(t.Context(), client, client, slug, &sel, dest, opts); err != nil || sum.Transferred != 1 {
		t.Fatalf("first pull: %+v, %v", sum, err)
	}
	srv.ResetStats()
	sum, err := ccsync.Pull(t.Context(), client, client, slug, &sel, dest, opts)
	if err != nil || sum.FinishedWorkflows != 1 || sum.FinishedJobs != 2 || srv.Requests("jobs") != 0 {
		t.Errorf("rerun: %+v, %v, %d job listings; want the workflow and its two jobs passed over", sum, err, srv.Requests("jobs"))
	}
}
