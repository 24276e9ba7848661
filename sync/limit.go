package sync

import (
	"context"
	"iter"
	"time"

	"github.com/artifact-sync/artifact-sync/circleci"
)

// LimitAPI wraps api so that at most n requests are in flight at once across
// every goroutine that uses the result: CircleCI rate-limits bursts, so API
// concurrency is bounded separately from download concurrency. For listings
// the bound holds per page: a request slot is held only while the next item
// (and so, at a page boundary, the next page) is being fetched.
//
// A *circleci.Client bounds its own requests (LimitRequests), so that a
// job whose listing page has arrived hands its items over at once, without
// waiting for a slot per item behind other jobs' requests.
func LimitAPI(api API, n int) API {
	if n < 1 {
		n = 1
	}
	if c, ok := api.(*circleci.Client); ok {
		c.LimitRequests(n)
		return c
	}
	return &limitedAPI{api: api, sem: make(chan struct{}, n)}
}

type limitedAPI struct {
	api API
	sem chan struct{}
}

func (l *limitedAPI) acquire(ctx context.Context) error {
	select {
	case l.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l *limitedAPI) release() { <-l.sem }

func limitOne[T any](ctx context.Context, l *limitedAPI, f func() (T, error)) (T, error) {
	if err := l.acquire(ctx); err != nil {
		var zero T
		return zero, err
	}
	defer l.release()
	return f()
}

func limitSeq[T any](ctx context.Context, l *limitedAPI, seq iter.Seq2[T, error]) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		next, stop := iter.Pull2(seq)
		defer stop()
		for {
			if err := l.acquire(ctx); err != nil {
				var zero T
				yield(zero, err)
				return
			}
			v, err, ok := next()
			l.release()
			if !ok || !yield(v, err) || err != nil {
				return
			}
		}
	}
}

func (l *limitedAPI) Project(ctx context.Context, slug circleci.Slug) (*circleci.Project, error) {
	return limitOne(ctx, l, func() (*circleci.Project, error) { return l.api.Project(ctx, slug) })
}

func (l *limitedAPI) Pipelines(ctx context.Context, slug circleci.Slug, branch string) iter.Seq2[circleci.Pipeline, error] {
	return limitSeq(ctx, l, l.api.Pipelines(ctx, slug, branch))
}

func (l *limitedAPI) PipelinesSince(ctx context.Context, slug circleci.Slug, branch string, since time.Time) iter.Seq2[circleci.Pipeline, error] {
	return limitSeq(ctx, l, l.api.PipelinesSince(ctx, slug, branch, since))
}

func (l *limitedAPI) PipelineByNumber(ctx context.Context, slug circleci.Slug, number int64) (*circleci.Pipeline, error) {
	return limitOne(ctx, l, func() (*circleci.Pipeline, error) { return l.api.PipelineByNumber(ctx, slug, number) })
}

func (l *limitedAPI) Pipeline(ctx context.Context, id string) (*circleci.Pipeline, error) {
	return limitOne(ctx, l, func() (*circleci.Pipeline, error) { return l.api.Pipeline(ctx, id) })
}

func (l *limitedAPI) Workflows(ctx context.Context, pipelineID string) iter.Seq2[circleci.Workflow, error] {
	return limitSeq(ctx, l, l.api.Workflows(ctx, pipelineID))
}

func (l *limitedAPI) Workflow(ctx context.Context, id string) (*circleci.Workflow, error) {
	return limitOne(ctx, l, func() (*circleci.Workflow, error) { return l.api.Workflow(ctx, id) })
}

func (l *limitedAPI) WorkflowJobs(ctx context.Context, workflowID string) iter.Seq2[circleci.Job, error] {
	return limitSeq(ctx, l, l.api.WorkflowJobs(ctx, workflowID))
}

func (l *limitedAPI) JobDetails(ctx context.Context, slug circleci.Slug, number int64) (*circleci.JobDetails, error) {
	return limitOne(ctx, l, func() (*circleci.JobDetails, error) { return l.api.JobDetails(ctx, slug, number) })
}

func (l *limitedAPI) JobByID(ctx context.Context, id string) (*circleci.JobInfo, error) {
	return limitOne(ctx, l, func() (*circleci.JobInfo, error) { return l.api.JobByID(ctx, id) })
}

func (l *limitedAPI) Artifacts(ctx context.Context, slug circleci.Slug, jobNumber int64) iter.Seq2[circleci.Artifact, error] {
	return limitSeq(ctx, l, l.api.Artifacts(ctx, slug, jobNumber))
}
