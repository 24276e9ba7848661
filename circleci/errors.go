package circleci

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"
)

// Sentinel errors matched by [*Error] through errors.Is.
var (
	// ErrNotFound matches a 404 answer. CircleCI also answers 404 for a
	// private project the token cannot read.
	ErrNotFound = errors.New("circleci: not found")
	// ErrUnauthorized matches a 401 answer: the token was rejected.
	ErrUnauthorized = errors.New("circleci: unauthorized")
	// ErrForbidden matches a 403 answer.
	ErrForbidden = errors.New("circleci: forbidden")
	// ErrRateLimited matches a 429 answer.
	ErrRateLimited = errors.New("circleci: rate limited")
)

// ErrNoToken is returned by [New] when Config.Token is empty. It is a usage
// error: the client never sends an empty or placeholder credential.
var ErrNoToken = errors.New("circleci: no API token: create a personal API token " +
	"(CircleCI → User Settings → Personal API Tokens) and pass it with --token or $CIRCLE_TOKEN")

// ErrInsecureHost is returned, before any connection is made, when the token
// would be sent over plain http to a host that is not loopback.
var ErrInsecureHost = errors.New("circleci: refusing to send the API token over plain http to a non-loopback host; use https")

// ErrIdleTimeout is wrapped by the error of a request that received nothing
// for Config.IdleTimeout: no connection, no response headers, or no body
// bytes during a Read. It is retryable.
var ErrIdleTimeout = errors.New("circleci: idle timeout")

// MaxRetryAfter caps the wait a Retry-After header can impose on a retry.
const MaxRetryAfter = 60 * time.Second

// maxMessage is how much of a plain-text error body makes it into Message.
const maxMessage = 200

// Error is the error for every non-2xx answer of the API or of an artifact
// download. Its text never holds the token, a query string or a signed URL.
type Error struct {
	// StatusCode is the HTTP status code.
	StatusCode int
	// Message is the server's explanation: the "message" or "error" field of
	// a JSON body (API v3's error envelope gives its detail, or its title),
	// or the start of a plain-text body. It may be empty.
	Message string
	// RetryAfter is the wait the server asked for in Retry-After (seconds or
	// an HTTP date), as sent; zero if absent. See [RetryAfter] for the
	// capped value.
	RetryAfter time.Duration
	// Method and Path identify the request: the escaped URL path, without
	// query. For a download that was redirected it is the last hop's path.
	Method, Path string

	// hint tells the user what the status most likely means and what to do.
	hint string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("circleci: ")
	if e.Method != "" || e.Path != "" {
		b.WriteString(e.Method)
		b.WriteString(" ")
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	fmt.Fprintf(&b, "%d %s", e.StatusCode, http.StatusText(e.StatusCode))
	if e.Message != "" && !strings.EqualFold(strings.TrimSuffix(e.Message, "."), http.StatusText(e.StatusCode)) {
		fmt.Fprintf(&b, " (%s)", e.Message)
	}
	if e.hint != "" {
		b.WriteString(": ")
		b.WriteString(e.hint)
	}
	if e.RetryAfter > 0 && e.retryable() {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	return b.String()
}

// Is reports whether e matches one of the sentinel errors of this package.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.StatusCode == http.StatusNotFound
	case ErrUnauthorized:
		return e.StatusCode == http.StatusUnauthorized
	case ErrForbidden:
		return e.StatusCode == http.StatusForbidden
	case ErrRateLimited:
		return e.StatusCode == http.StatusTooManyRequests
	}
	return false
}

func (e *Error) retryable() bool {
	return e.StatusCode == http.StatusTooManyRequests ||
		e.StatusCode == http.StatusRequestTimeout ||
		e.StatusCode >= 500 && e.StatusCode <= 599
}

