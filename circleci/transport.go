package circleci

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// tokenScopeKey marks a request's context with the origin (scheme://host:port)
// the token may go to. Only requests built by this package carry it.
type tokenScopeKey struct{}

func withTokenScope(ctx context.Context, u *url.URL) context.Context {
	return context.WithValue(ctx, tokenScopeKey{}, origin(u))
}

// origin returns scheme://host:port with the default port made explicit, so
// that https://h and https://h:443 compare equal.
func origin(u *url.URL) string {
	scheme := strings.ToLower(u.Scheme)
	host := strings.ToLower(u.Hostname())
	port := u.Port()
	if port == "" {
		switch scheme {
		case "http":
			port = "80"
		case "https":
			port = "443"
		}
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

// isLoopback reports whether host (without port) is localhost or a loopback IP.
func isLoopback(host string) bool {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkInsecure refuses a token over plain http to a non-loopback host.
func checkInsecure(u *url.URL) error {
	if strings.EqualFold(u.Scheme, "http") && !isLoopback(u.Hostname()) {
		return fmt.Errorf("%w (host %s)", ErrInsecureHost, u.Host)
	}
	return nil
}

// authTransport adds the token to requests whose context scope matches
// their origin: as Circle-Token, or as Authorization: Bearer for API v3. On a redirected hop it adds the token only if every
// hop of the chain so far stayed on that origin, so a token once dropped
// stays dropped.
type authTransport struct {
	token string
	next  http.RoundTripper
}

func (t *authTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !t.wantsToken(req) {
		return t.next.RoundTrip(req)
	}
	if err := checkInsecure(req.URL); err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	r := req.Clone(req.Context())
	if wantsBearer(req) {
		// API v3 takes the token as a Bearer credential; the header
		// goes where Circle-Token would, and checkRedirect drops it alike.
		r.Header.Set("Authorization", "Bearer "+t.token)
	} else {
		r.Header.Set("Circle-Token", t.token)
	}
	return t.next.RoundTrip(r)
}

// bearerKey marks a request's context for the token as Authorization:
// Bearer instead of Circle-Token (API v3).
type bearerKey struct{}

func withBearer(ctx context.Context) context.Context {
	return context.WithValue(ctx, bearerKey{}, true)
}

func wantsBearer(req *http.Request) bool {
	b, _ := req.Context().Value(bearerKey{}).(bool)
	return b
}

func (t *authTransport) wantsToken(req *http.Request) bool { return carriesToken(req) }

// carriesToken reports whether req is sent with the token: its context
// scope matches its origin and every hop of its redirect chain stayed there.
func carriesToken(req *http.Request) bool {
	scope, ok := req.Context().Value(tokenScopeKey{}).(string)
	if !ok || origin(req.URL) != scope {
		return false
	}
	for r := req; r.Response != nil && r.Response.Request != nil; {
		r = r.Response.Request
		if origin(r.URL) != scope {
			return false
		}
	}
	return true
}

// sensitiveHeaders never follow a redirect to another origin.
var sensitiveHeaders = []string{"Circle-Token", "Authorization", "Cookie", "Proxy-Authorization"}

// checkRedirect drops credentials once a redirect chain leaves the first
// request's origin (net/http only drops Authorization and Cookie, and only
// for another domain, not another port or scheme), then defers to next.
func checkRedirect(next func(*http.Request, []*http.Request) error) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		first := origin(via[0].URL)
		left := origin(req.URL) != first
		for _, v := range via {
			left = left || origin(v.URL) != first
		}
		if left {
			for _, h := range sensitiveHeaders {
				req.Header.Del(h)
			}
		}
		if next != nil {
			return next(req, via)
		}
		if len(via) >= 10 {
			return errors.New("circleci: stopped after 10 redirects")
		}
		return nil
	}
}

// errIdle is the cancellation cause set when the idle timer fires.
var errIdle = errors.New("idle timer fired")

// idleTransport abandons a request that receives nothing for d: while
// waiting for response headers, and while blocked in a Read of the body.
type idleTransport struct {
	d    time.Duration
	next http.RoundTripper
}

func (t *idleTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancelCause(req.Context())
	timer := time.AfterFunc(t.d, func() { cancel(errIdle) })
	resp, err := t.next.RoundTrip(req.WithContext(ctx))
	timer.Stop()
	if err != nil {
		var netErr net.Error
		// The transport's own dial, TLS and response-header timeouts are
		// the same condition as the idle timer firing.
		idle := errors.Is(context.Cause(ctx), errIdle) ||
			req.Context().Err() == nil && errors.As(err, &netErr) && netErr.Timeout()
		cancel(nil)
		if idle {
			return nil, &idleError{d: t.d}
		}
		return nil, err
	}
	resp.Body = &idleBody{rc: resp.Body, d: t.d, timer: timer, ctx: ctx, cancel: cancel}
	return resp, nil
}

// idleBody runs the idle timer only while the caller is blocked in Read, so
// a slow consumer does not count against the server.
type idleBody struct {
	rc     io.ReadCloser
	d      time.Duration
	timer  *time.Timer
	ctx    context.Context
	cancel context.CancelCauseFunc
	once   sync.Once
}

func (b *idleBody) Read(p []byte) (int, error) {
	b.timer.Reset(b.d)
	n, err := b.rc.Read(p)
	b.timer.Stop()
	if err != nil && err != io.EOF && errors.Is(context.Cause(b.ctx), errIdle) {
		return n, &idleError{d: b.d, body: true}
	}
	return n, err
}

func (b *idleBody) Close() error {
	b.timer.Stop()
	err := b.rc.Close()
	b.once.Do(func() { b.cancel(nil) })
	return err
}

// idleError is the error of a request abandoned by the idle timer; it
// matches ErrIdleTimeout.
type idleError struct {
	d    time.Duration
	body bool // in the middle of the body, not waiting for the answer
}

func (e *idleError) Error() string {
	return "circleci: " + e.cause()
}

func (e *idleError) Is(target error) bool { return target == ErrIdleTimeout }

// cause says what happened, for a one-line message, naming the timeout so
// that a user finds --idle-timeout.
func (e *idleError) cause() string {
	if e.body {
		return "idle timeout: no data for " + e.d.String() + " in the middle of a response"
	}
	return "idle timeout: no response within " + e.d.String()
}

// newTransport returns the default transport, tuned for many concurrent
// downloads from a few hosts.
//
// Every host keeps up to maxConns idle connections, and the limit across
// hosts leaves room for each host a pull talks to at once: the API, the
// artifact host and the storage host it redirects to (a fourth share for a
// second storage host), so that a redirected download finds a warm
// connection at both ends instead of one evicted for the other's sake. Over
// TLS, HTTP/2 is negotiated where the host offers it (ForceAttemptHTTP2:
// the custom dialer would otherwise turn it off), and then all requests to
// that host share one connection, dialed once (see dialOnce).
func newTransport(maxConns int, idle time.Duration) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	dialer := &net.Dialer{Timeout: idle, KeepAlive: 30 * time.Second}
	t.DialContext = dialer.DialContext
	t.TLSHandshakeTimeout = idle
	t.ResponseHeaderTimeout = idle
	t.MaxIdleConns = 4 * maxConns
	t.MaxIdleConnsPerHost = maxConns
	t.IdleConnTimeout = 90 * time.Second
	t.ForceAttemptHTTP2 = true
	// An HTTP/2 connection carries every transfer to its host. One whose
	// path has gone without a reset (a NAT or load balancer that forgot
	// it) would take each retry too, every one failing after a full idle
	// timeout, until TCP gives up many minutes later: a ping after half
	// the idle timeout without a frame, unanswered for as long again,
	// drops it, and the retries dial afresh.
	t.HTTP2 = &http.HTTP2Config{SendPingTimeout: idle / 2, PingTimeout: idle / 2}
	return t
}
