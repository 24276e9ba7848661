package main

// Runs over several projects: each project's state and artifacts under its
// own prefix of DEST, a project that fails reported while the others go on,
// --projects-from, --org and --shard.

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
	"github.com/artifact-sync/artifact-sync/sink/sinktest"
)

// projectsWorld has the projects slugs (on main), each with three
// pipelines of one job and two artifacts, and gh/other/tool, of another
// organisation.
func projectsWorld(slugs ...string) (*circlecitest.World, []*circlecitest.Project) {
	w := circlecitest.NewWorld()
	var ps []*circlecitest.Project
	for i, s := range append(slugs, "gh/other/tool") {
		p := w.AddProject(s, "main")
		for k := range 3 {
			j := p.AddPipeline("main").AddWorkflow("build").AddJob("build", circlecitest.JobOptions{})
			j.AddArtifact(0, fmt.Sprintf("dist/%d.txt", k), int64(100+10*i+k))
			j.AddArtifact(0, "logs/run.log", int64(50+i))
		}
		if i < len(slugs) {
			ps = append(ps, p)
		}
	}
	return w, ps
}

// projectMirror is what a run over several projects leaves at DEST: the
// artifacts of the newest k pipelines on main of each project, under
// <slug>/ in the default layout.
func projectMirror(k int, ps ...*circlecitest.Project) mirror {
	m := mirror{}
	for _, p := range ps {
		pls := p.Pipelines()
		for _, pl := range pls[len(pls)-k:] {
			for _, wf := range pl.Workflows() {
				for _, j := range wf.Jobs() {
					for _, a := range j.Artifacts() {
						m[p.Slug()+"/"+key(j.Number(), int64(a.Node()), a.Path())] = wantFile{art: a, sha: a.SHA256(), size: a.Size()}
					}
				}
			}
		}
	}
	return m
}

// tree is what a destination holds: key → SHA-256.
type tree map[string]string

func dirTree(t *testing.T, dir string) tree {
	t.Helper()
	out := tree{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		sum, _, err := sha256Hex(f)
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = sum
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func bucketTree(t *testing.T, env sinktest.S3Env, prefix string) tree {
	t.Helper()
	ctx := context.Background()
	client := env.Client()
	out := tree{}
	pages := s3.NewListObjectsV2Paginator(client, &s3.ListObjectsV2Input{Bucket: aws.String(env.Bucket), Prefix: aws.String(prefix + "/")})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Contents {
			obj, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(env.Bucket), Key: o.Key})
			if err != nil {
				t.Fatal(err)
			}
			sum, _, err := sha256Hex(obj.Body)
			obj.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			out[strings.TrimPrefix(aws.ToString(o.Key), prefix+"/")] = sum
		}
	}
	return out
}

// artifacts is the tree without the tool's state.
func (tr tree) artifacts() tree {
	out := tree{}
	for k, v := range tr {
		if !strings.Contains("/"+k, "/.artifact-sync/") {
			out[k] = v
		}
	}
	return out
}

// checkProjects checks a destination of a run over several projects: the
// artifacts are exactly want's, byte for byte; each of the projects in
// stated keeps its manifest under <slug>/.artifact-sync/, and no state is
// anywhere else (none at DEST's root, none for a project not pulled).
func checkProjects(t *testing.T, tr tree, want mirror, stated ...string) {
	t.Helper()
	arts := tr.artifacts()
	for k, w := range want {
		if got, ok := arts[k]; !ok {
			t.Errorf("%s is missing", k)
		} else if got != w.sha {
			t.Errorf("%s is not the artifact", k)
		}
	}
	for k := range arts {
		if _, ok := want[k]; !ok {
			t.Errorf("stray file %s", k)
		}
	}
	for k := range tr {
		if _, ok := arts[k]; ok {
			continue
		}
		if !slices.ContainsFunc(stated, func(s string) bool { return strings.HasPrefix(k, s+"/.artifact-sync/") }) {
			t.Errorf("state %s is not under a pulled project's own .artifact-sync/", k)
		}
	}
	for _, s := range stated {
		if !slices.ContainsFunc(slices.Collect(maps.Keys(tr)), func(k string) bool { return strings.HasPrefix(k, s+"/.artifact-sync/manifest/") }) {
			t.Errorf("no manifest under %s/.artifact-sync/manifest/: %v", s, slices.Sorted(maps.Keys(tr)))
		}
	}
}

