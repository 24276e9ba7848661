package circleci

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Defaults for the zero values of [Config] and [RetryPolicy].
const (
	DefaultHost            = "https://circleci.com"
	DefaultUserAgent       = "artifact-sync"
	DefaultIdleTimeout     = 60 * time.Second
	DefaultMaxConns        = 64
	DefaultMaxAttempts     = 5
	DefaultInitialInterval = 500 * time.Millisecond
	DefaultMaxInterval     = 10 * time.Second
	DefaultMaxElapsed      = 2 * time.Minute
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
	// status, attempt). Never the token. Nil discards them.
	Logger *slog.Logger
}

// RetryPolicy bounds the retries of API calls. Zero values mean defaults.
type RetryPolicy struct {
	// MaxAttempts is the number of tries including the first; 5 by default.
	MaxAttempts int
	// InitialInterval is the first backoff wait; 500ms by default.
	InitialInterval time.Duration
	// MaxInterval caps each backoff wait; 10s by default. A Retry-After
	// header may ask for longer, up to MaxRetryAfter.
	MaxInterval time.Duration
	// MaxElapsed stops retrying once this much time has passed since the
	// first try; 2m by default.
	MaxElapsed time.Duration
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = DefaultMaxAttempts
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

// Client is a CircleCI API v2 client. It is safe for concurrent use.
type Client struct {
	base      *url.URL // <host>/api/v2, no trailing slash
	token     string
	userAgent string
	hc        *http.Client
	retry     RetryPolicy
	logger    *slog.Logger

	// newTimer replaces the backoff wait in tests; nil means real time.
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
	hc.Transport = &authTransport{token: cfg.Token, next: &idleTransport{d: idle, next: rt}}
	hc.CheckRedirect = checkRedirect(hc.CheckRedirect)

	ua := cfg.UserAgent
	if ua == "" {
		ua = DefaultUserAgent
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Client{
		base:      base,
		token:     cfg.Token,
		userAgent: ua,
		hc:        &hc,
		retry:     cfg.Retry.withDefaults(),
		logger:    logger,
	}, nil
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

// endpoint is an API call: its escaped path under /api/v2 and query, and
// the project it is scoped to (for the 404 message).
type endpoint struct {
	path    string
	query   url.Values
	project string
}

// get performs an idempotent GET with retries, handing a 2xx body to decode.
// decode may be called once per attempt and must reset what it fills.
func (c *Client) get(ctx context.Context, ep endpoint, decode func(io.Reader) error) error {
	u := *c.base
	if err := setEscapedPath(&u, c.base.EscapedPath()+"/"+ep.path); err != nil {
		return fmt.Errorf("circleci: bad request path: %w", err)
	}
	u.RawQuery = ep.query.Encode()

	var (
		attempt    int
		retryAfter time.Duration
	)
	op := func() error {
		attempt++
		retryAfter = 0
		err := c.getOnce(ctx, &u, ep, attempt, decode)
		if err == nil {
			return nil
		}
		if !IsRetryable(err) {
			return backoff.Permanent(err)
		}
		retryAfter = RetryAfter(err)
		return err
	}
	p := c.retry
	eb := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(p.InitialInterval),
		backoff.WithMaxInterval(p.MaxInterval),
		backoff.WithMaxElapsedTime(p.MaxElapsed),
	)
	b := backoff.WithContext(backoff.WithMaxRetries(&retryAfterBackOff{eb, &retryAfter}, uint64(p.MaxAttempts-1)), ctx)
	notify := func(err error, wait time.Duration) {
		c.logger.DebugContext(ctx, "circleci retry", "path", u.EscapedPath(), "attempt", attempt, "wait", wait, "error", err)
	}
	var timer backoff.Timer
	if c.newTimer != nil {
		timer = c.newTimer()
	}
	return backoff.RetryNotifyWithTimer(op, b, notify, timer)
}

// getOnce is one attempt of get.
func (c *Client) getOnce(ctx context.Context, u *url.URL, ep endpoint, attempt int, decode func(io.Reader) error) error {
	req, err := http.NewRequestWithContext(withTokenScope(ctx, c.base), http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	start := time.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		err = c.unreachable(c.scrub(err))
		c.logger.DebugContext(ctx, "circleci request", "method", req.Method, "path", u.EscapedPath(), "attempt", attempt, "error", err)
		return err
	}
	defer func() {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
	}()
	c.logger.DebugContext(ctx, "circleci request", "method", req.Method, "path", u.EscapedPath(),
		"status", resp.StatusCode, "attempt", attempt, "duration", time.Since(start))
	if err := checkResponse(resp, c.token); err != nil {
		var e *Error
		if errors.As(err, &e) && e.StatusCode == http.StatusNotFound {
			switch {
			case ep.query.Has("page-token"):
				e.hint = "the page token was rejected (expired or invalid); list again from the first page"
			case ep.project != "" && strings.HasPrefix(e.Message, "Job not found"):
				e.hint = "no such job in " + ep.project + " (check the job number), or the token cannot see the project"
			case ep.project != "":
				e.hint = "project " + ep.project + " not found or the token cannot see it " +
					"(CircleCI answers 404 for private projects the token cannot read)"
			}
		}
		return err
	}
	if err := decode(resp.Body); err != nil {
		return c.scrub(fmt.Errorf("circleci: decoding GET %s: %w", u.EscapedPath(), err))
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

// unreachable explains an error that got no connection to the API at all: a
// refused connection or a name that does not resolve is most often a wrong
// --host.
func (c *Client) unreachable(err error) error {
	var oe *net.OpError
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return &unreachableError{host: c.host(), cause: dns.Error(), err: err}
	}
	if errors.As(err, &oe) && oe.Op == "dial" {
		return &unreachableError{host: c.host(), cause: oe.Error(), err: err}
	}
	return err
}

// host is the API host as the user gave it, without /api/v2.
func (c *Client) host() string {
	return strings.TrimSuffix(c.base.String(), "/api/v2")
}

// unreachableError is one line saying which host could not be reached, why,
// and what to check; it matches what caused it (errors.Is/As).
type unreachableError struct {
	host, cause string
	err         error
}

func (e *unreachableError) Error() string {
	return "cannot reach the CircleCI API at " + e.host + ": " + e.cause + "; check --host (or $CIRCLECI_HOST) and the network"
}

func (e *unreachableError) Unwrap() error { return e.err }

// redactedError hides the token from an error's text while keeping its
// chain for errors.Is and errors.As.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// retryAfterBackOff waits as long as the server asked for when it did, and
// otherwise as the exponential policy says.
type retryAfterBackOff struct {
	*backoff.ExponentialBackOff
	retryAfter *time.Duration
}

func (b *retryAfterBackOff) NextBackOff() time.Duration {
	next := b.ExponentialBackOff.NextBackOff()
	if next == backoff.Stop {
		return next
	}
	if *b.retryAfter > 0 {
		return *b.retryAfter
	}
	return next
}

// getOne fetches a single object, decoding each attempt into a fresh value.
func getOne[T any](ctx context.Context, c *Client, ep endpoint) (*T, error) {
	var out *T
	err := c.get(ctx, ep, func(r io.Reader) error {
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
		for {
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
			err := c.get(ctx, page, func(r io.Reader) error {
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
			if next == "" {
				return
			}
			if seen[next] {
				yield(zero, fmt.Errorf("circleci: GET %s: the API returned a page token it had returned before; stopping", c.base.EscapedPath()+"/"+ep.path))
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
			tok, err := dec.Token()
			if err != nil {
				return "", err
			}
			if tok == nil { // "items": null
				continue
			}
			if d, ok := tok.(json.Delim); !ok || d != '[' {
				return "", fmt.Errorf("items is %v, not an array", tok)
			}
			for dec.More() {
				var v T
				if err := dec.Decode(&v); err != nil {
					return "", err
				}
				each(v)
			}
			if err := expectDelim(dec, ']'); err != nil {
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
