package main

// End-to-end tests of API v3 and job UUIDs: --job "$CIRCLE_WORKFLOW_JOB_ID",
// --api auto|v2|v3, and CircleCI's Deprecation and Sunset notices, through
// the binary against the fake.

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
)

// switchLine is the one line a run logs when it moves to API v3.
const switchLine = "listing artifacts through API v3 for the rest of the run"

// v3World is two pipelines: on main a workflow with a parallel build job,
// a test job and an approval; on feature/x a workflow with a deploy job.
func v3World() (w *circlecitest.World, build, test, deploy *circlecitest.Job, arts []*circlecitest.Artifact) {
	w = circlecitest.NewWorld()
	p := w.AddProject(slugArg, "main")
	wf := p.AddPipeline("main").AddWorkflow("ci")
	build = wf.AddJob("build", circlecitest.JobOptions{Parallelism: 2})
	test = wf.AddJob("test", circlecitest.JobOptions{Requires: []*circlecitest.Job{build}})
	wf.AddApproval("hold")
	deploy = p.AddPipeline("feature/x").AddWorkflow("release").AddJob("deploy", circlecitest.JobOptions{})
	for i := range 4 {
		arts = append(arts, build.AddArtifact(i%2, fmt.Sprintf("dist/part-%d.bin", i), int64(1000+i)))
	}
	arts = append(arts, test.AddArtifact(0, "report.xml", 300), deploy.AddArtifact(0, "deploy.log", 50))
	return w, build, test, deploy, arts
}

func countOf(s, sub string) int { return strings.Count(s, sub) }

// TestJobByUUID: --job takes UUIDs ($CIRCLE_WORKFLOW_JOB_ID) mixed with
// numbers; a UUID resolves to its job's number, name, workflow and
// pipeline for the layout, and to the same manifest entries as its number.
func TestJobByUUID(t *testing.T) {
	w, build, test, deploy, arts := v3World()
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken})
	d := localDest(t, srv)
	layout := "{branch}/{pipeline_number}/{workflow_name}/{job_name}/{job_number}/{node_index}/{path}"
	r := runTool(t, d.env, time.Minute, d.pull("--job", build.ID()+","+fmt.Sprint(deploy.Number()), "--job", strings.ToUpper(test.ID()), "--layout", layout)...)
	wantCode(t, r, 0)
	want := mirror{}
	for _, a := range arts {
		j := a.Job()
		wf := j.Workflow()
		pl := wf.Pipeline()
		k := fmt.Sprintf("%s/%d/%s/%s/%d/%d/%s", pl.Branch(), pl.Number(), wf.Name(), j.Name(), j.Number(), a.Node(), a.Path())
		want[k] = wantFile{art: a, sha: a.SHA256(), size: a.Size()}
	}
	d.check(t, want, true)

	// The same jobs by number are the same entries: nothing is fetched.
	srv.ResetStats()
	r = runTool(t, d.env, time.Minute, d.pull("--job", fmt.Sprintf("%d,%d,%d", build.Number(), test.Number(), deploy.Number()), "--layout", layout)...)
	wantCode(t, r, 0)
	if n := srv.DownloadTotals().Started; n != 0 || !strings.Contains(r.stdout, "0 transferred") {
		t.Errorf("the same jobs by number downloaded %d artifacts:\n%s", n, r.stdout)
	}

	r = runTool(t, d.env, time.Minute, "list", slugArg, "--job", deploy.ID(), "--json")
	wantCode(t, r, 0)
	if !strings.Contains(r.stdout, `"path":"deploy.log"`) || strings.Contains(r.stdout, "report.xml") {
		t.Errorf("list --job UUID:\n%s", r.stdout)
	}

	r = runTool(t, d.env, time.Minute, "pull", slugArg, "--job", "12ab", "--to", filepath.Join(t.TempDir(), "x"))
	wantCode(t, r, 2)
	wantOneLine(t, r, `--job "12ab"`, "$CIRCLE_WORKFLOW_JOB_ID")

	other := w.AddProject("gh/acme/other", "main").AddPipeline("main").AddWorkflow("ci").AddJob("x", circlecitest.JobOptions{})
	r = runTool(t, d.env, time.Minute, "pull", slugArg, "--job", other.ID(), "--to", filepath.Join(t.TempDir(), "y"))
	wantCode(t, r, 2)
	wantOneLine(t, r, other.ID(), "another project", slugArg)
}

