package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
	"github.com/artifact-sync/artifact-sync/sink/sinktest"
)

// nightlyWorld is a project with pipelines of two workflows of ten jobs,
// each with one small artifact: the shape of issue 23's nightly backup, at
// a size a test runs in seconds (.ci/bench's nightly scenario runs 3,000
// pipelines).
type nightlyWorld struct {
	w    *circlecitest.World
	p    *circlecitest.Project
	arts []*circlecitest.Artifact
}

const nightlyJobs = 10 // per workflow; two workflows per pipeline

func newNightlyWorld(pipelines int) *nightlyWorld {
	w := circlecitest.NewWorld()
	n := &nightlyWorld{w: w, p: w.AddProject(slugArg, "main")}
	n.add(pipelines)
	return n
}

func (n *nightlyWorld) add(pipelines int) {
	for range pipelines {
		pl := n.p.AddPipeline("main")
		for _, name := range []string{"build", "deploy"} {
			n.addWorkflow(pl, name)
		}
	}
}

func (n *nightlyWorld) addWorkflow(pl *circlecitest.Pipeline, name string) *circlecitest.Workflow {
	wf := pl.AddWorkflow(name)
	for j := range nightlyJobs {
		job := wf.AddJob(name+"-"+strconv.Itoa(j), circlecitest.JobOptions{})
		n.arts = append(n.arts, job.AddArtifact(0, "out/report.txt", 64))
	}
	return wf
}

// nightlySummary is what the nightly runs read of --json.
type nightlySummary struct {
	Artifacts         int `json:"artifacts"`
	Transferred       int `json:"transferred"`
	Skipped           int `json:"skipped"`
	Failed            int `json:"failed"`
	FinishedWorkflows int `json:"finished_workflows"`
	FinishedJobs      int `json:"finished_jobs"`
}

func nightlyRun(t *testing.T, srv *circlecitest.Server, dir string, pipelines int, extra ...string) nightlySummary {
	t.Helper()
	srv.ResetStats()
	args := append([]string{"pull", slugArg, "--branch", "main", "--pipelines", strconv.Itoa(pipelines), "--to", dir, "--json"}, extra...)
	r := runTool(t, toolEnv(t, srv), 2*time.Minute, args...)
	wantCode(t, r, 0)
	var s nightlySummary
	if err := json.Unmarshal([]byte(lastLine(r.stdout)), &s); err != nil {
		t.Fatalf("summary %q: %v", r.stdout, err)
	}
	if s.Failed != 0 {
		t.Fatalf("%d failed:\n%s", s.Failed, r.stdout)
	}
	return s
}

// apiRequests is every request the run made to the API, by route, and
// their total.
func apiRequests(srv *circlecitest.Server) (map[string]int, int) {
	counts := map[string]int{}
	total := 0
	for route, n := range srv.RequestCounts() {
		if route == "download" || route == "storage" {
			continue
		}
		counts[route] = n
		total += n
	}
	return counts, total
}

// pipelinePages is how many pages of 20 a listing of k pipelines takes.
func pipelinePages(k int) int { return (k + 19) / 20 }

// wantRequests checks the API requests of the last run against the cost
// the nightly promise allows: the project, the pipeline pages, one
// workflow listing per pipeline, and jobs and artifacts listings only for
// workflows and jobs not finished in an earlier run.
func wantRequests(t *testing.T, srv *circlecitest.Server, pipelines, jobListings, artifactListings int) {
	t.Helper()
	counts, total := apiRequests(srv)
	want := map[string]int{"project": 1, "pipelines": pipelinePages(pipelines), "workflows": pipelines, "jobs": jobListings, "artifacts": artifactListings}
	for route, n := range counts {
		if n != want[route] {
			t.Errorf("%d %s requests, want %d (all: %v)", n, route, want[route], counts)
		}
	}
	wantTotal := 1 + pipelinePages(pipelines) + pipelines + jobListings + artifactListings
	if total != wantTotal {
		t.Errorf("%d API requests, want %d (all: %v)", total, wantTotal, counts)
	}
	t.Logf("%d API requests: %v", total, counts)
}

