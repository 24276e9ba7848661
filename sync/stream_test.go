package sync_test

import (
	"bytes"
	"context"
	"io"
	"maps"
	"runtime"
	"strconv"
	"strings"
	stdsync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
	"github.com/artifact-sync/artifact-sync/manifest"
	"github.com/artifact-sync/artifact-sync/sink"
	ccsync "github.com/artifact-sync/artifact-sync/sync"
)

// holdListing makes the artifact listing of job (every page of it) wait
// until release is closed or patience runs out, and reports through the
// returned function whether a download arrived while it waited.
func holdListing(t *testing.T, f *fixture, job *circlecitest.Job, patience time.Duration) (release chan struct{}, downloadedWhileHeld func() bool) {
	t.Helper()
	release = make(chan struct{})
	var holding atomic.Int32
	var downloaded, during atomic.Bool
	var once stdsync.Once
	suffix := "/" + strconv.FormatInt(job.Number(), 10) + "/artifacts?"
	f.srv.SetFaults(func(c circlecitest.Call) circlecitest.Fault {
		switch {
		case c.Route == "artifacts" && strings.Contains(c.Key, suffix):
			if downloaded.Load() {
				// A download came before this listing was even asked
				// for (a busy machine's order): it did not wait for it.
				during.Store(true)
				break
			}
			holding.Add(1)
			select {
			case <-release:
			case <-time.After(patience):
			}
			holding.Add(-1)
		case c.Download:
			downloaded.Store(true)
			if holding.Load() > 0 {
				during.Store(true)
				once.Do(func() { close(release) })
			}
		}
		return circlecitest.Fault{}
	})
	return release, during.Load
}

// With the default layout, a job's artifacts are transferred as soon as its
// own listing ends: a job whose listing is slow holds nobody up.
func TestTransfersStartWhileListingGoesOn(t *testing.T) {
	f := newFixture(t, circlecitest.Options{})
	pkg := f.arts[2].Job()
	if pkg.Name() != "package" {
		t.Fatalf("fixture changed: job 1 is %q", pkg.Name())
	}
	_, during := holdListing(t, f, pkg, 5*time.Second)
	dest, dir := localSink(t)
	sum, err := f.pull(t, t.Context(), dest, ccsync.Selection{PipelineNumber: 1}, pullOpts())
	if err != nil {
		t.Fatal(err)
	}
	if !during() {
		t.Error("no download started while the listing of one job was held: transfers wait for every listing")
	}
	if sum.Artifacts != len(f.arts) || sum.Transferred != len(f.arts) || sum.Failed != 0 {
		t.Errorf("summary %+v; want %d artifacts, all transferred", sum, len(f.arts))
	}
	checkTree(t, dir, f.arts)
}

// A layout that could put artifacts of two jobs on one key waits for every
// listing, so a collision is refused before anything is written.
func TestOtherLayoutsPlanBeforeTransferring(t *testing.T) {
	f := newFixture(t, circlecitest.Options{})
	pkg := f.arts[2].Job()
	release, during := holdListing(t, f, pkg, 300*time.Millisecond)
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	dest, _ := localSink(t)
	opts := pullOpts()
	var err error
	if opts.Layout, err = ccsync.ParseLayout("{job_name}/{node_index}/{path}"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.pull(t, t.Context(), dest, ccsync.Selection{PipelineNumber: 1}, opts); err != nil {
		t.Fatal(err)
	}
	if during() {
		t.Error("a download started before every job was listed, with a layout that needs the whole plan first")
	}
}

func TestLayoutDisjoint(t *testing.T) {
	for layout, want := range map[string]bool{
		ccsync.DefaultLayout:                                        true,
		"{project}/{job_number}/{node_index}/{path}":                true,
		"{pipeline_number}/{job_number}-{node_index}/{path}":        true,
		"job-{job_number}/node-{node_index}/files/{path}":           true,
		"{job_number}.{node_index}/{path}":                          true,
		"{job_number}{node_index}/{path}":                           false, // 1,12 and 11,2
		"{job_number}/{node_index}9/{path}":                         false,
		"{job_number}/{path}":                                       false,
		"{node_index}/{path}":                                       false,
		"{branch}/{job_number}/{node_index}/{path}":                 false, // a branch may hold '/'
		"{job_name}/{job_number}/{node_index}/{path}":               false,
		"{job_number}/{node_index}/{path}.bin":                      false,
		"{job_number}/{node_index}-{path}":                          false,
		"{job_number}/{node_index}/{path}/{job_number}/{path}":      false,
		"{workflow_name}/{job_number}/{node_index}/{path}":          false,
		"{job_number}/x/{node_index}/{pipeline_id}/{path}":          false,
		"mirror/{pipeline_number}/{job_number}/{node_index}/{path}": true,
	} {
		l, err := ccsync.ParseLayout(layout)
		if err != nil {
			t.Fatalf("%s: %v", layout, err)
		}
		if got := l.Disjoint(); got != want {
			t.Errorf("Disjoint(%q) = %v, want %v", layout, got, want)
		}
	}
}

// Two paths of one node that clean to one key fail alone, and so does a job
// that resolution reaches twice (listed once): the rest is transferred.
func TestSameKeyInOneJobFailsAlone(t *testing.T) {
	w := circlecitest.NewWorld()
	p := w.AddProject("gh/acme/widgets", "main")
	wf := p.AddPipeline("main").AddWorkflow("build")
	j := wf.AddJob("build", circlecitest.JobOptions{})
	good := j.AddArtifact(0, "ok.txt", 10)
	j.AddArtifact(0, "a/b.txt", 10)
	j.AddArtifact(0, "a//b.txt", 11)
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: token})
	f := &fixture{w: w, proj: p, srv: srv, client: newClient(t, srv.URL)}
	dest, dir := localSink(t)
	sel := ccsync.Selection{Jobs: []int64{j.Number(), j.Number()}}
	sum, err := f.pull(t, t.Context(), dest, sel, pullOpts())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Artifacts != 3 || sum.Transferred != 1 || sum.Failed != 2 {
		t.Fatalf("summary %+v; want 3 artifacts, 1 transferred, the 2 on one key failed", sum)
	}
	for _, fl := range sum.Failures {
		if !strings.Contains(fl.Error, "both land on") {
			t.Errorf("failure %+v does not say why", fl)
		}
	}
	checkTree(t, dir, []*circlecitest.Artifact{good})
}

