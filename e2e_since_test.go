package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
)

// sinceWorld is 60 pipelines of gh/acme/widgets, one every 4 hours on main,
// feature/a and release/1.x in turn, the newest an hour before now; three
// pages of 20 in the API's listing. Each has a workflow "build" with jobs
// "test" (reports/junit.xml) and "package" (dist/app.tgz); the newest also
// a job "slow" still running. Pipeline 42 (three days old) and pipeline 30
// (121 hours old) each got a rerun of "build" half an hour ago.
type sinceWorld struct {
	w         *circlecitest.World
	pipelines []*circlecitest.Pipeline // oldest first: pipelines[n-1] is number n
	reruns    map[int64]*circlecitest.Workflow
}

func newSinceWorld(now time.Time) *sinceWorld {
	sw := &sinceWorld{w: circlecitest.NewWorld(), reruns: map[int64]*circlecitest.Workflow{}}
	p := sw.w.AddProject(slugArg, "main")
	branches := []string{"main", "feature/a", "release/1.x"}
	for i := range 60 {
		sw.w.SetClock(now.Add(-time.Hour - time.Duration(59-i)*4*time.Hour - 61123*time.Millisecond))
		pl := p.AddPipeline(branches[i%3])
		wf := pl.AddWorkflow("build")
		wf.AddJob("test", circlecitest.JobOptions{}).AddArtifact(0, "reports/junit.xml", 100)
		wf.AddJob("package", circlecitest.JobOptions{}).AddArtifact(0, "dist/app.tgz", 200)
		if i == 59 {
			wf.SetStatus("running")
			wf.AddJob("slow", circlecitest.JobOptions{Status: "running"}).AddArtifact(0, "partial.log", 5)
		}
		sw.pipelines = append(sw.pipelines, pl)
	}
	sw.w.SetClock(now.Add(-30 * time.Minute))
	for _, n := range []int64{42, 30} {
		rerun := sw.pipelines[n-1].Workflows()[0].Rerun()
		rerun.AddJob("test", circlecitest.JobOptions{}).AddArtifact(0, "reports/junit.xml", 101)
		sw.reruns[n] = rerun
	}
	return sw
}

// since returns the numbers of the pipelines created at or after t on
// branch ("": any), newest first.
func (sw *sinceWorld) since(t time.Time, branch string) []int64 {
	var out []int64
	for i := len(sw.pipelines) - 1; i >= 0; i-- {
		pl := sw.pipelines[i]
		if !pl.Created().Before(t) && (branch == "" || pl.Branch() == branch) {
			out = append(out, pl.Number())
		}
	}
	return out
}

// listedLine is one line of list --json.
type listedLine struct {
	PipelineNumber int64  `json:"pipeline_number"`
	Branch         string `json:"branch"`
	WorkflowID     string `json:"workflow_id"`
	JobName        string `json:"job_name"`
	JobNumber      int64  `json:"job_number"`
	Path           string `json:"path"`
}

func parseListed(t *testing.T, out string) []listedLine {
	t.Helper()
	var lines []listedLine
	for l := range strings.Lines(out) {
		var ll listedLine
		if err := json.Unmarshal([]byte(l), &ll); err != nil {
			t.Fatalf("list --json line %q: %v", l, err)
		}
		lines = append(lines, ll)
	}
	return lines
}

// pipelinesOf returns the pipeline numbers of lines, newest first, once each.
func pipelinesOf(lines []listedLine) []int64 {
	var out []int64
	for _, l := range lines {
		if !slices.Contains(out, l.PipelineNumber) {
			out = append(out, l.PipelineNumber)
		}
	}
	slices.Sort(out)
	slices.Reverse(out)
	return out
}

// pipelinePageRequests returns the query of every request for the project's
// pipeline listing, in order.
func pipelinePageRequests(srv *circlecitest.Server) []url.Values {
	var out []url.Values
	for _, lr := range srv.RequestLog() {
		if lr.Route == "pipelines" {
			q, _ := url.ParseQuery(lr.Query)
			out = append(out, q)
		}
	}
	return out
}

