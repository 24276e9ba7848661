package circlecitest_test

import (
	"fmt"
	"testing"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
)

// TestOnJobListing: a persistent fault on one job's listing leaves every
// other job's listing and the downloads alone.
func TestOnJobListing(t *testing.T) {
	w := circlecitest.NewWorld()
	wf := w.AddProject("gh/acme/widgets", "main").AddPipeline("main").AddWorkflow("build")
	var jobs []*circlecitest.Job
	for i := range 12 { // job numbers 1…12: 2 is a suffix of 12 and must not match
		j := wf.AddJob(fmt.Sprintf("job-%d", i), circlecitest.JobOptions{})
		j.AddArtifact(0, "a.txt", 10)
		jobs = append(jobs, j)
	}
	bad := jobs[1]
	if bad.Number() != 2 || jobs[11].Number() != 12 {
		t.Fatalf("job numbers %d and %d, want 2 and 12", bad.Number(), jobs[11].Number())
	}
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: token, PageSize: 1,
		Faults: circlecitest.OnJobListing(bad, circlecitest.Always(circlecitest.StatusFault(404, "")))})
	for attempt := range 3 {
		for _, j := range jobs {
			resp, _ := do(t, newReq(t, fmt.Sprintf("%s/api/v2/project/gh/acme/widgets/%d/artifacts", srv.URL, j.Number()), "Circle-Token", token))
			want := 200
			if j == bad {
				want = 404
			}
			if resp.StatusCode != want {
				t.Errorf("attempt %d: artifacts of job %d: %d, want %d", attempt+1, j.Number(), resp.StatusCode, want)
			}
		}
	}
	for _, j := range jobs {
		a := j.Artifacts()[0]
		if resp, _ := do(t, newReq(t, srv.ArtifactURLFor(a), "Circle-Token", token)); resp.StatusCode != 200 {
			t.Errorf("download of job %d's artifact: %d, want 200", j.Number(), resp.StatusCode)
		}
	}
}
