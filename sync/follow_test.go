package sync

import (
	"slices"
	"testing"

	"github.com/artifact-sync/artifact-sync/circleci"
)

// TestWorthWaiting: --follow waits for the jobs that will finish, and not
// for the job running the tool, approvals on hold or the jobs behind them
// or behind a job that failed.
func TestWorthWaiting(t *testing.T) {
	job := func(id, typ, status string, deps ...string) circleci.Job {
		return circleci.Job{ID: id, Name: id, Type: typ, Status: status, Dependencies: deps}
	}
	jobs := []circleci.Job{
		job("build", "build", "success"),
		job("test", "build", "running", "build"),
		job("queued", "build", "queued", "build"),
		job("after-test", "build", "blocked", "test"),
		job("self", "build", "running", "build"),
		job("after-self", "build", "blocked", "self"),
		job("hold", "approval", "on_hold", "build"),
		job("deploy", "build", "blocked", "hold", "test"),
		job("lint", "build", "failed"),
		job("after-lint", "build", "blocked", "lint"),
		job("loop-a", "build", "blocked", "loop-b"),
		job("loop-b", "build", "blocked", "loop-a"),
	}
	var got []string
	for _, j := range worthWaiting(jobs, "self") {
		got = append(got, j.Name)
	}
	want := []string{"test", "queued", "after-test", "loop-a", "loop-b"}
	if !slices.Equal(got, want) {
		t.Errorf("waits for %q, want %q", got, want)
	}
}
