package circleci

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func TestErrorBodies(t *testing.T) {
	tests := []struct {
		name        string
		contentType string
		body        string
		want        string
	}{
		{"message", "application/json", `{"message":"Project not found"}`, "Project not found"},
		{"error", "application/json", `{"error":"Invalid request body."}`, "Invalid request body."},
		{"message wins over error", "application/json", `{"error":"e","message":"m"}`, "m"},
		{"empty message falls back to error", "application/json", `{"message":"","error":"e"}`, "e"},
		{"plain text", "text/plain", "Rate limited.\n", "Rate limited."},
		{"json without known fields", "application/json", `{"code":7}`, `{"code":7}`},
		{"empty", "", "", ""},
		{"html page is left out", "text/html; charset=utf-8", "<html><body>502 Bad Gateway</body></html>", ""},
		{"long text is cut", "text/plain", strings.Repeat("é", 300), strings.Repeat("é", 100) + "…"},
		{"control characters", "text/plain", "line one\r\nline\x00two", "line one line two"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				if tt.contentType != "" {
					w.Header().Set("Content-Type", tt.contentType)
				}
				w.WriteHeader(http.StatusBadRequest)
				io.WriteString(w, tt.body)
			})
			_, err := newClient(t, srv).Me(t.Context())
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v (%T) is not an *Error", err, err)
			}
			if e.Message != tt.want {
				t.Errorf("Message = %q, want %q", e.Message, tt.want)
			}
			if e.StatusCode != 400 || e.Method != "GET" || e.Path != apiPath("me") {
				t.Errorf("error = %+v", e)
			}
			if !strings.Contains(err.Error(), "400 Bad Request") {
				t.Errorf("Error() = %q lacks the status", err)
			}
		})
	}
}

func TestStatusHandling(t *testing.T) {
	slug := Slug{"gh", "acme", "private-repo"}
	tests := []struct {
		name      string
		status    []int // answers in order; the last repeats
		body      string
		sentinel  error
		wantCalls int32
		wantText  []string
		retryable bool
	}{
		{name: "401", status: []int{401}, body: `{"message":"Invalid token provided."}`, sentinel: ErrUnauthorized,
			wantCalls: 1, wantText: []string{"401 Unauthorized", "Invalid token provided.", "personal API token"}},
		{name: "403", status: []int{403}, body: `{"message":"Permission denied."}`, sentinel: ErrForbidden,
			wantCalls: 1, wantText: []string{"403 Forbidden", "Permission denied."}},
		{name: "404 project", status: []int{404}, body: `{"message":"Project not found"}`, sentinel: ErrNotFound, wantCalls: 1,
			wantText: []string{"project gh/acme/private-repo not found: renamed or deleted, or the token cannot see it", "CircleCI answers 404 for private projects"}},
		{name: "400", status: []int{400}, body: `{"message":"bad"}`, wantCalls: 1, wantText: []string{"400 Bad Request (bad)"}},
		{name: "429 then ok", status: []int{429, 200}, body: "Rate limited.", wantCalls: 2},
		{name: "500 then ok", status: []int{500, 200}, body: `{"message":"Internal server error."}`, wantCalls: 2},
		{name: "502 twice then ok", status: []int{502, 503, 200}, wantCalls: 3},
		{name: "500 always", status: []int{500}, body: `{"message":"Internal server error."}`, wantCalls: 5,
			wantText: []string{"500 Internal Server Error", "gave up after 5 attempts", "run the same command again"}, retryable: true},
		{name: "429 always", status: []int{429}, body: "Rate limited.", sentinel: ErrRateLimited, wantCalls: 5,
			wantText: []string{"429 Too Many Requests (Rate limited.)", "gave up after 5 attempts"}, retryable: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int32
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				n := int(calls.Add(1))
				status := tt.status[min(n, len(tt.status))-1]
				w.WriteHeader(status)
				if status == 200 {
					io.WriteString(w, `{"slug":"gh/acme/private-repo","vcs_info":{"default_branch":"main"}}`)
					return
				}
				io.WriteString(w, tt.body)
			})
			p, err := newClient(t, srv).Project(t.Context(), slug)
			if calls.Load() != tt.wantCalls {
				t.Errorf("%d requests, want %d", calls.Load(), tt.wantCalls)
			}
			if tt.wantText == nil {
				if err != nil || p.VCSInfo.DefaultBranch != "main" {
					t.Fatalf("Project = %+v, %v", p, err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			if tt.sentinel != nil && !errors.Is(err, tt.sentinel) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.sentinel)
			}
			for _, s := range tt.wantText {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q lacks %q", err, s)
				}
			}
			if IsRetryable(err) != tt.retryable {
				t.Errorf("IsRetryable = %v, want %v", IsRetryable(err), tt.retryable)
			}
		})
	}
}