// pullJSON is pull --json's object for a run over several projects.
type pullJSON struct {
	Artifacts   int    `json:"artifacts"`
	Transferred int    `json:"transferred"`
	Skipped     int    `json:"skipped"`
	Failed      int    `json:"failed"`
	Error       string `json:"error"`
	ExitCode    int    `json:"exit_code"`
	Projects    []struct {
		Project     string `json:"project"`
		Artifacts   int    `json:"artifacts"`
		Transferred int    `json:"transferred"`
		Skipped     int    `json:"skipped"`
		Destination string `json:"destination"`
		ExitCode    int    `json:"exit_code"`
		Error       string `json:"error"`
	} `json:"projects"`
}

// TestProjectsEachKeepTheirState pulls three projects, one of which CircleCI
// does not know, to a directory and to S3: the two it knows are mirrored
// each under its own prefix with its own manifest and lock, the unknown one
// is reported as not found (not as empty) and the run exits with its code;
// a rerun with --json says it per project.
func TestProjectsEachKeepTheirState(t *testing.T) {
	w, ps := projectsWorld("gh/acme/widgets", "gh/acme/gadgets")
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken})
	want := projectMirror(1, ps...)
	for _, tc := range []struct {
		name string
		dest func(t *testing.T) (dest, func(t *testing.T) tree)
	}{
		{"directory", func(t *testing.T) (dest, func(t *testing.T) tree) {
			d := localDest(t, srv)
			return d, func(t *testing.T) tree { return dirTree(t, d.to) }
		}},
		{"s3", func(t *testing.T) (dest, func(t *testing.T) tree) {
			env := sinktest.NewS3Bucket(t)
			d := s3Dest(t, srv, env, "mirror")
			return d, func(t *testing.T) tree { return bucketTree(t, env, "mirror") }
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, list := tc.dest(t)
			args := append([]string{"pull", "gh/acme/widgets", "gh/acme/nope", "github/acme/gadgets", "--to", d.to}, d.flags...)
			r := runTool(t, d.env, time.Minute, args...)
			wantCode(t, r, 2)
			for _, s := range []string{
				"gh/acme/widgets: 2 artifacts: 2 transferred",
				"gh/acme/gadgets: 2 artifacts: 2 transferred",
				"gh/acme/nope: not pulled: ",
				"3 projects: 4 artifacts: 4 transferred",
				"1 not pulled",
			} {
				if !strings.Contains(r.stdout, s) {
					t.Errorf("the summary does not say %q:\n%s", s, r.stdout)
				}
			}
			if l := lastLine(r.stderr); !strings.Contains(l, "1 of 3 projects did not complete: gh/acme/nope") || !strings.Contains(l, "not found: renamed or deleted, or the token cannot see it") {
				t.Errorf("the last line does not name the unknown project as not found:\n%s", r.stderr)
			}
			checkProjects(t, list(t), want, "gh/acme/widgets", "gh/acme/gadgets")

			// list says the same of each project, under its name.
			lr := runTool(t, d.env, time.Minute, "list", "gh/acme/widgets", "gh/acme/nope", "gh/acme/gadgets")
			wantCode(t, lr, 2)
			if !strings.Contains(lr.stdout, "gh/acme/nope:\n  error: not found: renamed or deleted") || strings.Count(lr.stdout, "logs/run.log") != 2 {
				t.Errorf("list over three projects, one unknown:\n%s", lr.stdout)
			}

			// Each project's prefix is a destination of its own.
			one := d
			one.to += "/gh/acme/gadgets"
			wantVerified(t, one, 2)

			r = runTool(t, d.env, time.Minute, append(args, "--json")...)
			wantCode(t, r, 2)
			var got pullJSON
			if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
				t.Fatalf("pull --json: %v\n%s", err, r.stdout)
			}
			if got.Artifacts != 4 || got.Skipped != 4 || got.Transferred != 0 || got.ExitCode != 2 || len(got.Projects) != 3 {
				t.Errorf("pull --json totals: %+v", got)
			}
			for i, p := range got.Projects {
				name := []string{"gh/acme/widgets", "gh/acme/nope", "gh/acme/gadgets"}[i]
				wantCode, wantErr := 0, ""
				if name == "gh/acme/nope" {
					wantCode, wantErr = 2, "not found: renamed or deleted"
				}
				if p.Project != name || p.ExitCode != wantCode || !strings.Contains(p.Error, wantErr) || (wantErr == "") != (p.Error == "") {
					t.Errorf("pull --json project %d: %+v, want %s exiting %d", i, p, name, wantCode)
				}
				if wantCode == 0 && (p.Skipped != 2 || !strings.HasSuffix(strings.TrimSuffix(p.Destination, "/"), name)) {
					t.Errorf("pull --json project %s: %+v, want 2 skipped at its own prefix", name, p)
				}
			}
		})
	}
}

