package main

// End-to-end tests of what people and scripts see: the real binary's stdout
// and stderr, against the fake CircleCI.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
)

// TestHostileNamesAreEscaped: names a build chooses (artifact paths, job,
// workflow and branch names) can hold terminal escape sequences, such as an
// OSC 52 clipboard write or a screen clear. None reaches stdout or stderr
// raw, in any command's output.
func TestHostileNamesAreEscaped(t *testing.T) {
	const (
		clip  = "\x1b]52;c;cm0gLXJmIH4K\x07"
		clear = "\x1b[2J"
	)
	w := circlecitest.NewWorld()
	pl := w.AddProject(slugArg, "main").AddPipeline("main" + clear)
	wf := pl.AddWorkflow("build" + clip)
	j := wf.AddJob("test"+clear+"\ttab", circlecitest.JobOptions{})
	j.AddArtifact(0, "report"+clear+".txt", 10)
	j.AddArtifact(0, "../up"+clip+".txt", 10) // refused: a failure in the summary
	wf.AddJob("deploy"+clip, circlecitest.JobOptions{Status: "running"}).AddArtifact(0, "x", 1)
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken})
	env := toolEnv(t, srv)
	dir := filepath.Join(t.TempDir(), "dest")
	layout := "{branch}/{workflow_name}/{job_name}/{path}"

	runs := [][]string{
		{"list", slugArg, "--branch", "main" + clear},
		{"pull", slugArg, "--branch", "main" + clear, "--to", dir, "--layout", layout, "--dry-run"},
		{"pull", slugArg, "--branch", "main" + clear, "--to", dir, "--layout", layout},
	}
	var all strings.Builder
	for _, args := range runs {
		r := runTool(t, env, time.Minute, args...)
		all.WriteString(r.stdout + r.stderr)
	}
	if err := os.WriteFile(filepath.Join(dir, "stray"+clip), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runTool(t, env, time.Minute, "verify", "--to", dir)
	wantCode(t, r, 1)
	all.WriteString(r.stdout + r.stderr)

	out := all.String()
	if strings.ContainsAny(out, "\x1b\x07\t") {
		t.Errorf("a raw control character reached the output:\n%q", out)
	}
	for _, s := range []string{`test\x1b[2J\ttab`, `build\x1b]52;c;cm0gLXJmIH4K\x07`, `deploy\x1b]52`, `stray\x1b]52`, `report\x1b[2J.txt`} {
		if !strings.Contains(out, s) {
			t.Errorf("the output does not show %q escaped:\n%s", s, out)
		}
	}
}

// TestMistakesNameTheirCause: each mistake is met with its own cause and
// the exit code of bad input, not with a message about something else.
func TestMistakesNameTheirCause(t *testing.T) {
	w, _ := smallWorld(3, 10)
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken})
	env := toolEnv(t, srv)
	jobs := w.Project(slugArg).Pipelines()[0].Workflows()[0].Jobs()
	job := fmt.Sprint(jobs[0].Number())
	for _, tc := range []struct {
		args    []string
		code    int
		want    []string
		notWant []string
	}{
		{[]string{"list", slugArg, "--pipeline-number", "99"}, 2, []string{"no pipeline 99"}, []string{"project gh/acme/widgets not found"}},
		{[]string{"list", slugArg, "--pipeline", "3"}, 2, []string{"--pipeline-number 3"}, []string{"404"}},
		{[]string{"list", slugArg, "--workflow", "nope"}, 2, []string{`--workflow "nope" is not a workflow ID`}, []string{"400"}},
		{[]string{"list", slugArg, "--to", "./x"}, 2, []string{"--to belongs to 'artifact-sync pull'"}, []string{"did you mean"}},
		{[]string{"list", slugArg, "--foo"}, 2, []string{"unknown flag: --foo"}, []string{"did you mean"}},
		{[]string{"pull", slugArg, "--concurency", "3", "--to", t.TempDir()}, 2, []string{"did you mean --concurrency?"}, nil},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := runTool(t, env, time.Minute, tc.args...)
			wantCode(t, r, tc.code)
			wantOneLine(t, r, tc.want...)
			for _, s := range tc.notWant {
				if strings.Contains(r.stderr, s) {
					t.Errorf("stderr says %q:\n%s", s, r.stderr)
				}
			}
		})
	}

	t.Run("a repeated job number counts once", func(t *testing.T) {
		r := runTool(t, env, time.Minute, "list", slugArg, "--job", job, "--job", job+","+job)
		wantCode(t, r, 0)
		if n := strings.Count(r.stdout, "\n"); n != 1+len(jobs[0].Artifacts()) {
			t.Errorf("list printed %d lines for a job of %d artifacts:\n%s", n, len(jobs[0].Artifacts()), r.stdout)
		}
		r = runTool(t, env, time.Minute, "pull", slugArg, "--job", job+","+job, "--to", t.TempDir(), "-q")
		wantCode(t, r, 0)
	})

	t.Run("--host with the API's path", func(t *testing.T) {
		env := append(toolEnv(t, nil), "CIRCLE_TOKEN="+testToken)
		r := runTool(t, env, time.Minute, "list", slugArg, "--job", job, "--host", srv.URL+"/api/v2/")
		wantCode(t, r, 0)
	})
}