func TestRetryAfter(t *testing.T) {
	tests := []struct {
		name   string
		header func() string
		min    time.Duration
		max    time.Duration
	}{
		{"seconds", func() string { return "7" }, 7 * time.Second, 7 * time.Second},
		{"HTTP date", func() string { return time.Now().Add(30 * time.Second).UTC().Format(http.TimeFormat) }, 28 * time.Second, 30 * time.Second},
		{"capped", func() string { return "3600" }, MaxRetryAfter, MaxRetryAfter},
		{"date in the past means backoff", func() string { return "Mon, 02 Jan 2006 15:04:05 GMT" }, time.Millisecond / 2, 10 * time.Millisecond},
		{"garbage means backoff", func() string { return "soon" }, time.Millisecond / 2, 10 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int32
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				if calls.Add(1) == 1 {
					w.Header().Set("Retry-After", tt.header())
					w.WriteHeader(http.StatusTooManyRequests)
					io.WriteString(w, "Rate limited.")
					return
				}
				io.WriteString(w, `{"login":"me"}`)
			})
			c := newClient(t, srv)
			rec := &recordingTimer{}
			c.newTimer = rec.newTimer
			if _, err := c.Me(t.Context()); err != nil {
				t.Fatal(err)
			}
			waits := rec.Waits()
			if len(waits) != 1 || waits[0] < tt.min || waits[0] > tt.max {
				t.Errorf("waits = %v, want one in [%s, %s]", waits, tt.min, tt.max)
			}
		})
	}
}

// TestRetryAfterWallClock checks the real wait, not just the computed one.
func TestRetryAfterWallClock(t *testing.T) {
	var calls atomic.Int32
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, `{"login":"me"}`)
	})
	start := time.Now()
	if _, err := newClient(t, srv).Me(t.Context()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 900*time.Millisecond || d > 5*time.Second {
		t.Errorf("took %s, want about 1s", d)
	}
}

func TestCancelDuringRetryWait(t *testing.T) {
	first := make(chan struct{})
	var calls atomic.Int32
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			close(first)
		}
		w.Header().Set("Retry-After", "30")
		w.WriteHeader(http.StatusTooManyRequests)
	})
	c := newClient(t, srv)
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		<-first
		time.Sleep(50 * time.Millisecond)
		cancel()
	}()
	start := time.Now()
	_, err := c.Me(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("returned after %s, want promptly", d)
	}
	if IsRetryable(err) {
		t.Error("a cancelled call is retryable")
	}
	if calls.Load() != 1 {
		t.Errorf("%d requests, want 1", calls.Load())
	}
}

func TestCancelDuringRequest(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	arrived := make(chan struct{}, 1)
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	c := newClient(t, srv)
	ctx, cancel := context.WithCancel(t.Context())
	go func() { <-arrived; cancel() }()
	_, err := c.Me(ctx)
	if !errors.Is(err, context.Canceled) || IsRetryable(err) {
		t.Errorf("error = %v, want context.Canceled, not retryable", err)
	}
}

// TestTokenNeverInErrors: servers echo the token back in bodies and URLs;
// no error text may contain it.
func TestTokenNeverInErrors(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		tok := r.Header.Get("Circle-Token")
		switch {
		case strings.HasSuffix(r.URL.Path, "/json"):
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprintf(w, `{"message":"token %s is not valid"}`, tok)
		case strings.HasSuffix(r.URL.Path, "/text"):
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, "bad token: %s", tok)
		case strings.HasSuffix(r.URL.Path, "/redirect"):
			// Send the client to a closed port with the token in the URL.
			http.Redirect(w, r, "http://127.0.0.1:1/"+tok+"?circle-token="+tok+"&X-Amz-Signature=abc", http.StatusFound)
		case strings.HasSuffix(r.URL.Path, "/in-path/"+tok):
			w.WriteHeader(http.StatusNotFound)
		default:
			http.Redirect(w, r, prefix+"/api/v2/in-path/"+tok, http.StatusFound)
		}
	})
	c := newClient(t, srv, func(cfg *Config) { cfg.Retry.MaxAttempts = 1 })
	for _, p := range []string{"json", "text", "redirect", "echo"} {
		_, err := c.Workflow(t.Context(), p)
		if err == nil {
			t.Fatalf("%s: no error", p)
		}
		assertNoToken(t, p+" error", err.Error())
		if strings.Contains(err.Error(), "X-Amz-Signature") {
			t.Errorf("%s: error holds a query string: %v", p, err)
		}
		for _, err := range c.Workflows(t.Context(), p) {
			if err != nil {
				assertNoToken(t, p+" list error", err.Error())
			}
		}
	}
	// The same through Download, whose URL itself carries the token.
	resp, err := c.Download(t.Context(), srv.URL+prefix+"/api/v2/x/text?circle-token="+testToken, 0, "")
	if err == nil {
		resp.Body.Close()
		t.Fatal("download: no error")
	}
	assertNoToken(t, "download error", err.Error())
	resp, err = c.Download(t.Context(), srv.URL+prefix+"/api/v2/x/redirect", 0, "")
	if err == nil {
		resp.Body.Close()
		t.Fatal("download redirect: no error")
	}
	assertNoToken(t, "download redirect error", err.Error())
}

