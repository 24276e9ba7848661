package sync_test

import (
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
	ccsync "github.com/artifact-sync/artifact-sync/sync"
)

// The API bound holds per request: a job whose listing page has arrived
// hands over its items while every request slot is taken by other jobs'
// requests, and the server never sees more requests at once than the bound.
func TestAPILimitHoldsPerRequestNotPerItem(t *testing.T) {
	w := circlecitest.NewWorld()
	wf := w.AddProject("gh/acme/widgets", "main").AddPipeline("main").AddWorkflow("build")
	var jobs []*circlecitest.Job
	for j := range 3 {
		job := wf.AddJob("job-"+strconv.Itoa(j), circlecitest.JobOptions{})
		for i := range 20 {
			job.AddArtifact(0, "f/"+strconv.Itoa(i), 1)
		}
		jobs = append(jobs, job)
	}
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: token, PageSize: 100})
	client := newClient(t, srv.URL)
	api := ccsync.LimitAPI(client, 2)

	release := make(chan struct{})
	var held atomic.Int32
	listing := func(j *circlecitest.Job) string { return "/" + strconv.FormatInt(j.Number(), 10) + "/artifacts?" }
	srv.SetFaults(func(c circlecitest.Call) circlecitest.Fault {
		if c.Route == "artifacts" && (strings.Contains(c.Key, listing(jobs[1])) || strings.Contains(c.Key, listing(jobs[2]))) {
			held.Add(1)
			select {
			case <-release:
			case <-time.After(20 * time.Second):
			}
		}
		return circlecitest.Fault{}
	})
	defer close(release)

	// Job 0's page arrives; then jobs 1 and 2 take both request slots.
	seq := api.Artifacts(t.Context(), slug, jobs[0].Number())
	var got atomic.Int32
	done := make(chan struct{})
	for _, err := range seq {
		if err != nil {
			t.Fatal(err)
		}
		if got.Add(1) == 1 {
			for _, j := range jobs[1:] {
				go func() {
					for range api.Artifacts(t.Context(), slug, j.Number()) {
					}
				}()
			}
			for deadline := time.Now().Add(10 * time.Second); held.Load() < 2 && time.Now().Before(deadline); {
				time.Sleep(5 * time.Millisecond)
			}
			if held.Load() < 2 {
				t.Fatal("the other jobs' listings never reached the server")
			}
			go func() {
				select {
				case <-done:
				case <-time.After(5 * time.Second):
					t.Errorf("job 0's items waited for a request slot while its page had arrived (%d of 20 handed over)", got.Load())
					release <- struct{}{} // unblock one, to end the test
				}
			}()
		}
	}
	close(done)
	if n := got.Load(); n != 20 {
		t.Errorf("job 0 listed %d artifacts, want 20", n)
	}
	if peak := srv.PeakConcurrentAPI(); peak > 2 {
		t.Errorf("%d API requests in flight at once; the bound is 2", peak)
	}
}
