package sync_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"iter"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	stdsync "sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/artifact-sync/artifact-sync/circleci"
	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
	"github.com/artifact-sync/artifact-sync/manifest"
	"github.com/artifact-sync/artifact-sync/sink"
	ccsync "github.com/artifact-sync/artifact-sync/sync"
)

var errCut = errors.New("cut")

// keepPartial leaves in dest what an interrupted transfer of a leaves: the
// first n bytes of data, described as a write of total bytes from a source
// with validator.
func keepPartial(t *testing.T, dest *sink.Local, a *circlecitest.Artifact, data []byte, n int, total int64, validator string) {
	t.Helper()
	_, err := dest.Put(t.Context(), defaultKey(a), io.MultiReader(bytes.NewReader(data[:n]), iotest.ErrReader(errCut)),
		sink.PutOptions{Size: total, Validator: validator})
	if !errors.Is(err, errCut) {
		t.Fatalf("making a partial: %v", err)
	}
	if p, _ := dest.Partial(t.Context(), defaultKey(a)); p.Size != int64(n) {
		t.Fatalf("partial kept %d bytes, want %d", p.Size, n)
	}
}

// Whatever an interrupted run kept, the next run completes the artifact
// byte-identical, fetching again at most what it cannot prove: a partial
// as long as the artifact (an interrupt after the last byte arrived, before
// the file was placed) used to be resumed at its end, answered 416, and
// failed the artifact on every rerun, --force included.
func TestResumeWhateverWasKept(t *testing.T) {
	const size = 300_000
	for _, tc := range []struct {
		name string
		// kept, total and validator describe the partial; replace changes
		// the artifact before the rerun.
		kept      int
		total     int64
		validator func(a *circlecitest.Artifact) string
		replace   bool
		force     bool
		maxServed int64
	}{
		{name: "full length", kept: size, total: size, maxServed: 1},
		{name: "full length with --force", kept: size, total: size, force: true, maxServed: size},
		{name: "half", kept: size / 2, total: size, maxServed: size / 2},
		{name: "artifact replaced since", kept: size / 2, total: size, replace: true, maxServed: 2 * size},
		// The 416 answer's short body, then the whole file.
		{name: "kept for a longer version", kept: size, total: size + 10, maxServed: size + 1<<10},
		{name: "kept without a validator", kept: size / 2, total: size, validator: func(*circlecitest.Artifact) string { return "" }, maxServed: size},
		{name: "kept for another version", kept: size / 2, total: size, validator: func(*circlecitest.Artifact) string { return `"other"` }, maxServed: size},
		{name: "size unknown when kept", kept: size / 2, total: -1, maxServed: size},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, a := bigWorld(size)
			srv := circlecitest.Start(t, w, circlecitest.Options{Token: token})
			client := newClient(t, srv.URL)
			dest, dir := localSink(t)
			v := a.ETag()
			if tc.validator != nil {
				v = tc.validator(a)
			}
			data := content(t, a)
			if tc.kept > len(data) {
				data = append(data, make([]byte, tc.kept-len(data))...)
			}
			keepPartial(t, dest, a, data, tc.kept, tc.total, v)
			if tc.replace {
				a.Replace(size + 7)
			}
			opts := pullOpts()
			opts.Force = tc.force
			sum, err := ccsync.Pull(t.Context(), client, client, slug, &ccsync.Selection{}, dest, opts)
			if err != nil || sum.Failed != 0 || sum.Transferred != 1 {
				t.Fatalf("pull: %+v, %v", sum, err)
			}
			checkTree(t, dir, []*circlecitest.Artifact{a})
			if got := srv.BytesServed(); got > tc.maxServed {
				t.Errorf("served %d bytes, want at most %d", got, tc.maxServed)
			}
			if p, _ := dest.Partial(t.Context(), defaultKey(a)); p.Size != 0 {
				t.Errorf("a partial is left after the artifact was completed: %+v", p)
			}
		})
	}
}

