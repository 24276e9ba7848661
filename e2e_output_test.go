package main

// End-to-end tests of what people and scripts see: the real binary's stdout
// and stderr, against the fake CircleCI.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
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
	otherPipeline := w.AddProject("gh/acme/other", "main").AddPipeline("main")
	otherWorkflow := otherPipeline.AddWorkflow("build")
	otherWorkflow.AddJob("build", circlecitest.JobOptions{}).AddArtifact(0, "a.txt", 10)
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
		// The exit-code table: a selection of another project is a bad
		// slug (2), as are --pipelines 0 and a verify with no manifest.
		{[]string{"list", slugArg, "--pipeline", otherPipeline.ID()}, 2, []string{"belongs to gh/acme/other, not gh/acme/widgets"}, nil},
		{[]string{"pull", slugArg, "--workflow", otherWorkflow.ID(), "--to", t.TempDir()}, 2, []string{"belongs to gh/acme/other, not gh/acme/widgets"}, nil},
		{[]string{"pull", slugArg, "--pipelines", "0", "--to", t.TempDir()}, 2, []string{"--pipelines 0", "1 or more"}, nil},
		{[]string{"verify", "--to", t.TempDir()}, 2, []string{"no manifest at", "pull to this destination first"}, nil},
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

// jsonLines decodes every line of s as one JSON object.
func jsonLines(t *testing.T, s string) []map[string]any {
	t.Helper()
	var objs []map[string]any
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		var o map[string]any
		if err := json.Unmarshal([]byte(line), &o); err != nil {
			t.Fatalf("a line of stdout is not a JSON object (%v): %q\nstdout:\n%s", err, line, s)
		}
		objs = append(objs, o)
	}
	return objs
}

// TestDryRunJSON: pull --dry-run --json is one JSON object per artifact and
// then the summary, so it can be piped to jq; the text plan ends with counts.
func TestDryRunJSON(t *testing.T) {
	w, arts := smallWorld(4, 100)
	arts[0].Job().AddArtifact(0, "../escape.txt", 1)
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken})
	d := localDest(t, srv)
	r := runTool(t, d.env, time.Minute, d.pull("--include", "out/file-0[01].bin", "-q")...)
	wantCode(t, r, 0)

	r = runTool(t, d.env, time.Minute, d.pull("--dry-run", "--json")...)
	wantCode(t, r, 1)
	objs := jsonLines(t, r.stdout)
	if len(objs) != len(arts)+2 {
		t.Fatalf("%d JSON lines for %d artifacts and a summary:\n%s", len(objs), len(arts)+1, r.stdout)
	}
	actions := map[string]int{}
	for _, o := range objs[:len(objs)-1] {
		actions[o["action"].(string)]++
		if o["action"] == "done" && o["size"] != float64(100) {
			t.Errorf("a done artifact's size is not the recorded one: %v", o)
		}
		if o["action"] == "transfer" && (o["key"] == "" || o["path"] == "" || o["job_number"] == nil) {
			t.Errorf("a step lacks its key, path or job: %v", o)
		}
		if o["action"] == "refuse" && o["error"] == nil {
			t.Errorf("a refusal does not say why: %v", o)
		}
	}
	if actions["done"] != 2 || actions["transfer"] != 2 || actions["refuse"] != 1 {
		t.Errorf("actions %v, want 2 done, 2 transfer, 1 refuse", actions)
	}
	sum := objs[len(objs)-1]
	if sum["dry_run"] != true || sum["artifacts"] != float64(5) || sum["skipped"] != float64(2) || sum["not_started"] != float64(2) {
		t.Errorf("summary %v", sum)
	}

	r = runTool(t, d.env, time.Minute, d.pull("--dry-run")...)
	if want := "dry run: 5 artifacts: 2 to transfer, 2 already done, 1 refused"; lastLine(r.stdout) != want {
		t.Errorf("the text plan ends with %q, want %q", lastLine(r.stdout), want)
	}
}

