package main

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
)

// TestAPIOutageIsRiddenOut: the CircleCI API goes away for 20 seconds
// (connections refused, as when its load balancer is down) while a pull is
// listing the jobs of a workflow. With the default --api-retry-for the run
// waits, says once that it is waiting and once that the API is back, and
// completes with every artifact; an outage longer than --api-retry-for ends
// the run with exit 1 and a line saying it gave up, after how long, and what
// to do, without blaming --host for a host that answered.
func TestAPIOutageIsRiddenOut(t *testing.T) {
	world := func() (*circlecitest.World, string, []*circlecitest.Artifact) {
		w := circlecitest.NewWorld()
		wf := w.AddProject(slugArg, "main").AddPipeline("main").AddWorkflow("build")
		var arts []*circlecitest.Artifact
		for i := range 30 {
			j := wf.AddJob(fmt.Sprintf("shard-%02d", i), circlecitest.JobOptions{})
			arts = append(arts, j.AddArtifact(0, "out/report.txt", 1000))
		}
		return w, wf.ID(), arts
	}
	// pullDuringOutage starts a pull and takes the API away for down as
	// soon as the run lists the workflow's jobs (two to a page).
	pullDuringOutage := func(t *testing.T, down time.Duration, args ...string) (e2eResult, *circlecitest.Server, []*circlecitest.Artifact, dest) {
		w, wfID, arts := world()
		srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken, PageSize: 2, Latency: 10 * time.Millisecond})
		d := localDest(t, srv)
		p := startTool(t, d.env, d.pull(append([]string{"--workflow", wfID}, args...)...)...)
		if !p.waitUntil(func() bool { return srv.Requests("jobs") > 0 }) {
			t.Fatalf("the run ended before listing jobs:\n%s", p.stderr.String())
		}
		srv.Outage(circlecitest.HostAPI, circlecitest.OutageRefuse, down)
		return p.wait(3 * time.Minute), srv, arts, d
	}

	t.Run("20s outage", func(t *testing.T) {
		t.Parallel()
		const down = 20 * time.Second
		r, srv, arts, d := pullDuringOutage(t, down)
		wantCode(t, r, 0)
		d.check(t, mirrorOf(arts...), true)
		if r.elapsed < down {
			t.Errorf("done after %s, within the outage", r.elapsed)
		}
		// The requests in flight are reset, the next ones refused.
		waiting := regexp.MustCompile(`CircleCI API at ` + regexp.QuoteMeta(srv.URL) + ` unreachable \(connection (reset|refused)\); retrying for up to 2m0s`)
		if n := len(waiting.FindAllString(r.stderr, -1)); n != 1 {
			t.Errorf("%d lines say the run waits for the API, want 1:\n%s", n, r.stderr)
		}
		if !strings.Contains(r.stderr, "CircleCI API at "+srv.URL+" answers again after") {
			t.Errorf("no line says the API is back:\n%s", r.stderr)
		}
		t.Logf("exit 0 after %s with a %s outage", r.elapsed.Round(time.Millisecond), down)
	})

	t.Run("outage longer than --api-retry-for", func(t *testing.T) {
		t.Parallel()
		r, srv, _, _ := pullDuringOutage(t, time.Minute, "--api-retry-for", "3s")
		wantCode(t, r, 1)
		if r.elapsed > 30*time.Second {
			t.Errorf("gave up after %s, want about 3s", r.elapsed)
		}
		for _, want := range []string{"CircleCI API at " + srv.URL + ": connection refused; gave up after retrying for", "run the same command again"} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("stderr does not say %q:\n%s", want, r.stderr)
			}
		}
		if strings.Contains(r.stderr, "--host") {
			t.Errorf("blames --host for an outage of a host that answered:\n%s", r.stderr)
		}
		t.Logf("exit 1 after %s: %s", r.elapsed.Round(time.Millisecond), lastLine(r.stderr))
	})
}
