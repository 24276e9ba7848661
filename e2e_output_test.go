package main

// End-to-end tests of what people and scripts see: the real binary's stdout
// and stderr, against the fake CircleCI.

import (
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
