package sync_test

import (
	"strings"
	"testing"
	"time"

	ccsync "github.com/artifact-sync/artifact-sync/sync"
)

// TestSinceFlag: --since reads a duration back from now (with d for days),
// a date at midnight UTC or an RFC 3339 time, and refuses anything else, a
// time in the future and a duration that is not positive with one message
// that names the accepted forms.
func TestSinceFlag(t *testing.T) {
	now := time.Date(2026, time.December, 6, 5, 30, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	for _, tt := range []struct {
		in   string
		want time.Time
	}{
		{"30d", now.Add(-30 * 24 * time.Hour)},
		{"36h", now.Add(-36 * time.Hour)},
		{"90m", now.Add(-90 * time.Minute)},
		{"1d12h", now.Add(-36 * time.Hour)},
		{"1.5d", now.Add(-36 * time.Hour)},
		{"2h30m", now.Add(-150 * time.Minute)},
		{"45s", now.Add(-45 * time.Second)},
		{" 2d ", now.Add(-48 * time.Hour)},
		{"2026-11-01", time.Date(2026, time.November, 1, 0, 0, 0, 0, time.UTC)},
		{"2026-12-06", time.Date(2026, time.December, 6, 0, 0, 0, 0, time.UTC)},
		{"2026-11-01T08:00:00Z", time.Date(2026, time.November, 1, 8, 0, 0, 0, time.UTC)},
		{"2026-11-01T08:00:00.250+01:00", time.Date(2026, time.November, 1, 7, 0, 0, 250e6, time.UTC)},
		{"2026-12-06T05:30:00Z", now},
	} {
		var got time.Time
		v := ccsync.NewSince(&got, clock)
		if err := v.Set(tt.in); err != nil || !got.Equal(tt.want) {
			t.Errorf("--since %q = %v, %v; want %v", tt.in, got, err, tt.want)
		}
		if v.String() != strings.TrimSpace(tt.in) {
			t.Errorf("--since %q is shown as %q", tt.in, v.String())
		}
	}
	for _, tt := range []struct{ in, says string }{
		{"", ""},
		{"30", ""},
		{"d", ""},
		{"30 d", ""},
		{"3x", ""},
		{"1dd", ""},
		{"yesterday", ""},
		{"2026-13-01", ""},
		{"2026-11-1", ""},
		{"01/11/2026", ""},
		{"2026-11-01T08:00:00", ""},
		{"2026-11-01 08:00", ""},
		{"0d", "not a positive duration"},
		{"0", ""},
		{"-2d", "not a positive duration"},
		{"-36h", "not a positive duration"},
		{"2026-12-07", "in the future"},
		{"2026-12-06T05:30:01Z", "in the future"},
		{"2027-01-01", "in the future"},
	} {
		var got time.Time
		v := ccsync.NewSince(&got, clock)
		err := v.Set(tt.in)
		if err == nil {
			t.Errorf("--since %q accepted as %v", tt.in, got)
			continue
		}
		for _, s := range []string{tt.says, "30d", "36h", "2026-11-01", "RFC 3339"} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("--since %q: %q does not say %q", tt.in, err, s)
			}
		}
		if !got.IsZero() || v.String() != "" {
			t.Errorf("--since %q refused, yet set %v (%q)", tt.in, got, v.String())
		}
	}
}
