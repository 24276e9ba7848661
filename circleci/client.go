package circleci

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	stdsync "sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Defaults for the zero values of [Config] and [RetryPolicy].
const (
	DefaultHost            = "https://circleci.com"
	DefaultUserAgent       = "artifact-sync"
	DefaultIdleTimeout     = 60 * time.Second
	DefaultMaxConns        = 64
	DefaultInitialInterval = 500 * time.Millisecond
	DefaultMaxInterval     = 10 * time.Second
	DefaultMaxElapsed      = 2 * time.Minute
	// DefaultAttempts is how often a call is tried when its failure is not
	// an outage (see RetryPolicy).
	DefaultAttempts = 5
	// DefaultMaxObjectBytes bounds a single object (a pipeline, job
	// details): real ones are a few KiB.
	DefaultMaxObjectBytes = 4 << 20
	// DefaultMaxPageBytes bounds one page of a list. CircleCI sends a
	// job's artifacts in one page, thousands of items, about 1 MB; 20,000
	// artifacts with long paths are around 6 MB.
	DefaultMaxPageBytes = 64 << 20
	// DefaultMaxPages bounds the pages of one listing: 100,000 pipelines
	// at CircleCI's 20 a page.
	DefaultMaxPages = 5000
)

// Config configures a [Client]. Zero values mean the documented defaults.
type Config struct {
	// Host is the CircleCI host, https://circleci.com by default; requests
	// go to <Host>/api/v2/... . It may carry a path prefix
	// (https://ci.example.com/circleci).
	Host string
	// Token is a personal API token. It is required.
	Token string
	// UserAgent is sent with every request; "artifact-sync" by default.
	UserAgent string
	// HTTPClient is the client to send requests with. Its transport is
	// wrapped (auth, idle timeout) and its redirect policy extended to drop
	// credentials on cross-origin redirects; the value itself is not
	// modified. It should have no Timeout: downloads may take hours. By
	// default a transport tuned for MaxConns connections per host is used.
	HTTPClient *http.Client
	// MaxConns is how many idle connections per host are kept for reuse; 64
	// by default. Ignored when HTTPClient is set.
	MaxConns int
	// Retry is the retry policy for API calls (not for Download).
	Retry RetryPolicy
	// IdleTimeout abandons a request that receives nothing for this long:
	// no connection, no response headers, or no body bytes while reading.
	// 60s by default. There is no limit on a request's total time.
	IdleTimeout time.Duration
	// Logger receives debug lines for each API request (method, path,
	// status, attempt), and the lines about trouble when OnTrouble is nil.
	// Never the token. Nil discards them.
	Logger *slog.Logger
	// OnTrouble is called when an outage begins (the host refuses or resets
	// connections, times out, answers 502, 503 or 504 to a client it
	// answered before) and again when a call succeeds after that: once per
	// spell of trouble, however many calls are waiting. Nil logs a warning
	// and, when it is over, an info line to Logger. A 429 is not trouble
	// but the API setting the pace (see [Client] on rate limits).
	OnTrouble func(Trouble)
	// Limits bound what the API may send.
	Limits Limits
}

// Limits bound the responses of the API, so that a misbehaving server or
// proxy cannot grow memory without end. Zero values mean the defaults.
type Limits struct {
	// ObjectBytes bounds the body of a single object; 4 MiB by default.
	ObjectBytes int64
	// PageBytes bounds the body of one page of a list; 64 MiB by default.
	PageBytes int64
	// Pages bounds the pages of one listing; 5,000 by default.
	Pages int
}

func (l Limits) withDefaults() Limits {
	if l.ObjectBytes <= 0 {
		l.ObjectBytes = DefaultMaxObjectBytes
	}
	if l.PageBytes <= 0 {
		l.PageBytes = DefaultMaxPageBytes
	}
	if l.Pages <= 0 {
		l.Pages = DefaultMaxPages
	}
	return l
}

