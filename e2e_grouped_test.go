package main

// End-to-end tests of how failures and empty selections read: one line
// per cause, conflicts found before any download, flags that select
// nothing, and counts when listings fail.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
)

// TestFailuresOfOneCauseAreOneLine: a file at DEST where the folder of 40
// artifacts goes fails them without downloading them, and the summary says
// so in one line with the count and the first three, as it does for three
// downloads the storage refuses; the lines come most frequent first, and
// --json keeps every failure with its cause.
func TestFailuresOfOneCauseAreOneLine(t *testing.T) {
	w := circlecitest.NewWorld()
	j := w.AddProject(slugArg, "main").AddPipeline("main").AddWorkflow("build").AddJob("build", circlecitest.JobOptions{})
	for i := range 40 {
		j.AddArtifact(0, fmt.Sprintf("dist/x/file-%02d.bin", i), 1000)
	}
	good := []*circlecitest.Artifact{j.AddArtifact(0, "ok/a.txt", 10), j.AddArtifact(0, "ok/b.txt", 10)}
	var gone []*circlecitest.Artifact
	for i := range 3 {
		gone = append(gone, j.AddArtifact(0, fmt.Sprintf("gone/%d.txt", i), 10))
	}
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken, Faults: func(c circlecitest.Call) circlecitest.Fault {
		for _, a := range gone {
			if c.Download && c.Artifact == a {
				return circlecitest.StatusFault(404, "")
			}
		}
		return circlecitest.Fault{}
	}})
	env := toolEnv(t, srv)
	dir := t.TempDir()
	inTheWay := filepath.Join(dir, fmt.Sprint(j.Number()), "0", "dist", "x")
	if err := os.MkdirAll(filepath.Dir(inTheWay), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(inTheWay, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}

	r := runTool(t, env, time.Minute, "pull", slugArg, "--to", dir)
	wantCode(t, r, 1)
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("the summary is %d lines, want the counts and one line per cause (2):\n%s", len(lines), r.stdout)
	}
	wantPrefix := "  failed (40): "
	first := fmt.Sprintf(`; first: job %[1]d node 0 "dist/x/file-00.bin", job %[1]d node 0 "dist/x/file-01.bin", job %[1]d node 0 "dist/x/file-02.bin" and 37 more`, j.Number())
	if !strings.HasPrefix(lines[1], wantPrefix) || !strings.Contains(lines[1], inTheWay) || !strings.HasSuffix(lines[1], first) {
		t.Errorf("line 2 is not the 40 failures of the file in the way, naming it and the first three:\n%s", lines[1])
	}
	if !strings.HasPrefix(lines[2], "  failed (3): download refused: ") || !strings.Contains(lines[2], "404") ||
		!strings.HasSuffix(lines[2], fmt.Sprintf(`job %[1]d node 0 "gone/0.txt", job %[1]d node 0 "gone/1.txt", job %[1]d node 0 "gone/2.txt"`, j.Number())) {
		t.Errorf("line 3 is not the 3 refused downloads:\n%s", lines[2])
	}
	// The 40 were never downloaded: only the two good ones and the
	// refused ones (asked once more with a fresh URL) were asked for.
	if n := srv.DownloadTotals().Started; n != len(good) {
		t.Errorf("%d downloads started, want %d: the artifacts with a file in their way were downloaded", n, len(good))
	}
	if !strings.Contains(lastLine(r.stderr), "43 of 45 artifacts failed") {
		t.Errorf("last line of stderr: %s", lastLine(r.stderr))
	}

	r = runTool(t, env, time.Minute, "pull", slugArg, "--to", dir, "--json")
	wantCode(t, r, 1)
	var out struct {
		Failures []struct {
			Path  string `json:"path"`
			Error string `json:"error"`
			Cause string `json:"cause"`
		} `json:"failures"`
		FailedByCause []struct {
			Cause string `json:"cause"`
			Count int    `json:"count"`
		} `json:"failed_by_cause"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("stdout is not one JSON object (%v):\n%s", err, r.stdout)
	}
	if len(out.Failures) != 43 {
		t.Errorf("--json lists %d failures, want all 43", len(out.Failures))
	}
	if len(out.FailedByCause) != 2 || out.FailedByCause[0].Count != 40 || out.FailedByCause[1].Count != 3 {
		t.Errorf("--json failed_by_cause = %+v, want the 40 and then the 3", out.FailedByCause)
	}
	if err := os.Remove(inTheWay); err != nil {
		t.Fatal(err)
	}
	checkDir(t, dir, mirrorOf(good...), true)
}

// TestLayoutFileFolderClashIsRefused: a layout that puts one artifact on
// "report" and another on "report/index.html" is refused before any
// download, exit 2, in one sentence naming both keys and what to do, and
// leaves no DEST behind.
func TestLayoutFileFolderClashIsRefused(t *testing.T) {
	w := circlecitest.NewWorld()
	wf := w.AddProject(slugArg, "main").AddPipeline("main").AddWorkflow("build")
	wf.AddJob("a", circlecitest.JobOptions{}).AddArtifact(0, "report", 10)
	wf.AddJob("b", circlecitest.JobOptions{}).AddArtifact(0, "report/index.html", 10)
	wf.AddJob("c", circlecitest.JobOptions{}).AddArtifact(0, "other.txt", 10)
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken})
	to := filepath.Join(t.TempDir(), "mirror")
	r := runTool(t, toolEnv(t, srv), time.Minute, "pull", slugArg, "--to", to, "--layout", "{path}")
	wantCode(t, r, 2)
	wantOneLine(t, r, `"report"`, `"report/index.html"`, "--layout", "--exclude")
	if n := srv.DownloadTotals().Started; n != 0 {
		t.Errorf("%d downloads before the clash was refused", n)
	}
	if _, err := os.Lstat(to); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the refused run left %s behind (%v)", to, err)
	}
}

// TestNameGlobsThatMatchNothingSaySo: a --job-name or --workflow-name that
// matches nothing, and an --exclude that drops every path, say so the way
// an --include does, naming the flag, the glob and what there was; list
// and pull still succeed.
func TestNameGlobsThatMatchNothingSaySo(t *testing.T) {
	w, _ := smallWorld(3, 10)
	wf := w.Project(slugArg).Pipelines()[0].AddWorkflow("deploy")
	wf.AddJob("ship", circlecitest.JobOptions{}).AddArtifact(0, "ship.txt", 10)
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken})
	env := toolEnv(t, srv)
	for _, tc := range []struct {
		flags []string
		want  string
	}{
		{[]string{"--job-name", "tset"}, "--job-name 'tset' matched none of 2 job names (build, ship)"},
		{[]string{"--workflow-name", "nightly"}, "--workflow-name 'nightly' matched none of 2 workflow names (build, deploy)"},
		{[]string{"--exclude", "**"}, "--exclude '**' left none of the 4 paths"},
	} {
		for _, cmd := range [][]string{{"list", slugArg}, {"pull", slugArg, "--to", t.TempDir()}} {
			args := append(append([]string{}, cmd...), tc.flags...)
			t.Run(strings.Join(args[:1], " ")+" "+strings.Join(tc.flags, " "), func(t *testing.T) {
				r := runTool(t, env, time.Minute, args...)
				wantCode(t, r, 0)
				if !strings.Contains(r.stderr, tc.want) {
					t.Errorf("stderr does not say %q:\n%s", tc.want, r.stderr)
				}
			})
		}
	}
	r := runTool(t, env, time.Minute, "list", slugArg, "--job-name", "b*", "--workflow-name", "build")
	wantCode(t, r, 0)
	if strings.Contains(r.stderr, "matched none") {
		t.Errorf("globs that matched warn:\n%s", r.stderr)
	}
}

// TestFailedListingsAreCountedAsJobs: a run whose every job listing failed
// says that the listings failed, not that "2 of 0 artifacts failed", and
// its counts line does not count the jobs as failed artifacts.
func TestFailedListingsAreCountedAsJobs(t *testing.T) {
	w := circlecitest.NewWorld()
	wf := w.AddProject(slugArg, "main").AddPipeline("main").AddWorkflow("build")
	a := wf.AddJob("a", circlecitest.JobOptions{})
	a.AddArtifact(0, "a.txt", 10)
	b := wf.AddJob("b", circlecitest.JobOptions{})
	b.AddArtifact(0, "b.txt", 10)
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken,
		Faults: circlecitest.OnArtifactListings(func(circlecitest.Call) circlecitest.Fault { return circlecitest.StatusFault(404, "") })})
	r := runTool(t, toolEnv(t, srv), time.Minute, "pull", slugArg, "--to", t.TempDir())
	wantCode(t, r, 1)
	if line := lastLine(r.stderr); !strings.Contains(line, "listing the artifacts of 2 jobs failed; run the same command again to retry them") || strings.Contains(line, "of 0 artifacts") {
		t.Errorf("last line of stderr: %s", line)
	}
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	if !strings.HasPrefix(lines[0], "0 artifacts: 0 transferred") || !strings.Contains(lines[0], "0 failed; the artifacts of 2 jobs could not be listed") {
		t.Errorf("counts line: %s", lines[0])
	}
	want := fmt.Sprintf("; first: job %d (a), job %d (b)", a.Number(), b.Number())
	if len(lines) != 2 || !strings.HasPrefix(lines[1], "  failed (2): listing its artifacts: ") || !strings.HasSuffix(lines[1], want) {
		t.Errorf("the two listings that failed alike are not one line ending %q:\n%s", want, r.stdout)
	}
}