// A large artifact fetched over several connections and interrupted keeps
// what its streams wrote: the rerun fetches only the missing ranges.
func TestMultiStreamDownloadResumes(t *testing.T) {
	const size = 24 << 20
	w, a := bigWorld(size)
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: token, Bandwidth: 2 << 20})
	client := newClient(t, srv.URL)
	dest, dir := localSink(t)
	opts := pullOpts()
	opts.MultiThreadStreams = 4
	opts.MultiThreadCutoff = 4 << 20

	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		for srv.BytesServed() < size/3 {
			time.Sleep(2 * time.Millisecond)
		}
		cancel()
	}()
	if _, err := ccsync.Pull(ctx, client, client, slug, &ccsync.Selection{}, dest, opts); err == nil {
		t.Fatal("the interrupted pull reported success")
	}
	if _, err := os.Stat(filepath.Join(dir, defaultKey(a))); err == nil {
		t.Fatal("a partial file sits at the final path")
	}
	first := srv.BytesServed()
	if srv.Connections(circlecitest.HostArtifacts) < 2 {
		t.Fatalf("the download used %d connection(s): the test needs several streams", srv.Connections(circlecitest.HostArtifacts))
	}
	sum, err := ccsync.Pull(t.Context(), client, client, slug, &ccsync.Selection{}, dest, opts)
	if err != nil || sum.Transferred != 1 {
		t.Fatalf("rerun: %+v, %v", sum, err)
	}
	checkTree(t, dir, []*circlecitest.Artifact{a})
	total := srv.BytesServed()
	t.Logf("first run %d bytes, both runs %d bytes = %.3fx the artifact", first, total, float64(total)/size)
	if total > size*105/100 {
		t.Errorf("served %d bytes over both runs, %.2fx the artifact's %d: the rerun fetched kept ranges again", total, float64(total)/size, size)
	}
}

// A connection closed every few MiB slows a large download but never fails
// it: an attempt that kept bytes renews the artifact's (or the range's)
// retries, and what was kept is resumed, not fetched again.
func TestCutsEveryFewMiBNeverFailALargeDownload(t *testing.T) {
	const size = 20 << 20
	for _, tc := range []struct {
		streams int
		every   int64 // bytes each answer carries before its connection closes
	}{{1, 3 << 20}, {4, 700 << 10}} { // ranges are 1 MiB here
		streams := tc.streams
		t.Run("streams="+strconv.Itoa(streams), func(t *testing.T) {
			w, a := bigWorld(size)
			srv := circlecitest.Start(t, w, circlecitest.Options{Token: token,
				Faults: circlecitest.OnDownloads(func(circlecitest.Call) circlecitest.Fault { return circlecitest.TruncateFault(tc.every) })})
			client := newClient(t, srv.URL)
			dest, dir := localSink(t)
			opts := pullOpts()
			opts.Retries = 2 // far fewer than the cuts it takes
			opts.MultiThreadStreams = streams
			opts.MultiThreadCutoff = 4 << 20
			sum, err := ccsync.Pull(t.Context(), client, client, slug, &ccsync.Selection{}, dest, opts)
			if err != nil || sum.Failed != 0 {
				t.Fatalf("pull: %+v, %v", sum, err)
			}
			checkTree(t, dir, []*circlecitest.Artifact{a})
			served := srv.BytesServed()
			t.Logf("served %d bytes = %.2fx", served, float64(served)/size)
			if served > size*13/10 {
				t.Errorf("served %.2fx the artifact: cut attempts threw away what they had received", float64(served)/size)
			}
		})
	}
}

// A storage host refusing one object (an expired presigned URL, a missing
// object) fails that artifact only, after one fresh request, and blames no
// token: none was sent there.
func TestStorageRefusalFailsOnlyThatArtifact(t *testing.T) {
	for _, status := range []int{401, 403, 404, 410} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			f := newFixture(t, circlecitest.Options{Redirect: true})
			bad := f.arts[4]
			f.srv.SetFaults(circlecitest.OnHost(circlecitest.HostStorage, circlecitest.OnArtifact(bad, func(circlecitest.Call) circlecitest.Fault {
				return circlecitest.StatusFault(status, "")
			})))
			dest, dir := localSink(t)
			sum, err := f.pull(t, t.Context(), dest, ccsync.Selection{PipelineNumber: 1}, pullOpts())
			if err != nil {
				t.Fatalf("one refused object stopped the run: %v", err)
			}
			if sum.Failed != 1 || len(sum.Failures) != 1 || sum.Failures[0].Path != bad.Path() {
				t.Fatalf("failures = %d %+v, want only %s", sum.Failed, sum.Failures, bad.Path())
			}
			if msg := sum.Failures[0].Error; strings.Contains(strings.ToLower(msg), "token") || !strings.Contains(msg, strconv.Itoa(status)) {
				t.Errorf("failure message %q: want the status and no token hint", msg)
			}
			var refused int
			for _, r := range f.srv.RequestLog() {
				if r.Host == circlecitest.HostStorage && r.Status == status {
					refused++
				}
			}
			if refused != 2 {
				t.Errorf("%d requests for the refused object, want 2 (one fresh retry)", refused)
			}
			good := append(append([]*circlecitest.Artifact{}, f.arts[:4]...), f.arts[5:]...)
			checkTree(t, dir, good)
		})
	}
}

