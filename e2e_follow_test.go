package main

import (
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
)

// followWorld is a workflow still running: compile has finished, test and
// lint run (the test finishes them), archive runs the tool, and deploy
// waits on an approval nobody gives.
type followWorld struct {
	w                          *circlecitest.World
	wf                         *circlecitest.Workflow
	compile, test, lint, stuck *circlecitest.Job
	archive                    *circlecitest.Job
	arts                       []*circlecitest.Artifact
}

func newFollowWorld() *followWorld {
	w := circlecitest.NewWorld()
	pl := w.AddProject(slugArg, "main").AddPipeline("main")
	wf := pl.AddWorkflow("build")
	wf.SetStatus("running")
	f := &followWorld{w: w, wf: wf}
	f.compile = wf.AddJob("compile", circlecitest.JobOptions{})
	f.test = wf.AddJob("test", circlecitest.JobOptions{Status: "running", Requires: []*circlecitest.Job{f.compile}})
	f.lint = wf.AddJob("lint", circlecitest.JobOptions{Status: "running", Requires: []*circlecitest.Job{f.compile}})
	for _, j := range []*circlecitest.Job{f.compile, f.test, f.lint} {
		f.arts = append(f.arts, j.AddArtifact(0, "out/"+j.Name()+".txt", 100))
	}
	f.archive = wf.AddJob("archive", circlecitest.JobOptions{Status: "running", Requires: []*circlecitest.Job{f.compile}})
	hold := wf.AddApproval("hold")
	wf.AddJob("deploy", circlecitest.JobOptions{Status: "blocked", Requires: []*circlecitest.Job{hold, f.test}})
	return f
}

// TestFollowPullsJobsAsTheyFinish: pull --follow in a workflow's archive
// job waits for the jobs still running, pulls each once it has finished,
// and ends with every job's artifacts, not waiting for itself nor for a
// job behind an approval on hold.
func TestFollowPullsJobsAsTheyFinish(t *testing.T) {
	f := newFollowWorld()
	srv := circlecitest.Start(t, f.w, circlecitest.Options{Token: testToken})
	d := localDest(t, srv)
	env := append(d.env, "CIRCLE_WORKFLOW_JOB_ID="+f.archive.ID())
	time.AfterFunc(time.Second, func() { f.test.SetStatus("success") })
	time.AfterFunc(2*time.Second, func() { f.lint.SetStatus("failed") })
	r := runTool(t, env, time.Minute, d.pull("--workflow", f.wf.ID(), "--follow", "--json")...)
	wantCode(t, r, 0)
	d.check(t, mirrorOf(f.arts...), true)
	if !strings.Contains(r.stderr, "waiting for 2 jobs still running: lint, test") {
		t.Errorf("no line says what the run waits for:\n%s", r.stderr)
	}
	for _, line := range strings.Split(r.stderr, "\n") {
		if strings.Contains(line, "waiting for") && (strings.Contains(line, "archive") || strings.Contains(line, "deploy")) {
			t.Errorf("the run waited for the job running it or one behind an approval on hold: %s", line)
		}
	}
	if n := strings.Count(r.stderr, "job_name=archive"); n != 1 {
		t.Errorf("the job running the tool is reported as passed over %d times, want once (not every round):\n%s", n, r.stderr)
	}
	if n := srv.Requests("jobs"); n < 6 {
		t.Errorf("the workflow's jobs were listed %d times: want polling, at least 3 rounds", n)
	}
	if !strings.Contains(r.stdout, `"transferred":3`) {
		t.Errorf("the summary does not count the three artifacts every round transferred:\n%s", r.stdout)
	}
}

// TestFollowTimeoutKeepsWhatFinished: a job that never finishes ends the
// run at --follow-timeout, with the finished jobs' artifacts kept, exit 1
// and a line naming what is still running.
func TestFollowTimeoutKeepsWhatFinished(t *testing.T) {
	f := newFollowWorld()
	srv := circlecitest.Start(t, f.w, circlecitest.Options{Token: testToken})
	d := localDest(t, srv)
	env := append(d.env, "CIRCLE_WORKFLOW_JOB_ID="+f.archive.ID())
	f.lint.SetStatus("success")
	r := runTool(t, env, time.Minute, d.pull("--pipeline-number", "1", "--follow", "--follow-timeout", "2s")...)
	wantCode(t, r, 1)
	if got := lastLine(r.stderr); !strings.Contains(got, "still running after --follow-timeout 2s: 1 job (test); run again to take them") {
		t.Errorf("last line %q does not say what is still running", got)
	}
	if r.elapsed > 20*time.Second {
		t.Errorf("the run took %s with --follow-timeout 2s", r.elapsed)
	}
	d.check(t, mirrorOf(f.arts[0], f.arts[2]), true)
}

// TestFollowNeedsAWorkflowOrPipeline: --follow follows a workflow or a
// pipeline; any other selection is a usage error before anything is done.
func TestFollowNeedsAWorkflowOrPipeline(t *testing.T) {
	f := newFollowWorld()
	srv := circlecitest.Start(t, f.w, circlecitest.Options{Token: testToken})
	d := localDest(t, srv)
	for _, sel := range [][]string{{"--branch", "main"}, {"--job", strconv.FormatInt(f.compile.Number(), 10)}, {}} {
		r := runTool(t, d.env, time.Minute, d.pull(append(sel, "--follow")...)...)
		wantCode(t, r, 2)
		wantOneLine(t, r, "--follow", "--workflow")
		if _, err := os.Stat(filepath.Clean(d.to)); err == nil {
			t.Errorf("%q: the refused run created the destination", sel)
		}
	}
}

// TestFollowInterruptedWhileWaiting: Ctrl-C while --follow waits ends the
// run at once with exit 130, keeping what was pulled.
func TestFollowInterruptedWhileWaiting(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no SIGINT to send on Windows")
	}
	f := newFollowWorld()
	srv := circlecitest.Start(t, f.w, circlecitest.Options{Token: testToken})
	d := localDest(t, srv)
	p := startTool(t, d.env, d.pull("--workflow", f.wf.ID(), "--follow")...)
	// The first round has listed the jobs twice (what is left, then the
	// selection) and taken compile's artifact; then it waits a second.
	if !p.waitUntil(func() bool { return srv.Requests("jobs") >= 2 && srv.DownloadTotals().Completed >= 1 }) {
		t.Fatalf("the run ended before it waited:\n%s", p.stderr.String())
	}
	time.Sleep(300 * time.Millisecond)
	sent := time.Now()
	p.cmd.Process.Signal(os.Interrupt)
	r := p.wait(time.Minute)
	wantCode(t, r, 130)
	if waited := time.Since(sent); waited > 3*time.Second {
		t.Errorf("the run took %s to stop after Ctrl-C", waited)
	}
	d.check(t, mirrorOf(f.arts[0]), true)
}