// TestSinceSelectsTheWindow: --since takes every pipeline created in the
// window on every branch, across pages of the listing, newest first; a
// pipeline an hour older than the window is never listed and the page after
// the one where the window ends is never requested. A workflow rerun on a
// pipeline in the window is taken beside the original; one on a pipeline
// older than the window is not. A job still running is passed over and
// said so.
func TestSinceSelectsTheWindow(t *testing.T) {
	now := time.Now()
	sw := newSinceWorld(now)
	srv := circlecitest.Start(t, sw.w, circlecitest.Options{Token: testToken})
	env := toolEnv(t, srv)

	r := runTool(t, env, time.Minute, "list", slugArg, "--since", "5d", "--json")
	wantCode(t, r, 0)
	lines := parseListed(t, r.stdout)
	got := pipelinesOf(lines)
	want := sw.since(now.Add(-5*24*time.Hour), "")
	if len(want) != 30 || want[0] != 60 || want[29] != 31 {
		t.Fatalf("the world is not as the test means it: %v in the last 5 days", want)
	}
	if !slices.Equal(got, want) {
		t.Errorf("listed pipelines %v, want %v", got, want)
	}
	if slices.Contains(got, 30) {
		t.Errorf("pipeline 30, an hour older than the window, was listed")
	}
	branches := map[string]int{}
	workflows42 := map[string]bool{}
	for _, l := range lines {
		branches[l.Branch]++
		if l.PipelineNumber == 42 {
			workflows42[l.WorkflowID] = true
		}
		if l.JobName == "slow" {
			t.Errorf("the running job %d was listed", l.JobNumber)
		}
	}
	if len(branches) != 3 {
		t.Errorf("artifacts by branch: %v, want main, feature/a and release/1.x", branches)
	}
	if !workflows42[sw.reruns[42].ID()] || len(workflows42) != 2 {
		t.Errorf("pipeline 42 listed workflows %v, want the original and the rerun %s", workflows42, sw.reruns[42].ID())
	}
	if len(lines) != 2*30+1 {
		t.Errorf("%d artifacts listed, want %d (two jobs of each of 30 pipelines and one rerun)", len(lines), 2*30+1)
	}
	if !strings.Contains(r.stderr, "passed over") || !strings.Contains(r.stderr, "slow") {
		t.Errorf("the running job is not reported as passed over:\n%s", r.stderr)
	}
	pages := pipelinePageRequests(srv)
	if len(pages) != 2 || pages[0].Has("page-token") || !pages[1].Has("page-token") {
		t.Errorf("pipeline listing requests %v, want the first two pages and not the third", pages)
	}
	for _, q := range pages {
		if q.Has("branch") {
			t.Errorf("a listing on every branch asked for branch %q", q.Get("branch"))
		}
	}

	t.Run("pull", func(t *testing.T) {
		srv.ResetStats()
		d := localDest(t, srv)
		r := runTool(t, d.env, time.Minute, d.pull("--since", "5d")...)
		wantCode(t, r, 0)
		var arts []*circlecitest.Artifact
		for _, n := range want {
			for _, wf := range sw.pipelines[n-1].Workflows() {
				for _, j := range wf.Jobs() {
					if j.Status() == "success" {
						arts = append(arts, j.Artifacts()...)
					}
				}
			}
		}
		d.check(t, mirrorOf(arts...), true)
		if !strings.Contains(r.stdout, "passed over: job") || !strings.Contains(r.stdout, "slow") {
			t.Errorf("the summary does not name the running job as passed over:\n%s", r.stdout)
		}
		if n := len(pipelinePageRequests(srv)); n != 2 {
			t.Errorf("%d pipeline pages requested, want 2", n)
		}
	})
}

// TestSinceForms: --since takes a date (midnight UTC) and an RFC 3339 time,
// combines with --branch (only that branch is listed, and asked of the API)
// and with the name and path filters; a window with no pipeline selects
// nothing, says so and exits 0.
func TestSinceForms(t *testing.T) {
	now := time.Now()
	sw := newSinceWorld(now)
	srv := circlecitest.Start(t, sw.w, circlecitest.Options{Token: testToken})
	env := toolEnv(t, srv)
	date := now.UTC().AddDate(0, 0, -3).Truncate(24 * time.Hour)
	stamp := now.Add(-50 * time.Hour).UTC().Truncate(time.Second)

	for _, tt := range []struct {
		name string
		args []string
		want []int64
		jobs []string // job names listed
		path string   // the only path listed, if not ""
	}{
		{"date", []string{"--since", date.Format("2006-01-02")}, sw.since(date, ""), []string{"package", "test"}, ""},
		{"RFC 3339", []string{"--since", stamp.Format(time.RFC3339)}, sw.since(stamp, ""), []string{"package", "test"}, ""},
		{"branch", []string{"--since", "5d", "--branch", "feature/a"}, sw.since(now.Add(-5*24*time.Hour), "feature/a"), []string{"package", "test"}, ""},
		{"job name", []string{"--since", "2d", "--job-name", "pack*"}, sw.since(now.Add(-2*24*time.Hour), ""), []string{"package"}, ""},
		{"include", []string{"--since", "36h", "--include", "**/*.xml"}, sw.since(now.Add(-36*time.Hour), ""), []string{"test"}, "reports/junit.xml"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv.ResetStats()
			r := runTool(t, env, time.Minute, append([]string{"list", slugArg, "--json"}, tt.args...)...)
			wantCode(t, r, 0)
			lines := parseListed(t, r.stdout)
			if got := pipelinesOf(lines); !slices.Equal(got, tt.want) || len(got) < 3 {
				t.Errorf("listed pipelines %v, want %v", got, tt.want)
			}
			var jobs []string
			for _, l := range lines {
				if !slices.Contains(jobs, l.JobName) {
					jobs = append(jobs, l.JobName)
				}
				if tt.path != "" && l.Path != tt.path {
					t.Errorf("listed %s, which --include leaves out", l.Path)
				}
			}
			slices.Sort(jobs)
			if !slices.Equal(jobs, tt.jobs) {
				t.Errorf("listed jobs %v, want %v", jobs, tt.jobs)
			}
			for _, q := range pipelinePageRequests(srv) {
				if b := q.Get("branch"); tt.name == "branch" && b != "feature/a" || tt.name != "branch" && q.Has("branch") {
					t.Errorf("pipeline listing asked with branch %q", b)
				}
			}
		})
	}

	t.Run("empty window", func(t *testing.T) {
		srv.ResetStats()
		r := runTool(t, env, time.Minute, "list", slugArg, "--since", "30m")
		wantCode(t, r, 0)
		if n := strings.Count(r.stdout, "\n"); n > 1 {
			t.Errorf("an empty window listed more than the table's header:\n%s", r.stdout)
		}
		if !strings.Contains(r.stderr, "no pipelines since") {
			t.Errorf("an empty window is not said on stderr:\n%s", r.stderr)
		}
		if n := len(pipelinePageRequests(srv)); n != 1 {
			t.Errorf("%d pipeline pages requested for an empty window, want 1", n)
		}
		d := localDest(t, srv)
		r = runTool(t, d.env, time.Minute, d.pull("--since", "30m", "-q")...)
		wantCode(t, r, 0)
		if r.stderr != "" {
			t.Errorf("pull -q of an empty window said:\n%s", r.stderr)
		}
	})
}

