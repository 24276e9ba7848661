package sync

import (
	"fmt"
	"strings"
	stdsync "sync"
)

// globCounts counts, for a Selection's --include and --exclude, how many
// listed paths each glob matched, so that one that matched none can say so
// instead of silently selecting nothing.
type globCounts struct {
	mu      stdsync.Mutex
	paths   int
	include []int
	exclude []int
}

// countGlobs starts counting what the globs match; Resolve calls it before
// any path is listed.
func (s *Selection) countGlobs() {
	s.globs = &globCounts{include: make([]int, len(s.Include)), exclude: make([]int, len(s.Exclude))}
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

// UnmatchedGlobs says, for each --include or --exclude glob that matched
// none of the paths listed, so, with a hint when the glob lacks the "**/"
// that would let it match below the top folder.
func (s *Selection) UnmatchedGlobs() []string {
	c := s.globs
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.paths == 0 {
		return nil
	}
	var msgs []string
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
	return msgs
}
