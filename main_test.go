package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
)

const testToken = "cci-test-0123456789abcdef"

// demoWorld is a project with parallel nodes, approval jobs, running jobs and
// more artifacts than fit on one page.
func demoWorld() (*circlecitest.World, *circlecitest.Project) {
	w := circlecitest.NewWorld()
	p := w.AddProject("gh/acme/widgets", "main")

	old := p.AddPipeline("main").AddWorkflow("build")
	old.AddJob("test", circlecitest.JobOptions{}).AddArtifact(0, "old.txt", 10)

	feat := p.AddPipeline("feature/x").AddWorkflow("build")
	feat.AddJob("test", circlecitest.JobOptions{}).AddArtifact(0, "feature.txt", 10)

	wf := p.AddPipeline("main").AddWorkflow("build")
	test := wf.AddJob("test", circlecitest.JobOptions{Parallelism: 2})
	test.AddArtifact(0, "reports/junit.xml", 300)
	test.AddArtifact(1, "reports/junit.xml", 400)
	pkg := wf.AddJob("package", circlecitest.JobOptions{})
	for i, name := range []string{"dist/a.tgz", "dist/b.tgz", "dist/c.tgz", "dist/sub/d.tgz", "checksums.txt"} {
		pkg.AddArtifact(0, name, int64(1000*(i+1)))
	}
	wf.AddApproval("hold")
	deploy := wf.AddJob("deploy", circlecitest.JobOptions{Status: "running"})
	deploy.AddArtifact(0, "deploy.log", 10)

	newest := p.AddPipeline("main")
	b := newest.AddWorkflow("build")
	b.AddJob("test", circlecitest.JobOptions{}).AddArtifact(0, "coverage/index.html", 2048)
	n := newest.AddWorkflow("nightly")
	n.AddJob("lint", circlecitest.JobOptions{}).AddArtifact(0, "lint.txt", 64)
	return w, p
}

type result struct {
	code           int
	stdout, stderr string
}

func runCLI(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	return runCLICtx(t.Context(), t, env, args...)
}

func runCLICtx(ctx context.Context, t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(ctx, args, &out, &errb, func(k string) string { return env[k] })
	r := result{code: code, stdout: out.String(), stderr: errb.String()}
	for _, s := range []string{r.stdout, r.stderr} {
		if strings.Contains(s, testToken) {
			t.Fatalf("the token appears in the output of %q:\n%s", args, s)
		}
	}
	return r
}

// expected lists, from the world itself, the artifacts of finished build
// jobs in the newest k pipelines on branch.
func expected(p *circlecitest.Project, branch string, k int) []string {
	var want []string
	var pls []*circlecitest.Pipeline
	for _, pl := range p.Pipelines() {
		if pl.Branch() == branch {
			pls = append(pls, pl)
		}
	}
	pls = pls[max(0, len(pls)-k):]
	for _, pl := range pls {
		for _, wf := range pl.Workflows() {
			for _, j := range wf.Jobs() {
				if j.Type() != "build" || j.Status() == "running" {
					continue
				}
				for _, a := range j.Artifacts() {
					want = append(want, key(j.Number(), int64(a.Node()), a.Path()))
				}
			}
		}
	}
	slices.Sort(want)
	return want
}

func key(job, node int64, path string) string {
	return strconv.FormatInt(job, 10) + "/" + strconv.FormatInt(node, 10) + "/" + path
}

func TestListJSONThroughRun(t *testing.T) {
	w, proj := demoWorld()
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken, PageSize: 2})
	env := map[string]string{"CIRCLE_TOKEN": testToken}

	r := runCLI(t, env, "list", "gh/acme/widgets", "--branch", "main", "--pipelines", "2", "--json", "--host", srv.URL)
	if r.code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
	var got []string
	sc := bufio.NewScanner(strings.NewReader(r.stdout))
	for sc.Scan() {
		var a struct {
			Project        string `json:"project"`
			PipelineNumber int64  `json:"pipeline_number"`
			WorkflowName   string `json:"workflow_name"`
			JobName        string `json:"job_name"`
			JobNumber      int64  `json:"job_number"`
			NodeIndex      *int64 `json:"node_index"`
			Path           string `json:"path"`
			URL            string `json:"url"`
		}
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			t.Fatalf("line %q is not JSON: %v", sc.Text(), err)
		}
		if a.Project != "gh/acme/widgets" || a.PipelineNumber == 0 || a.WorkflowName == "" || a.JobName == "" || a.NodeIndex == nil || a.URL == "" {
			t.Errorf("line lacks a required field: %s", sc.Text())
		}
		if !strings.HasPrefix(a.URL, srv.ArtifactURL) {
			t.Errorf("url %q is not on the artifact host %s", a.URL, srv.ArtifactURL)
		}
		got = append(got, key(a.JobNumber, *a.NodeIndex, a.Path))
	}
	slices.Sort(got)
	want := expected(proj, "main", 2)
	if len(want) != 9 {
		t.Fatalf("the test world changed: %d expected artifacts, want 9", len(want))
	}
	if !slices.Equal(got, want) {
		t.Errorf("list printed\n%q\nwant\n%q", got, want)
	}
	if !strings.Contains(r.stderr, "deploy") {
		t.Errorf("the running job was not reported on stderr:\n%s", r.stderr)
	}
}