// TestJSONSummarySaysWhyARunFailed: a run that stops early prints a summary
// with "error" and "exit_code" instead of one that looks like a success.
func TestJSONSummarySaysWhyARunFailed(t *testing.T) {
	w := circlecitest.NewWorld()
	wf := w.AddProject(slugArg, "main").AddPipeline("main").AddWorkflow("build")
	wf.AddJob("a", circlecitest.JobOptions{}).AddArtifact(0, "same.txt", 1)
	wf.AddJob("b", circlecitest.JobOptions{}).AddArtifact(0, "same.txt", 1)
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken})
	wrongToken := append(toolEnv(t, nil), "CIRCLECI_HOST="+srv.URL, "CIRCLE_TOKEN=not-the-token")
	for name, run := range map[string]struct {
		env  []string
		args []string
		want string
	}{
		"wrong token": {wrongToken, []string{"pull", slugArg, "--json", "--to", t.TempDir()}, "401"},
		"collision":   {toolEnv(t, srv), []string{"pull", slugArg, "--json", "--layout", "{path}", "--to", t.TempDir()}, "both land on"},
		"bad slug":    {toolEnv(t, srv), []string{"pull", "gh/acme", "--json", "--to", t.TempDir()}, "invalid project slug"},
	} {
		t.Run(name, func(t *testing.T) {
			r := runTool(t, run.env, time.Minute, run.args...)
			wantCode(t, r, 2)
			objs := jsonLines(t, r.stdout)
			if len(objs) != 1 {
				t.Fatalf("want one summary object:\n%s", r.stdout)
			}
			if objs[0]["exit_code"] != float64(2) || !strings.Contains(fmt.Sprint(objs[0]["error"]), run.want) {
				t.Errorf("summary %v: want exit_code 2 and an error saying %q", objs[0], run.want)
			}
		})
	}
	r := runTool(t, toolEnv(t, srv), time.Minute, "pull", slugArg, "--json", "--to", t.TempDir())
	wantCode(t, r, 0)
	if o := jsonLines(t, r.stdout)[0]; o["error"] != nil || o["exit_code"] != nil || o["transferred"] != float64(2) {
		t.Errorf("a successful run's summary: %v", o)
	}
}

// TestVerifyJSONHasItsOwnFields: verify --json counts what it checked and
// found intact, and lists what is missing, changed and unexpected; its
// problem count matches the text's.
func TestVerifyJSONHasItsOwnFields(t *testing.T) {
	w, arts := smallWorld(5, 100)
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken})
	d := localDest(t, srv)
	wantCode(t, runTool(t, d.env, time.Minute, d.pull("-q")...), 0)
	k := func(i int) string { return key(arts[i].Job().Number(), 0, arts[i].Path()) }
	os.Remove(filepath.Join(d.to, k(0)))
	os.WriteFile(filepath.Join(d.to, k(1)), []byte("changed"), 0o644)
	os.WriteFile(filepath.Join(d.to, "stray.txt"), []byte("x"), 0o644)

	r := runTool(t, d.env, time.Minute, "verify", "--to", d.to, "--json")
	wantCode(t, r, 1)
	o := jsonLines(t, r.stdout)[0]
	for field, want := range map[string]any{
		"checked": float64(5), "intact": float64(3), "problems": float64(3), "exit_code": float64(1),
		"missing": []any{k(0)}, "changed": []any{k(1)}, "unexpected": []any{"stray.txt"},
	} {
		if fmt.Sprint(o[field]) != fmt.Sprint(want) {
			t.Errorf("%s = %v, want %v", field, o[field], want)
		}
	}
	if !strings.Contains(fmt.Sprint(o["error"]), "3 problem(s)") {
		t.Errorf("error = %v", o["error"])
	}
	r = runTool(t, d.env, time.Minute, "verify", "--to", d.to)
	if !strings.Contains(r.stdout, "5 artifacts checked: 3 intact, 1 missing, 1 changed, 1 unexpected") || !strings.Contains(r.stderr, "3 problem(s)") {
		t.Errorf("verify says:\n%s%s", r.stdout, r.stderr)
	}
}

