package circleci

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
)

const testToken = "CCIPAT_s3cr3t-t0ken-0123456789abcdef"

// prefix is where the test servers mount the API, so that a client that
// builds absolute paths instead of joining onto the host's path fails.
const prefix = "/prefix"

// newServer starts a server that hands requests under /prefix/api/v2/ to h
// and fails the test for any other path.
func newServer(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(prefix+"/api/v2/", h)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("request outside the API prefix: %s", r.URL.EscapedPath())
		http.Error(w, "wrong path", http.StatusTeapot)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// newClient returns a client for srv with fast retries, at most 5 tries.
func newClient(t *testing.T, srv *httptest.Server, mod ...func(*Config)) *Client {
	t.Helper()
	cfg := Config{
		Host:  srv.URL + prefix,
		Token: testToken,
		Retry: RetryPolicy{MaxAttempts: 5, InitialInterval: time.Millisecond, MaxInterval: 5 * time.Millisecond},
	}
	for _, m := range mod {
		m(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

// apiPath is the escaped path the server sees for an API path.
func apiPath(p string) string { return prefix + "/api/v2/" + p }

// recordingTimer stands in for the backoff wait: it records each wait and
// fires at once.
type recordingTimer struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (r *recordingTimer) newTimer() backoff.Timer {
	return &instantTimer{r: r, c: make(chan time.Time, 1)}
}

func (r *recordingTimer) Waits() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Duration(nil), r.waits...)
}

type instantTimer struct {
	r *recordingTimer
	c chan time.Time
}

func (t *instantTimer) Start(d time.Duration) {
	t.r.mu.Lock()
	t.r.waits = append(t.r.waits, d)
	t.r.mu.Unlock()
	t.c <- time.Now()
}
func (t *instantTimer) Stop()               {}
func (t *instantTimer) C() <-chan time.Time { return t.c }

// syncBuffer is a bytes.Buffer safe for a concurrent logger.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func debugLogger(buf *syncBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func mustSlug(t *testing.T, s string) Slug {
	t.Helper()
	slug, err := ParseSlug(s)
	if err != nil {
		t.Fatal(err)
	}
	return slug
}

// assertNoToken fails if the token shows up in s.
func assertNoToken(t *testing.T, what, s string) {
	t.Helper()
	if strings.Contains(s, testToken) {
		t.Errorf("%s contains the token: %s", what, s)
	}
}