// A job whose artifact listing fails after retries is one failure entry
// naming the job; every other job's artifacts are transferred, and a rerun
// lists it again.
func TestJobListingFailureFailsOnlyThatJob(t *testing.T) {
	for _, status := range []int{500, 404} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			f := newFixture(t, circlecitest.Options{})
			job := f.arts[0].Job()
			failing := func(c circlecitest.Call) circlecitest.Fault {
				if c.Route == "artifacts" && strings.Contains(c.Key, "/"+strconv.FormatInt(job.Number(), 10)+"/artifacts") {
					return circlecitest.StatusFault(status, "")
				}
				return circlecitest.Fault{}
			}
			f.srv.SetFaults(failing)
			dest, dir := localSink(t)
			sum, err := f.pull(t, t.Context(), dest, ccsync.Selection{PipelineNumber: 1}, pullOpts())
			if err != nil {
				t.Fatalf("one job's listing stopped the run: %v", err)
			}
			if sum.Failed != 1 || len(sum.Failures) != 1 || sum.Failures[0].JobNumber != job.Number() || sum.Failures[0].JobName != job.Name() || sum.Failures[0].Path != "" {
				t.Fatalf("failures = %+v, want one entry for job %d (%s)", sum.Failures, job.Number(), job.Name())
			}
			if !strings.Contains(sum.Failures[0].Error, strconv.Itoa(status)) {
				t.Errorf("failure message %q does not say what failed", sum.Failures[0].Error)
			}
			checkTree(t, dir, f.arts[2:])

			f.srv.SetFaults(nil)
			sum, err = f.pull(t, t.Context(), dest, ccsync.Selection{PipelineNumber: 1}, pullOpts())
			if err != nil || sum.Failed != 0 || sum.Transferred != 2 {
				t.Fatalf("rerun: %+v, %v; want the failed job's 2 artifacts", sum, err)
			}
			checkTree(t, dir, f.arts)
		})
	}
}

// When a resolution request fails while a job's listing has failed, the
// run's error is the resolution's own, not one wrapped in the other.
func TestErrorsCarryTheirOwnCause(t *testing.T) {
	w := circlecitest.NewWorld()
	pl := w.AddProject("gh/acme/widgets", "main").AddPipeline("main")
	a1 := pl.AddWorkflow("build").AddJob("build", circlecitest.JobOptions{})
	a1.AddArtifact(0, "a.txt", 10)
	deploy := pl.AddWorkflow("deploy")
	deploy.AddJob("ship", circlecitest.JobOptions{}).AddArtifact(0, "b.txt", 10)
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: token})
	srv.SetFaults(func(c circlecitest.Call) circlecitest.Fault {
		switch {
		case c.Route == "artifacts" && strings.Contains(c.Key, "/"+strconv.FormatInt(a1.Number(), 10)+"/artifacts"):
			return circlecitest.StatusFault(404, "")
		case c.Route == "jobs" && strings.Contains(c.Key, deploy.ID()):
			// Answered after the listing of a1 failed.
			time.Sleep(50 * time.Millisecond)
			return circlecitest.StatusFault(500, "")
		}
		return circlecitest.Fault{}
	})
	client := newClient(t, srv.URL)
	dest, _ := localSink(t)
	_, err := ccsync.Pull(t.Context(), ccsync.LimitAPI(client, 4), client, slug, &ccsync.Selection{}, dest, pullOpts())
	if err == nil {
		t.Fatal("a failed workflow listing went unreported")
	}
	msg := err.Error()
	if !strings.Contains(msg, "500") || strings.Contains(msg, "404") || strings.Contains(msg, "artifacts of job") || strings.Contains(msg, "listing the artifacts") {
		t.Errorf("error %q: want the workflow listing's own 500, nothing of the job listing's 404", msg)
	}
}