// TestEachFailureIsReportedOnce: a failed artifact appears once, in the
// summary; at -v it is also logged as it happens.
func TestEachFailureIsReportedOnce(t *testing.T) {
	w, arts := smallWorld(3, 100)
	arts[0].Job().AddArtifact(0, "../escape-attempt.txt", 1)
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken})
	for _, flags := range [][]string{nil, {"-q"}, {"-v"}} {
		t.Run(fmt.Sprint(flags), func(t *testing.T) {
			d := localDest(t, srv)
			r := runTool(t, d.env, time.Minute, d.pull(flags...)...)
			wantCode(t, r, 1)
			want := 1
			if len(flags) > 0 && flags[0] == "-v" {
				want = 2
			}
			if n := strings.Count(r.stdout+r.stderr, "escape-attempt"); n != want {
				t.Errorf("the failure is reported %d times, want %d:\nstdout:\n%s\nstderr:\n%s", n, want, r.stdout, r.stderr)
			}
			if !strings.Contains(r.stdout, `failed: job 1 node 0 "../escape-attempt.txt"`) {
				t.Errorf("the summary does not list the failure:\n%s", r.stdout)
			}
		})
	}
}

// TestCommandsLeaveNothingBehind: commands that do not write artifacts do
// not create or lock a destination either.
func TestCommandsLeaveNothingBehind(t *testing.T) {
	w, _ := smallWorld(3, 100)
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken})
	env := toolEnv(t, srv)
	parent := t.TempDir()
	nowhere := filepath.Join(parent, "nonexistent")
	empty := filepath.Join(parent, "empty")
	os.Mkdir(empty, 0o755)

	r := runTool(t, env, time.Minute, "verify", "--to", nowhere)
	wantCode(t, r, 2)
	wantOneLine(t, r, "does not exist")

	r = runTool(t, env, time.Minute, "pull", slugArg, "--dry-run", "--to", nowhere)
	wantCode(t, r, 0)
	if !strings.Contains(r.stdout, "3 to transfer") {
		t.Errorf("dry run into a new directory:\n%s", r.stdout)
	}

	badToken := append(toolEnv(t, nil), "CIRCLECI_HOST="+srv.URL, "CIRCLE_TOKEN=wrong")
	for _, dir := range []string{nowhere, empty} {
		r = runTool(t, badToken, time.Minute, "pull", slugArg, "--to", dir)
		wantCode(t, r, 2)
		wantOneLine(t, r, "401")
	}
	r = runTool(t, env, time.Minute, "pull", "gh/acme/nothing-here", "--to", nowhere)
	wantCode(t, r, 2)

	if _, err := os.Stat(nowhere); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s was created (%v)", nowhere, err)
	}
	if entries, _ := os.ReadDir(empty); len(entries) != 0 {
		t.Errorf("a refused run left %v in an empty destination", entries)
	}
}

// TestCopiedMirrorIsUsable: a mirror copied (cp -a) or moved elsewhere is
// pulled to and verified like the original: nothing is fetched again.
func TestCopiedMirrorIsUsable(t *testing.T) {
	w, arts := smallWorld(5, 1000)
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken})
	env := toolEnv(t, srv)
	parent := t.TempDir()
	orig := filepath.Join(parent, "big2")
	wantCode(t, runTool(t, env, time.Minute, "pull", slugArg, "--to", orig, "-q"), 0)
	served := srv.DownloadTotals().Started

	copied, moved := filepath.Join(parent, "big2copy"), filepath.Join(parent, "elsewhere", "big2moved")
	if out, err := exec.Command("cp", "-a", orig, copied).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v %s", err, out)
	}
	os.Mkdir(filepath.Dir(moved), 0o755)
	if err := os.Rename(orig, moved); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{copied, moved} {
		r := runTool(t, env, time.Minute, "pull", slugArg, "--to", dir)
		wantCode(t, r, 0)
		if want := "5 already done, 0 failed"; !strings.Contains(r.stdout, want) {
			t.Errorf("pull to %s:\n%s\nwant %q", dir, r.stdout, want)
		}
		wantVerified(t, dest{to: dir, env: env}, len(arts))
	}
	if n := srv.DownloadTotals().Started; n != served {
		t.Errorf("%d downloads after copying the mirror, want none", n-served)
	}
}