// TestSinceUsageErrors: --since beside a selection that names its own
// pipelines, workflows or jobs, or beside --pipelines, and a value that is
// not a past time, are refused with one line naming the fix, exit 2, before
// any request.
func TestSinceUsageErrors(t *testing.T) {
	sw := newSinceWorld(time.Now())
	srv := circlecitest.Start(t, sw.w, circlecitest.Options{Token: testToken})
	env := toolEnv(t, srv)
	uuid := sw.pipelines[0].ID()
	forms := []string{"30d", "36h", "2026-11-01", "RFC 3339"}
	for _, tt := range []struct {
		args []string
		says []string
	}{
		{[]string{"--job", "3"}, []string{"--since", "--job", "give one of them", "--branch"}},
		{[]string{"--pipeline", uuid}, []string{"--since", "--pipeline ", "give one of them"}},
		{[]string{"--pipeline-number", "3"}, []string{"--since", "--pipeline-number", "give one of them"}},
		{[]string{"--workflow", sw.reruns[42].ID()}, []string{"--since", "--workflow", "give one of them"}},
		{[]string{"--branch", "main", "--pipelines", "3"}, []string{"--since", "--pipelines", "give one of them"}},
		{[]string{"--since", "3x"}, forms},
		{[]string{"--since", "30"}, forms},
		{[]string{"--since", "yesterday"}, forms},
		{[]string{"--since", "0d"}, append([]string{"not a positive duration"}, forms...)},
		{[]string{"--since", "-2d"}, append([]string{"not a positive duration"}, forms...)},
		{[]string{"--since", fmt.Sprint(time.Now().Year()+1, "-01-01")}, append([]string{"in the future"}, forms...)},
	} {
		args := tt.args
		if !slices.Contains(args, "--since") {
			args = append([]string{"--since", "2d"}, args...)
		}
		for _, verb := range []string{"list", "pull"} {
			t.Run(verb+" "+strings.Join(args, " "), func(t *testing.T) {
				cmd := append([]string{verb, slugArg}, args...)
				if verb == "pull" {
					cmd = append(cmd, "--to", t.TempDir())
				}
				r := runTool(t, env, time.Minute, cmd...)
				wantCode(t, r, 2)
				wantOneLine(t, r, tt.says...)
			})
		}
	}
	if n := len(srv.RequestLog()); n != 0 {
		t.Errorf("%d requests by runs refused for their flags", n)
	}
}

// TestFakeSpreadsPipelinesOverDays: fakecircleci -days and -branches build
// pipelines over the days before now on several branches, so that --since
// can be tried (and benchmarked) against it.
func TestFakeSpreadsPipelinesOverDays(t *testing.T) {
	fake := filepath.Join(t.TempDir(), "fakecircleci")
	if out, err := exec.Command("go", "build", "-o", fake, "./circleci/circlecitest/fakecircleci").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	// 40 pipelines over 10 days: one every 6 hours, the newest 6 hours
	// old; 4d3h back reaches the 16 newest, with hours to spare.
	cmd := exec.Command(fake, "-pipelines", "40", "-days", "10", "-branches", "4", "-jobs", "1", "-files", "1", "-size", "10",
		"--", toolPath, "list", slugArg, "--since", "4d3h", "--json")
	cmd.Env = toolEnv(t, nil)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	lines := parseListed(t, string(out))
	got := pipelinesOf(lines)
	if len(got) != 16 || got[0] != 40 || got[15] != 25 {
		t.Errorf("listed pipelines %v, want 40 down to 25", got)
	}
	branches := map[string]bool{}
	for _, l := range lines {
		branches[l.Branch] = true
	}
	if len(branches) != 4 || !branches["main"] || !branches["branch-4"] {
		t.Errorf("branches listed: %v, want main and branch-2 to branch-4", branches)
	}
}