// A nightly backup lists only what is new: once a run has mirrored a
// window of pipelines, the next one over the same window costs the
// pipeline pages and one workflow listing per pipeline (CircleCI can add a
// rerun workflow to an old pipeline), where it cost a listing of every
// workflow's jobs and every job's artifacts before; new pipelines and a
// rerun workflow on an old one cost their own listings and are mirrored; a
// manifest of format 1 resumes without fetching anything again; what
// CircleCI forgets or expires stays in the mirror and its records.
func TestNightlyRunsListOnlyWhatIsNew(t *testing.T) {
	const old, fresh = 150, 10
	n := newNightlyWorld(old)
	srv := circlecitest.Start(t, n.w, circlecitest.Options{Token: testToken})
	dir := t.TempDir()
	perPipeline := 2 * nightlyJobs

	s := nightlyRun(t, srv, dir, old)
	if s.Transferred != old*perPipeline {
		t.Fatalf("initial run: %+v, want %d transferred", s, old*perPipeline)
	}
	wantRequests(t, srv, old, 2*old, old*perPipeline)

	t.Log("no-op rerun")
	s = nightlyRun(t, srv, dir, old)
	if s.Transferred != 0 || s.Skipped != old*perPipeline || s.FinishedWorkflows != 2*old || s.FinishedJobs != old*perPipeline {
		t.Errorf("no-op rerun: %+v; want every artifact already done, every workflow and job finished earlier", s)
	}
	wantRequests(t, srv, old, 0, 0)
	if _, total := apiRequests(srv); total > 1+pipelinePages(old)+old {
		t.Errorf("no-op rerun: %d API requests, over the pipeline pages and one workflow listing per pipeline", total)
	}
	if got := srv.DownloadTotals().Started; got != 0 {
		t.Errorf("no-op rerun: %d downloads", got)
	}

	t.Log("new pipelines, one of them still running a job")
	n.add(fresh)
	newest := n.p.Pipelines()[old+fresh-1].Workflows()[1]
	newest.SetStatus("running")
	running := newest.Jobs()[nightlyJobs-1]
	running.SetStatus("running")
	s = nightlyRun(t, srv, dir, old+fresh)
	if s.Transferred != fresh*perPipeline-1 {
		t.Errorf("after %d new pipelines: %+v, want %d transferred", fresh, s, fresh*perPipeline-1)
	}
	wantRequests(t, srv, old+fresh, 2*fresh, fresh*perPipeline-1)

	t.Log("a rerun workflow on an old pipeline, and the running job finished")
	rerun := n.addWorkflow(n.p.Pipelines()[4], "build")
	running.SetStatus("success")
	newest.SetStatus("success")
	s = nightlyRun(t, srv, dir, old+fresh)
	if s.Transferred != nightlyJobs+1 {
		t.Errorf("after a rerun workflow and a finished job: %+v, want %d transferred", s, nightlyJobs+1)
	}
	// The rerun's jobs and the workflow whose job was running are listed
	// (its nine other jobs are finished, so only the tenth's artifacts).
	wantRequests(t, srv, old+fresh, 2, nightlyJobs+1)
	for _, j := range rerun.Jobs() {
		if _, err := os.Stat(filepath.Join(dir, strconv.FormatInt(j.Number(), 10), "0", "out", "report.txt")); err != nil {
			t.Errorf("the rerun workflow's job %d: %v", j.Number(), err)
		}
	}
	s = nightlyRun(t, srv, dir, old+fresh)
	wantRequests(t, srv, old+fresh, 0, 0)

	t.Log("a manifest of format 1 resumes without fetching again")
	toFormat1(t, filepath.Join(dir, ".artifact-sync", "manifest"))
	s = nightlyRun(t, srv, dir, old+fresh)
	if s.Transferred != 0 || s.FinishedJobs != 0 || s.Skipped != len(n.arts) {
		t.Errorf("rerun on a format 1 manifest: %+v, want all %d already done", s, len(n.arts))
	}
	if got := srv.DownloadTotals().Started; got != 0 {
		t.Errorf("rerun on a format 1 manifest: %d downloads", got)
	}
	s = nightlyRun(t, srv, dir, old+fresh)
	wantRequests(t, srv, old+fresh, 0, 0)

	t.Log("CircleCI expires artifacts and forgets the oldest pipelines")
	expired := n.p.Pipelines()[old+fresh-2].Workflows()[0].Jobs()[0]
	expired.ExpireArtifacts()
	for _, pl := range n.p.Pipelines()[:3] {
		n.p.Forget(pl)
	}
	n.add(1)
	// --verify lists everything again, the expired job too (with no
	// artifacts now), and re-hashes what it finds recorded.
	s = nightlyRun(t, srv, dir, old+fresh, "--verify")
	if want := len(n.arts) - 3*perPipeline - 1; s.Artifacts != want || s.Transferred != perPipeline {
		t.Errorf("run after CircleCI forgot: %+v, want %d artifacts listed, the new pipeline's %d transferred", s, want, perPipeline)
	}
	s = nightlyRun(t, srv, dir, old+fresh)
	wantRequests(t, srv, old+fresh-2, 0, 0)
	want := mirrorOf(n.arts...)
	checkDir(t, dir, want, true)
	r := runTool(t, toolEnv(t, srv), time.Minute, "verify", "--to", dir, "--json")
	wantCode(t, r, 0)
	var v struct {
		Checked int `json:"checked"`
		Intact  int `json:"intact"`
	}
	if err := json.Unmarshal([]byte(lastLine(r.stdout)), &v); err != nil {
		t.Fatalf("verify: %q: %v", r.stdout, err)
	}
	if v.Checked != len(n.arts) || v.Intact != len(n.arts) {
		t.Errorf("verify after CircleCI forgot: %d checked, %d intact; want every one of the %d artifacts ever mirrored recorded and intact", v.Checked, v.Intact, len(n.arts))
	}
}