// Trouble is a spell of outage of the API, or of a download host; see
// Config.OnTrouble.
type Trouble struct {
	// Host is the API host as configured, without /api/v2, or with
	// Download the download host (host:port).
	Host string
	// Download reports that the spell is a download host's: an artifact
	// host, or the storage host it redirects to.
	Download bool
	// Err is the failure that started the spell.
	Err error
	// RetryFor is how long each call keeps retrying (RetryPolicy.MaxElapsed).
	RetryFor time.Duration
	// Over reports that a call succeeded again, Lasted after the spell began.
	Over   bool
	Lasted time.Duration
}

// String says what is going on in one line, for a log.
func (t Trouble) String() string {
	if t.Download {
		if t.Over {
			return "download host " + t.Host + " answers again after " + roughly(t.Lasted).String() + "; transfers resume"
		}
		what := "failing"
		var ne *netError
		if errors.As(t.Err, &ne) {
			what = "unreachable (" + ne.cause + ")"
		}
		return "download host " + t.Host + " " + what + "; its transfers wait for up to " + t.RetryFor.String() + " for it to answer"
	}
	if t.Over {
		return "CircleCI API at " + t.Host + " answers again after " + roughly(t.Lasted).String() + " of trouble"
	}
	var what string
	var e *Error
	var ne *netError
	switch {
	case errors.As(t.Err, &e):
		what = "answers " + strconv.Itoa(e.StatusCode) + " " + http.StatusText(e.StatusCode)
	case errors.As(t.Err, &ne):
		what = "unreachable (" + ne.cause + ")"
	default:
		what = "failing (" + t.Err.Error() + ")"
	}
	return "CircleCI API at " + t.Host + " " + what + "; retrying for up to " + t.RetryFor.String()
}

// RetryPolicy bounds the retries of API calls. Zero values mean defaults.
//
// An outage, where the API host is unavailable rather than failing one
// request, is ridden out: refused or reset connections, timeouts, 502, 503
// and 504 from a gateway, 429 are retried for up to MaxElapsed. Other
// retryable failures get Attempts tries: a 500 or 408 is that request's own
// trouble (a listing CircleCI cannot produce fails alike for minutes), and
// a host that has never answered this client is most often a wrong --host,
// which should fail in seconds.
type RetryPolicy struct {
	// MaxElapsed is how long a call keeps retrying through an outage, from
	// its first try; 2m by default.
	MaxElapsed time.Duration
	// Attempts is the number of tries of a call whose failure is not an
	// outage; 5 by default.
	Attempts int
	// MaxAttempts, when positive, also caps the tries of every call. By
	// default only MaxElapsed does.
	MaxAttempts int
	// InitialInterval is the first backoff wait; 500ms by default.
	InitialInterval time.Duration
	// MaxInterval caps each backoff wait; 10s by default. A Retry-After
	// header may ask for longer, up to MaxRetryAfter.
	MaxInterval time.Duration
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.Attempts <= 0 {
		p.Attempts = DefaultAttempts
	}
	if p.InitialInterval <= 0 {
		p.InitialInterval = DefaultInitialInterval
	}
	if p.MaxInterval <= 0 {
		p.MaxInterval = DefaultMaxInterval
	}
	if p.MaxElapsed <= 0 {
		p.MaxElapsed = DefaultMaxElapsed
	}
	return p
}

// LimitRequests bounds the API requests in flight at once, across every
// goroutine using c, to n (n < 1: no bound); downloads are not counted. A
// slot is held for one request, not for a whole listing, so a job whose
// page has arrived never waits for other jobs' requests to hand its items
// over. The bound is a ceiling: the client goes below it while the API
// rate-limits it (see [Client] on rate limits), and a later call keeps
// what it has learned.
func (c *Client) LimitRequests(n int) {
	c.limiter.setCeiling(n)
}

