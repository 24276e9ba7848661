package sync_test

import (
	"context"
	"errors"
	"iter"
	"sync/atomic"
	"testing"
	"time"

	"github.com/artifact-sync/artifact-sync/circleci"
	ccsync "github.com/artifact-sync/artifact-sync/sync"
)

// TestResolveWaitsForItsLookupsWhenAListingFails: when a page of pipelines
// fails while the jobs of an earlier pipeline are still being listed,
// Resolve returns the error only after those lookups have ended, so that
// yield is never called after it returned (Collect would start work on a
// group it has already waited for).
func TestResolveWaitsForItsLookupsWhenAListingFails(t *testing.T) {
	api := &pageFailsAPI{jobsListing: make(chan struct{}), jobsDone: make(chan struct{})}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var returned atomic.Bool
	var late atomic.Int32
	_, err := ccsync.Resolve(ctx, api, circleci.Slug{VCS: "gh", Org: "acme", Repo: "widgets"},
		&ccsync.Selection{Branch: "main", Pipelines: 2}, nil, func(ccsync.Job) {
			if returned.Load() {
				late.Add(1)
			}
		})
	returned.Store(true)
	if !errors.Is(err, errPage) {
		t.Fatalf("Resolve = %v, want the page's error", err)
	}
	// Whatever the caller does next (here: it gives up on its context),
	// the lookups Resolve started must be over already.
	cancel()
	select {
	case <-api.jobsDone:
	case <-time.After(10 * time.Second):
		t.Fatal("the job listing never ended")
	}
	if n := late.Load(); n > 0 {
		t.Errorf("yield was called %d times after Resolve returned", n)
	}
}

var errPage = errors.New("page 2 failed")

// pageFailsAPI lists one pipeline of one workflow, then fails the second
// page of pipelines once that workflow's jobs are being listed. The job
// listing answers when its context ends, as a listing with a page already in
// hand does.
type pageFailsAPI struct {
	ccsync.API                // every method the test does not expect panics (nil)
	jobsListing chan struct{} // closed once the job listing has begun
	jobsDone    chan struct{} // closed once the job listing has ended
}

func (a *pageFailsAPI) Pipelines(ctx context.Context, _ circleci.Slug, _ string) iter.Seq2[circleci.Pipeline, error] {
	return func(yield func(circleci.Pipeline, error) bool) {
		if !yield(circleci.Pipeline{ID: "p1", Number: 1}, nil) {
			return
		}
		<-a.jobsListing
		yield(circleci.Pipeline{}, errPage)
	}
}

func (a *pageFailsAPI) Workflows(ctx context.Context, _ string) iter.Seq2[circleci.Workflow, error] {
	return func(yield func(circleci.Workflow, error) bool) {
		yield(circleci.Workflow{ID: "w1", Name: "build"}, nil)
	}
}

func (a *pageFailsAPI) WorkflowJobs(ctx context.Context, _ string) iter.Seq2[circleci.Job, error] {
	return func(yield func(circleci.Job, error) bool) {
		defer close(a.jobsDone)
		close(a.jobsListing)
		<-ctx.Done()
		n := int64(7)
		yield(circleci.Job{Name: "test", Type: "build", Status: "success", JobNumber: &n}, nil)
	}
}
