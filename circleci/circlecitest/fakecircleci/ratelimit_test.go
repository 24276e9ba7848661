package main

import (
	"flag"
	"io"
	"testing"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
)

func TestRateLimitFlags(t *testing.T) {
	parse := func(args ...string) (circlecitest.RateLimit, error) {
		flag.CommandLine = flag.NewFlagSet("fakecircleci", flag.ContinueOnError)
		flag.CommandLine.SetOutput(io.Discard)
		read := rateLimitFlags()
		if err := flag.CommandLine.Parse(args); err != nil {
			t.Fatal(err)
		}
		return read()
	}
	if rl, err := parse(); err != nil || rl.PerSecond != 0 {
		t.Errorf("no flags: %+v, %v; want no limit", rl, err)
	}
	rl, err := parse("-rate-limit", "50", "-rate-limit-per-token", "-rate-limit-retry-after=false", "-rate-limit-plain", "-rate-limit-headers", "both")
	want := circlecitest.RateLimit{PerSecond: 50, PerToken: true, PlainText: true, Headers: circlecitest.BothRateLimitHeaders}
	if err != nil || rl != want {
		t.Errorf("every flag: %+v, %v; want %+v", rl, err, want)
	}
	if rl, _ := parse("-rate-limit", "5"); !rl.RetryAfter {
		t.Error("Retry-After is off by default")
	}
	if _, err := parse("-rate-limit-headers", "all"); err == nil {
		t.Error("-rate-limit-headers all is accepted")
	}
}
