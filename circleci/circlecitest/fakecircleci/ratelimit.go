package main

import (
	"flag"
	"fmt"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
)

// rateLimitFlags defines the flags of the API's requests-per-second budget
// and returns the function that reads them after flag.Parse.
func rateLimitFlags() func() (circlecitest.RateLimit, error) {
	perSecond := flag.Float64("rate-limit", 0, "API requests per second beyond which the API answers 429 (0: no limit; downloads are not limited)")
	perToken := flag.Bool("rate-limit-per-token", false, "with -rate-limit, a budget per token instead of one for every request")
	retryAfter := flag.Bool("rate-limit-retry-after", true, "with -rate-limit, send Retry-After with each 429")
	plain := flag.Bool("rate-limit-plain", false, "with -rate-limit, answer 429 with the text \"Rate limited.\" instead of JSON")
	headers := flag.String("rate-limit-headers", "none", "with -rate-limit, the rate-limit headers of every API answer: none, ratelimit (RateLimit-*), x-ratelimit (X-RateLimit-*-Second) or both")
	return func() (circlecitest.RateLimit, error) {
		h, ok := circlecitest.ParseRateLimitHeaders(*headers)
		if !ok {
			return circlecitest.RateLimit{}, fmt.Errorf("-rate-limit-headers %q: want none, ratelimit, x-ratelimit or both", *headers)
		}
		return circlecitest.RateLimit{PerSecond: *perSecond, PerToken: *perToken, RetryAfter: *retryAfter, PlainText: *plain, Headers: h}, nil
	}
}