// toFormat1 rewrites the manifest in dir as a version before done marks
// wrote it: format 1, without done records.
func toFormat1(t *testing.T, dir string) {
	t.Helper()
	names, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range names {
		path := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		for _, line := range strings.SplitAfter(string(b), "\n") {
			if strings.Contains(line, `{"done":`) {
				continue
			}
			line = strings.Replace(line, `"format": 2,`, `"format": 1,`, 1)
			line = strings.Replace(line, `{"format":2,`, `{"format":1,`, 1)
			out.WriteString(line)
		}
		// The last entry before the marks now ends with a comma.
		fixed := strings.Replace(out.String(), "},\n  ]\n}", "}\n  ]\n}", 1)
		if fixed == string(b) {
			t.Fatalf("%s: nothing to rewrite", path)
		}
		if err := os.WriteFile(path, []byte(fixed), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// The same nightly promise with the mirror and its manifest in S3, as a
// scheduled job on a fresh runner keeps them: the no-op rerun costs the
// pipeline pages and a workflow listing per pipeline, new pipelines their
// own listings.
func TestNightlyRunsListOnlyWhatIsNewOnS3(t *testing.T) {
	env := sinktest.NewS3Bucket(t)
	const old, fresh = 40, 2
	n := newNightlyWorld(old)
	srv := circlecitest.Start(t, n.w, circlecitest.Options{Token: testToken})
	d := s3Dest(t, srv, env, "mirror")
	run := func(pipelines int) nightlySummary {
		t.Helper()
		srv.ResetStats()
		r := runTool(t, d.env, 2*time.Minute, d.pull("--branch", "main", "--pipelines", strconv.Itoa(pipelines), "--json")...)
		wantCode(t, r, 0)
		var s nightlySummary
		if err := json.Unmarshal([]byte(lastLine(r.stdout)), &s); err != nil {
			t.Fatalf("summary %q: %v", r.stdout, err)
		}
		return s
	}
	perPipeline := 2 * nightlyJobs
	if s := run(old); s.Transferred != old*perPipeline {
		t.Fatalf("initial run: %+v", s)
	}
	if s := run(old); s.Transferred != 0 || s.FinishedWorkflows != 2*old {
		t.Errorf("no-op rerun: %+v", s)
	}
	wantRequests(t, srv, old, 0, 0)
	n.add(fresh)
	if s := run(old + fresh); s.Transferred != fresh*perPipeline {
		t.Errorf("after %d new pipelines: %+v", fresh, s)
	}
	wantRequests(t, srv, old+fresh, 2*fresh, fresh*perPipeline)
	d.check(t, mirrorOf(n.arts...), true)
}
