package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
)

// rateLimitWorld is 20 pipelines on main of 25 jobs with one small
// artifact each: a pull of all of them costs about 560 API requests (a
// workflow listing per pipeline, two pages of jobs per workflow, an
// artifact listing per job) and 500 downloads.
func rateLimitWorld() (*circlecitest.World, []*circlecitest.Artifact) {
	w := circlecitest.NewWorld()
	p := w.AddProject(slugArg, "main")
	var arts []*circlecitest.Artifact
	for range 20 {
		wf := p.AddPipeline("main").AddWorkflow("build")
		for j := range 25 {
			arts = append(arts, wf.AddJob(fmt.Sprintf("job-%02d", j), circlecitest.JobOptions{}).AddArtifact(0, "out/report.txt", 200))
		}
	}
	return w, arts
}

// apiThroughput sums up the API requests srv saw: those let through, the
// 429s of its rate limit, and the span from the first request received to
// the last one answered.
func apiThroughput(srv *circlecitest.Server) (accepted, limited int, span time.Duration) {
	var first, last time.Time
	for _, lr := range srv.RequestLog() {
		if lr.Host != circlecitest.HostAPI {
			continue
		}
		if lr.Status == http.StatusTooManyRequests {
			limited++
		} else {
			accepted++
		}
		if first.IsZero() || lr.Received.Before(first) {
			first = lr.Received
		}
		if lr.Answered.After(last) {
			last = lr.Answered
		}
	}
	return accepted, limited, last.Sub(first)
}

// TestRateLimitIsRespected: the API lets through 50 requests a second per
// token and answers the rest 429 (with Retry-After or without, JSON or
// plain text), or says in RateLimit-* headers how much is left. A pull of
// about 560 API requests at -j 16 completes with every artifact, gets
// few 429s (none at all when the headers say what is left), says once that
// it slowed down, and goes near the budget: the requests let through per
// second, past the first second's burst, are at least 0.7 of the budget,
// or of what this machine manages without a limit if that is less.
func TestRateLimitIsRespected(t *testing.T) {
	const budget = 50.0
	w, arts := rateLimitWorld()

	// unlimited is what this machine manages without a limit, so that a
	// loaded machine does not fail the test for the limiter's slowness.
	unlimited := func() float64 {
		srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken})
		d := localDest(t, srv)
		r := runTool(t, d.env, 2*time.Minute, d.pull("--branch", "main", "--pipelines", "20", "-j", "16")...)
		wantCode(t, r, 0)
		accepted, _, span := apiThroughput(srv)
		return float64(accepted) / span.Seconds()
	}()
	t.Logf("without a limit: %.0f API requests/s", unlimited)

	for _, tc := range []struct {
		name string
		rl   circlecitest.RateLimit
		// most429 bounds the 429s; message is the start of the line that
		// says the run slowed down.
		most429 int
		message string
	}{
		{"Retry-After and JSON", circlecitest.RateLimit{RetryAfter: true}, 0, "answered 429 Too Many Requests: slowing API requests down to about"},
		{"no Retry-After, plain text", circlecitest.RateLimit{PlainText: true}, 0, "answered 429 Too Many Requests: slowing API requests down to about"},
		{"RateLimit headers", circlecitest.RateLimit{RetryAfter: true, Headers: circlecitest.RateLimitDraftHeaders}, 3, "says "},
		{"X-RateLimit headers", circlecitest.RateLimit{Headers: circlecitest.XRateLimitHeaders}, 3, "says "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // each against its own fake and budget
			rl := tc.rl
			rl.PerSecond, rl.PerToken = budget, true
			srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken, RateLimit: rl})
			d := localDest(t, srv)
			r := runTool(t, d.env, 3*time.Minute, d.pull("--branch", "main", "--pipelines", "20", "-j", "16")...)
			wantCode(t, r, 0)
			d.check(t, mirrorOf(arts...), true)

			accepted, limited, span := apiThroughput(srv)
			if limited != srv.RateLimited() {
				t.Errorf("the fake counts %d 429s, its log %d", srv.RateLimited(), limited)
			}
			most := tc.most429
			if most == 0 {
				most = accepted / 20 // 5%
			}
			if limited > most {
				t.Errorf("%d 429s for %d requests let through, want at most %d", limited, accepted, most)
			}
			// The bucket holds one second's budget at the start: what
			// goes through after it is the budget's pace.
			rate := (float64(accepted) - budget) / span.Seconds()
			if want := 0.7 * min(budget, unlimited); rate < want {
				t.Errorf("%.1f API requests/s let through past the first burst, want at least %.1f (budget %.0f/s)", rate, want, budget)
			}
			if n := strings.Count(r.stderr, "CircleCI API at "+srv.URL+" "+tc.message); n != 1 {
				t.Errorf("%d lines say the run slowed down (%q), want 1:\n%s", n, tc.message, r.stderr)
			}
			if strings.Contains(r.stderr, "answers 429") {
				t.Errorf("a 429 is reported as trouble:\n%s", r.stderr)
			}
			t.Logf("%d API requests let through, %d answered 429, in %s: %.1f/s past the first burst (budget %.0f/s); %s",
				accepted, limited, span.Round(time.Millisecond), rate, budget, strings.TrimSpace(r.stderr))
		})
	}
}