// TestProjectsFrom reads the projects from a file with comments, blank
// lines and a project given twice, and from stdin, with the selection
// flags applied to each project.
func TestProjectsFrom(t *testing.T) {
	w, ps := projectsWorld("gh/acme/widgets", "gh/acme/gadgets", "bb/acme/legacy")
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken})
	file := filepath.Join(t.TempDir(), "projects.txt")
	os.WriteFile(file, []byte("# the nightly backup\ngh/acme/widgets\n\n  bitbucket/acme/legacy   # the old one\ngithub/acme/widgets\n#gh/acme/gadgets\n"), 0o644)
	d := localDest(t, srv)
	r := runTool(t, d.env, time.Minute, "pull", "--projects-from", file, "--branch", "main", "--pipelines", "2", "--to", d.to)
	wantCode(t, r, 0)
	checkProjects(t, dirTree(t, d.to), projectMirror(2, ps[0], ps[2]), "gh/acme/widgets", "bb/acme/legacy")
	if !strings.Contains(r.stdout, "2 projects: 8 artifacts: 8 transferred") {
		t.Errorf("summary:\n%s", r.stdout)
	}

	// list, from stdin, with an argument besides: JSON lines of each.
	p := startToolStdin(t, d.env, "gh/acme/gadgets\n", "list", "gh/acme/widgets", "--projects-from", "-", "--json")
	r = p.wait(time.Minute)
	wantCode(t, r, 0)
	seen := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var a struct{ Project string }
		if err := json.Unmarshal([]byte(line), &a); err != nil {
			t.Fatalf("list --json: %v: %s", err, line)
		}
		seen[a.Project]++
	}
	if !maps.Equal(seen, map[string]int{"gh/acme/widgets": 2, "gh/acme/gadgets": 2}) {
		t.Errorf("list --json over two projects lists %v", seen)
	}

	// A dry run's plan names each line's project; it creates nothing.
	fresh := filepath.Join(t.TempDir(), "fresh")
	r = runTool(t, d.env, time.Minute, "pull", "--projects-from", file, "--to", fresh, "--dry-run", "--json")
	wantCode(t, r, 0)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	planned := map[string]int{}
	for _, line := range lines[:len(lines)-1] {
		var step struct{ Project, Action, Key string }
		if err := json.Unmarshal([]byte(line), &step); err != nil || step.Action != "transfer" {
			t.Fatalf("dry run --json: %v: %s", err, line)
		}
		planned[step.Project]++
	}
	if !maps.Equal(planned, map[string]int{"gh/acme/widgets": 2, "bb/acme/legacy": 2}) {
		t.Errorf("the dry run's plan names the projects %v:\n%s", planned, r.stdout)
	}
	if _, err := os.Stat(fresh); err == nil {
		t.Errorf("a dry run over several projects created DEST")
	}
}

