package sync_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"syscall"
	"testing"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
	"github.com/artifact-sync/artifact-sync/manifest"
	"github.com/artifact-sync/artifact-sync/sink"
	ccsync "github.com/artifact-sync/artifact-sync/sync"
)

// fullSink is a destination that runs out of space after room bytes of any
// one object whose key is in full, as a disk does mid-file.
type fullSink struct {
	sink.Sink
	full map[string]bool
	room int64
}

func (s *fullSink) Put(ctx context.Context, key string, r io.Reader, opts sink.PutOptions) (sink.Info, error) {
	if !s.full[key] {
		return s.Sink.Put(ctx, key, r, opts)
	}
	io.CopyN(io.Discard, r, s.room)
	return sink.Info{}, &sink.PermanentError{Err: fmt.Errorf("put %s: %w", key,
		&fs.PathError{Op: "write", Path: "/dest/.artifact-sync/tmp/x", Err: syscall.ENOSPC})}
}

// TestPullStopsOnFullDestination: a destination that fills up mid-file stops
// the run with an error that says so (main exits 2), the half-written object
// never appears at its key, and what finished before is recorded, so the
// rerun fetches only the rest.
func TestPullStopsOnFullDestination(t *testing.T) {
	w := circlecitest.NewWorld()
	j := w.AddProject("gh/acme/widgets", "main").AddPipeline("main").AddWorkflow("build").AddJob("build", circlecitest.JobOptions{})
	var small []*circlecitest.Artifact
	for i := range 12 {
		small = append(small, j.AddArtifact(0, fmt.Sprintf("a/%02d.txt", i), 4<<10))
	}
	big := j.AddArtifact(0, "z/big.bin", 1<<20)
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: token})
	client := newClient(t, srv.URL)
	mem := sink.NewMemory()
	dest := &fullSink{Sink: mem, full: map[string]bool{defaultKey(big): true}, room: 300 << 10}

	opts := pullOpts()
	// The small files sort first and finish first, but for the last one,
	// which may still be being written (-j 1 downloads one while writing
	// another) when the large one fails and stops the run.
	opts.Concurrency = 1
	sum, err := ccsync.Pull(t.Context(), client, client, slug, &ccsync.Selection{}, dest, opts)
	if err == nil || !sink.IsPermanent(err) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Pull to a full destination: %v, want a permanent ENOSPC error", err)
	}
	done := sum.Transferred
	if done < len(small)-1 || done > len(small) {
		t.Errorf("summary %+v, want the %d small files transferred (or all but the last)", sum, len(small))
	}
	if _, err := mem.Stat(t.Context(), defaultKey(big)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the large file is at its key after the disk filled: %v", err)
	}
	m, err := manifest.Open(t.Context(), &ccsync.SinkStore{Sink: mem, Prefix: ccsync.ManifestPrefix}, manifest.Options{Destination: mem.String()})
	if err != nil {
		t.Fatalf("the manifest does not load: %v", err)
	}
	if m.Len() != done {
		t.Errorf("the manifest holds %d entries, want the %d transferred", m.Len(), done)
	}

	srv.ResetStats()
	rest := len(small) + 1 - done
	sum, err = ccsync.Pull(t.Context(), client, client, slug, &ccsync.Selection{}, mem, pullOpts())
	if err != nil || sum.Transferred != rest || sum.Skipped != done {
		t.Fatalf("rerun with room: %+v, %v", sum, err)
	}
	if n := srv.DownloadTotals().Started; n != rest {
		t.Errorf("the rerun downloaded %d artifacts, want only the %d not yet recorded", n, rest)
	}
}
