package sync

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"slices"
	stdsync "sync"
	"testing"

	"github.com/artifact-sync/artifact-sync/circleci"
)

// listAPI is a pipeline of jobs 1..jobs, each with artifacts on two nodes
// listed out of order. Job 1's listing ends only once every other job of
// the first window has been listed, so listings end out of order too.
type listAPI struct {
	API  // every method the tests do not expect panics (nil)
	jobs int
	fail int64 // the job whose listing fails; 0: none

	mu      stdsync.Mutex
	out     *bytes.Buffer // what List printed so far
	started []int64       // jobs whose listing began, in that order
	early   []int64       // jobs listed more than listAhead ahead of the one printed
	others  chan struct{} // closed when jobs 2..listAhead are listed
	ended   int
}

func newListAPI(jobs int) *listAPI {
	return &listAPI{jobs: jobs, out: new(bytes.Buffer), others: make(chan struct{})}
}

func (a *listAPI) PipelineByNumber(context.Context, circleci.Slug, int64) (*circleci.Pipeline, error) {
	return &circleci.Pipeline{ID: "p1", Number: 1}, nil
}

func (a *listAPI) Workflows(context.Context, string) iter.Seq2[circleci.Workflow, error] {
	return func(yield func(circleci.Workflow, error) bool) {
		yield(circleci.Workflow{ID: "w1", Name: "build"}, nil)
	}
}

func (a *listAPI) WorkflowJobs(context.Context, string) iter.Seq2[circleci.Job, error] {
	return func(yield func(circleci.Job, error) bool) {
		for n := int64(a.jobs); n >= 1; n-- { // newest first, as the API does
			if !yield(circleci.Job{Name: fmt.Sprint("job-", n), JobNumber: &n, Status: "success"}, nil) {
				return
			}
		}
	}
}

func (a *listAPI) Artifacts(ctx context.Context, _ circleci.Slug, job int64) iter.Seq2[circleci.Artifact, error] {
	return func(yield func(circleci.Artifact, error) bool) {
		a.mu.Lock()
		a.started = append(a.started, job)
		if job > listAhead && !a.printed(1) {
			a.early = append(a.early, job)
		}
		a.mu.Unlock()
		if job == 1 {
			select {
			case <-a.others:
			case <-ctx.Done():
				yield(circleci.Artifact{}, ctx.Err())
				return
			}
		}
		defer func() {
			a.mu.Lock()
			defer a.mu.Unlock()
			if job > 1 && job <= listAhead {
				if a.ended++; a.ended == min(a.jobs, listAhead)-1 {
					close(a.others)
				}
			}
		}()
		if job == a.fail {
			yield(circleci.Artifact{}, errors.New("listing broke"))
			return
		}
		for _, art := range []circleci.Artifact{
			{Path: "b.txt", NodeIndex: 1}, {Path: "a.txt", NodeIndex: 1},
			{Path: "b.txt", NodeIndex: 0}, {Path: "a.txt", NodeIndex: 0},
		} {
			art.URL = fmt.Sprintf("https://example.com/%d/%d/%s", job, art.NodeIndex, art.Path)
			if !yield(art, nil) {
				return
			}
		}
	}
}

// printed reports whether job's artifacts are in a.out. a.mu must be held.
func (a *listAPI) printed(job int64) bool {
	return bytes.Contains(a.out.Bytes(), fmt.Appendf(nil, `"job_number":%d,`, job))
}

// Write implements io.Writer for List's output.
func (a *listAPI) Write(p []byte) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.out.Write(p)
}

func listJSON(t *testing.T, a *listAPI) ([]string, error) {
	t.Helper()
	err := List(t.Context(), a, circleci.Slug{VCS: "gh", Org: "acme", Repo: "widgets"},
		&Selection{PipelineNumber: 1}, ListOptions{JSON: true, Out: a})
	var got []string
	sc := bufio.NewScanner(bytes.NewReader(a.out.Bytes()))
	for sc.Scan() {
		var art struct {
			JobNumber int64  `json:"job_number"`
			NodeIndex int64  `json:"node_index"`
			Path      string `json:"path"`
		}
		if jerr := json.Unmarshal(sc.Bytes(), &art); jerr != nil {
			t.Fatalf("line %q: %v", sc.Text(), jerr)
		}
		got = append(got, fmt.Sprintf("%d/%d/%s", art.JobNumber, art.NodeIndex, art.Path))
	}
	return got, err
}

func wantListed(jobs int, skip int64) []string {
	var want []string
	for j := int64(1); j <= int64(jobs); j++ {
		if j != skip {
			want = append(want, fmt.Sprintf("%d/0/a.txt", j), fmt.Sprintf("%d/0/b.txt", j), fmt.Sprintf("%d/1/a.txt", j), fmt.Sprintf("%d/1/b.txt", j))
		}
	}
	return want
}

// TestListStreamsInOrder: list prints every artifact sorted by job, node
// and path although the listings end out of order, and lists no job more
// than listAhead jobs ahead of the one it prints, so what waits to be
// printed stays a few jobs' worth however large the selection.
func TestListStreamsInOrder(t *testing.T) {
	a := newListAPI(5 * listAhead)
	got, err := listJSON(t, a)
	if err != nil {
		t.Fatal(err)
	}
	if want := wantListed(a.jobs, 0); !slices.Equal(got, want) {
		t.Errorf("list printed\n%q\nwant\n%q", got, want)
	}
	if len(a.early) > 0 {
		t.Errorf("jobs %v were listed while job 1, more than %d jobs before them, was not printed", a.early, listAhead)
	}
	if len(a.started) != a.jobs {
		t.Errorf("%d listings for %d jobs", len(a.started), a.jobs)
	}
}

// TestListGoesOnWhenAJobFails: the artifacts of every other job are printed,
// and the failed job is named in the error.
func TestListGoesOnWhenAJobFails(t *testing.T) {
	a := newListAPI(3 * listAhead)
	a.fail = 3
	got, err := listJSON(t, a)
	var le *ListingError
	if !errors.As(err, &le) || len(le.Jobs) != 1 || le.Jobs[0].JobNumber != 3 {
		t.Fatalf("List = %v, want a *ListingError naming job 3", err)
	}
	if want := wantListed(a.jobs, 3); !slices.Equal(got, want) {
		t.Errorf("list printed\n%q\nwant\n%q", got, want)
	}
}

// TestListStopsOnARejectedToken: a 401 on one listing stops them all.
func TestListStopsOnARejectedToken(t *testing.T) {
	a := &unauthorizedAPI{listAPI: newListAPI(3 * listAhead)}
	err := List(t.Context(), a, circleci.Slug{VCS: "gh", Org: "acme", Repo: "widgets"},
		&Selection{PipelineNumber: 1}, ListOptions{JSON: true, Out: new(bytes.Buffer)})
	if !errors.Is(err, circleci.ErrUnauthorized) {
		t.Fatalf("List = %v, want ErrUnauthorized", err)
	}
}

type unauthorizedAPI struct{ *listAPI }

func (a *unauthorizedAPI) Artifacts(ctx context.Context, _ circleci.Slug, job int64) iter.Seq2[circleci.Artifact, error] {
	return func(yield func(circleci.Artifact, error) bool) {
		if job == 2 {
			yield(circleci.Artifact{}, &circleci.Error{StatusCode: 401, Message: "token refused"})
			return
		}
		<-ctx.Done() // every other listing ends only when List gives up
		yield(circleci.Artifact{}, ctx.Err())
	}
}
