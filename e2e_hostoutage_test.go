package main

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
)

// TestDownloadHostOutageIsRiddenOut: the presigned-storage host goes away
// (connections refused, the open ones reset) while some 30 transfers from
// it are in flight. With the default --api-retry-for (2m) the run treats it
// as one host down, not each artifact as failed: its transfers wait, one
// line says so and one that it is back, and every artifact arrives
// byte-exact, exit 0. A host down for longer than --api-retry-for fails
// its artifacts with a sentence that names the host, says the run gave up
// and what to do, exit 1, soon after the budget.
func TestDownloadHostOutageIsRiddenOut(t *testing.T) {
	world := func() (*circlecitest.World, []*circlecitest.Artifact) {
		w := circlecitest.NewWorld()
		wf := w.AddProject(slugArg, "main").AddPipeline("main").AddWorkflow("build")
		var arts []*circlecitest.Artifact
		for j := range 2 {
			job := wf.AddJob(fmt.Sprintf("shard-%d", j), circlecitest.JobOptions{})
			for i := range 16 {
				arts = append(arts, job.AddArtifact(0, fmt.Sprintf("out/part-%02d.bin", i), 1<<20+int64(i)<<12))
			}
		}
		return w, arts
	}
	// pullDuringOutage starts a pull at -j 16 and takes the storage host
	// away for down once a few MiB have come from it, with transfers in
	// flight (1 MiB/s each).
	pullDuringOutage := func(t *testing.T, down time.Duration, args ...string) (e2eResult, *circlecitest.Server, []*circlecitest.Artifact, dest) {
		w, arts := world()
		srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken, Redirect: true, Bandwidth: 1 << 20})
		d := localDest(t, srv)
		p := startTool(t, d.env, d.pull(append([]string{"-j", "16"}, args...)...)...)
		if !p.waitUntil(func() bool { return srv.BytesServed() >= 4<<20 }) {
			t.Fatalf("the run ended before the outage:\n%s", p.stderr.String())
		}
		srv.Outage(circlecitest.HostStorage, circlecitest.OutageRefuse, down)
		return p.wait(3 * time.Minute), srv, arts, d
	}
	storageHost := func(srv *circlecitest.Server) string {
		u, err := url.Parse(srv.StorageURL)
		if err != nil {
			t.Fatal(err)
		}
		return u.Host
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
		host := regexp.QuoteMeta(storageHost(srv))
		waiting := regexp.MustCompile(`download host ` + host + ` unreachable \(connection (reset|refused)\); its transfers wait for up to 2m0s for it to answer`)
		if n := len(waiting.FindAllString(r.stderr, -1)); n != 1 {
			t.Errorf("%d lines say the run waits for the storage host, want 1:\n%s", n, r.stderr)
		}
		if n := len(regexp.MustCompile(`download host `+host+` answers again after`).FindAllString(r.stderr, -1)); n != 1 {
			t.Errorf("%d lines say the storage host is back, want 1:\n%s", n, r.stderr)
		}
		t.Logf("exit 0 after %s with a %s outage of the storage host", r.elapsed.Round(time.Millisecond), down)
	})

	t.Run("outage longer than --api-retry-for", func(t *testing.T) {
		t.Parallel()
		r, srv, _, _ := pullDuringOutage(t, time.Minute, "--api-retry-for", "3s", "--json")
		wantCode(t, r, 1)
		if r.elapsed > 40*time.Second {
			t.Errorf("gave up after %s, want soon after 3s", r.elapsed)
		}
		sum, err := parseChaosSummary(r.stdout)
		if err != nil || len(sum.Failures) == 0 {
			t.Fatalf("--json summary: %v, %d failures\nstdout:\n%s\nstderr:\n%s", err, len(sum.Failures), r.stdout, r.stderr)
		}
		want := regexp.MustCompile(`^download from ` + regexp.QuoteMeta(storageHost(srv)) +
			`: connection (refused|reset); gave up after the host did not answer for \d+s: run the same command again once it answers$`)
		for _, f := range sum.Failures {
			if !want.MatchString(f.Error) {
				t.Errorf("%s fails with %q, want it to match %s", f.Path, f.Error, want)
			}
		}
		if strings.Contains(r.stderr, "--host") {
			t.Errorf("blames --host for an outage of a download host:\n%s", r.stderr)
		}
		t.Logf("exit 1 after %s, %d failed: %s", r.elapsed.Round(time.Millisecond), len(sum.Failures), sum.Failures[0].Error)
	})
}
