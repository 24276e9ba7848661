package sync_test

import (
	"bytes"
	"cmp"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	stdsync "sync"
	"testing"

	"github.com/artifact-sync/artifact-sync/circleci"
	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
	ccsync "github.com/artifact-sync/artifact-sync/sync"
)

// choiceWorld is a pipeline of two workflows with eight jobs in all, listed
// concurrently, and an approval.
func choiceWorld() *circlecitest.World {
	w := circlecitest.NewWorld()
	pl := w.AddProject("gh/acme/widgets", "main").AddPipeline("main")
	for _, name := range []string{"build", "test"} {
		wf := pl.AddWorkflow(name)
		for i := range 4 {
			j := wf.AddJob(fmt.Sprintf("%s-%d", name, i), circlecitest.JobOptions{Parallelism: 2})
			j.AddArtifact(0, "out/a.txt", 10)
			j.AddArtifact(1, "out/a.txt", 11)
			j.AddArtifact(1, fmt.Sprintf("only-%d.bin", i), 12)
		}
		wf.AddApproval("hold")
	}
	return w
}

// collectWith lists every artifact of the newest pipeline through ChooseAPI
// and returns them in order, with what was logged.
func collectWith(t *testing.T, srv *circlecitest.Server, version string) ([]ccsync.Artifact, string, error) {
	t.Helper()
	client, err := circleci.New(circleci.Config{Host: srv.URL, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	var mu stdsync.Mutex
	log := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, nil))
	api, report := ccsync.ChooseAPI(ccsync.LimitAPI(client, 4), version, log)
	var arts []ccsync.Artifact
	_, err = ccsync.Collect(t.Context(), api, circleci.Slug{VCS: "gh", Org: "acme", Repo: "widgets"}, &ccsync.Selection{}, log, func(a ccsync.Artifact) {
		mu.Lock()
		arts = append(arts, a)
		mu.Unlock()
	})
	report()
	slices.SortFunc(arts, func(a, b ccsync.Artifact) int {
		return cmp.Or(cmp.Compare(a.JobNumber, b.JobNumber), cmp.Compare(a.NodeIndex, b.NodeIndex), strings.Compare(a.Path, b.Path))
	})
	mu.Lock()
	defer mu.Unlock()
	return arts, logs.String(), err
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *stdsync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestChooseAPIListsTheSameArtifacts: auto over a retired v2 listing, and
// v3, give the very artifacts (job, node, path, URL, and the job's
// context) that v2 gives, and auto says once that it moved.
func TestChooseAPIListsTheSameArtifacts(t *testing.T) {
	w := choiceWorld()
	live := circlecitest.Start(t, w, circlecitest.Options{Token: token, PageSize: 2})
	want, _, err := collectWith(t, live, ccsync.APIV2)
	if err != nil || len(want) != 24 {
		t.Fatalf("v2 listed %d artifacts: %v", len(want), err)
	}
	retired := circlecitest.Start(t, w, circlecitest.Options{Token: token, PageSize: 2, V2ArtifactsGone: 410})
	for _, version := range []string{ccsync.APIAuto, ccsync.APIV3} {
		got, logs, err := collectWith(t, retired, version)
		if err != nil {
			t.Fatalf("%s: %v", version, err)
		}
		for i := range got {
			// The hosts differ between the two servers, nothing else.
			got[i].URL = strings.Replace(got[i].URL, retired.ArtifactURL, live.ArtifactURL, 1)
		}
		if !slices.EqualFunc(got, want, func(a, b ccsync.Artifact) bool {
			return a.Job == b.Job && a.NodeIndex == b.NodeIndex && a.Path == b.Path && a.URL == b.URL
		}) {
			t.Errorf("%s listed\n%v\nwant\n%v", version, got, want)
		}
		n := strings.Count(logs, "listing artifacts through API v3 for the rest of the run")
		if version == ccsync.APIAuto && n != 1 || version == ccsync.APIV3 && n != 0 {
			t.Errorf("%s: %d lines about the move to v3:\n%s", version, n, logs)
		}
	}
}