// Client is a CircleCI API v2 client. It is safe for concurrent use.
//
// # Rate limits
//
// The client adapts its API requests to the API's rate limit as a whole:
// a 429 (with or without Retry-After) lowers the requests in flight and
// paces them, and pauses every request, not only the one that got it, for
// the Retry-After asked for or a backoff; clean answers speed it up again.
// RateLimit-* and X-RateLimit-* headers, when the API sends them, pace the
// requests before a 429 comes. The 429'd call itself is retried as any
// outage is (RetryPolicy.MaxElapsed). The first slowdown is reported once
// at info level to Config.Logger, the rest at debug level. Downloads are
// not limited: they go to other hosts.
type Client struct {
	base      *url.URL // <host>/api/v2, no trailing slash
	v3base    *url.URL // <host>/api/v3, no trailing slash
	token     string
	userAgent string
	hc        *http.Client
	retry     RetryPolicy
	limits    Limits
	logger    *slog.Logger
	onTrouble func(Trouble)

	// limiter bounds and paces the API requests (not downloads), and
	// adapts them to the API's rate limit.
	limiter *limiter

	// answered is set once the API host has sent any HTTP answer.
	answered atomic.Bool
	// downloadHosts follows the health of the download hosts.
	downloadHosts downloadHosts
	// troubleMu guards troubleSince, the start of the current spell of
	// trouble (zero when there is none), and lastOK, when a call last
	// succeeded.
	troubleMu    stdsync.Mutex
	troubleSince time.Time
	lastOK       time.Time

	// notices gathers the Deprecation and Sunset headers of the answers.
	notices notices

	// newTimer replaces the backoff wait in tests; nil means real time.
	// When it is set the limiter's waits pass at once too: time is the
	// test's.
	newTimer func() backoff.Timer
}

