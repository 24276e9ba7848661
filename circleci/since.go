package circleci

import (
	"context"
	"iter"
	"net/url"
	"time"
)

// PipelinesSince iterates over the project's pipelines created at or after
// since, newest first, on branch (every branch when branch is "").
//
// The API lists pipelines newest first, so the listing stops after the
// first page that reaches back past since: the next page would hold only
// older ones. Within a page each pipeline is judged by its own created_at,
// so a page a little out of order loses nothing.
func (c *Client) PipelinesSince(ctx context.Context, slug Slug, branch string, since time.Time) iter.Seq2[Pipeline, error] {
	ep, err := projectEndpoint(slug, "pipeline")
	if err != nil {
		return failed[Pipeline](err)
	}
	if branch != "" {
		ep.query = url.Values{"branch": {branch}}
	}
	return listSince(ctx, c, ep, since, func(p Pipeline) time.Time { return p.CreatedAt })
}

// listSince is list for an endpoint that answers newest first: it yields
// the items created (by created) at or after since and fetches no page
// after one that held an older item.
func listSince[T any](ctx context.Context, c *Client, ep endpoint, since time.Time, created func(T) time.Time) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		older := false // whether the page being read held an item older than since
		page := ep
		page.more = func() bool {
			more := !older
			older = false
			return more
		}
		for v, err := range list[T](ctx, c, page) {
			if err != nil {
				yield(v, err)
				return
			}
			if created(v).Before(since) {
				older = true
				continue
			}
			if !yield(v, nil) {
				return
			}
		}
	}
}
