package circleci

import (
	"context"
	"errors"
	"iter"
	"net/url"
	"strconv"
)

// Me returns the user who owns the token. It is the cheapest way to check a
// token: a rejected one fails with an error matching [ErrUnauthorized].
func (c *Client) Me(ctx context.Context) (*User, error) {
	return getOne[User](ctx, c, endpoint{path: "me"})
}

// Project returns the project slug names. A project that does not exist or
// that the token cannot see fails with an error matching [ErrNotFound].
func (c *Client) Project(ctx context.Context, slug Slug) (*Project, error) {
	ep, err := projectEndpoint(slug)
	if err != nil {
		return nil, err
	}
	return getOne[Project](ctx, c, ep)
}

// Pipelines iterates over the project's pipelines, newest first, on branch
// (every branch when branch is ""). Pages are fetched as the iteration goes,
// so stop early to fetch less.
func (c *Client) Pipelines(ctx context.Context, slug Slug, branch string) iter.Seq2[Pipeline, error] {
	ep, err := projectEndpoint(slug, "pipeline")
	if err != nil {
		return failed[Pipeline](err)
	}
	if branch != "" {
		ep.query = url.Values{"branch": {branch}}
	}
	return list[Pipeline](ctx, c, ep)
}

// PipelineByNumber returns the project's pipeline number n.
func (c *Client) PipelineByNumber(ctx context.Context, slug Slug, n int64) (*Pipeline, error) {
	ep, err := projectEndpoint(slug, "pipeline", strconv.FormatInt(n, 10))
	if err != nil {
		return nil, err
	}
	return getOne[Pipeline](ctx, c, ep)
}

// Pipeline returns the pipeline with the given ID.
func (c *Client) Pipeline(ctx context.Context, id string) (*Pipeline, error) {
	if err := checkID("pipeline", id); err != nil {
		return nil, err
	}
	return getOne[Pipeline](ctx, c, endpoint{path: escapePath("pipeline", id)})
}

// Workflows iterates over the workflows of a pipeline. Right after a
// pipeline is triggered it may have none yet.
func (c *Client) Workflows(ctx context.Context, pipelineID string) iter.Seq2[Workflow, error] {
	if err := checkID("pipeline", pipelineID); err != nil {
		return failed[Workflow](err)
	}
	return list[Workflow](ctx, c, endpoint{path: escapePath("pipeline", pipelineID, "workflow")})
}

// Workflow returns the workflow with the given ID.
func (c *Client) Workflow(ctx context.Context, id string) (*Workflow, error) {
	if err := checkID("workflow", id); err != nil {
		return nil, err
	}
	return getOne[Workflow](ctx, c, endpoint{path: escapePath("workflow", id)})
}

// WorkflowJobs iterates over the jobs of a workflow, approval jobs included
// (they have no JobNumber).
func (c *Client) WorkflowJobs(ctx context.Context, workflowID string) iter.Seq2[Job, error] {
	if err := checkID("workflow", workflowID); err != nil {
		return failed[Job](err)
	}
	return list[Job](ctx, c, endpoint{path: escapePath("workflow", workflowID, "job")})
}

// JobDetails returns the details of the project's job number n.
func (c *Client) JobDetails(ctx context.Context, slug Slug, n int64) (*JobDetails, error) {
	ep, err := projectEndpoint(slug, "job", strconv.FormatInt(n, 10))
	if err != nil {
		return nil, err
	}
	return getOne[JobDetails](ctx, c, ep)
}

// Artifacts iterates over the artifacts of the project's job number
// jobNumber, one per file and node.
func (c *Client) Artifacts(ctx context.Context, slug Slug, jobNumber int64) iter.Seq2[Artifact, error] {
	ep, err := projectEndpoint(slug, strconv.FormatInt(jobNumber, 10), "artifacts")
	if err != nil {
		return failed[Artifact](err)
	}
	return list[Artifact](ctx, c, ep)
}

// projectEndpoint builds /project/<vcs>/<org>/<repo>/<rest...> with raw
// slashes between segments and each segment escaped.
func projectEndpoint(slug Slug, rest ...string) (endpoint, error) {
	segs, err := slug.pathSegments()
	if err != nil {
		return endpoint{}, err
	}
	all := append(append([]string{"project"}, segs...), rest...)
	return endpoint{path: escapePath(all...), project: slug.String()}, nil
}

// checkID refuses IDs that would change the request's route.
func checkID(kind, id string) error {
	if id == "" || id == "." || id == ".." {
		return errors.New("circleci: empty or invalid " + kind + " ID")
	}
	return nil
}

// failed is an iterator that yields err once.
func failed[T any](err error) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		var zero T
		yield(zero, err)
	}
}