// TestAPIAutoMovesToV3: once CircleCI retires API v2's artifact listing
// (404 or 410), --api auto (the default) lists through v3, says so in one
// line, and a mirror made through v2 is complete: nothing is fetched again,
// by auto or by --api v3.
func TestAPIAutoMovesToV3(t *testing.T) {
	for _, status := range []int{404, 410} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			t.Parallel()
			w, _, _, _, arts := v3World()
			srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken, V2ArtifactsGone: status})
			d := localDest(t, srv)
			r := runTool(t, d.env, time.Minute, d.pull("--branch", "main")...)
			wantCode(t, r, 0)
			d.check(t, mirrorOf(arts[:5]...), true)
			if n := countOf(r.stderr, switchLine); n != 1 {
				t.Errorf("%d lines about API v3, want 1:\n%s", n, r.stderr)
			}
			if srv.Requests("v3-artifacts") == 0 {
				t.Error("no request to API v3")
			}

			srv.ResetStats()
			r = runTool(t, d.env, time.Minute, d.pull("--branch", "main")...)
			wantCode(t, r, 0)
			if n := srv.DownloadTotals().Started; n != 0 || !strings.Contains(r.stdout, "5 artifacts: 0 transferred") {
				t.Errorf("the rerun downloaded %d artifacts:\n%s", n, r.stdout)
			}
		})
	}

	t.Run("v2 mirror, then v2 retired", func(t *testing.T) {
		t.Parallel()
		w, _, _, _, arts := v3World()
		srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken})
		d := localDest(t, srv)
		r := runTool(t, d.env, time.Minute, d.pull("--branch", "main", "--api", "v2")...)
		wantCode(t, r, 0)
		d.check(t, mirrorOf(arts[:5]...), true)

		srv.RetireV2Artifacts(410)
		for _, api := range []string{"auto", "v3"} {
			srv.ResetStats()
			// --verify lists every job again: the first run marked them
			// finished, and a rerun would otherwise list nothing at all.
			r = runTool(t, d.env, time.Minute, d.pull("--branch", "main", "--api", api, "--verify")...)
			wantCode(t, r, 0)
			if n := srv.DownloadTotals().Started; n != 0 || srv.Requests("v3-artifacts") == 0 || !strings.Contains(r.stdout, "5 artifacts: 0 transferred") {
				t.Errorf("--api %s after v2: %d downloads, %d v3 listings:\n%s", api, n, srv.Requests("v3-artifacts"), r.stdout)
			}
		}
		d.check(t, mirrorOf(arts[:5]...), true)
	})

	t.Run("sunset passed", func(t *testing.T) {
		t.Parallel()
		w, _, _, _, arts := v3World()
		srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken, Notices: map[string]circlecitest.Notice{
			"artifacts": {Sunset: "Fri, 01 Jan 2021 00:00:00 GMT"},
		}})
		d := localDest(t, srv)
		r := runTool(t, d.env, time.Minute, d.pull("--branch", "main")...)
		wantCode(t, r, 0)
		d.check(t, mirrorOf(arts[:5]...), true)
		if n := countOf(r.stderr, switchLine); n != 1 || !strings.Contains(r.stderr, "to be removed on 2021-01-01") {
			t.Errorf("%d lines about API v3, want 1:\n%s", n, r.stderr)
		}
	})
}

// TestAPIV3EndToEnd: --api v3 lists by job UUID over cursor pages (five
// for the build job) whose first tries fail in every way the fake knows,
// and never asks API v2 for a listing; downloads redirected to storage
// carry no credential there.
func TestAPIV3EndToEnd(t *testing.T) {
	w := circlecitest.NewWorld()
	j := w.AddProject(slugArg, "main").AddPipeline("main").AddWorkflow("ci").AddJob("build", circlecitest.JobOptions{Parallelism: 3})
	var arts []*circlecitest.Artifact
	for i := range 9 {
		arts = append(arts, j.AddArtifact(i%3, fmt.Sprintf("out/f-%d.txt", i), int64(2000+i)))
	}
	faults := []circlecitest.Fault{
		circlecitest.StatusFault(500, ""), circlecitest.CutFault(40), circlecitest.StatusFault(429, "1"),
		circlecitest.TruncateFault(25), circlecitest.StatusFault(503, ""),
	}
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken, PageSize: 2, Redirect: true,
		Faults: func(c circlecitest.Call) circlecitest.Fault {
			switch {
			case c.Route == "v3-artifacts" && c.Attempt == 1:
				return faults[(c.Seq-1)%len(faults)]
			case c.Download && c.Attempt == 1 && c.Artifact.Node() == 1:
				return circlecitest.CutFault(100)
			}
			return circlecitest.Fault{}
		}})
	d := localDest(t, srv)
	r := runTool(t, d.env, 2*time.Minute, d.pull("--api", "v3")...)
	wantCode(t, r, 0)
	d.check(t, mirrorOf(arts...), true)
	if v2, v3 := srv.Requests("artifacts"), srv.Requests("v3-artifacts"); v2 != 0 || v3 != 10 {
		t.Errorf("%d v2 and %d v3 listing requests, want 0 and 10 (5 pages, each failed once)", v2, v3)
	}
	if l := srv.LeakedCredentials(); len(l) > 0 {
		t.Errorf("the storage host received credentials: %v", l)
	}
	wantVerified(t, d, len(arts))
}