// New returns a client for cfg. It fails with [ErrNoToken] when there is no
// token and with [ErrInsecureHost] when Host is plain http to a non-loopback
// host.
func New(cfg Config) (*Client, error) {
	if strings.TrimSpace(cfg.Token) == "" {
		return nil, ErrNoToken
	}
	if strings.ContainsFunc(cfg.Token, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return nil, errors.New("circleci: the API token contains spaces or control characters")
	}
	host := cfg.Host
	if host == "" {
		host = DefaultHost
	}
	u, err := url.Parse(host)
	if err != nil {
		return nil, fmt.Errorf("circleci: invalid host %q: want a URL such as %s", host, DefaultHost)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil ||
		u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return nil, fmt.Errorf("circleci: invalid host %q: want an http(s) URL without credentials or query, such as %s", host, DefaultHost)
	}
	if err := checkInsecure(u); err != nil {
		return nil, err
	}
	base := &url.URL{Scheme: u.Scheme, Host: u.Host}
	prefix := strings.TrimRight(u.EscapedPath(), "/") + "/api/v2"
	if err := setEscapedPath(base, prefix); err != nil {
		return nil, fmt.Errorf("circleci: invalid host %q: %v", host, err)
	}
	v3base := &url.URL{Scheme: u.Scheme, Host: u.Host}
	if err := setEscapedPath(v3base, strings.TrimSuffix(prefix, "/api/v2")+"/api/v3"); err != nil {
		return nil, fmt.Errorf("circleci: invalid host %q: %v", host, err)
	}

	idle := cfg.IdleTimeout
	if idle <= 0 {
		idle = DefaultIdleTimeout
	}
	var hc http.Client
	if cfg.HTTPClient != nil {
		hc = *cfg.HTTPClient
	}
	rt := hc.Transport
	if rt == nil {
		if cfg.HTTPClient != nil {
			rt = http.DefaultTransport
		} else {
			maxConns := cfg.MaxConns
			if maxConns <= 0 {
				maxConns = DefaultMaxConns
			}
			rt = newTransport(maxConns, idle)
		}
	}
	hc.Transport = &authTransport{token: cfg.Token, next: &idleTransport{d: idle, next: &dialOnce{next: rt}}}
	hc.CheckRedirect = checkRedirect(hc.CheckRedirect)

	ua := cfg.UserAgent
	if ua == "" {
		ua = DefaultUserAgent
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c := &Client{
		base:      base,
		v3base:    v3base,
		token:     cfg.Token,
		userAgent: ua,
		hc:        &hc,
		retry:     cfg.Retry.withDefaults(),
		limits:    cfg.Limits.withDefaults(),
		logger:    logger,
		onTrouble: cfg.OnTrouble,
	}
	c.limiter = newLimiter(c.retry, func(msg string) {
		logger.Info("CircleCI API at " + c.host() + " " + msg)
	}, func(msg string, args ...any) {
		logger.Debug(msg, args...)
	})
	c.limiter.sleep = func(ctx context.Context, d time.Duration) error {
		if c.newTimer != nil {
			return ctx.Err()
		}
		return sleepCtx(ctx, d)
	}
	if c.onTrouble == nil {
		c.onTrouble = func(t Trouble) {
			if t.Over {
				logger.Info(t.String())
			} else {
				logger.Warn(t.String())
			}
		}
	}
	return c, nil
}

// setEscapedPath sets u's path from an escaped form, keeping RawPath so that
// an escaped "/" (%2F) inside a segment is sent as is.
func setEscapedPath(u *url.URL, escaped string) error {
	p, err := url.PathUnescape(escaped)
	if err != nil {
		return err
	}
	u.Path, u.RawPath = p, escaped
	return nil
}

// endpoint is an API call: its escaped path under /api/v2 (/api/v3 with
// v3) and query, and the project or job it is scoped to (for the 404
// message).
type endpoint struct {
	path    string
	query   url.Values
	project string
	job     string // a job's UUID
	v3      bool
	// more, when set, is asked after each page's items have been handed
	// over whether to fetch the next page (see listSince).
	more func() bool
}

// baseOf is where ep's path is rooted: <host>/api/v2 or <host>/api/v3.
func (c *Client) baseOf(ep endpoint) *url.URL {
	if ep.v3 {
		return c.v3base
	}
	return c.base
}

// get performs an idempotent GET with retries, handing a 2xx body, read
// through a limit of limit bytes, to decode. decode may be called once per
// attempt and must reset what it fills.
func (c *Client) get(ctx context.Context, ep endpoint, limit int64, decode func(io.Reader) error) error {
	u := *c.baseOf(ep)
	if err := setEscapedPath(&u, u.EscapedPath()+"/"+ep.path); err != nil {
		return fmt.Errorf("circleci: bad request path: %w", err)
	}
	u.RawQuery = ep.query.Encode()

	p := c.retry
	var (
		attempt    int
		retryAfter time.Duration
	)
	op := func() error {
		attempt++
		retryAfter = 0
		began := time.Now()
		slot, err := c.limiter.acquire(ctx)
		if err != nil {
			return backoff.Permanent(err)
		}
		err = c.getOnce(ctx, &u, ep, attempt, limit, decode)
		c.limiter.release(slot, err)
		if err == nil {
			c.troubleOver()
			return nil
		}
		if !IsRetryable(err) {
			return backoff.Permanent(err)
		}
		outage := c.answered.Load() && isOutage(err)
		if outage && !errors.Is(err, ErrRateLimited) {
			// A 429 is the limiter's to report: it is how the API sets
			// the pace, and comes and goes with every slowdown.
			c.troubleBegins(err, began)
		}
		if !outage && attempt >= p.Attempts || p.MaxAttempts > 0 && attempt >= p.MaxAttempts {
			return backoff.Permanent(err) // out of tries; still retryable, told apart below
		}
		retryAfter = RetryAfter(err)
		return err
	}
	eb := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(p.InitialInterval),
		backoff.WithMaxInterval(p.MaxInterval),
		backoff.WithMaxElapsedTime(0),
	)
	b := backoff.WithContext(&retryAfterBackOff{eb, &retryAfter, p.MaxElapsed}, ctx)
	notify := func(err error, wait time.Duration) {
		c.logger.DebugContext(ctx, "circleci retry", "path", u.EscapedPath(), "attempt", attempt, "wait", wait, "error", err)
	}
	var timer backoff.Timer
	if c.newTimer != nil {
		timer = c.newTimer()
	}
	start := time.Now()
	err := backoff.RetryNotifyWithTimer(op, b, notify, timer)
	if err == nil || ctx.Err() != nil || !IsRetryable(err) {
		return err
	}
	// Out of retries: say so, and what to do.
	var ne *netError
	if !c.answered.Load() && errors.As(err, &ne) {
		ne.subject = "cannot reach the CircleCI API at " + c.host()
		ne.hint = "check --host (or $CIRCLECI_HOST) and the network"
		return err
	}
	if p.MaxAttempts > 0 && attempt >= p.MaxAttempts || !isOutage(err) {
		return &gaveUpError{err: err, how: fmt.Sprintf("after %d attempts", attempt)}
	}
	return &gaveUpError{err: err, how: "after retrying for " + roughly(time.Since(start)).String()}
}

