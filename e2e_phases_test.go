package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
)

// TestVerboseLogShowsThePhases: at -v a pull logs the moments that split its
// time (the lock taken, the manifest loaded, the transfers ended, the
// manifest written, the lock released), in that order and with times that
// never go back, so a user can see where a short run's time goes.
func TestVerboseLogShowsThePhases(t *testing.T) {
	w, _ := smallWorld(3, 100)
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken})
	d := localDest(t, srv)
	r := runTool(t, d.env, time.Minute, d.pull("-v", "--log-format", "json")...)
	wantCode(t, r, 0)
	want := []string{"lock held", "manifest loaded", "transfers ended", "manifest written", "lock released"}
	var got []string
	var last time.Time
	for line := range strings.Lines(r.stderr) {
		var rec struct {
			Time time.Time `json:"time"`
			Msg  string    `json:"msg"`
		}
		if json.Unmarshal([]byte(line), &rec) != nil {
			continue
		}
		for _, w := range want {
			if rec.Msg == w {
				got = append(got, w)
				if rec.Time.Before(last) {
					t.Errorf("%q logged at %v, before the phase ahead of it (%v)", w, rec.Time, last)
				}
				last = rec.Time
			}
		}
	}
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Errorf("phases logged at -v: %q, want %q\nstderr:\n%s", got, want, r.stderr)
	}
}
