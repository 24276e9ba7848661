package sync_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
	ccsync "github.com/artifact-sync/artifact-sync/sync"
)

func bigWorld(size int64) (*circlecitest.World, *circlecitest.Artifact) {
	w := circlecitest.NewWorld()
	p := w.AddProject("gh/acme/widgets", "main")
	a := p.AddPipeline("main").AddWorkflow("build").AddJob("big", circlecitest.JobOptions{}).AddArtifact(0, "big.bin", size)
	return w, a
}

// A large artifact from a server that caps each connection's bandwidth is
// fetched over several connections in ranges, and arrives byte-identical.
func TestLargeArtifactOverSeveralConnections(t *testing.T) {
	const size = 24<<20 + 12345
	for _, tc := range []struct {
		name     string
		opts     circlecitest.Options
		streams  int
		faults   circlecitest.FaultFunc
		fastRate int64
		conc     int
	}{
		{name: "ranges", opts: circlecitest.Options{Bandwidth: 4 << 20}, streams: 4},
		{name: "ranges through a redirect", opts: circlecitest.Options{Bandwidth: 4 << 20, Redirect: true}, streams: 4},
		{name: "ranges with cut connections", opts: circlecitest.Options{Bandwidth: 32 << 20}, streams: 4,
			faults: circlecitest.OnDownloads(circlecitest.FailFirst(1, circlecitest.CutFault(300<<10)))},
		// A server that advertises ranges but answers 200 to them: the
		// file is fetched again over one connection.
		{name: "server without ranges", opts: circlecitest.Options{NoRange: true}, streams: 4},
		{name: "one stream", opts: circlecitest.Options{}, streams: 1},
		// A first connection that is fast enough is kept alone.
		{name: "fast first connection", opts: circlecitest.Options{Bandwidth: 16 << 20}, streams: 4, fastRate: 1},
		// The extra streams of all transfers together are at most -j.
		{name: "streams within -j", opts: circlecitest.Options{Bandwidth: 4 << 20}, streams: 4, conc: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, a := bigWorld(size)
			tc.opts.Token = token
			var injected atomic.Int32
			if tc.faults != nil {
				tc.opts.Faults = func(c circlecitest.Call) circlecitest.Fault {
					f := tc.faults(c)
					if f != (circlecitest.Fault{}) {
						injected.Add(1)
					}
					return f
				}
			}
			srv := circlecitest.Start(t, w, tc.opts)
			client := newClient(t, srv.URL)
			dest, dir := localSink(t)
			opts := pullOpts()
			opts.MultiThreadStreams, opts.MultiThreadCutoff = tc.streams, 1<<20
			opts.MultiThreadFastRate = tc.fastRate
			opts.Concurrency = tc.conc
			start := time.Now()
			sum, err := ccsync.Pull(t.Context(), client, client, slug, &ccsync.Selection{}, dest, opts)
			if err != nil || sum.Transferred != 1 {
				t.Fatalf("%+v, %v", sum, err)
			}
			checkTree(t, dir, []*circlecitest.Artifact{a})
			peak := srv.PeakConcurrentDownloads()
			switch {
			case tc.streams > 1 && !tc.opts.NoRange && tc.fastRate == 0 && peak < 2:
				t.Errorf("peak of %d concurrent downloads: the file was not fetched in parallel ranges", peak)
			case tc.conc == 1 && (peak < 2 || peak > 3):
				// The first and one more; the server may still be
				// serving the first GET, closed after its chunk, when
				// the next range arrives.
				t.Errorf("peak of %d concurrent downloads with -j 1: want the first and one more", peak)
			case (tc.streams == 1 || tc.fastRate > 0) && peak != 1:
				t.Errorf("peak of %d concurrent downloads for one file over one connection", peak)
			case tc.fastRate > 0 && srv.DownloadTotals().Started != 1:
				t.Errorf("%d requests for a file one fast connection carried", srv.DownloadTotals().Started)
			}
			if tc.faults != nil && injected.Load() == 0 {
				t.Error("no fault was injected")
			}
			t.Logf("%s in %v, peak %d connections", tc.name, time.Since(start).Round(time.Millisecond), peak)
		})
	}
}

// A range request answered 404 (the artifact expired meanwhile) fails the
// artifact at once, like a 404 on the first GET, instead of being retried.
func TestRangeNotFoundIsNotRetried(t *testing.T) {
	const size = 24 << 20
	w, _ := bigWorld(size)
	// 4 MiB/s per connection: slow enough that a busy machine still finds
	// a split worth it (at 8 MiB/s one stream once finished first).
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: token, Bandwidth: 4 << 20,
		Faults: circlecitest.OnDownloads(func(c circlecitest.Call) circlecitest.Fault {
			if c.Request.Header.Get("Range") != "" {
				return circlecitest.StatusFault(404, "")
			}
			return circlecitest.Fault{}
		})})
	client := newClient(t, srv.URL)
	dest, _ := localSink(t)
	opts := pullOpts()
	opts.MultiThreadStreams, opts.MultiThreadCutoff = 4, 1<<20
	sum, err := ccsync.Pull(t.Context(), client, client, slug, &ccsync.Selection{}, dest, opts)
	if err != nil || sum.Failed != 1 {
		t.Fatalf("%+v, %v; want the artifact failed", sum, err)
	}
	if n := srv.Requests("download"); n > 1+opts.MultiThreadStreams {
		t.Errorf("%d download requests: the 404 was retried", n)
	}
}
