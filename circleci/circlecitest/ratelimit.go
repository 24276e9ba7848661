package circlecitest

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// RateLimit is a budget of API requests per second, beyond which the API
// answers 429, as CircleCI's rate limiter does. Only the API is limited,
// not the download hosts. The zero RateLimit means no limit.
type RateLimit struct {
	// PerSecond is the budget: a token bucket that holds one second's
	// requests and refills continuously. 0 means no limit.
	PerSecond float64
	// PerToken keeps a bucket per credential, as CircleCI limits each
	// token; by default every request draws from one bucket.
	PerToken bool
	// RetryAfter sends Retry-After with each 429: the whole seconds until
	// a request would be let through (at least 1). CircleCI does "in most
	// cases".
	RetryAfter bool
	// PlainText answers 429 with the text "Rate limited." instead of JSON
	// {"message": "Rate limit exceeded."}; both are seen from CircleCI.
	PlainText bool
	// Headers chooses the rate-limit headers sent with every API answer.
	Headers RateLimitHeaders
}

// RateLimitHeaders chooses the rate-limit headers of the API's answers.
type RateLimitHeaders int

const (
	// NoRateLimitHeaders sends none.
	NoRateLimitHeaders RateLimitHeaders = iota
	// RateLimitDraftHeaders sends RateLimit-Limit, RateLimit-Remaining and
	// RateLimit-Reset (seconds until the bucket is full again).
	RateLimitDraftHeaders
	// XRateLimitHeaders sends X-RateLimit-Limit-Second and
	// X-RateLimit-Remaining-Second, without a reset, as Kong does.
	XRateLimitHeaders
	// BothRateLimitHeaders sends both families.
	BothRateLimitHeaders
)

// ParseRateLimitHeaders reads a RateLimitHeaders by name: "none",
// "ratelimit", "x-ratelimit" or "both".
func ParseRateLimitHeaders(s string) (RateLimitHeaders, bool) {
	switch s {
	case "", "none":
		return NoRateLimitHeaders, true
	case "ratelimit":
		return RateLimitDraftHeaders, true
	case "x-ratelimit":
		return XRateLimitHeaders, true
	case "both":
		return BothRateLimitHeaders, true
	}
	return 0, false
}

// rateLimiter holds the buckets of Options.RateLimit.
type rateLimiter struct {
	opts    RateLimit
	mu      sync.Mutex
	buckets map[string]*tokenBucket
}

type tokenBucket struct {
	tokens float64
	at     time.Time
}

func newRateLimiter(rl RateLimit) *rateLimiter {
	if rl.PerSecond <= 0 {
		return nil
	}
	return &rateLimiter{opts: rl, buckets: make(map[string]*tokenBucket)}
}

// take draws a request from the bucket of r's credential (or the one
// bucket) and reports whether it was let through, with what is left and
// the time until the bucket is full again.
func (rl *rateLimiter) take(r *http.Request) (ok bool, left float64, full, next time.Duration) {
	key := ""
	if rl.opts.PerToken {
		scheme, token := authScheme(r)
		key = scheme + "\x00" + token
	}
	rate := rl.opts.PerSecond
	now := time.Now()
	rl.mu.Lock()
	defer rl.mu.Unlock()
	b := rl.buckets[key]
	if b == nil {
		b = &tokenBucket{tokens: rate, at: now}
		rl.buckets[key] = b
	}
	b.tokens = math.Min(rate, b.tokens+now.Sub(b.at).Seconds()*rate)
	b.at = now
	if b.tokens >= 1 {
		b.tokens--
		ok = true
	} else {
		next = time.Duration((1 - b.tokens) / rate * float64(time.Second))
	}
	full = time.Duration((rate - b.tokens) / rate * float64(time.Second))
	return ok, b.tokens, full, next
}

// rateLimit applies Options.RateLimit to an API request: it sets the
// rate-limit headers and, over the budget, answers 429 and reports true.
func (s *Server) rateLimit(w http.ResponseWriter, r *http.Request) bool {
	rl := s.limiter
	if rl == nil {
		return false
	}
	ok, left, full, next := rl.take(r)
	limit := strconv.FormatFloat(math.Floor(rl.opts.PerSecond), 'f', -1, 64)
	remaining := strconv.FormatFloat(math.Floor(left), 'f', -1, 64)
	h := w.Header()
	if hs := rl.opts.Headers; hs == RateLimitDraftHeaders || hs == BothRateLimitHeaders {
		h.Set("RateLimit-Limit", limit)
		h.Set("RateLimit-Remaining", remaining)
		h.Set("RateLimit-Reset", strconv.FormatFloat(math.Ceil(full.Seconds()), 'f', -1, 64))
	}
	if hs := rl.opts.Headers; hs == XRateLimitHeaders || hs == BothRateLimitHeaders {
		h.Set("X-RateLimit-Limit-Second", limit)
		h.Set("X-RateLimit-Remaining-Second", remaining)
	}
	if ok {
		return false
	}
	f := Fault{Kind: FaultStatus, Status: http.StatusTooManyRequests, PlainText: rl.opts.PlainText}
	if rl.opts.RetryAfter {
		f.RetryAfter = strconv.FormatFloat(math.Max(1, math.Ceil(next.Seconds())), 'f', -1, 64)
	}
	s.serveFaultStatus(w, r, HostAPI, f)
	return true
}

// RateLimited returns how many 429s Options.RateLimit has answered since
// the last ResetStats (a fault's 429s are not counted).
func (s *Server) RateLimited() int {
	n := 0
	for _, lr := range s.RequestLog() {
		if lr.Host == HostAPI && lr.Status == http.StatusTooManyRequests && lr.Fault.Kind == NoFault {
			n++
		}
	}
	return n
}
