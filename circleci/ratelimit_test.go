package circleci

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testLimiter is a limiter on a clock the test moves, with the client's
// default pauses, that records what it reports.
type testLimiter struct {
	*limiter
	clock   time.Time
	reports []string
}

func newTestLimiter(ceiling int) *testLimiter {
	tl := &testLimiter{clock: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
	tl.limiter = newLimiter(RetryPolicy{}.withDefaults(), func(m string) { tl.reports = append(tl.reports, m) }, func(string, ...any) {})
	tl.now = func() time.Time { return tl.clock }
	tl.setCeiling(ceiling)
	return tl
}

// answer sends a request that began at began and ends now with err.
func (tl *testLimiter) answer(began time.Time, err error) {
	tl.mu.Lock()
	tl.inFlight++
	tl.mu.Unlock()
	tl.release(&ticket{began: began}, err)
}

func tooMany(retryAfter time.Duration) error {
	return &Error{StatusCode: http.StatusTooManyRequests, RetryAfter: retryAfter}
}

// TestLimiterSlowsDownAndSpeedsUp: a 429 halves the requests in flight
// (to no fewer than one), paces them just under what the API accepted in
// the last second and pauses them all; 429s to requests sent before that
// slowdown slow down no further; clean answers raise the bound by one per
// bound's worth of answers up to the ceiling, and the pace likewise; the
// slowdown is reported once.
func TestLimiterSlowsDownAndSpeedsUp(t *testing.T) {
	tl := newTestLimiter(8)
	start := tl.clock
	// 60 clean answers in the first half second.
	for range 60 {
		tl.clock = tl.clock.Add(8 * time.Millisecond)
		tl.answer(tl.clock, nil)
	}
	if tl.bound != 8 || tl.rate != 0 || len(tl.reports) != 0 {
		t.Fatalf("before any 429: bound %v, rate %v, reports %q; want 8, unpaced, none", tl.bound, tl.rate, tl.reports)
	}
	began := tl.clock
	tl.clock = tl.clock.Add(10 * time.Millisecond)
	tl.answer(began, tooMany(0))
	if tl.bound != 4 {
		t.Errorf("after a 429: bound %v, want 4", tl.bound)
	}
	if tl.rate < 53 || tl.rate > 55 {
		t.Errorf("after a 429: rate %.1f/s, want 0.9 of the 60 answers of the last second", tl.rate)
	}
	if want := tl.clock.Add(DefaultInitialInterval); !tl.pauseUntil.Equal(want) {
		t.Errorf("paused until %s, want %s (the first backoff)", tl.pauseUntil.Sub(start), want.Sub(start))
	}
	// The other requests sent with the first one come back 429 too: no
	// further slowdown.
	for range 3 {
		tl.answer(began, tooMany(0))
	}
	if tl.bound != 4 || len(tl.reports) != 1 {
		t.Errorf("after 429s sent before the slowdown: bound %v, %d reports; want 4, 1", tl.bound, len(tl.reports))
	}
	// A 429 to a request sent after it slows down again, and pauses longer,
	// for as long as Retry-After says when it says so.
	tl.clock = tl.clock.Add(time.Second)
	tl.answer(tl.clock.Add(-time.Millisecond), tooMany(0))
	if tl.bound != 2 {
		t.Errorf("after a second 429: bound %v, want 2", tl.bound)
	}
	if want := tl.clock.Add(2 * DefaultInitialInterval); !tl.pauseUntil.Equal(want) {
		t.Errorf("paused until %s, want %s (the second backoff)", tl.pauseUntil.Sub(start), want.Sub(start))
	}
	tl.clock = tl.clock.Add(time.Second)
	tl.answer(tl.clock.Add(-time.Millisecond), tooMany(3*time.Second))
	tl.answer(tl.clock.Add(-time.Millisecond), tooMany(0))
	if tl.bound != 1 {
		t.Errorf("after a third 429: bound %v, want 1", tl.bound)
	}
	if want := tl.clock.Add(3 * time.Second); !tl.pauseUntil.Equal(want) {
		t.Errorf("paused until %s, want %s (Retry-After)", tl.pauseUntil.Sub(start), want.Sub(start))
	}
	tl.clock = tl.clock.Add(time.Second)
	tl.answer(tl.clock.Add(-time.Millisecond), tooMany(0))
	if tl.bound != 1 {
		t.Errorf("the bound went below 1: %v", tl.bound)
	}
	if len(tl.reports) != 1 {
		t.Errorf("reported %d times, want once: %q", len(tl.reports), tl.reports)
	}

	// Clean answers: 1 → 2 after one, → 3 after about two more, … → 8
	// (1/bound each), no further.
	rate := tl.rate
	var steps []int
	for range 60 {
		tl.clock = tl.clock.Add(10 * time.Millisecond)
		tl.answer(tl.clock, nil)
		steps = append(steps, int(tl.bound))
	}
	for i, want := range map[int]int{0: 2, 3: 3, 6: 4, 29: 7, 30: 8, 59: 8} {
		if steps[i] != want {
			t.Errorf("bound after %d clean answers: %d, want %d (all: %v)", i+1, steps[i], want, steps)
		}
	}
	if tl.rate <= rate {
		t.Errorf("the pace stayed at %.1f/s over 60 clean answers", tl.rate)
	}
	if tl.nextPause != DefaultInitialInterval {
		t.Errorf("after clean answers the next pause is %s, want the first backoff again", tl.nextPause)
	}

	// A later LimitRequests keeps what was learned; a lower one lowers it.
	tl.answer(tl.clock, tooMany(0))
	tl.setCeiling(8)
	if tl.bound != 4 {
		t.Errorf("LimitRequests(8) after a slowdown to 4: bound %v", tl.bound)
	}
	tl.setCeiling(2)
	if tl.bound != 2 {
		t.Errorf("LimitRequests(2): bound %v", tl.bound)
	}
}

// TestParseQuotas reads both families of rate-limit headers, and a reset
// given as seconds from now or as a Unix time.
func TestParseQuotas(t *testing.T) {
	now := time.Unix(1796083200, 0) // 2026-12-01
	tests := []struct {
		name   string
		header http.Header
		want   []quota
	}{
		{"none", http.Header{}, nil},
		{"RateLimit, reset in seconds", http.Header{"Ratelimit-Limit": {"50"}, "Ratelimit-Remaining": {"7"}, "Ratelimit-Reset": {"2"}},
			[]quota{{"RateLimit", 50, 7, 2 * time.Second}}},
		{"RateLimit with policies", http.Header{"Ratelimit-Limit": {"100, 100;w=60"}, "Ratelimit-Remaining": {"30"}, "Ratelimit-Reset": {"0.5"}},
			[]quota{{"RateLimit", 100, 30, 500 * time.Millisecond}}},
		{"RateLimit, reset as a Unix time", http.Header{"Ratelimit-Limit": {"5000"}, "Ratelimit-Remaining": {"12"}, "Ratelimit-Reset": {strconv.FormatInt(now.Unix()+90, 10)}},
			[]quota{{"RateLimit", 5000, 12, 90 * time.Second}}},
		{"reset as a Unix time past", http.Header{"Ratelimit-Remaining": {"0"}, "Ratelimit-Reset": {strconv.FormatInt(now.Unix()-5, 10)}},
			[]quota{{"RateLimit", 0, 0, 0}}},
		{"RateLimit without reset", http.Header{"Ratelimit-Limit": {"50"}, "Ratelimit-Remaining": {"7"}}, nil},
		{"X-RateLimit per window, no reset: the window's length", http.Header{
			"X-Ratelimit-Limit-Second": {"10"}, "X-Ratelimit-Remaining-Second": {"3"},
			"X-Ratelimit-Limit-Hour": {"5000"}, "X-Ratelimit-Remaining-Hour": {"4100"},
		}, []quota{{"Second", 10, 3, time.Second}, {"Hour", 5000, 4100, time.Hour}}},
		{"X-RateLimit per window with resets", http.Header{
			"X-Ratelimit-Limit-Minute": {"300"}, "X-Ratelimit-Remaining-Minute": {"20"}, "X-Ratelimit-Reset-Minute": {"15"},
			"X-Ratelimit-Limit-Day": {"90000"}, "X-Ratelimit-Remaining-Day": {"100"}, "X-Ratelimit-Reset-Day": {strconv.FormatInt(now.Unix()+3600, 10)},
		}, []quota{{"Minute", 300, 20, 15 * time.Second}, {"Day", 90000, 100, time.Hour}}},
		{"bare X-RateLimit, Unix reset", http.Header{"X-Ratelimit-Limit": {"5000"}, "X-Ratelimit-Remaining": {"4999"}, "X-Ratelimit-Reset": {strconv.FormatInt(now.Unix()+600, 10)}},
			[]quota{{"X-RateLimit", 5000, 4999, 10 * time.Minute}}},
		{"garbage", http.Header{"Ratelimit-Remaining": {"lots"}, "Ratelimit-Reset": {"1"}, "X-Ratelimit-Remaining-Second": {"-3"}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseQuotas(tt.header, now)
			if len(got) != len(tt.want) {
				t.Fatalf("parseQuotas = %+v, want %+v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("quota %d = %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

// TestRateLimitPausesEveryAPIRequestButNotDownloads: one call's 429 with
// Retry-After: 1 holds back the client's other API calls for that second,
// not only its own retry; a download meanwhile goes at once, and the
// client says once, at info level, that it slowed down.
func TestRateLimitPausesEveryAPIRequestButNotDownloads(t *testing.T) {
	var (
		mu       sync.Mutex
		limited  time.Time
		arrivals []time.Time
	)
	answered := make(chan struct{})
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		first := limited.IsZero()
		if first {
			limited = time.Now()
		} else {
			arrivals = append(arrivals, time.Now())
		}
		mu.Unlock()
		if first {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			io.WriteString(w, "Rate limited.")
			close(answered)
			return
		}
		io.WriteString(w, `{"login":"me"}`)
	})
	files := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "bytes") }))
	t.Cleanup(files.Close)
	var log syncBuffer
	c := newClient(t, srv, func(cfg *Config) { cfg.Logger = debugLogger(&log) })
	c.LimitRequests(4)

	var wg sync.WaitGroup
	wg.Go(func() {
		if _, err := c.Me(t.Context()); err != nil {
			t.Error(err)
		}
	})
	<-answered
	time.Sleep(100 * time.Millisecond) // the client has read the 429
	for range 3 {
		wg.Go(func() {
			if _, err := c.Me(t.Context()); err != nil {
				t.Error(err)
			}
		})
	}
	began := time.Now()
	resp, err := c.Download(t.Context(), files.URL+"/a.txt", 0, "")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if d := time.Since(began); d > 500*time.Millisecond {
		t.Errorf("a download took %s during the API's pause, want at once", d)
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(arrivals) != 4 {
		t.Fatalf("%d requests after the 429, want 4", len(arrivals))
	}
	for _, at := range arrivals {
		if d := at.Sub(limited); d < 900*time.Millisecond {
			t.Errorf("an API request came %s after the 429 with Retry-After: 1", d.Round(time.Millisecond))
		}
	}
	text := log.String()
	if n := countLines(text, "level=INFO", "answered 429 Too Many Requests: slowing API requests down to 2 at once"); n != 1 {
		t.Errorf("%d info lines say the client slowed down, want 1:\n%s", n, text)
	}
	if n := countLines(text, "level=WARN", ""); n != 0 {
		t.Errorf("a 429 logged %d warnings:\n%s", n, text)
	}
}

// TestRateLimitHeadersPaceRequests: when the answers say that only 4 of
// 100 requests are left for the next second, the client's next requests
// are spread over that second instead of going at once.
func TestRateLimitHeadersPaceRequests(t *testing.T) {
	var (
		mu       sync.Mutex
		arrivals []time.Time
	)
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		arrivals = append(arrivals, time.Now())
		mu.Unlock()
		w.Header().Set("RateLimit-Limit", "100")
		w.Header().Set("RateLimit-Remaining", "4")
		w.Header().Set("RateLimit-Reset", "1")
		io.WriteString(w, `{"login":"me"}`)
	})
	c := newClient(t, srv)
	c.LimitRequests(8)
	if _, err := c.Me(t.Context()); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var failed atomic.Int32
	for range 4 {
		wg.Go(func() {
			if _, err := c.Me(context.Background()); err != nil {
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d calls failed", failed.Load())
	}
	mu.Lock()
	defer mu.Unlock()
	// The first answer says what is left; the four after it go 250ms apart.
	for i := 2; i < len(arrivals); i++ {
		if d := arrivals[i].Sub(arrivals[i-1]); d < 200*time.Millisecond {
			t.Errorf("request %d came %s after the one before when 4 of 100 were left for the next second, want about 250ms", i+1, d.Round(time.Millisecond))
		}
	}
}

// countLines counts the lines of text holding both a and b.
func countLines(text, a, b string) int {
	n := 0
	for line := range strings.Lines(text) {
		if strings.Contains(line, a) && strings.Contains(line, b) {
			n++
		}
	}
	return n
}