// checkResponse returns nil for a 2xx response and an *Error otherwise,
// reading a bounded prefix of the body (the caller closes it). Any
// occurrence of secret in the message or path is masked.
func checkResponse(resp *http.Response, secret string) error {
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		return nil
	}
	e := &Error{StatusCode: resp.StatusCode}
	if req := resp.Request; req != nil {
		e.Method = req.Method
		if req.URL != nil {
			e.Path = redact(req.URL.EscapedPath(), secret)
		}
	}
	if resp.Body != nil {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<10))
		e.Message = redact(errorMessage(resp.Header.Get("Content-Type"), body), secret)
	}
	e.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	// Blame the token only where it was sent: a storage host that refuses a
	// signed URL (expired, or the object is gone) never saw it.
	sent := resp.Request != nil && carriesToken(resp.Request)
	switch {
	case resp.StatusCode == http.StatusUnauthorized && sent:
		e.hint = "the CircleCI API token was rejected; create a new personal API token " +
			"(CircleCI → User Settings → Personal API Tokens; project tokens do not work) " +
			"and pass it with --token or $CIRCLE_TOKEN"
	case resp.StatusCode == http.StatusForbidden && sent:
		e.hint = "the token is not allowed to read this; check that its user can see the project"
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		e.hint = "the storage host refused the download (its signed URL may have expired, or the object is gone); a later run asks CircleCI for a fresh one"
	}
	return e
}

// errorMessage extracts the explanation from an error body: JSON "message",
// then JSON "error", then the start of the text. HTML pages (from proxies)
// are left out.
func errorMessage(contentType string, body []byte) string {
	body = []byte(strings.TrimSpace(string(body)))
	if len(body) == 0 {
		return ""
	}
	var v struct {
		Message json.RawMessage `json:"message"`
		Error   json.RawMessage `json:"error"`
	}
	if json.Unmarshal(body, &v) == nil {
		for _, raw := range []json.RawMessage{v.Message, v.Error} {
			var s string
			if json.Unmarshal(raw, &s) == nil && strings.TrimSpace(s) != "" {
				return clean(s)
			}
		}
		// API v3's envelope: {"error": {"id", "title", "detail", ...}}.
		var env struct{ Title, Detail string }
		if json.Unmarshal(v.Error, &env) == nil {
			if m := cmp.Or(strings.TrimSpace(env.Detail), strings.TrimSpace(env.Title)); m != "" {
				return clean(m)
			}
		}
	}
	if mt, _, _ := mime.ParseMediaType(contentType); mt == "text/html" {
		return ""
	}
	return clean(string(body))
}

// clean makes s safe for a one-line message: control characters become
// spaces, runs of space collapse and the result is cut to maxMessage bytes
// on a rune boundary.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return ' '
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > maxMessage {
		cut := maxMessage
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// parseRetryAfter reads a Retry-After value given in seconds or as an HTTP
// date; it returns 0 when absent, malformed or in the past.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		if secs > int64(24*time.Hour/time.Second) {
			secs = int64(24 * time.Hour / time.Second)
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

// redact masks every occurrence of secret in s.
func redact(s, secret string) string {
	if secret == "" {
		return s
	}
	return strings.ReplaceAll(s, secret, "[REDACTED]")
}

// IsRetryable reports whether err is worth retrying: a 429, 408 or 5xx
// answer, a connection that failed or was reset, a body cut short, or an
// idle timeout. Context cancellation and deadlines are never retryable, nor
// are other 4xx answers, TLS certificate failures, usage errors or a
// download whose host was down for the whole outage budget.
func IsRetryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || isContextDeadline(err) {
		return false
	}
	var apiErr *Error
	if errors.As(err, &apiErr) {
		return apiErr.retryable()
	}
	if _, down := errors.AsType[*hostDownError](err); down {
		return false // waited for already, for the whole outage budget
	}
	if errors.Is(err, ErrIdleTimeout) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return true
	}
	if errors.Is(err, ErrInsecureHost) || errors.Is(err, ErrNoToken) {
		return false
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return dnsErr.IsTimeout || dnsErr.IsTemporary
	}
	for _, errno := range []error{syscall.ECONNRESET, syscall.ECONNREFUSED, syscall.ECONNABORTED, syscall.EPIPE, syscall.ETIMEDOUT} {
		if errors.Is(err, errno) {
			return true
		}
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		return true
	}
	if errors.Is(err, net.ErrClosed) {
		return true
	}
	if http2Cause(err) != "" || strings.Contains(err.Error(), "connection reset") {
		return true
	}
	var netErr net.Error
	return errors.As(err, &netErr) && netErr.Timeout()
}

// isContextDeadline reports whether context.DeadlineExceeded itself is in
// err's chain. errors.Is is not enough: net and net/http timeouts (a read
// deadline, a response-header timeout) also claim to be
// context.DeadlineExceeded, and those are worth retrying.
func isContextDeadline(err error) bool {
	for err != nil {
		if err == context.DeadlineExceeded {
			return true
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				if isContextDeadline(e) {
					return true
				}
			}
			return false
		default:
			return false
		}
	}
	return false
}

