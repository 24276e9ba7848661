package circlecitest_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
)

// TestRateLimit: the API lets through a second's budget at once, then
// answers 429 in the shape asked for, refills at the budget's pace, counts
// its 429s, keeps a budget per token when asked, and never limits
// downloads.
func TestRateLimit(t *testing.T) {
	w, j := smallWorld()
	const budget = 10
	me := func(srv *circlecitest.Server, tok string) (*http.Response, []byte) {
		return do(t, newReq(t, srv.URL+"/api/v2/me", "Circle-Token", tok))
	}
	// spend sends requests until the first 429 and returns how many went
	// through and that 429.
	spend := func(srv *circlecitest.Server, tok string) (int, *http.Response, []byte) {
		for n := 0; n < 100; n++ {
			if resp, body := me(srv, tok); resp.StatusCode == http.StatusTooManyRequests {
				return n, resp, body
			}
		}
		t.Fatal("no 429 after 100 requests")
		return 0, nil, nil
	}

	t.Run("JSON, Retry-After, both header families", func(t *testing.T) {
		srv := circlecitest.Start(t, w, circlecitest.Options{Token: token, RateLimit: circlecitest.RateLimit{
			PerSecond: budget, RetryAfter: true, Headers: circlecitest.BothRateLimitHeaders}})
		resp, _ := me(srv, token)
		h := resp.Header
		if h.Get("RateLimit-Limit") != "10" || h.Get("RateLimit-Remaining") != "9" || h.Get("RateLimit-Reset") != "1" ||
			h.Get("X-RateLimit-Limit-Second") != "10" || h.Get("X-RateLimit-Remaining-Second") != "9" {
			t.Errorf("first answer's headers: %v", h)
		}
		n, resp, body := spend(srv, token)
		if n < budget-1 || n > budget+1 {
			t.Errorf("%d more requests went through before a 429, want the rest of the budget (%d)", n, budget-1)
		}
		if string(body) != `{"message":"Rate limit exceeded."}` || resp.Header.Get("Content-Type") != "application/json" ||
			resp.Header.Get("Retry-After") != "1" || resp.Header.Get("RateLimit-Remaining") != "0" {
			t.Errorf("429: %q %v", body, resp.Header)
		}
		if resp, _ := do(t, newReq(t, srv.ArtifactURLFor(j.Artifacts()[0]), "Circle-Token", token)); resp.StatusCode != 200 {
			t.Errorf("a download while the API's budget is spent: %d", resp.StatusCode)
		}
		time.Sleep(250 * time.Millisecond) // refills 2.5 requests
		if resp, _ := me(srv, token); resp.StatusCode != 200 {
			t.Errorf("after a quarter second's refill: %d", resp.StatusCode)
		}
		if got := srv.RateLimited(); got != 1 {
			t.Errorf("RateLimited = %d, want 1", got)
		}
		srv.ResetStats()
		if got := srv.RateLimited(); got != 0 {
			t.Errorf("RateLimited after ResetStats = %d", got)
		}
	})

	t.Run("plain text, no Retry-After, no headers, a budget per token", func(t *testing.T) {
		srv := circlecitest.Start(t, w, circlecitest.Options{Token: token, RateLimit: circlecitest.RateLimit{
			PerSecond: budget, PlainText: true, PerToken: true}})
		_, resp, body := spend(srv, token)
		if string(body) != "Rate limited." || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
			t.Errorf("429: %q %v", body, resp.Header)
		}
		for _, k := range []string{"Retry-After", "RateLimit-Remaining", "X-RateLimit-Remaining-Second"} {
			if v := resp.Header.Get(k); v != "" {
				t.Errorf("%s: %s sent", k, v)
			}
		}
		// Another token has its own budget (and is refused as unknown).
		if resp, _ := me(srv, "another-token"); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("another token's first request: %d, want 401 (its own budget)", resp.StatusCode)
		}
		if got := srv.RateLimited(); got != 1 {
			t.Errorf("RateLimited = %d, want 1", got)
		}
	})
}

func TestParseRateLimitHeaders(t *testing.T) {
	for s, want := range map[string]circlecitest.RateLimitHeaders{
		"none": circlecitest.NoRateLimitHeaders, "ratelimit": circlecitest.RateLimitDraftHeaders,
		"x-ratelimit": circlecitest.XRateLimitHeaders, "both": circlecitest.BothRateLimitHeaders,
	} {
		if got, ok := circlecitest.ParseRateLimitHeaders(s); !ok || got != want {
			t.Errorf("ParseRateLimitHeaders(%q) = %v, %v", s, got, ok)
		}
	}
	if _, ok := circlecitest.ParseRateLimitHeaders("X-RateLimit"); ok {
		t.Error("an unknown name is accepted")
	}
}
