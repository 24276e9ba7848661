package sync

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	stdsync "sync"
)

// globCounts counts, for a Selection's --include and --exclude, how many
// listed paths each glob matched, so that one that matched none can say so
// instead of silently selecting nothing.
type globCounts struct {
	mu      stdsync.Mutex
	paths   int
	kept    int
	include []int
	exclude []int

	workflows, jobs nameCounts // --workflow-name and --job-name

	// passed says that jobs finished in an earlier run were passed over
	// unlisted: what --job-name, --include and --exclude matched in them
	// is not counted, so none of those is called unmatched.
	passed bool
}

// passOver notes that jobs were passed over as finished (see globCounts).
func (s *Selection) passOver() {
	if c := s.globs; c != nil {
		c.mu.Lock()
		c.passed = true
		c.mu.Unlock()
	}
}

// nameCounts counts, for --workflow-name or --job-name, how many names each
// glob matched, and keeps the names met, so that a glob that matched none
// can say which there were.
type nameCounts struct {
	matched []int
	names   map[string]bool
}

// countGlobs starts counting what the globs match; Resolve calls it before
// any name or path is listed.
func (s *Selection) countGlobs() {
	s.globs = &globCounts{include: make([]int, len(s.Include)), exclude: make([]int, len(s.Exclude)),
		workflows: nameCounts{matched: make([]int, len(s.WorkflowNames)), names: map[string]bool{}},
		jobs:      nameCounts{matched: make([]int, len(s.JobNames)), names: map[string]bool{}}}
}

// matchWorkflow applies --workflow-name to a workflow's name, counting the
// matches. It is safe for concurrent use.
func (s *Selection) matchWorkflow(name string) bool {
	return s.matchName(s.WorkflowNames, name, func(c *globCounts) *nameCounts { return &c.workflows })
}

// matchJob applies --job-name to a job's name, counting the matches. It is
// safe for concurrent use.
func (s *Selection) matchJob(name string) bool {
	return s.matchName(s.JobNames, name, func(c *globCounts) *nameCounts { return &c.jobs })
}

func (s *Selection) matchName(globs []string, name string, counts func(*globCounts) *nameCounts) bool {
	if len(globs) == 0 {
		return true
	}
	keep := false
	hits := make([]int, len(globs))
	for i, g := range globs {
		if matchAny([]string{g}, name) {
			hits[i], keep = 1, true
		}
	}
	if c := s.globs; c != nil {
		c.mu.Lock()
		n := counts(c)
		n.names[name] = true
		for i, h := range hits {
			n.matched[i] += h
		}
		c.mu.Unlock()
	}
	return keep
}

// matchPath applies --include and --exclude to an artifact path, counting
// the matches. It is safe for concurrent use.
func (s *Selection) matchPath(p string) bool {
	keep := len(s.Include) == 0
	var inc, exc []int
	for _, g := range s.Include {
		ok := matchAny([]string{g}, p)
		inc = append(inc, b2i(ok))
		keep = keep || ok
	}
	for _, g := range s.Exclude {
		ok := matchAny([]string{g}, p)
		exc = append(exc, b2i(ok))
		keep = keep && !ok
	}
	if c := s.globs; c != nil {
		c.mu.Lock()
		c.paths++
		c.kept += b2i(keep)
		for i, n := range inc {
			c.include[i] += n
		}
		for i, n := range exc {
			c.exclude[i] += n
		}
		c.mu.Unlock()
	}
	return keep
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// namesShown is how many of the names there were a warning about a
// --workflow-name or --job-name that matched none of them shows.
const namesShown = 5

// UnmatchedGlobs says, for each --workflow-name or --job-name glob that
// matched none of the names met, so, with a few of those names; for each
// --include or --exclude glob that matched none of the paths listed, so,
// with a hint when the glob lacks the "**/" that would let it match below
// the top folder; and when --exclude left none of the paths.
func (s *Selection) UnmatchedGlobs() []string {
	c := s.globs
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	msgs := c.workflows.unmatched("--workflow-name", "workflow", s.WorkflowNames)
	if c.passed {
		return msgs
	}
	msgs = append(msgs, c.jobs.unmatched("--job-name", "job", s.JobNames)...)
	if c.paths == 0 {
		return msgs
	}
	say := func(flag, g string) {
		msg := fmt.Sprintf("%s '%s' matched none of %d paths", flag, g, c.paths)
		if !strings.Contains(g, "/") {
			msg += fmt.Sprintf(" (globs match the whole path: try '**/%s')", g)
		}
		msgs = append(msgs, msg)
	}
	for i, n := range c.include {
		if n == 0 {
			say("--include", s.Include[i])
		}
	}
	for i, n := range c.exclude {
		if n == 0 {
			say("--exclude", s.Exclude[i])
		}
	}
	if c.kept == 0 && len(s.Exclude) > 0 && len(msgs) == 0 {
		msgs = append(msgs, fmt.Sprintf("--exclude '%s' left none of the %d paths", strings.Join(s.Exclude, "' '"), c.paths))
	}
	return msgs
}

// unmatched says, for each of globs (given with flag) that matched none of
// the names met, so, naming the first few names in order. Nothing is said
// when no name was met: then an earlier flag selected nothing, and says so.
func (n *nameCounts) unmatched(flag, what string, globs []string) []string {
	if len(n.names) == 0 {
		return nil
	}
	names := slices.Sorted(maps.Keys(n.names))
	shown := make([]string, 0, namesShown)
	for _, name := range names[:min(namesShown, len(names))] {
		shown = append(shown, Printable(name))
	}
	there := strings.Join(shown, ", ")
	if more := len(names) - len(shown); more > 0 {
		there += fmt.Sprintf(" and %d more", more)
	}
	var msgs []string
	for i, m := range n.matched {
		if m == 0 {
			msgs = append(msgs, fmt.Sprintf("%s '%s' matched none of %d %s names (%s)", flag, Printable(globs[i]), len(names), what, there))
		}
	}
	return msgs
}