// startToolStdin is startTool with stdin.
func startToolStdin(t *testing.T, env []string, stdin string, args ...string) *proc {
	t.Helper()
	return startToolWith(t, env, strings.NewReader(stdin), args...)
}

// orgWorld is ten projects of gh/acme, one of gh/other.
func orgWorld() (*circlecitest.World, []*circlecitest.Project) {
	var slugs []string
	for i := range 10 {
		slugs = append(slugs, fmt.Sprintf("gh/acme/service-%02d", i))
	}
	return projectsWorld(slugs...)
}

// TestOrgToDirectory pulls an organisation's projects, found through the
// organisation's pipelines over several pages, and none of another's.
func TestOrgToDirectory(t *testing.T) {
	w, ps := orgWorld()
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken, PageSize: 4})
	d := localDest(t, srv)
	r := runTool(t, d.env, 2*time.Minute, "pull", "--org", "github/acme", "--to", d.to)
	wantCode(t, r, 0)
	var slugs []string
	for _, p := range ps {
		slugs = append(slugs, p.Slug())
	}
	checkProjects(t, dirTree(t, d.to), projectMirror(1, ps...), slugs...)
	if n := srv.Requests("org-pipelines"); n != 8 {
		t.Errorf("%d requests of the organisation's pipelines, want its 30 pipelines over 8 pages of 4", n)
	}
	if !strings.Contains(r.stdout, "10 projects: 20 artifacts: 20 transferred") {
		t.Errorf("summary:\n%s", r.stdout)
	}

	// An organisation CircleCI refuses to list stops the run before any
	// project, with nothing but the error.
	srv.SetFaults(func(c circlecitest.Call) circlecitest.Fault {
		if c.Route == "org-pipelines" {
			return circlecitest.StatusFault(403, "")
		}
		return circlecitest.Fault{}
	})
	r2 := runTool(t, d.env, time.Minute, "pull", "--org", "gh/acme", "--to", d.to)
	srv.SetFaults(nil)
	wantCode(t, r2, 2)
	if r2.stdout != "" || !strings.Contains(lastLine(r2.stderr), "projects of organisation gh/acme") || !strings.Contains(lastLine(r2.stderr), "403") {
		t.Errorf("a refused organisation listing:\nstdout:\n%s\nstderr:\n%s", r2.stdout, r2.stderr)
	}
}

// TestShardsTogetherMakeTheMirror runs four shards of one organisation at
// once into one S3 prefix: together they write exactly what one run over
// every project writes into another, key for key and byte for byte, each
// project by one shard alone.
func TestShardsTogetherMakeTheMirror(t *testing.T) {
	w, ps := orgWorld()
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken, PageSize: 5})
	env := sinktest.NewS3Bucket(t)
	single := s3Dest(t, srv, env, "single")
	r := runTool(t, single.env, 2*time.Minute, append([]string{"pull", "--org", "gh/acme", "--to", single.to}, single.flags...)...)
	wantCode(t, r, 0)

	sharded := s3Dest(t, srv, env, "sharded")
	var wg sync.WaitGroup
	results := make([]e2eResult, 4)
	procs := make([]*proc, 4)
	for i := range 4 {
		procs[i] = startTool(t, sharded.env, append([]string{"pull", "--org", "gh/acme", "--shard", fmt.Sprintf("%d/4", i), "--to", sharded.to, "--json"}, sharded.flags...)...)
	}
	for i := range 4 {
		wg.Go(func() { results[i] = procs[i].wait(2 * time.Minute) })
	}
	wg.Wait()
	taken := map[string]int{}
	for i, r := range results {
		wantCode(t, r, 0)
		var got pullJSON
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
			t.Fatalf("shard %d: %v\n%s", i, err, r.stdout)
		}
		for _, p := range got.Projects {
			taken[p.Project]++
		}
	}
	for _, p := range ps {
		if taken[p.Slug()] != 1 {
			t.Errorf("%s was pulled by %d shards, want 1: %v", p.Slug(), taken[p.Slug()], taken)
		}
	}
	if len(taken) != len(ps) {
		t.Errorf("the shards pulled %v, want the %d projects of gh/acme", taken, len(ps))
	}
	one, four := bucketTree(t, env, "single"), bucketTree(t, env, "sharded")
	if !maps.Equal(one.artifacts(), four.artifacts()) {
		t.Errorf("four shards wrote\n%v\none run wrote\n%v", four.artifacts(), one.artifacts())
	}
	var slugs []string
	for _, p := range ps {
		slugs = append(slugs, p.Slug())
	}
	checkProjects(t, four, projectMirror(1, ps...), slugs...)
}