// roughly rounds d for a message: to the second, or to 10ms below one.
func roughly(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(time.Second)
	}
	return d.Round(10 * time.Millisecond)
}

// isOutage reports whether a retryable err says that the API host is
// unavailable, rather than that it failed this one request.
func isOutage(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return true // no answer at all: refused, reset, cut short, timed out
	}
	switch e.StatusCode {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// gaveUpError is the last error of a call that was retried until its limit.
type gaveUpError struct {
	err error
	how string // "after retrying for 2m0s"
}

func (e *gaveUpError) Error() string {
	return e.err.Error() + "; gave up " + e.how + ": run the same command again once the CircleCI API answers"
}

func (e *gaveUpError) Unwrap() error { return e.err }

// troubleBegins reports the start of a spell of trouble, unless one is
// already under way or the failed attempt began before a call last
// succeeded (it is news from before the API answered again).
func (c *Client) troubleBegins(err error, began time.Time) {
	c.troubleMu.Lock()
	first := c.troubleSince.IsZero() && !began.Before(c.lastOK)
	if first {
		c.troubleSince = time.Now()
	}
	c.troubleMu.Unlock()
	if first {
		c.onTrouble(Trouble{Host: c.host(), Err: err, RetryFor: c.retry.MaxElapsed})
	}
}

// troubleOver reports the end of a spell of trouble, if there is one.
func (c *Client) troubleOver() {
	c.troubleMu.Lock()
	since := c.troubleSince
	c.troubleSince = time.Time{}
	c.lastOK = time.Now()
	c.troubleMu.Unlock()
	if !since.IsZero() {
		c.onTrouble(Trouble{Host: c.host(), RetryFor: c.retry.MaxElapsed, Over: true, Lasted: time.Since(since)})
	}
}

// getOnce is one attempt of get.
func (c *Client) getOnce(ctx context.Context, u *url.URL, ep endpoint, attempt int, limit int64, decode func(io.Reader) error) error {
	scoped := withTokenScope(ctx, c.base)
	if ep.v3 {
		scoped = withBearer(scoped)
	}
	req, err := http.NewRequestWithContext(scoped, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	start := time.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		err = c.apiNetError(c.scrub(err))
		c.logger.DebugContext(ctx, "circleci request", "method", req.Method, "path", u.EscapedPath(), "attempt", attempt, "error", err)
		return err
	}
	c.answered.Store(true)
	c.limiter.observe(resp.Header)
	defer func() {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
	}()
	c.logger.DebugContext(ctx, "circleci request", "method", req.Method, "path", u.EscapedPath(),
		"status", resp.StatusCode, "attempt", attempt, "duration", time.Since(start))
	c.notices.note(resp.Header, c.route(u.EscapedPath()), time.Now())
	if err := checkResponse(resp, c.token); err != nil {
		var e *Error
		if errors.As(err, &e) && e.StatusCode == http.StatusNotFound {
			switch {
			case ep.query.Has("page-token"):
				e.hint = "the page token was rejected (expired or invalid); list again from the first page"
			case ep.job != "":
				e.hint = "no job " + ep.job + " (check the job ID), or the token cannot see its project"
			case ep.project != "" && strings.HasPrefix(e.Message, "Job not found"):
				e.hint = "no such job in " + ep.project + " (check the job number), or the token cannot see the project"
			case ep.project != "":
				e.hint = "project " + ep.project + " not found: renamed or deleted, or the token cannot see it " +
					"(CircleCI answers 404 for private projects the token cannot read)"
			}
		}
		return err
	}
	body := &limitedReader{r: resp.Body, n: limit}
	if err := decode(body); err != nil {
		switch {
		case body.over:
			return fmt.Errorf("CircleCI API at %s sent more than %s for GET %s, far more than CircleCI sends: "+
				"check that --host is the CircleCI API (not a proxy), or report it to its administrator", c.host(), sizeString(limit), u.EscapedPath())
		case netCause(err) != "":
			return c.apiNetError(err)
		}
		return c.scrub(fmt.Errorf("CircleCI API at %s sent a response to GET %s that is not the API's JSON (%s): "+
			"check that --host is the CircleCI API (not a proxy or login page)", c.host(), u.EscapedPath(), clean(err.Error())))
	}
	return nil
}

// scrub removes the query and any copy of the token from URLs that net/http
// puts in its errors (a signed redirect target, say).
func (c *Client) scrub(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		if u, perr := url.Parse(ue.URL); perr == nil {
			u.RawQuery, u.Fragment, u.User = "", "", nil
			ue.URL = u.String()
		} else {
			ue.URL = "(unparsable URL)"
		}
		ue.URL = redact(ue.URL, c.token)
	}
	if strings.Contains(err.Error(), c.token) {
		return &redactedError{msg: redact(err.Error(), c.token), err: err}
	}
	return err
}

