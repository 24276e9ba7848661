package sync_test

import (
	"context"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	stdsync "sync"
	"testing"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
	"github.com/artifact-sync/artifact-sync/manifest"
	"github.com/artifact-sync/artifact-sync/sink"
	ccsync "github.com/artifact-sync/artifact-sync/sync"
)

// listingSink notes the prefixes the destination is listed under.
type listingSink struct {
	sink.Sink
	mu       stdsync.Mutex
	prefixes []string
}

func (l *listingSink) List(ctx context.Context, prefix string) iter.Seq2[sink.Info, error] {
	l.mu.Lock()
	l.prefixes = append(l.prefixes, prefix)
	l.mu.Unlock()
	return l.Sink.List(ctx, prefix)
}

// The check that puts back what the destination lost looks only at what
// the run selects: a run over the newest pipeline of a mirror of thirty
// lists that pipeline's folders, not every folder the mirror has gathered,
// and still puts back a file of it that went missing. A file missing from
// an older pipeline, outside the run's selection, is left for a run that
// selects it.
func TestDestinationCheckFollowsTheSelection(t *testing.T) {
	w := circlecitest.NewWorld()
	p := w.AddProject("gh/acme/widgets", "main")
	var arts []*circlecitest.Artifact
	for range 30 {
		wf := p.AddPipeline("main").AddWorkflow("build")
		for j := range 2 {
			arts = append(arts, wf.AddJob("job-"+strconv.Itoa(j), circlecitest.JobOptions{}).AddArtifact(0, "out.txt", 100))
		}
	}
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: token})
	client := newClient(t, srv.URL)
	local, dir := localSink(t)
	opts := pullOpts()
	opts.Manifest = new(manifest.MemStore)
	if sum, err := ccsync.Pull(t.Context(), client, client, slug, &ccsync.Selection{Branch: "main", Pipelines: 30}, local, opts); err != nil || sum.Transferred != len(arts) {
		t.Fatalf("first pull: %+v, %v", sum, err)
	}
	newest, oldest := arts[len(arts)-1], arts[0]
	for _, a := range []*circlecitest.Artifact{newest, oldest} {
		if err := os.Remove(filepath.Join(dir, defaultKey(a))); err != nil {
			t.Fatal(err)
		}
	}

	dest := &listingSink{Sink: local}
	sum, err := ccsync.Pull(t.Context(), client, client, slug, &ccsync.Selection{PipelineNumber: 30}, dest, opts)
	if err != nil || sum.Transferred != 1 {
		t.Fatalf("pull of the newest pipeline: %+v, %v; want its missing file put back", sum, err)
	}
	want := []string{strconv.FormatInt(arts[len(arts)-2].Job().Number(), 10) + "/", strconv.FormatInt(newest.Job().Number(), 10) + "/"}
	var got []string
	for _, prefix := range dest.prefixes {
		if !strings.HasPrefix(prefix, ccsync.StateDir) {
			got = append(got, prefix)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("destination listed under %q, want only the selected pipeline's folders %q", got, want)
	}
	if _, err := os.Stat(filepath.Join(dir, defaultKey(newest))); err != nil {
		t.Errorf("the selected pipeline's missing file: %v", err)
	}
}
