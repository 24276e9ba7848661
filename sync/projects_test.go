package sync_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/artifact-sync/artifact-sync/circleci"
	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
	ccsync "github.com/artifact-sync/artifact-sync/sync"
)

// TestOrgProjectsStopsAtSince: with a window, the organisation's pipelines
// are paged only until the first one older than the window, and only the
// projects built in the window are found; without one, every page is read.
func TestOrgProjectsStopsAtSince(t *testing.T) {
	w := circlecitest.NewWorld()
	old, recent := w.AddProject("gh/acme/old", "main"), w.AddProject("gh/acme/recent", "main")
	for range 5 {
		old.AddPipeline("main")
	}
	for range 5 {
		recent.AddPipeline("main")
	}
	w.AddProject("gh/other/tool", "main").AddPipeline("main")
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: token, PageSize: 2})
	c := newClient(t, srv.URL)
	org, err := circleci.ParseOrgSlug("github/acme")
	if err != nil {
		t.Fatal(err)
	}
	var since time.Time
	for p, err := range c.OrgPipelines(t.Context(), org) {
		if err != nil {
			t.Fatal(err)
		}
		if p.ProjectSlug == "gh/acme/recent" {
			since = p.CreatedAt // the oldest of recent's, at the end
		}
	}
	srv.ResetStats()

	got, err := ccsync.OrgProjects(t.Context(), c, org, since)
	if err != nil {
		t.Fatal(err)
	}
	if want := []circleci.Slug{{VCS: "gh", Org: "acme", Repo: "recent"}}; !slices.Equal(got, want) {
		t.Errorf("projects since %s: %v, want %v", since, got, want)
	}
	// recent's 5 pipelines and old's newest are on pages 1 to 3 of 5.
	if n := srv.Requests("org-pipelines"); n != 3 {
		t.Errorf("%d pages requested, want 3: the last one reaches past the window", n)
	}

	srv.ResetStats()
	got, err = ccsync.OrgProjects(t.Context(), c, org, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if want := []circleci.Slug{{VCS: "gh", Org: "acme", Repo: "old"}, {VCS: "gh", Org: "acme", Repo: "recent"}}; !slices.Equal(got, want) {
		t.Errorf("projects without a window: %v, want %v", got, want)
	}
	if n := srv.Requests("org-pipelines"); n != 5 {
		t.Errorf("%d pages requested without a window, want all 5", n)
	}
}

// TestProjectsMergeAndShard: a project given twice (gh/github, or in
// another case) is one; the shard keeps its part of the union, and the
// shards of N together keep each project once.
func TestProjectsMergeAndShard(t *testing.T) {
	args := []string{"gh/acme/widgets", "github/acme/widgets", "GH/Acme/Widgets", "bb/acme/legacy", "bitbucket/acme/legacy", "gh/acme/gadgets"}
	var all []string
	for i := range 3 {
		p := &ccsync.Projects{}
		if err := p.Shard.Set(fmt.Sprintf("%d/3", i)); err != nil {
			t.Fatal(err)
		}
		var sel ccsync.Selection
		if err := p.Parse(args, &sel, nil, 0); err != nil {
			t.Fatal(err)
		}
		got, err := p.Resolve(t.Context(), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range got {
			all = append(all, s.String())
		}
	}
	slices.Sort(all)
	if want := []string{"bb/acme/legacy", "gh/acme/gadgets", "gh/acme/widgets"}; !slices.Equal(all, want) {
		t.Errorf("three shards keep %v, want each of %v once", all, want)
	}
}