// TestVerifyDuringAPull: verify while a pull writes the destination says
// so instead of reporting the pull's unfinished work as problems.
func TestVerifyDuringAPull(t *testing.T) {
	w, arts := smallWorld(40, 64<<10)
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken, Bandwidth: 256 << 10})
	d := localDest(t, srv)
	wantCode(t, runTool(t, d.env, time.Minute, d.pull("-q", "--include", "out/file-0*")...), 0)

	p := startTool(t, d.env, d.pull("-j", "2")...)
	if !p.waitUntil(func() bool { return srv.DownloadTotals().Completed >= 14 }) {
		t.Fatalf("the pull ended too soon:\n%s", p.stderr.String())
	}
	r := runTool(t, d.env, time.Minute, d.verify()...)
	wantCode(t, r, 2)
	wantOneLine(t, r, "a pull is writing", "run verify when it has finished")
	if strings.Contains(r.stdout, "unexpected") || strings.Contains(r.stdout, "missing") {
		t.Errorf("verify reported the running pull's files as problems:\n%s", r.stdout)
	}
	wantCode(t, p.wait(time.Minute), 0)
	wantVerified(t, d, len(arts))
}

// TestWebAppURLsWork: a URL copied from the CircleCI web app works where a
// slug goes and selects what it names; so do a trailing slash and an
// upper-case VCS name.
func TestWebAppURLsWork(t *testing.T) {
	w := circlecitest.NewWorld()
	p := w.AddProject(slugArg, "main")
	var wfs []*circlecitest.Workflow
	for i := range 2 {
		wf := p.AddPipeline("main").AddWorkflow("build")
		for j := range 2 {
			wf.AddJob(fmt.Sprintf("job-%d", j), circlecitest.JobOptions{}).AddArtifact(0, fmt.Sprintf("p%d-j%d.txt", i, j), 10)
		}
		wfs = append(wfs, wf)
	}
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken})
	env := toolEnv(t, srv)
	first := wfs[0]
	base := "https://app.circleci.com/pipelines/github/acme/widgets"
	pl := fmt.Sprintf("%s/%d", base, first.Pipeline().Number())
	for _, tc := range []struct {
		arg  string
		want []string
	}{
		{base, []string{"p1-j0.txt", "p1-j1.txt"}}, // the newest pipeline, as for the slug
		{pl, []string{"p0-j0.txt", "p0-j1.txt"}},
		{pl + "/workflows/" + first.ID(), []string{"p0-j0.txt", "p0-j1.txt"}},
		{fmt.Sprintf("%s/workflows/%s/jobs/%d", pl, first.ID(), first.Jobs()[1].Number()), []string{"p0-j1.txt"}},
		{"GH/acme/widgets/", []string{"p1-j0.txt", "p1-j1.txt"}},
	} {
		r := runTool(t, env, time.Minute, "list", tc.arg, "--json")
		wantCode(t, r, 0)
		var got []string
		for _, o := range jsonLines(t, r.stdout) {
			got = append(got, o["path"].(string))
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("list %s: %v, want %v", tc.arg, got, tc.want)
		}
	}
	r := runTool(t, env, time.Minute, "list", pl, "--job", "1")
	wantCode(t, r, 2)
	wantOneLine(t, r, "give only one of")
}