// apiNetError says which API host failed and how, for an error below HTTP;
// other errors are returned as they are.
func (c *Client) apiNetError(err error) error {
	if cause := netCause(err); cause != "" {
		return &netError{subject: "CircleCI API at " + c.host(), cause: cause, err: err}
	}
	return err
}

// host is the API host as the user gave it, without /api/v2.
func (c *Client) host() string {
	return strings.TrimSuffix(c.base.String(), "/api/v2")
}

// limitedReader reads at most n bytes of r, then fails and sets over.
type limitedReader struct {
	r    io.Reader
	n    int64
	over bool
}

var errTooLarge = errors.New("response too large")

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		// One more byte tells a body of exactly n bytes from a longer one.
		var one [1]byte
		n, err := l.r.Read(one[:])
		if n > 0 {
			l.over = true
			return 0, errTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

// sizeString writes a byte count the way the limits are set: 4 MiB.
func sizeString(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + " MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + " KiB"
	}
	return strconv.FormatInt(n, 10) + " bytes"
}

// redactedError hides the token from an error's text while keeping its
// chain for errors.Is and errors.As.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// retryAfterBackOff waits as long as the server asked for when it did, and
// otherwise as the exponential policy says, until maxElapsed has passed
// since the first try. The last wait is cut short so that the last try
// comes at maxElapsed: a call retries for the whole span it promises.
type retryAfterBackOff struct {
	*backoff.ExponentialBackOff // without a MaxElapsedTime of its own
	retryAfter                  *time.Duration
	maxElapsed                  time.Duration
}