// A plain pull puts back what the manifest records but the destination
// lost or holds at another size, and fetches nothing else.
func TestPullRepairsWhatIsMissing(t *testing.T) {
	f := newFixture(t, circlecitest.Options{})
	dest, dir := localSink(t)
	if _, err := f.pull(t, t.Context(), dest, ccsync.Selection{PipelineNumber: 1}, pullOpts()); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, defaultKey(f.arts[3]))); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(dir, defaultKey(f.arts[5])), 7); err != nil {
		t.Fatal(err)
	}
	f.srv.ResetStats()
	sum, err := f.pull(t, t.Context(), dest, ccsync.Selection{PipelineNumber: 1}, pullOpts())
	if err != nil || sum.Transferred != 2 || sum.Failed != 0 {
		t.Fatalf("rerun: %+v, %v; want the deleted and the truncated file fetched again", sum, err)
	}
	checkTree(t, dir, f.arts)
	if got := f.srv.DownloadTotals().Started; got != 2 {
		t.Errorf("%d downloads, want 2", got)
	}
}

// gatedList is a destination whose listings wait until gate is closed.
type gatedList struct {
	sink.Sink
	gate <-chan struct{}
}

func (g gatedList) List(ctx context.Context, prefix string) iter.Seq2[sink.Info, error] {
	return func(yield func(sink.Info, error) bool) {
		select {
		case <-g.gate:
		case <-ctx.Done():
			yield(sink.Info{}, ctx.Err())
			return
		}
		for info, err := range g.Sink.List(ctx, prefix) {
			if !yield(info, err) {
				return
			}
		}
	}
}

// What the manifest does not record is planned and transferred without
// waiting for the listing of the destination, however many recorded
// folders there are to list: here no listing ends before a download has
// started.
func TestNewArtifactsDoNotWaitForTheDestinationListing(t *testing.T) {
	w := circlecitest.NewWorld()
	p := w.AddProject("gh/acme/widgets", "main")
	wf := p.AddPipeline("main").AddWorkflow("build")
	var arts []*circlecitest.Artifact
	for i := range 12 { // more recorded folders than are listed at once
		arts = append(arts, wf.AddJob("job-"+strconv.Itoa(i), circlecitest.JobOptions{}).AddArtifact(0, "out.txt", int64(10+i)))
	}
	arts = append(arts, p.AddPipeline("main").AddWorkflow("build").AddJob("new", circlecitest.JobOptions{}).AddArtifact(0, "new.txt", 99))
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: token})
	client := newClient(t, srv.URL)
	dest, dir := localSink(t)
	opts := pullOpts()
	opts.Manifest = new(manifest.MemStore)
	if sum, err := ccsync.Pull(t.Context(), client, client, slug, &ccsync.Selection{PipelineNumber: 1}, dest, opts); err != nil || sum.Transferred != len(arts)-1 {
		t.Fatalf("first pull: %+v, %v", sum, err)
	}
	gate := make(chan struct{})
	var once stdsync.Once
	srv.SetFaults(circlecitest.OnDownloads(func(circlecitest.Call) circlecitest.Fault {
		once.Do(func() { close(gate) })
		return circlecitest.Fault{}
	}))
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	sum, err := ccsync.Pull(ctx, client, client, slug, &ccsync.Selection{PipelineNumber: 2}, gatedList{dest, gate}, opts)
	if err != nil || sum.Transferred != 1 {
		t.Fatalf("pull of the next pipeline: %+v, %v; want its artifact transferred (a minute without progress: the plan waited for the listing, and the listing for a download)", sum, err)
	}
	checkTree(t, dir, arts)
}

// flakyStore fails the writes whose numbers fail says, like an S3 bucket
// answering 503 SlowDown now and then.
type flakyStore struct {
	manifest.MemStore
	writes atomic.Int32
	fail   func(n int32) bool
}

func (s *flakyStore) WriteFile(ctx context.Context, name string, data []byte) error {
	if s.fail(s.writes.Add(1)) {
		return errors.New("503 SlowDown")
	}
	return s.MemStore.WriteFile(ctx, name, data)
}

