package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
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

func TestListSendsTheTokenOnEveryRequest(t *testing.T) {
	w, _ := demoWorld()
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken, PageSize: 2})
	r := runCLI(t, map[string]string{"CIRCLECI_CLI_TOKEN": testToken}, "list", "gh/acme/widgets", "--host", srv.URL)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	log := srv.RequestLog()
	if len(log) < 4 {
		t.Fatalf("only %d requests: the default selection takes project, pipelines, workflows, jobs and artifacts", len(log))
	}
	for _, req := range log {
		if req.Auth != "circle-token" || req.Status == 401 {
			t.Errorf("%s %s carried credential %q and got %d", req.Method, req.Path, req.Auth, req.Status)
		}
		if strings.Contains(req.Query, testToken) || strings.Contains(req.Path, testToken) {
			t.Errorf("the token is in the URL %s?%s", req.Path, req.Query)
		}
	}
	// The table is aligned: every row has the columns of the header.
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if !strings.HasPrefix(lines[0], "PIPELINE") || len(lines) != 3 {
		t.Errorf("table:\n%s", r.stdout)
	}
	col := strings.Index(lines[0], "PATH")
	for _, l := range lines[1:] {
		if len(l) <= col || l[col-1] != ' ' || l[col] == ' ' {
			t.Errorf("row %q does not line up with the PATH column at %d", l, col)
		}
	}
}

func TestUsageAndAuthErrors(t *testing.T) {
	w, _ := demoWorld()
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken})
	good := map[string]string{"CIRCLE_TOKEN": testToken}
	tests := []struct {
		name string
		env  map[string]string
		args []string
		code int
		msg  string
	}{
		{"bad slug", good, []string{"list", "acme/widgets", "--host", srv.URL}, 2, "gh/"},
		{"unknown vcs", good, []string{"list", "gitlab/acme/widgets", "--host", srv.URL}, 2, "circleci/"},
		{"unknown flag", good, []string{"list", "gh/acme/widgets", "--jobz", "1", "--host", srv.URL}, 2, "--jobz"},
		{"job not a number", good, []string{"list", "gh/acme/widgets", "--job", "abc", "--host", srv.URL}, 2, "--job"},
		{"two selections", good, []string{"list", "gh/acme/widgets", "--job", "1", "--branch", "main", "--host", srv.URL}, 2, "only one"},
		{"no token", map[string]string{}, []string{"list", "gh/acme/widgets", "--host", srv.URL}, 2, "CIRCLE_TOKEN"},
		{"wrong token", map[string]string{"CIRCLE_TOKEN": "wrong-" + testToken}, []string{"list", "gh/acme/widgets", "--host", srv.URL}, 2, "token"},
		{"unknown project", good, []string{"list", "gh/acme/nope", "--host", srv.URL}, 2, "not found"},
		{"unknown job", good, []string{"list", "gh/acme/widgets", "--job", "999", "--host", srv.URL}, 2, "999"},
		{"mistyped command", good, []string{"lst", "gh/acme/widgets"}, 2, `did you mean "list"`},
		{"mistyped flag", good, []string{"list", "gh/acme/widgets", "--brnch", "main"}, 2, "did you mean --branch"},
		{"no slug", good, []string{"list", "--host", srv.URL}, 2, "PROJECT-SLUG"},
		{"token over http to a remote host", good, []string{"list", "gh/acme/widgets", "--host", "http://example.invalid"}, 2, "http"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, tt.env, tt.args...)
			if r.code != tt.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", r.code, tt.code, r.stderr)
			}
			lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
			last := lines[len(lines)-1]
			if !strings.HasPrefix(last, "artifact-sync: ") || !strings.Contains(last, tt.msg) {
				t.Errorf("stderr does not end in one line about %q:\n%s", tt.msg, r.stderr)
			}
			if strings.Contains(r.stderr, "goroutine ") || strings.Contains(r.stderr, "panic") {
				t.Errorf("stack trace on stderr:\n%s", r.stderr)
			}
		})
	}
	for _, req := range srv.RequestLog() {
		if req.Auth == "" {
			t.Errorf("%s %s was sent without a credential", req.Method, req.Path)
		}
	}
}

func TestVersion(t *testing.T) {
	r := runCLI(t, nil, "version")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "artifact-sync ") {
		t.Errorf("version: %d %q %q", r.code, r.stdout, r.stderr)
	}
	// gh, rclone and aws take --version too; it says the same.
	flag := runCLI(t, nil, "--version")
	if flag.code != 0 || flag.stdout != r.stdout || flag.stderr != "" {
		t.Errorf("--version: exit %d, stdout %q (version said %q), stderr %q", flag.code, flag.stdout, r.stdout, flag.stderr)
	}
}