func (b *retryAfterBackOff) NextBackOff() time.Duration {
	left := b.maxElapsed - b.GetElapsedTime()
	next := b.ExponentialBackOff.NextBackOff()
	switch ra := *b.retryAfter; {
	case left <= 0:
		return backoff.Stop
	case ra > left:
		return backoff.Stop // the server asks for longer than the call retries
	case ra > 0:
		return ra
	}
	return min(next, left)
}

// getOne fetches a single object, decoding each attempt into a fresh value.
func getOne[T any](ctx context.Context, c *Client, ep endpoint) (*T, error) {
	var out *T
	err := c.get(ctx, ep, c.limits.ObjectBytes, func(r io.Reader) error {
		v := new(T)
		if err := json.NewDecoder(r).Decode(v); err != nil {
			if err == io.EOF {
				return io.ErrUnexpectedEOF
			}
			return err
		}
		out = v
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// list iterates over a paginated endpoint, fetching one page at a time and
// following next_page_token with the page-token parameter. An error ends
// the iteration after it is yielded.
func list[T any](ctx context.Context, c *Client, ep endpoint) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		var zero T
		token := ""
		seen := map[string]bool{}
		for pages := 1; ; pages++ {
			page := ep
			page.query = url.Values{}
			for k, v := range ep.query {
				page.query[k] = v
			}
			if token != "" {
				page.query.Set("page-token", token)
			}
			var items []T
			var next string
			err := c.get(ctx, page, c.limits.PageBytes, func(r io.Reader) error {
				items = items[:0]
				var err error
				next, err = decodePage(r, func(v T) { items = append(items, v) })
				return err
			})
			if err != nil {
				yield(zero, err)
				return
			}
			for _, it := range items {
				if !yield(it, nil) {
					return
				}
			}
			if next == "" || ep.more != nil && !ep.more() {
				return
			}
			if seen[next] {
				yield(zero, fmt.Errorf("CircleCI API at %s sent a page token for GET %s that it had sent before, so the listing would never end: "+
					"stopped; check that --host is the CircleCI API (not a proxy), or report it to its administrator", c.host(), c.base.EscapedPath()+"/"+ep.path))
				return
			}
			if pages >= c.limits.Pages {
				yield(zero, fmt.Errorf("CircleCI API at %s sent more than %d pages for GET %s: stopped; select fewer pipelines, "+
					"or check that --host is the CircleCI API (not a proxy)", c.host(), c.limits.Pages, c.base.EscapedPath()+"/"+ep.path))
				return
			}
			seen[next] = true
			token = next
		}
	}
}

// decodePage streams a {"items": [...], "next_page_token": ...} envelope,
// decoding one item at a time so the raw page is never held whole. A body
// cut short fails with io.ErrUnexpectedEOF, which is retryable.
func decodePage[T any](r io.Reader, each func(T)) (string, error) {
	next, err := decodeEnvelope(json.NewDecoder(r), each)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return next, err
}

// decodeArray decodes the array that is the value of field, one element at
// a time, handing each to each; null is an empty array.
func decodeArray[T any](dec *json.Decoder, field string, each func(T)) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok == nil {
		return nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return fmt.Errorf("%s is %v, not an array", field, tok)
	}
	for dec.More() {
		var v T
		if err := dec.Decode(&v); err != nil {
			return err
		}
		each(v)
	}
	return expectDelim(dec, ']')
}

func decodeEnvelope[T any](dec *json.Decoder, each func(T)) (next string, err error) {
	if err := expectDelim(dec, '{'); err != nil {
		return "", err
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return "", err
		}
		key, _ := tok.(string)
		switch key {
		case "items":
			if err := decodeArray(dec, key, each); err != nil {
				return "", err
			}
		case "next_page_token":
			var s *string
			if err := dec.Decode(&s); err != nil {
				return "", fmt.Errorf("next_page_token: %w", err)
			}
			if s != nil {
				next = *s
			}
		default:
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return "", err
			}
		}
	}
	return next, expectDelim(dec, '}')
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return fmt.Errorf("unexpected %v in response, want %v", tok, want)
	}
	return nil
}
