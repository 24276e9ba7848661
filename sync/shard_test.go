package sync

import (
	"fmt"
	"testing"

	"github.com/artifact-sync/artifact-sync/circleci"
)

// shardSlugs are 200 projects of three kinds of slug.
func shardSlugs() []circleci.Slug {
	var slugs []circleci.Slug
	for i := range 200 {
		switch i % 3 {
		case 0:
			slugs = append(slugs, circleci.Slug{VCS: "gh", Org: "acme", Repo: fmt.Sprintf("service-%d", i)})
		case 1:
			slugs = append(slugs, circleci.Slug{VCS: "bb", Org: fmt.Sprintf("team%d", i%7), Repo: fmt.Sprintf("repo-%d", i)})
		default:
			slugs = append(slugs, circleci.Slug{VCS: "circleci", Org: "43G3kM5RtfFE7v5sa4nWAU", Repo: fmt.Sprintf("44n9pujWcTnV%04d", i)})
		}
	}
	return slugs
}

// TestShardsCoverEveryProjectOnce: for N = 1..8, every project is taken by
// exactly one of the N shards, and no shard is starved.
func TestShardsCoverEveryProjectOnce(t *testing.T) {
	slugs := shardSlugs()
	for n := 1; n <= 8; n++ {
		per := make([]int, n)
		for _, slug := range slugs {
			takers := 0
			for i := range n {
				if (Shard{Index: i, Count: n}).Takes(slug) {
					takers++
					per[i]++
				}
			}
			if takers != 1 {
				t.Errorf("N=%d: %s is taken by %d shards, want 1", n, slug, takers)
			}
		}
		for i, c := range per {
			// 200/n expected; a shard with under a third of that is
			// not what a uniform hash gives.
			if c < 200/n/3 {
				t.Errorf("N=%d: shard %d takes %d of 200 projects: %v", n, i, c, per)
			}
		}
	}
}

// TestShardGrowthMovesFew: going from N to N+1 shards moves about
// 1/(N+1) of the projects, all of them to the new shard.
func TestShardGrowthMovesFew(t *testing.T) {
	slugs := shardSlugs()
	for n := 1; n <= 7; n++ {
		moved := 0
		for _, slug := range slugs {
			before, after := ShardOf(slug, n), ShardOf(slug, n+1)
			if before != after {
				moved++
				if after != n {
					t.Errorf("N=%d→%d: %s moved from shard %d to %d, not to the new shard", n, n+1, slug, before, after)
				}
			}
		}
		want := float64(len(slugs)) / float64(n+1)
		if got := float64(moved); got < want*0.6 || got > want*1.4 {
			t.Errorf("N=%d→%d: %d of %d projects moved, want about %.0f", n, n+1, moved, len(slugs), want)
		}
	}
}

// TestShardIsStable: the hash is fixed (SHA-256 of "<slug>/<i>", see
// ShardOf), so machines and versions agree; these values must never
// change, or every scheduled backup's projects would move between shards
// on an upgrade. gh/github and bb/bitbucket, and the case of GitHub and
// Bitbucket names, do not change a project's shard.
func TestShardIsStable(t *testing.T) {
	for _, tc := range []struct {
		slug string
		want int
	}{
		{"gh/acme/widgets", 3},
		{"github/Acme/Widgets", 3},
		{"bb/acme/legacy", 4},
		{"bitbucket/acme/legacy", 4},
		{"circleci/43G3kM5RtfFE7v5sa4nWAU/44n9pujWcTnVZ2b5S8Fnat", 6},
	} {
		slug, err := circleci.ParseSlug(tc.slug)
		if err != nil {
			t.Fatal(err)
		}
		if got := ShardOf(slug, 8); got != tc.want {
			t.Errorf("%s falls on shard %d of 8, want %d as it always has", tc.slug, got, tc.want)
		}
	}
}

func TestShardFlag(t *testing.T) {
	for _, ok := range []string{"0/1", "3/4", " 7/8 "} {
		var s Shard
		if err := s.Set(ok); err != nil {
			t.Errorf("--shard %q: %v", ok, err)
		}
	}
	for _, bad := range []string{"4/4", "-1/4", "0/0", "1", "a/b", "1/-2", "", "1/2/3"} {
		var s Shard
		if err := s.Set(bad); err == nil {
			t.Errorf("--shard %q accepted as %s", bad, s.String())
		}
	}
}
