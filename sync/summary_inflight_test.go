package sync_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
	ccsync "github.com/artifact-sync/artifact-sync/sync"
)

// TestInterruptedPullCountsWhatItDownloaded: a pull stopped midway through
// a large file counts it in flight, with the bytes the destination keeps
// for the resume, and counts those as what it downloaded; the rerun counts
// only the rest, over one connection or several.
func TestInterruptedPullCountsWhatItDownloaded(t *testing.T) {
	const size = 12 << 20
	for _, streams := range []int{1, 4} {
		t.Run("streams="+strconv.Itoa(streams), func(t *testing.T) {
			w, a := bigWorld(size)
			srv := circlecitest.Start(t, w, circlecitest.Options{Token: token, Bandwidth: 4 << 20})
			client := newClient(t, srv.URL)
			dest, dir := localSink(t)
			opts := pullOpts()
			opts.MultiThreadStreams = streams
			opts.MultiThreadCutoff = 4 << 20

			ctx, cancel := context.WithCancel(t.Context())
			go func() {
				for srv.BytesServed() < size/3 {
					time.Sleep(2 * time.Millisecond)
				}
				cancel()
			}()
			first, err := ccsync.Pull(ctx, client, client, slug, &ccsync.Selection{}, dest, opts)
			if err == nil {
				t.Fatal("the interrupted pull reported success")
			}
			p, err := dest.Partial(t.Context(), defaultKey(a))
			if err != nil {
				t.Fatal(err)
			}
			kept := p.Size
			if p.Spans != nil {
				kept = 0
				for _, s := range p.Spans {
					kept += s.To - s.From
				}
			}
			if kept == 0 || first.InFlight != 1 || first.KeptBytes != kept || first.NotStarted() != 0 || first.Transferred != 0 {
				t.Errorf("interrupted with %d bytes kept: %d in flight (%d bytes kept), %d not started, %d transferred; want the file in flight with what is kept",
					kept, first.InFlight, first.KeptBytes, first.NotStarted(), first.Transferred)
			}
			if first.Bytes != kept {
				t.Errorf("the interrupted run downloaded the %d bytes kept; its summary says %d", kept, first.Bytes)
			}

			second, err := ccsync.Pull(t.Context(), client, client, slug, &ccsync.Selection{}, dest, opts)
			if err != nil || second.Transferred != 1 || second.InFlight != 0 || second.KeptBytes != 0 {
				t.Fatalf("rerun: %+v, %v", second, err)
			}
			checkTree(t, dir, []*circlecitest.Artifact{a})
			if want := size - kept; second.Bytes != want {
				t.Errorf("the rerun resumed from %d kept bytes and downloaded %d; its summary says %d", kept, want, second.Bytes)
			}
		})
	}
}
