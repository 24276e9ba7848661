package circlecitest_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
)

// TestWorldAcrossDays: a World whose clock is moved holds pipelines across
// days and branches, listed newest first in pages of 20 (CircleCI's size)
// with and without a branch, each created_at where the clock stood; a
// workflow rerun days later on an old pipeline is listed beside the
// original, the rerun first. Every answer passes the OpenAPI contract.
func TestWorldAcrossDays(t *testing.T) {
	v2025, v2026 := loadSpecs(t)
	w := circlecitest.NewWorld()
	start := time.Date(2026, time.November, 1, 0, 0, 0, 0, time.UTC)
	w.SetClock(start)
	p := w.AddProject("gh/acme/widgets", "main")
	branches := []string{"main", "feature/a", "feature/b"}
	var pls []*circlecitest.Pipeline
	for i := range 45 {
		pl := p.AddPipeline(branches[i%3])
		if i == 0 && pl.Created() != start.Add(61*time.Second+123*time.Millisecond) {
			t.Errorf("the first pipeline was created at %v, a minute after the clock's %v", pl.Created(), start)
		}
		wf := pl.AddWorkflow("build")
		wf.AddJob("test", circlecitest.JobOptions{}).AddArtifact(0, "report.xml", 10)
		pls = append(pls, pl)
		w.Advance(8 * time.Hour)
	}
	old := pls[3]
	original := old.Workflows()[0]
	w.Advance(10 * 24 * time.Hour)
	rerun := original.Rerun()
	rerun.AddJob("test", circlecitest.JobOptions{}).AddArtifact(0, "report.xml", 12)
	if got := w.Now(); got.Before(old.Created().Add(10 * 24 * time.Hour)) {
		t.Errorf("clock %v, not ten days after pipeline %d's %v", got, old.Number(), old.Created())
	}

	srv := circlecitest.Start(t, w, circlecitest.Options{Token: contractToken})
	c := &contract{t: t, srv: srv, v2025: v2025, v2026: v2026, validated: make(map[string]int)}
	type item struct {
		ID        string `json:"id"`
		Number    int64  `json:"number"`
		CreatedAt string `json:"created_at"`
	}
	// list answers every page of path, validated, and the size of each.
	list := func(template, path string, query url.Values) (items []item, sizes []int) {
		t.Helper()
		for {
			status, body := c.get(template, path, fetchOpts{query: query})
			if status != http.StatusOK {
				t.Fatalf("GET %s: %d %s", path, status, body)
			}
			var pg struct {
				Items []item  `json:"items"`
				Next  *string `json:"next_page_token"`
			}
			if err := json.Unmarshal(body, &pg); err != nil {
				t.Fatal(err)
			}
			items, sizes = append(items, pg.Items...), append(sizes, len(pg.Items))
			if pg.Next == nil {
				return items, sizes
			}
			query = url.Values{"page-token": {*pg.Next}, "branch": query["branch"]}
		}
	}
	const pipelines = "/project/{project-slug}/pipeline"
	all, sizes := list(pipelines, "/project/gh/acme/widgets/pipeline", url.Values{})
	if fmt.Sprint(sizes) != "[20 20 5]" {
		t.Errorf("pages of %v pipelines, want [20 20 5]", sizes)
	}
	for i, it := range all {
		pl := pls[len(pls)-1-i]
		if it.Number != pl.Number() || it.CreatedAt != pl.Created().Format("2006-01-02T15:04:05.000Z") {
			t.Errorf("item %d is pipeline %d created %s, want %d created %v", i, it.Number, it.CreatedAt, pl.Number(), pl.Created())
		}
		if i > 0 && pl.Created().Sub(pls[len(pls)-i].Created()) > -8*time.Hour {
			t.Errorf("pipeline %d is not 8 hours older than the one before it", pl.Number())
		}
	}
	onA, sizes := list(pipelines, "/project/gh/acme/widgets/pipeline", url.Values{"branch": {"feature/a"}})
	if fmt.Sprint(sizes) != "[15]" || onA[0].Number != 44 || onA[14].Number != 2 {
		t.Errorf("feature/a: pages %v from %d to %d, want one page of 15 from 44 to 2", sizes, onA[0].Number, onA[len(onA)-1].Number)
	}

	wfs, _ := list("/pipeline/{pipeline-id}/workflow", "/pipeline/"+old.ID()+"/workflow", url.Values{})
	if len(wfs) != 2 || wfs[0].ID != rerun.ID() || wfs[1].ID != original.ID() {
		t.Fatalf("workflows of the old pipeline: %+v, want the rerun %s then the original %s", wfs, rerun.ID(), original.ID())
	}
	created, err := time.Parse(time.RFC3339, wfs[0].CreatedAt)
	if err != nil || created.Sub(old.Created()) < 10*24*time.Hour {
		t.Errorf("the rerun was created at %s (%v), not ten days after its pipeline (%v)", wfs[0].CreatedAt, err, old.Created())
	}
	status, body := c.get("/pipeline/{pipeline-id}", "/pipeline/"+old.ID(), fetchOpts{})
	if status != http.StatusOK {
		t.Fatalf("GET pipeline %d: %d %s", old.Number(), status, body)
	}
	var pl item
	json.Unmarshal(body, &pl)
	if pl.CreatedAt != old.Created().Format("2006-01-02T15:04:05.000Z") {
		t.Errorf("the rerun moved its pipeline's created_at to %s", pl.CreatedAt)
	}
	t.Logf("validated %v", c.validated)
}