// TestNoV3ReportsV2Error: where neither API v2's artifact listing nor API v3
// answers (a CircleCI Server without the v2 route), the v2 error is the
// one reported, and no move to v3 is claimed.
func TestNoV3ReportsV2Error(t *testing.T) {
	w, build, _, _, _ := v3World()
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken, V2ArtifactsGone: 404, NoV3: true})
	d := localDest(t, srv)
	r := runTool(t, d.env, time.Minute, d.pull("--job", fmt.Sprint(build.Number()), "--api", "auto")...)
	wantCode(t, r, 1) // a job whose listing failed
	want := fmt.Sprintf("GET /api/v2/project/gh/acme/widgets/%d/artifacts: 404 Not Found", build.Number())
	if !strings.Contains(r.stderr+r.stdout, want) || strings.Contains(r.stderr+r.stdout, "/api/v3/") || strings.Contains(r.stderr, switchLine) {
		t.Errorf("want the v2 error %q and no word of v3:\nstdout:\n%s\nstderr:\n%s", want, r.stdout, r.stderr)
	}
}

// TestDeprecationReportedOnce: CircleCI's Deprecation and Sunset headers,
// on however many answers, are reported once per endpoint at the end of
// the run, at warning level (so -q shows them), with dates and Link.
func TestDeprecationReportedOnce(t *testing.T) {
	w, _, _, _, _ := v3World()
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken, Notices: map[string]circlecitest.Notice{
		"artifacts": {Deprecation: "@1767225600", Sunset: "Wed, 01 Mar 2028 00:00:00 GMT", Link: `<https://circleci.com/changelog/v2-artifacts>; rel="sunset"`},
		"jobs":      {Deprecation: "true"},
	}})
	// A new destination for each pull: a rerun into the same one would
	// pass over the jobs the first marked finished, and list no artifacts.
	for _, args := range []func(d dest) []string{
		func(d dest) []string { return d.pull("--branch", "main") },
		func(d dest) []string { return d.pull("--branch", "main", "-q") },
		func(dest) []string { return []string{"list", slugArg, "--branch", "main"} },
	} {
		d := localDest(t, srv)
		args := args(d)
		r := runTool(t, d.env, time.Minute, args...)
		wantCode(t, r, 0)
		art := "CircleCI marks GET /api/v2/project/{project-slug}/{number}/artifacts as deprecated since 2026-01-01, for removal on 2028-03-01 (see <https://circleci.com/changelog/v2-artifacts>; rel=\\\"sunset\\\")"
		jobs := "CircleCI marks GET /api/v2/workflow/{id}/job as deprecated"
		if countOf(r.stderr, art) != 1 || countOf(r.stderr, jobs) != 1 || countOf(r.stderr, "level=WARN msg=\"CircleCI marks") != 2 {
			t.Errorf("%q: want each notice once, at warning level:\n%s", args, r.stderr)
		}
		if strings.Contains(r.stderr, switchLine) {
			t.Errorf("a Sunset still to come moved the run to API v3:\n%s", r.stderr)
		}
	}
}

// TestV3TokenRejected: a token API v3 rejects (its bare 401) is the same
// clear line and exit 2 as one API v2 rejects.
func TestV3TokenRejected(t *testing.T) {
	for _, tc := range []struct{ api, route string }{{"v2", "artifacts"}, {"v3", "v3-artifacts"}} {
		t.Run(tc.api, func(t *testing.T) {
			t.Parallel()
			w, build, _, _, _ := v3World()
			srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken, Faults: func(c circlecitest.Call) circlecitest.Fault {
				if c.Route == tc.route {
					return circlecitest.StatusFault(401, "")
				}
				return circlecitest.Fault{}
			}})
			d := localDest(t, srv)
			r := runTool(t, d.env, time.Minute, d.pull("--job", fmt.Sprint(build.Number()), "--api", tc.api)...)
			wantCode(t, r, 2)
			line := lastLine(r.stderr)
			if !strings.Contains(line, "401 Unauthorized: the CircleCI API token was rejected; create a new personal API token") {
				t.Errorf("--api %s: %s", tc.api, r.stderr)
			}
		})
	}
}