func TestIsRetryable(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"429", &Error{StatusCode: 429}, true},
		{"500", &Error{StatusCode: 500}, true},
		{"503 wrapped", fmt.Errorf("job 1: %w", &Error{StatusCode: 503}), true},
		{"408", &Error{StatusCode: 408}, true},
		{"400", &Error{StatusCode: 400}, false},
		{"401", &Error{StatusCode: 401}, false},
		{"404", &Error{StatusCode: 404}, false},
		{"canceled", context.Canceled, false},
		{"deadline", fmt.Errorf("get: %w", context.DeadlineExceeded), false},
		{"url error wrapping canceled", &url.Error{Op: "Get", URL: "u", Err: context.Canceled}, false},
		{"url error wrapping deadline", &url.Error{Op: "Get", URL: "u", Err: context.DeadlineExceeded}, false},
		{"network timeout claiming to be a deadline", &url.Error{Op: "Get", URL: "u", Err: deadlineLike{}}, true},
		{"read deadline", &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}, true},
		{"idle timeout", fmt.Errorf("%w: no data", ErrIdleTimeout), true},
		{"unexpected EOF", io.ErrUnexpectedEOF, true},
		{"EOF before response", &url.Error{Op: "Get", URL: "u", Err: io.EOF}, true},
		{"reset", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, true},
		{"refused", &url.Error{Op: "Get", URL: "u", Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}, true},
		{"dns not found", &net.DNSError{Err: "no such host", Name: "x.invalid", IsNotFound: true}, false},
		{"dns timeout", &net.DNSError{Err: "timeout", Name: "x", IsTimeout: true}, true},
		{"insecure host", &url.Error{Op: "Get", URL: "u", Err: ErrInsecureHost}, false},
		{"no token", ErrNoToken, false},
		{"plain error", errors.New("boom"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsRetryable(tt.err); got != tt.want {
				t.Errorf("IsRetryable(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
	if got := RetryAfter(fmt.Errorf("x: %w", &Error{StatusCode: 429, RetryAfter: time.Hour})); got != MaxRetryAfter {
		t.Errorf("RetryAfter capped = %s, want %s", got, MaxRetryAfter)
	}
	if got := RetryAfter(errors.New("x")); got != 0 {
		t.Errorf("RetryAfter(plain) = %s", got)
	}
}

// deadlineLike is how net/http reports its own timeouts: a timeout that
// matches context.DeadlineExceeded with errors.Is.
type deadlineLike struct{}

func (deadlineLike) Error() string        { return "net/http: timeout awaiting response headers" }
func (deadlineLike) Timeout() bool        { return true }
func (deadlineLike) Temporary() bool      { return true }
func (deadlineLike) Is(target error) bool { return target == context.DeadlineExceeded }

func TestLoggerNeverLogsToken(t *testing.T) {
	var calls atomic.Int32
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.WriteHeader(http.StatusBadGateway)
			fmt.Fprintf(w, "upstream saw %s", r.Header.Get("Circle-Token"))
			return
		}
		io.WriteString(w, `{"login":"me"}`)
	})
	var buf syncBuffer
	c := newClient(t, srv, func(cfg *Config) { cfg.Logger = debugLogger(&buf) })
	if _, err := c.Me(t.Context()); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"path=" + apiPath("me"), "status=502", "status=200", "attempt=1", "attempt=2"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	assertNoToken(t, "log", out)
}