// A manifest write that fails stops nothing: the run goes on, the records
// wait for the next write, and the manifest closed at the end holds every
// transfer.
func TestFailedManifestWritesDoNotStopTheRun(t *testing.T) {
	w, arts := manyWorld(300)
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: token})
	client := newClient(t, srv.URL)
	dest, dir := localSink(t)
	st := &flakyStore{fail: func(n int32) bool { return n == 2 || n == 3 }}
	opts := pullOpts()
	opts.Manifest = st
	opts.Concurrency = 4
	sum, err := ccsync.Pull(t.Context(), client, client, slug, &ccsync.Selection{}, dest, opts)
	if err != nil || sum.Transferred != 300 || sum.Failed != 0 {
		t.Fatalf("pull with a flaky manifest store: %d transferred, %d failed, %v", sum.Transferred, sum.Failed, err)
	}
	if st.writes.Load() < 4 {
		t.Fatalf("only %d manifest writes: the failures were not injected", st.writes.Load())
	}
	checkTree(t, dir, arts)
	sum, err = ccsync.Pull(t.Context(), client, client, slug, &ccsync.Selection{}, dest, opts)
	if err != nil || sum.Skipped != 300 || sum.Transferred != 0 {
		t.Fatalf("rerun: %+v, %v; want every artifact recorded", sum, err)
	}
}

// manyWorld is one job with n small artifacts.
func manyWorld(n int) (*circlecitest.World, []*circlecitest.Artifact) {
	w := circlecitest.NewWorld()
	j := w.AddProject("gh/acme/widgets", "main").AddPipeline("main").AddWorkflow("build").AddJob("many", circlecitest.JobOptions{})
	var arts []*circlecitest.Artifact
	for i := range n {
		arts = append(arts, j.AddArtifact(0, "f/"+strconv.Itoa(i), int64(100+i)))
	}
	return w, arts
}

// When one stream of a multi-stream download fails for good, the others,
// the first one reading the response already under way included, stop at
// once instead of waiting for their bodies or the idle timeout.
func TestFailedStreamStopsTheOthers(t *testing.T) {
	const size = 16 << 20
	w, _ := bigWorld(size)
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: token, Bandwidth: 4 << 20,
		Faults: circlecitest.OnDownloads(func(c circlecitest.Call) circlecitest.Fault {
			if c.Request.Header.Get("Range") == "" {
				return circlecitest.StallFault(600<<10, time.Minute) // the first GET stalls after the probe, inside its first range
			}
			return circlecitest.StatusFault(404, "") // every range is refused
		})})
	client, err := circleci.New(circleci.Config{Host: srv.URL, Token: token, IdleTimeout: time.Minute,
		Retry: circleci.RetryPolicy{InitialInterval: time.Millisecond, MaxInterval: 10 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	dest, _ := localSink(t)
	opts := pullOpts()
	opts.MultiThreadStreams = 4
	opts.MultiThreadCutoff = 1 << 20
	start := time.Now()
	sum, err := ccsync.Pull(t.Context(), client, client, slug, &ccsync.Selection{}, dest, opts)
	if err != nil || sum.Failed != 1 {
		t.Fatalf("pull: %+v, %v; want the artifact failed", sum, err)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("took %s: the stream reading the stalled first answer was not stopped when the others failed", d)
	}
}

// brokenResume is a destination that cannot continue what it kept.
type brokenResume struct{ *sink.Memory }

func (b brokenResume) PutFrom(ctx context.Context, key string, off int64, r io.Reader, opts sink.PutOptions) (sink.Info, error) {
	return sink.Info{}, errors.New("cannot continue here")
}

// Kept bytes the destination keeps failing to continue are dropped when
// the artifact fails, so the next run fetches it afresh instead of failing
// the same way on every run.
func TestKeptBytesThatCannotBeContinuedAreDropped(t *testing.T) {
	const size = 300_000
	w, a := bigWorld(size)
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: token})
	client := newClient(t, srv.URL)
	mem := sink.NewMemory()
	data := content(t, a)
	mem.Put(t.Context(), defaultKey(a), io.MultiReader(bytes.NewReader(data[:size/2]), iotest.ErrReader(errCut)), sink.PutOptions{Size: size, Validator: a.ETag()})
	opts := pullOpts()
	opts.Retries = 2
	sum, err := ccsync.Pull(t.Context(), client, client, slug, &ccsync.Selection{}, brokenResume{mem}, opts)
	if err != nil || sum.Failed != 1 {
		t.Fatalf("pull through a destination that cannot resume: %+v, %v; want the artifact failed", sum, err)
	}
	if p, _ := mem.Partial(t.Context(), defaultKey(a)); p.Size != 0 {
		t.Fatalf("the kept bytes are still there after the artifact failed: %+v", p)
	}
	sum, err = ccsync.Pull(t.Context(), client, client, slug, &ccsync.Selection{}, mem, opts)
	if err != nil || sum.Transferred != 1 {
		t.Fatalf("next run: %+v, %v", sum, err)
	}
}