// TestProjectsUsage: combinations that name one project's objects with
// several projects, and bad --shard, --org and --projects-from values, are
// usage errors; one project on another shard selects nothing and exits 0.
func TestProjectsUsage(t *testing.T) {
	w, _ := projectsWorld("gh/acme/widgets", "gh/acme/gadgets")
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken})
	env := map[string]string{"CIRCLECI_HOST": srv.URL, "CIRCLE_TOKEN": testToken}
	to := t.TempDir()
	list := filepath.Join(t.TempDir(), "list")
	os.WriteFile(list, []byte("gh/acme/widgets\nnot a slug\n"), 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"pull", "gh/acme/widgets", "gh/acme/gadgets", "--job", "1", "--to", to}, "--job names one project's jobs"},
		{[]string{"list", "--org", "gh/acme", "--pipeline-number", "1"}, "--pipeline-number names one project's jobs"},
		{[]string{"list", "gh/acme/widgets", "gh/acme/gadgets", "--workflow", "5034460f-c7c4-4c43-9457-de07e2029e7b"}, "--workflow names one project's jobs"},
		{[]string{"list", "gh/acme/gadgets", "https://app.circleci.com/pipelines/github/acme/widgets/3"}, "names a job, workflow, pipeline or branch"},
		{[]string{"list", "gh/acme/widgets", "--shard", "4/4"}, "give I/N"},
		{[]string{"list", "gh/acme/widgets", "--shard", "0/0"}, "give I/N"},
		{[]string{"list", "gh/acme/widgets", "--shard", "half"}, "give I/N"},
		{[]string{"list", "--org", "acme"}, "invalid organisation"},
		{[]string{"list", "--projects-from", filepath.Join(to, "none")}, "does not exist"},
		{[]string{"list", "--projects-from", list}, "line 2"},
		{[]string{"pull", "--to", to}, "needs a PROJECT-SLUG such as gh/org/repo, --projects-from FILE or --org ORG-SLUG"},
	} {
		r := runCLI(t, env, tc.args...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Errorf("%q: exit %d, want 2 with one line saying %q:\n%s", tc.args, r.code, tc.want, r.stderr)
		}
	}

	// A run refused for every project (a layout that puts artifacts of
	// three jobs on one key) creates nothing.
	fresh := filepath.Join(to, "fresh")
	r := runCLI(t, env, "pull", "gh/acme/widgets", "gh/acme/gadgets", "--to", fresh, "--branch", "main", "--pipelines", "3", "--layout", "{path}")
	if r.code != 2 || !strings.Contains(r.stdout, "2 projects:") {
		t.Errorf("a layout refused for every project: exit %d:\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat(fresh); err == nil {
		t.Errorf("a run refused for every project created %s: %v", fresh, dirTree(t, fresh))
	}

	// gh/acme/widgets is on shard 3 of 8 (see sync.TestShardIsStable).
	r = runCLI(t, env, "pull", "gh/acme/widgets", "--shard", "1/8", "--to", to)
	if r.code != 0 || !strings.Contains(r.stderr, "falls on shard 3 of 8, not 1: nothing selected") {
		t.Errorf("one project on another shard: exit %d:\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if entries, _ := os.ReadDir(to); len(entries) != 0 {
		t.Errorf("one project on another shard wrote %v", entries)
	}
	r = runCLI(t, env, "list", "gh/acme/widgets", "--shard", "3/8", "--json")
	if r.code != 0 || strings.Count(r.stdout, "\n") != 2 {
		t.Errorf("one project on its own shard: exit %d:\n%s\n%s", r.code, r.stdout, r.stderr)
	}
}

// TestInterruptStopsEveryProject: Ctrl-C during the second of three
// projects stops the run (the third is not started) and exits 130 with the
// command that resumes it; the rerun completes every project.
func TestInterruptStopsEveryProject(t *testing.T) {
	w, ps := projectsWorld("gh/acme/a", "gh/acme/b", "gh/acme/c")
	big := ps[1].Pipelines()[2].Workflows()[0].Jobs()[0].AddArtifact(0, "dist/big.bin", 4<<20)
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken, Bandwidth: 1 << 20})
	d := localDest(t, srv)
	args := []string{"pull", "gh/acme/a", "gh/acme/b", "gh/acme/c", "--to", d.to}
	p := startTool(t, d.env, args...)
	if !p.waitUntil(func() bool { return srv.Downloads(big).Bytes >= 1<<20 }) {
		t.Fatalf("the run ended before the signal:\n%s", p.stderr.String())
	}
	p.cmd.Process.Signal(syscall.SIGINT)
	r := p.wait(30 * time.Second)
	wantCode(t, r, 130)
	for _, s := range []string{"gh/acme/a: 2 artifacts: 2 transferred", "gh/acme/c: not started", "to resume: artifact-sync pull gh/acme/a gh/acme/b gh/acme/c --to"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("the summary does not say %q:\n%s", s, r.stdout)
		}
	}
	if _, err := os.Stat(filepath.Join(d.to, "gh", "acme", "c")); err == nil {
		t.Errorf("the project after the interrupted one was started")
	}
	if !strings.Contains(lastLine(r.stderr), "interrupted") {
		t.Errorf("the last line does not say the run was interrupted:\n%s", r.stderr)
	}
	r = runTool(t, d.env, time.Minute, args...)
	wantCode(t, r, 0)
	want := projectMirror(1, ps...)
	want["gh/acme/b/"+key(big.Job().Number(), 0, big.Path())] = wantFile{art: big, sha: big.SHA256(), size: big.Size()}
	checkProjects(t, dirTree(t, d.to), want, "gh/acme/a", "gh/acme/b", "gh/acme/c")
}

