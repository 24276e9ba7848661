// Package circleci is a client for the parts of the CircleCI API v2 that
// artifact-sync needs: the current user, projects, pipelines, workflows,
// workflow jobs, job details and job artifacts, plus the download of an
// artifact URL that the API returned.
//
// # Model
//
// A [Client] talks to <host>/api/v2, where the host is https://circleci.com
// or a CircleCI Server installation (which may itself sit under a path
// prefix). Every call takes a context first and may be used concurrently.
//
// Authentication is added by a wrapping [net/http.RoundTripper], never by the
// callers: the personal API token travels in the Circle-Token header, and
// only to the API's own scheme+host+port or to the artifact URL given to
// [Client.Download]. A redirect to any other scheme, host or port loses the
// token (and any Authorization or Cookie header) for the rest of the chain.
// The token is refused over plain http to a host that is not loopback, and
// it never appears in a URL, an error or a log line.
//
// List endpoints return [iter.Seq2] iterators that fetch one page at a time
// following next_page_token, so a caller never holds a whole listing. Each
// page is decoded as a stream, item by item.
//
// Responses are decoded leniently where real CircleCI responses are known to
// break the published OpenAPI schema: enums are plain strings (new values
// appear without notice), unknown fields are ignored, and the fields seen to
// be null or absent in practice are pointers (approval jobs without
// job_number and with a null started_at, legacy workflows with a null
// pipeline_number, null durations and revisions).
//
// # Errors and retries
//
// Every non-2xx answer becomes an [*Error], built in one place. It matches
// [ErrNotFound], [ErrUnauthorized], [ErrForbidden] and [ErrRateLimited] with
// [errors.Is]. [IsRetryable] and [RetryAfter] classify any error this package
// returns (and errors from reading a download body), so the sync engine
// applies the same rules to artifact transfers.
//
// The idempotent API GETs are retried here, with exponential backoff that
// honours Retry-After: on 429, on 5xx, on connection failures and on idle
// timeouts. Other 4xx answers are permanent. [Client.Download] never
// retries a failed request: the caller retries the whole transfer. It
// only waits out an outage of a download host that answered before and now
// refuses or drops every connection, for the same span and reported the
// same way as the API's, so that one host's outage is not each transfer's
// failure.
//
// Retries ride out an outage: while the API host is unavailable (refused
// or reset connections, timeouts, 502/503/504 from a gateway, 429) a call
// keeps trying for [RetryPolicy.MaxElapsed] (2 minutes by default), and the
// client reports each spell of trouble once when it begins and once when it
// ends ([Config.OnTrouble], a log line by default), however many calls
// wait. Other failures get a few quick tries ([RetryPolicy.Attempts]): a 500
// is the request's own trouble, and a host that has never answered this
// client is far more often a wrong --host than an outage (its error says to
// check --host). A call that runs out of retries says that it gave up,
// after how long, and what to do.
//
// A 429 is retried the same way, but it is not reported as trouble: it is
// the API setting the pace, and the whole client adapts to it. The client
// lowers its requests in flight, paces them and pauses them all for the
// Retry-After (or a backoff), then speeds up again as answers come back
// clean; RateLimit-* and X-RateLimit-* headers pace it before a 429 comes.
// See [Client].
//
// A request that fails below HTTP (refused, reset, closed early, stalled)
// fails with one line naming the API host or the download's host and what
// happened, never Go's bare "EOF" or "read tcp …"; the error still matches
// its cause with errors.Is and errors.As.
//
// # Limits
//
// A response is read through a size limit ([Limits]: 4 MiB for an object,
// 64 MiB for a page, where CircleCI sends about 1 MB for thousands of
// artifacts) and a listing stops after 5,000 pages or at a page token seen
// before, each with an error that says so: a misbehaving server or proxy
// cannot grow memory without end.

// # Timeouts
//
// There is no deadline on a whole request: a 3 GB artifact may take an hour.
// Instead every request has an idle timeout ([Config.IdleTimeout]): waiting
// for a connection or for response headers, or waiting inside a single Read
// of the body, longer than that abandons the request with an error that
// wraps [ErrIdleTimeout] and is retryable. Time the caller spends between
// Reads does not count, so a slow consumer is not mistaken for a stalled
// server.
package circleci