// TestGlobsThatMatchNothingSaySo: an --include that selects nothing is not
// silent; it says how many paths it missed and how to match below a folder.
func TestGlobsThatMatchNothingSaySo(t *testing.T) {
	w, _ := smallWorld(3, 10)
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken})
	env := toolEnv(t, srv)
	want := "--include '*.bin' matched none of 3 paths (globs match the whole path: try '**/*.bin')"
	for _, args := range [][]string{
		{"list", slugArg, "--include", "*.bin"},
		{"pull", slugArg, "--include", "*.bin", "--to", t.TempDir()},
	} {
		r := runTool(t, env, time.Minute, args...)
		wantCode(t, r, 0)
		if !strings.Contains(r.stderr, want) {
			t.Errorf("%s: stderr does not say %q:\n%s", args[0], want, r.stderr)
		}
	}
	r := runTool(t, env, time.Minute, "list", slugArg, "--include", "**/*.bin")
	if strings.Contains(r.stderr, "matched none") {
		t.Errorf("a glob that matched warns:\n%s", r.stderr)
	}
}

// TestRefusedRunCreatesNothing: a pull refused for what it was given (an
// unknown pipeline number, a layout that puts two artifacts on one key)
// leaves no DEST behind when it made it, and leaves a DEST that was there
// as it was.
func TestRefusedRunCreatesNothing(t *testing.T) {
	w, _ := smallWorld(3, 10)
	// Two jobs with an artifact of one path: --layout {path} puts both on
	// one key.
	wf := w.Project(slugArg).AddPipeline("main").AddWorkflow("build")
	for _, name := range []string{"a", "b"} {
		wf.AddJob(name, circlecitest.JobOptions{}).AddArtifact(0, "same.txt", 10)
	}
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken})
	env := toolEnv(t, srv)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown pipeline number", []string{"--pipeline-number", "99"}, "no pipeline 99"},
		{"layout with a collision", []string{"--layout", "{path}"}, "same.txt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			to := filepath.Join(t.TempDir(), "mirror")
			r := runTool(t, env, time.Minute, append([]string{"pull", slugArg, "--to", to}, tc.args...)...)
			wantCode(t, r, 2)
			if !strings.Contains(r.stderr, tc.want) {
				t.Errorf("stderr does not say %q:\n%s", tc.want, r.stderr)
			}
			if _, err := os.Lstat(to); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("the refused run left %s behind (%v)", to, err)
			}

			mine := t.TempDir() // a DEST the user made
			r = runTool(t, env, time.Minute, append([]string{"pull", slugArg, "--to", mine}, tc.args...)...)
			wantCode(t, r, 2)
			if _, err := os.Stat(mine); err != nil {
				t.Errorf("the refused run removed the user's %s: %v", mine, err)
			}
		})
	}
}

// TestJSONOnEveryPath: with --json anywhere on the command line, every
// outcome is one JSON object on stdout, usage errors and a verify of a
// missing destination included, with the error and the exit code.
func TestJSONOnEveryPath(t *testing.T) {
	w, _ := smallWorld(3, 10)
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken})
	env := toolEnv(t, srv)
	missing := filepath.Join(t.TempDir(), "nothing-here")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"pull", slugArg, "--json", "--nope", "--to", t.TempDir()}, "unknown flag: --nope"},
		{[]string{"list", slugArg, "--pipelines", "0", "--json"}, "--pipelines 0"},
		{[]string{"verify", "--to", missing, "--json"}, "does not exist"},
		{[]string{"list", "gh/acme", "--json"}, "gh/acme"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := runTool(t, env, time.Minute, tc.args...)
			wantCode(t, r, 2)
			var out struct {
				Error    string `json:"error"`
				ExitCode int    `json:"exit_code"`
			}
			if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
				t.Fatalf("stdout is not one JSON object (%v):\n%q", err, r.stdout)
			}
			if out.ExitCode != 2 || !strings.Contains(out.Error, tc.want) {
				t.Errorf("JSON %+v: want exit_code 2 and an error saying %q", out, tc.want)
			}
		})
	}
}