// TestProjectsManifestElsewhere: with --manifest LOCATION each project's
// manifest is under LOCATION/<slug>/, and a rerun finds it there.
func TestProjectsManifestElsewhere(t *testing.T) {
	w, ps := projectsWorld("gh/acme/widgets", "gh/acme/gadgets")
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken})
	d := localDest(t, srv)
	loc := filepath.Join(t.TempDir(), "manifests")
	args := []string{"pull", "gh/acme/widgets", "gh/acme/gadgets", "--to", d.to, "--manifest", loc}
	wantCode(t, runTool(t, d.env, time.Minute, args...), 0)
	for _, p := range ps {
		if entries, err := os.ReadDir(filepath.Join(loc, filepath.FromSlash(p.Slug()))); err != nil || len(entries) == 0 {
			t.Errorf("no manifest of %s under --manifest: %v", p.Slug(), err)
		}
	}
	if got := dirTree(t, d.to).artifacts(); len(got) != len(projectMirror(1, ps...)) {
		t.Errorf("the mirror holds %v", got)
	}
	r := runTool(t, d.env, time.Minute, args...)
	wantCode(t, r, 0)
	if !strings.Contains(r.stdout, "2 projects: 4 artifacts: 0 transferred") {
		t.Errorf("a rerun did not find the manifests under --manifest:\n%s", r.stdout)
	}
}