// batchRecorder is a batching local sink that notes which keys Put placed
// and which of them a Sync has since made durable.
type batchRecorder struct {
	*sink.Local
	mu      stdsync.Mutex
	placed  map[string]bool
	durable map[string]bool
	syncs   int
}

func (b *batchRecorder) Put(ctx context.Context, key string, r io.Reader, opts sink.PutOptions) (sink.Info, error) {
	info, err := b.Local.Put(ctx, key, r, opts)
	if err == nil {
		b.mu.Lock()
		b.placed[key] = true
		b.mu.Unlock()
	}
	return info, err
}

func (b *batchRecorder) Sync(ctx context.Context) error {
	b.mu.Lock()
	before := maps.Clone(b.placed)
	b.mu.Unlock()
	err := b.Local.Sync(ctx)
	if err == nil {
		b.mu.Lock()
		maps.Copy(b.durable, before)
		b.syncs++
		b.mu.Unlock()
	}
	return err
}

// durableFirst is a manifest store that fails the test when a file it is
// given to write names a key that was placed but not yet made durable.
type durableFirst struct {
	manifest.Store
	t      *testing.T
	b      *batchRecorder
	writes atomic.Int32
}

func (d *durableFirst) WriteFile(ctx context.Context, name string, data []byte) error {
	d.writes.Add(1)
	d.b.mu.Lock()
	for key := range d.b.placed {
		if !d.b.durable[key] && bytes.Contains(data, []byte(strconv.Quote(key))) {
			d.t.Errorf("manifest file %s records %s before a Sync made it durable", name, key)
		}
	}
	d.b.mu.Unlock()
	return d.Store.WriteFile(ctx, name, data)
}

// On a batching destination, files are placed without their fsyncs, a
// manifest write never records a file before a Sync made it durable, and
// many files share one Sync.
func TestBatchedDurabilityRecordsOnlyDurableFiles(t *testing.T) {
	w := circlecitest.NewWorld()
	p := w.AddProject("gh/acme/widgets", "main")
	wf := p.AddPipeline("main").AddWorkflow("build")
	var arts []*circlecitest.Artifact
	for j := range 4 {
		job := wf.AddJob("build-"+strconv.Itoa(j), circlecitest.JobOptions{})
		for i := range 40 {
			arts = append(arts, job.AddArtifact(0, "f/"+strconv.Itoa(i)+".txt", int64(100+i)))
		}
	}
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: token})
	f := &fixture{w: w, proj: p, srv: srv, client: newClient(t, srv.URL), arts: arts}
	local, dir := localSink(t)
	rec := &batchRecorder{Local: local, placed: map[string]bool{}, durable: map[string]bool{}}
	store := &durableFirst{Store: manifest.DirStore{Dir: t.TempDir()}, t: t, b: rec}
	opts := pullOpts()
	opts.Manifest = store
	opts.Concurrency = 4
	sum, err := f.pull(t, t.Context(), rec, ccsync.Selection{PipelineNumber: 1}, opts)
	if err != nil || sum.Transferred != len(arts) {
		t.Fatalf("pull: %+v, %v", sum, err)
	}
	checkTree(t, dir, arts)
	if rec.syncs == 0 {
		if runtime.GOOS == "linux" {
			t.Fatal("no Sync: files were not batched")
		}
		t.Skip("this platform does not batch fsyncs")
	}
	for key := range rec.placed {
		if !rec.durable[key] {
			t.Errorf("%s was never made durable", key)
		}
	}
	if rec.syncs >= len(arts)/2 || store.writes.Load() == 0 {
		t.Errorf("%d Syncs and %d manifest writes for %d files; want files to share Syncs", rec.syncs, store.writes.Load(), len(arts))
	}
}
