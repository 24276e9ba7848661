package sync

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
)

// Since is a flag value (a pflag.Value) for --since: a time given as a
// duration back from now (30d, 36h, 90m, 1d12h: Go durations with a d unit
// of 24 hours), a date (2026-11-01, midnight UTC) or an RFC 3339 time. It
// stores the absolute time, so the window does not move while a run goes
// on, and is shown as it was typed.
type Since struct {
	t    *time.Time
	now  func() time.Time
	text string
}

// NewSince is a Since that sets *t, reading durations back from now()
// (time.Now outside tests). *t stays zero until the flag is given.
func NewSince(t *time.Time, now func() time.Time) *Since {
	return &Since{t: t, now: now}
}

func (v *Since) String() string { return v.text }
func (v *Since) Type() string   { return "duration|date" }

// sinceForms is what every refusal of a --since value says is accepted.
const sinceForms = "give how far back as a duration such as 30d, 36h or 90m, a date such as 2026-11-01 (midnight UTC), or an RFC 3339 time such as 2026-11-01T08:00:00Z"

func (v *Since) Set(s string) error {
	s = strings.TrimSpace(s)
	now := v.now()
	var t time.Time
	if d, ok := parseDays(s); ok {
		if d <= 0 {
			return fmt.Errorf("%s is not a positive duration: %s", s, sinceForms)
		}
		t = now.Add(-d)
	} else if date, err := time.Parse(time.DateOnly, s); err == nil {
		t = date
	} else if ts, err := time.Parse(time.RFC3339, s); err == nil {
		t = ts
	} else {
		return fmt.Errorf("%s", sinceForms)
	}
	if t.After(now) {
		return fmt.Errorf("%s is in the future: %s", s, sinceForms)
	}
	*v.t, v.text = t, s
	return nil
}

// dayUnit is a number with the unit d (days), which time.ParseDuration does
// not know; no unit it knows begins with d.
var dayUnit = regexp.MustCompile(`(\d+(?:\.\d*)?|\.\d+)d`)

// parseDays reads a Go duration in which d stands for 24 hours (30d,
// 1d12h, 1.5d), by writing each day count as hours.
func parseDays(s string) (time.Duration, bool) {
	bad := false
	hours := dayUnit.ReplaceAllStringFunc(s, func(m string) string {
		n, err := strconv.ParseFloat(strings.TrimSuffix(m, "d"), 64)
		if err != nil {
			bad = true
		}
		return strconv.FormatFloat(n*24, 'f', -1, 64) + "h"
	})
	d, err := time.ParseDuration(hours)
	return d, err == nil && !bad
}

// validateSince refuses what --since cannot be combined with: the
// selections that name their pipelines, workflows or jobs themselves, and
// --pipelines, which counts pipelines where --since takes them by time.
func (s *Selection) validateSince() error {
	if s.Since.IsZero() {
		return nil
	}
	for _, o := range []struct {
		set        bool
		flag, what string
	}{
		{len(s.Jobs) > 0 || len(s.JobIDs) > 0, "--job", "names the jobs itself"},
		{s.PipelineID != "", "--pipeline", "names the pipeline itself"},
		{s.PipelineNumber != 0, "--pipeline-number", "names the pipeline itself"},
		{len(s.Workflows) > 0, "--workflow", "names the workflows itself"},
		{s.Pipelines > 0, "--pipelines", "counts the newest pipelines instead"},
	} {
		if o.set {
			return fmt.Errorf("--since takes every pipeline created since then and %s %s: give one of them (--since goes with --branch, --workflow-name, --job-name, --include and --exclude)", o.flag, o.what)
		}
	}
	return nil
}

// since schedules the lookup of every pipeline created at or after
// sel.Since, on sel.Branch or on every branch, newest first.
func (r *resolver) since(ctx context.Context, g *errgroup.Group, emit func(Job)) error {
	sel := r.sel
	where := "every branch"
	if sel.Branch != "" {
		where = "branch " + sel.Branch
	}
	n := 0
	for p, err := range r.api.PipelinesSince(ctx, r.slug, sel.Branch, sel.Since) {
		if err != nil {
			return fmt.Errorf("pipelines of %s on %s since %s: %w", r.slug, where, sel.Since.UTC().Format(time.RFC3339), err)
		}
		r.pipeline(ctx, g, &p, emit)
		n++
	}
	// A quiet night with nothing built is no failure: said at info level,
	// so that a run with -q prints nothing.
	if n == 0 {
		r.log.Info("no pipelines since "+sel.Since.UTC().Format(time.RFC3339)+" on "+where, "project", r.slug.String())
	} else {
		r.log.Debug("pipelines in the window", "project", r.slug.String(), "pipelines", n, "since", sel.Since.UTC().Format(time.RFC3339))
	}
	return nil
}
