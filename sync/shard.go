package sync

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"

	"github.com/artifact-sync/artifact-sync/circleci"
)

// Shard is --shard I/N: this run takes the projects that rendezvous hashing
// assigns to shard Index of Count. The zero Shard is 0/1, every project.
// It is a flag value (a pflag.Value).
type Shard struct {
	Index, Count int
}

func (s *Shard) String() string { return fmt.Sprintf("%d/%d", s.Index, max(s.Count, 1)) }
func (s *Shard) Type() string   { return "I/N" }

func (s *Shard) Set(v string) error {
	is, ns, ok := strings.Cut(strings.TrimSpace(v), "/")
	i, ierr := strconv.Atoi(is)
	n, nerr := strconv.Atoi(ns)
	if !ok || ierr != nil || nerr != nil || n < 1 || i < 0 || i >= n {
		return fmt.Errorf("give I/N with N of 1 or more and I from 0 to N-1, such as 0/4 (in a CircleCI job with parallelism: \"$CIRCLE_NODE_INDEX/$CIRCLE_NODE_TOTAL\")")
	}
	s.Index, s.Count = i, n
	return nil
}

// Takes reports whether slug falls on this shard.
func (s Shard) Takes(slug circleci.Slug) bool {
	return s.Count <= 1 || ShardOf(slug, s.Count) == s.Index
}

// ShardOf is the shard of n that slug falls on, by rendezvous
// (highest-random-weight) hashing: each shard i weighs the project with the
// first 8 bytes, big-endian, of SHA-256("<key>/<i>"), where key is the
// project's ShardKey, and the heaviest shard takes it (the lowest i on a
// tie). Every machine and every version computes the same shard, whatever
// the order or the other members of the list; going from n to n+1 shards
// moves only the projects that shard n now outweighs, about 1/(n+1) of them.
func ShardOf(slug circleci.Slug, n int) int {
	key := ShardKey(slug)
	best, bestW := 0, uint64(0)
	for i := range n {
		sum := sha256.Sum256([]byte(key + "/" + strconv.Itoa(i)))
		if w := binary.BigEndian.Uint64(sum[:8]); i == 0 || w > bestW {
			best, bestW = i, w
		}
	}
	return best
}

// ShardKey is the form of slug that sharding and the merging of a run's
// project list go by: the short VCS name (github/… is gh/…, bitbucket/…
// is bb/…) and, for GitHub and Bitbucket, whose names do not tell case
// apart, the organisation and repository in lower case; circleci/ slugs
// hold IDs and are kept as they are.
func ShardKey(slug circleci.Slug) string {
	vcs := canonicalVCS(slug.VCS)
	if vcs == "circleci" {
		return vcs + "/" + slug.Org + "/" + slug.Repo
	}
	return vcs + "/" + strings.ToLower(slug.Org) + "/" + strings.ToLower(slug.Repo)
}
