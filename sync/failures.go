package sync

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"

	"github.com/artifact-sync/artifact-sync/circleci"
)

// causedError is an artifact's error whose message names that artifact
// (its path, its key) and whose cause says the same without it: what every
// artifact that failed this way shares, for the summary to group them by.
type causedError struct {
	msg   string
	cause string
}

func (e *causedError) Error() string { return e.msg }

// causeOf is err's message without what is particular to one artifact or
// job, read from the errors it is made of rather than guessed from the
// text: a *causedError gives its cause; a *circleci.Error drops the
// request's path (which names the artifact or job) and its Retry-After; a
// *fs.PathError drops its path (the artifact's own file); a wrapper whose
// message ends with its wrapped error's keeps its own words before the
// cause of the wrapped one. Anything else is its message as it is.
func causeOf(err error) string {
	switch e := err.(type) {
	case *causedError:
		return e.cause
	case *circleci.Error:
		c := *e
		c.Method, c.Path, c.RetryAfter = "", "", 0
		return c.Error()
	case *fs.PathError:
		return e.Op + ": " + causeOf(e.Err)
	}
	msg := err.Error()
	if inner := errors.Unwrap(err); inner != nil {
		if prefix, ok := strings.CutSuffix(msg, inner.Error()); ok {
			return prefix + causeOf(inner)
		}
	}
	return msg
}

// firstFailures is how many of the failures of one cause the summary names.
const firstFailures = 3

// FailureGroup is the failures of a run that share a cause: in --json,
// how many (every one of them is in failures, with its cause).
type FailureGroup struct {
	Cause string `json:"cause"`
	Count int    `json:"count"`

	failures []Failure // sorted by job, node and path
}

// groupFailures groups fs by cause, the most frequent first and then by
// cause, so that a run prints the same lines in the same order however its
// transfers interleaved.
func groupFailures(failures []Failure) []FailureGroup {
	byCause := map[string]*FailureGroup{}
	var groups []*FailureGroup
	for _, f := range failures {
		cause := f.Cause
		if cause == "" {
			cause = f.Error
		}
		g := byCause[cause]
		if g == nil {
			g = &FailureGroup{Cause: cause}
			byCause[cause] = g
			groups = append(groups, g)
		}
		g.Count++
		g.failures = append(g.failures, f)
	}
	out := make([]FailureGroup, 0, len(groups))
	for _, g := range groups {
		slices.SortFunc(g.failures, func(a, b Failure) int {
			return cmp.Or(cmp.Compare(a.JobNumber, b.JobNumber), cmp.Compare(a.NodeIndex, b.NodeIndex), cmp.Compare(a.Path, b.Path))
		})
		out = append(out, *g)
	}
	slices.SortFunc(out, func(a, b FailureGroup) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Cause, b.Cause))
	})
	return out
}

// what names the artifact, or the job whose listing failed, of f.
func (f Failure) what() string {
	if f.Path == "" {
		return fmt.Sprintf("job %d (%s)", f.JobNumber, Printable(f.JobName))
	}
	return fmt.Sprintf("job %d node %d %q", f.JobNumber, f.NodeIndex, f.Path)
}

// reportFailures prints one line per cause: a failure alone as itself, with
// its whole message; several of one cause as their count, the cause and the
// first few of them, so one cause that struck 500 artifacts is one line
// and not 500.
func reportFailures(w io.Writer, failures []Failure) {
	for _, g := range groupFailures(failures) {
		if g.Count == 1 {
			f := g.failures[0]
			fmt.Fprintf(w, "  failed: %s: %s\n", f.what(), Printable(f.Error))
			continue
		}
		names := make([]string, 0, firstFailures)
		for _, f := range g.failures[:min(firstFailures, g.Count)] {
			names = append(names, f.what())
		}
		line := fmt.Sprintf("  failed (%d): %s; first: %s", g.Count, Printable(g.Cause), strings.Join(names, ", "))
		if more := g.Count - len(names); more > 0 {
			line += fmt.Sprintf(" and %d more", more)
		}
		fmt.Fprintln(w, line)
	}
}