// RetryAfter returns how long the server asked to wait before retrying err,
// capped at [MaxRetryAfter]; zero when it did not say.
func RetryAfter(err error) time.Duration {
	var apiErr *Error
	if !errors.As(err, &apiErr) {
		return 0
	}
	return min(apiErr.RetryAfter, MaxRetryAfter)
}

// netError is a request that failed below HTTP (no connection, a reset, a
// response cut short, a stall), said in one line that names the host: no
// bare "EOF" or "read tcp …" reaches a user. It matches its cause
// (errors.Is/As), so [IsRetryable] classifies it like the cause.
type netError struct {
	subject string // who failed: "CircleCI API at https://circleci.com", "download from host"
	cause   string // what happened: "connection refused"
	hint    string // what to do; may be empty
	err     error
}

func (e *netError) Error() string {
	s := e.subject + ": " + e.cause
	if e.hint != "" {
		s += "; " + e.hint
	}
	return s
}

func (e *netError) Unwrap() error { return e.err }

// netCause says in a few words what went wrong with a request that failed
// below HTTP, or returns "" for an error that is not such a failure
// (cancellation among them, which the caller reports its own way).
func netCause(err error) string {
	var (
		idle *idleError
		dns  *net.DNSError
		cert *tls.CertificateVerificationError
		rec  tls.RecordHeaderError
		op   *net.OpError
		ne   net.Error
	)
	switch {
	case err == nil, errors.Is(err, context.Canceled), isContextDeadline(err):
		return ""
	case errors.As(err, &idle):
		return idle.cause()
	case errors.As(err, &dns):
		if dns.IsNotFound {
			return "the name " + dns.Name + " does not resolve"
		}
		return "looking up " + dns.Name + " failed (" + clean(dns.Err) + ")"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.ECONNABORTED), errors.Is(err, syscall.EPIPE), errors.Is(err, net.ErrClosed):
		return "connection closed"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "no route to the host"
	case errors.Is(err, syscall.ETIMEDOUT):
		return "connection timed out"
	case errors.As(err, &cert):
		return "its TLS certificate is not trusted (" + clean(cert.Err.Error()) + ")"
	case errors.As(err, &rec):
		return "it does not speak TLS (an http:// host given as https://?)"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed in the middle of a response"
	case errors.Is(err, io.EOF):
		return "connection closed before an answer"
	case http2Cause(err) != "":
		return http2Cause(err)
	case errors.As(err, &ne) && ne.Timeout():
		return "no answer in time"
	case errors.As(err, &op):
		return "connection failed (" + clean(op.Err.Error()) + ")"
	}
	return ""
}

// http2Failures are the errors of net/http's HTTP/2 client that end a
// request because its connection or its stream is gone, by the start of
// their text (their types are unexported), with what each means in a few
// words. They are what a reset or a cut connection is over HTTP/1.1, and
// retried alike: a retry takes another connection, the pool having dropped
// the one that failed. A connection lost over HTTP/2 fails every request
// it carried at once, with the first of these rather than a reset.
var http2Failures = []struct{ prefix, cause string }{
	{"http2: client connection force closed", "HTTP/2 connection lost"},
	{"http2: client connection lost", "HTTP/2 connection lost"},
	{"http2: client conn is closed", "HTTP/2 connection lost"},
	{"http2: client conn not usable", "HTTP/2 connection lost"},
	{"http2: client conn could not be established", "HTTP/2 connection could not be set up"},
	{"http2: server sent GOAWAY", "the server closed the HTTP/2 connection (GOAWAY)"},
	{"http2: Transport received Server's graceful shutdown GOAWAY", "the server closed the HTTP/2 connection (GOAWAY)"},
	{"http2: timeout awaiting response headers", "no answer in time"},
	{"stream error: ", "the server reset the HTTP/2 stream"},
	{"connection error: ", "HTTP/2 protocol error"},
}

// http2Cause says what an HTTP/2 failure of err's chain means, or "" if
// there is none. The chain is walked, since net/http's url.Error and this
// package's own wrappers put text before it.
func http2Cause(err error) string {
	for e := err; e != nil; {
		msg := e.Error()
		for _, f := range http2Failures {
			if strings.HasPrefix(msg, f.prefix) {
				return f.cause
			}
		}
		u, ok := e.(interface{ Unwrap() error })
		if !ok {
			break
		}
		e = u.Unwrap()
	}
	return ""
}