func TestTokenFromCircleCICLIConfig(t *testing.T) {
	w, _ := demoWorld()
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken})
	home := t.TempDir()
	os.MkdirAll(filepath.Join(home, ".circleci"), 0o755)
	cfg := "host: " + srv.URL + "\ntoken: \"" + testToken + "\"\nrest_endpoint: api/v2\ntls_cert: \"\"\n"
	if err := os.WriteFile(filepath.Join(home, ".circleci", "cli.yml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, map[string]string{"HOME": home}, "list", "gh/acme/widgets", "-v")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "cli.yml") {
		t.Errorf("-v does not say the token came from cli.yml:\n%s", r.stderr)
	}
	// The environment wins over the file.
	r = runCLI(t, map[string]string{"HOME": home, "CIRCLE_TOKEN": "wrong"}, "list", "gh/acme/widgets")
	if r.code != 2 {
		t.Errorf("a wrong $CIRCLE_TOKEN did not take precedence over cli.yml: exit %d", r.code)
	}
}

// TestCLIConfigIsReadAsYAML: the CircleCI CLI's config file is YAML, and
// whatever form of it the CLI or a person writes (a document marker, quoted
// keys, a folded scalar, a flow mapping, Windows line ends) gives the same
// token and host; a file that is not YAML is named in a warning and passed
// over, never quoted.
func TestCLIConfigIsReadAsYAML(t *testing.T) {
	w, _ := demoWorld()
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken})
	for name, cfg := range map[string]string{
		"document marker and quoted keys": "---\n\"host\": " + srv.URL + "\n'token': " + testToken + "\n",
		"folded scalar":                   "host: " + srv.URL + "\ntoken: >-\n  " + testToken + "\n",
		"flow mapping":                    "{host: \"" + srv.URL + "\", token: " + testToken + "}\n",
		"windows line ends":               "host: " + srv.URL + "\r\ntoken: " + testToken + "\r\nrest_endpoint: api/v2\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			home := t.TempDir()
			os.MkdirAll(filepath.Join(home, ".circleci"), 0o755)
			if err := os.WriteFile(filepath.Join(home, ".circleci", "cli.yml"), []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			if r := runCLI(t, map[string]string{"HOME": home}, "list", "gh/acme/widgets"); r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
		})
	}
	home := t.TempDir()
	os.MkdirAll(filepath.Join(home, ".circleci"), 0o755)
	os.WriteFile(filepath.Join(home, ".circleci", "cli.yml"), []byte("token: [\""+testToken+"\"\nhost: :\n"), 0o600)
	r := runCLI(t, map[string]string{"HOME": home}, "list", "gh/acme/widgets")
	if r.code != 2 || !strings.Contains(r.stderr, "cli.yml") || !strings.Contains(r.stderr, "no CircleCI token") {
		t.Errorf("a cli.yml that is not YAML: exit %d, want 2 with a warning naming the file and the missing token:\n%s", r.code, r.stderr)
	}
}

// TestMainIsWiring: main.go stays wiring a reader takes in at a glance, as
// commands and flags are added: under 500 lines, no function over 80.
func TestMainIsWiring(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "main.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if n := fset.File(f.Pos()).LineCount(); n >= 500 {
		t.Errorf("main.go has %d lines, want under 500: move what is not wiring to the package it serves", n)
	}
	for _, d := range f.Decls {
		if fn, ok := d.(*ast.FuncDecl); ok {
			if n := fset.Position(fn.End()).Line - fset.Position(fn.Pos()).Line + 1; n > 80 {
				t.Errorf("main.go: %s has %d lines, want 80 at most", fn.Name.Name, n)
			}
		}
	}
}

// TestHelpIsGrouped: each command's help groups its flags under the
// headings its usage line names, lists only the flags that mean something to
// it, and shows durations as they are typed.
func TestHelpIsGrouped(t *testing.T) {
	pull := runCLI(t, nil, "pull", "--help").stdout
	last := -1
	for _, h := range []string{"Usage:", "Selection:", "Filters:", "Pull options:", "S3:", "Global:"} {
		i := strings.Index(pull, "\n"+h+"\n")
		if h == "Usage:" {
			i = strings.Index(pull, h)
		}
		if i <= last {
			t.Errorf("pull --help: %q missing or out of order:\n%s", h, pull)
		}
		last = i
	}
	if strings.Count(pull, "[flags]") > 0 || !strings.Contains(pull, "(default 60s)") {
		t.Errorf("pull --help has a doubled [flags] or shows --idle-timeout's default not as typed:\n%s", pull)
	}
	verify := runCLI(t, nil, "verify", "--help").stdout
	for _, f := range []string{"--token", "--host", "--job ", "--layout"} {
		if strings.Contains(verify, f) {
			t.Errorf("verify --help lists %s, which means nothing to it:\n%s", f, verify)
		}
	}
	version := runCLI(t, nil, "version", "--help").stdout
	if strings.Count(version, "--") != 1 {
		t.Errorf("version --help lists flags besides --help:\n%s", version)
	}
	r := runCLI(t, nil, "pull", "gh/acme/widgets", "--to", t.TempDir(), "--idle-timeout", "soon")
	if r.code != 2 || !strings.Contains(r.stderr, "give a duration such as 60s") {
		t.Errorf("a bad duration: %d %s", r.code, r.stderr)
	}
}
