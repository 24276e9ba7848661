package sync_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	stdsync "sync"
	"syscall"
	"testing"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
	"github.com/artifact-sync/artifact-sync/manifest"
	"github.com/artifact-sync/artifact-sync/sink"
	ccsync "github.com/artifact-sync/artifact-sync/sync"
)

// failingFlush is a real batching Local whose flushes fail while fails is
// above zero, as a disk whose writeback fails (EIO) does: the flush runs,
// then reports the error for everything placed since the last good one.
// With again, a flush that covers a key an earlier failed flush covered
// fails too: a disk that loses what is written again.
type failingFlush struct {
	*sink.Local
	again  bool
	mu     stdsync.Mutex
	fails  int
	placed []string // since the last good flush
	lost   []string // every key a failed flush covered
}

func (f *failingFlush) Put(ctx context.Context, key string, r io.Reader, opts sink.PutOptions) (sink.Info, error) {
	info, err := f.Local.Put(ctx, key, r, opts)
	if err == nil && !strings.HasPrefix(key, ccsync.StateDir+"/") {
		f.mu.Lock()
		f.placed = append(f.placed, key)
		f.mu.Unlock()
	}
	return info, err
}

func (f *failingFlush) Sync(ctx context.Context) error {
	f.mu.Lock()
	n := len(f.placed)
	f.mu.Unlock()
	err := f.Local.Sync(ctx)
	f.mu.Lock()
	defer f.mu.Unlock()
	lostAgain := f.again && slices.ContainsFunc(f.placed, func(k string) bool { return slices.Contains(f.lost, k) })
	if err == nil && (f.fails > 0 || lostAgain) {
		f.fails = max(0, f.fails-1)
		keys := slices.Clone(f.placed)
		f.placed = nil
		f.lost = append(f.lost, keys...)
		return &sink.FlushError{Dest: f.Local.String(), Keys: keys, Err: syscall.EIO}
	}
	if err == nil {
		f.placed = slices.Delete(f.placed, 0, n)
	}
	return err
}

// lostKeys is every key a failed flush of f covered, once.
func (f *failingFlush) lostKeys() []string {
	return slices.Compact(slices.Sorted(slices.Values(f.lost)))
}

// recordedKeys is the keys the manifest at local records.
func recordedKeys(t *testing.T, local *sink.Local) map[string]bool {
	t.Helper()
	m, err := manifest.Open(t.Context(), &ccsync.SinkStore{Sink: local, Prefix: ccsync.ManifestPrefix}, manifest.Options{Destination: manifest.SelfDestination})
	if err != nil {
		t.Fatal(err)
	}
	recorded := map[string]bool{}
	for e := range m.Entries() {
		recorded[e.Key] = true
	}
	return recorded
}

// A flush that fails, then ones that succeed: the artifacts the failed
// one covered are fetched and written again in the same run, recorded once
// that write is flushed, and byte-exact; the run counts them transferred,
// not failed, and still says that the disk failed (DiskErrors, which makes
// pull exit 1). Both the streaming and the planned path do it, and the next
// run re-hashes them and has nothing to fetch.
func TestFailedFlushIsWrittenAgain(t *testing.T) {
	for _, mode := range []string{"syncfs", "fsync"} {
		// A Disjoint layout streams; one that is not plans first.
		for path, layout := range map[string]string{"streaming": ccsync.DefaultLayout, "planned": "{job_name}/{node_index}/{path}"} {
			t.Run(mode+"/"+path, func(t *testing.T) {
				t.Setenv("ARTIFACT_SYNC_BATCH_SYNC", mode)
				f := newFixture(t, circlecitest.Options{})
				local, dir := localSink(t)
				dest := &failingFlush{Local: local, fails: 1}
				opts := pullOpts()
				opts.Concurrency = 2
				var err error
				if opts.Layout, err = ccsync.ParseLayout(layout); err != nil {
					t.Fatal(err)
				}
				sum, err := f.pull(t, t.Context(), dest, ccsync.Selection{PipelineNumber: 1}, opts)
				if err != nil {
					t.Fatal(err)
				}
				lost := dest.lostKeys()
				if len(lost) == 0 {
					t.Skipf("%s: the destination did not batch, so no flush could fail", mode)
				}
				var size int64
				for _, a := range f.arts {
					size += a.Size()
				}
				if sum.Failed != 0 || len(sum.Failures) != 0 || sum.Transferred != len(f.arts) || sum.Bytes != size {
					t.Errorf("summary %d transferred (%d bytes), %d failed %+v; want all %d (%d bytes) transferred, the %d the failed flush covered written again", sum.Transferred, sum.Bytes, sum.Failed, sum.Failures, len(f.arts), size, len(lost))
				}
				if sum.DiskErrors != 1 || sum.WrittenAgain != len(lost) {
					t.Errorf("summary says %d disk errors, %d written again; want 1 and %d", sum.DiskErrors, sum.WrittenAgain, len(lost))
				}
				if got := f.srv.DownloadTotals().Completed; got != len(f.arts)+len(lost) {
					t.Errorf("%d downloads; want %d, the %d lost ones fetched again once", got, len(f.arts)+len(lost), len(lost))
				}
				recorded := recordedKeys(t, local)
				if len(recorded) != len(f.arts) {
					t.Errorf("the manifest records %d artifacts, want all %d", len(recorded), len(f.arts))
				}
				for _, k := range lost {
					if !recorded[k] {
						t.Errorf("%s, written again, is not recorded", k)
					}
				}
				checkFiles(t, dir, opts.Layout, f.arts)

				before := f.srv.DownloadTotals().Completed
				again, err := sink.NewLocal(dir)
				if err != nil {
					t.Fatal(err)
				}
				rerun := pullOpts()
				rerun.Layout = opts.Layout
				sum, err = f.pull(t, t.Context(), again, ccsync.Selection{PipelineNumber: 1}, rerun)
				if err != nil {
					t.Fatal(err)
				}
				if got := f.srv.DownloadTotals().Completed - before; sum.Failed != 0 || sum.Transferred != 0 || got != 0 || sum.DiskErrors != 0 {
					t.Errorf("rerun: %d transferred (%d downloads), %d failed, %d disk errors; want nothing to do", sum.Transferred, got, sum.Failed, sum.DiskErrors)
				}
				if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(ccsync.ManifestPrefix), "suspect.json")); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("suspect.json is still there after the rerun re-hashed what it named: %v", err)
				}
			})
		}
	}
}

// checkFiles asserts that dir holds each of arts, byte for byte, at the key
// layout gives it.
func checkFiles(t *testing.T, dir string, layout *ccsync.Layout, arts []*circlecitest.Artifact) {
	t.Helper()
	for _, a := range arts {
		key := layout.Expand(&ccsync.Artifact{Job: ccsync.Job{JobNumber: a.Job().Number(), JobName: a.Job().Name()}, NodeIndex: int64(a.Node()), Path: a.Path(), CleanPath: a.Path()})
		got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(key)))
		if err != nil {
			t.Errorf("%s: %v", key, err)
			continue
		}
		if !bytes.Equal(got, content(t, a)) {
			t.Errorf("%s: %d bytes, not the artifact's %d", key, len(got), a.Size())
		}
	}
}

// A disk that also fails the flush of what is written again: those
// artifacts are written again once, never more, fail with a disk error as
// before, are never recorded, and the next run fetches them again.
func TestFlushFailingAgainFailsOnce(t *testing.T) {
	t.Setenv("ARTIFACT_SYNC_BATCH_SYNC", "syncfs")
	f := newFixture(t, circlecitest.Options{})
	local, dir := localSink(t)
	dest := &failingFlush{Local: local, fails: 1, again: true}
	opts := pullOpts()
	opts.Concurrency = 2
	sum, err := f.pull(t, t.Context(), dest, ccsync.Selection{PipelineNumber: 1}, opts)
	if err != nil {
		t.Fatal(err)
	}
	lost := dest.lostKeys()
	if len(lost) == 0 {
		t.Skip("the destination did not batch, so no flush could fail")
	}
	if sum.Failed != len(lost) || sum.Transferred+sum.Failed != len(f.arts) || len(sum.Failures) != sum.Failed {
		t.Errorf("summary %d transferred, %d failed; want the %d files the failed flushes covered failed: %+v", sum.Transferred, sum.Failed, len(lost), sum.Failures)
	}
	if sum.DiskErrors < 2 || sum.WrittenAgain != 0 {
		t.Errorf("summary says %d disk errors, %d written again; want 2 or more and 0", sum.DiskErrors, sum.WrittenAgain)
	}
	for _, fl := range sum.Failures {
		if !strings.Contains(fl.Error, "failed to flush") || !strings.Contains(fl.Error, dir) {
			t.Errorf("failure %q does not say the disk at %s failed to flush", fl.Error, dir)
		}
	}
	if got := f.srv.DownloadTotals().Completed; got != len(f.arts)+len(lost) {
		t.Errorf("%d downloads; want %d, the %d lost ones fetched again once only", got, len(f.arts)+len(lost), len(lost))
	}
	recorded := recordedKeys(t, local)
	for _, k := range lost {
		if recorded[k] {
			t.Errorf("%s is recorded, although the flushes that covered it failed", k)
		}
	}
	if len(recorded) != sum.Transferred {
		t.Errorf("the manifest records %d artifacts, the run says %d transferred", len(recorded), sum.Transferred)
	}

	before := f.srv.DownloadTotals().Completed
	again, err := sink.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	sum, err = f.pull(t, t.Context(), again, ccsync.Selection{PipelineNumber: 1}, pullOpts())
	if err != nil {
		t.Fatal(err)
	}
	if got := f.srv.DownloadTotals().Completed - before; sum.Failed != 0 || sum.Transferred != len(lost) || got != len(lost) {
		t.Errorf("rerun: %d transferred (%d downloads), %d failed; want the %d lost ones fetched again", sum.Transferred, got, sum.Failed, len(lost))
	}
	checkTree(t, dir, f.arts)
}

// A destination whose flushes keep failing stops the run with an error
// naming it, every artifact not transferred counts as failed, and none is
// written again more than once.
func TestFailingDiskStopsTheRun(t *testing.T) {
	t.Setenv("ARTIFACT_SYNC_BATCH_SYNC", "syncfs")
	w, arts := manyWorld(60)
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: token})
	client := newClient(t, srv.URL)
	local, dir := localSink(t)
	dest := &failingFlush{Local: local, fails: 1000}
	opts := pullOpts()
	opts.Concurrency = 1
	sum, err := ccsync.Pull(t.Context(), ccsync.LimitAPI(client, 4), client, slug, &ccsync.Selection{}, dest, opts)
	if len(dest.lost) == 0 {
		t.Skip("the destination did not batch, so no flush could fail")
	}
	if err == nil || !strings.Contains(err.Error(), "failed to flush") || !strings.Contains(err.Error(), dir) || sink.IsPermanent(err) || errors.Is(err, context.Canceled) {
		t.Fatalf("Pull = %v; want the run stopped with an error naming %s", err, dir)
	}
	if sum.Transferred != 0 || sum.Failed != len(arts) || sum.WrittenAgain != 0 {
		t.Errorf("summary %d transferred, %d failed, %d written again; want all %d failed", sum.Transferred, sum.Failed, sum.WrittenAgain, len(arts))
	}
	if got := srv.DownloadTotals().Completed; got > 2*len(arts) {
		t.Errorf("%d downloads for %d artifacts: something was written again more than once", got, len(arts))
	}
}

// After a run that saw a disk error, the next run re-hashes on its own the
// files the error covered (named in .artifact-sync/manifest/suspect.json,
// even those the run wrote again) and fetches again those that do not
// match, such as a file of zeros whose record a failing disk kept; once
// they are sound the list goes.
func TestNextRunRehashesWhatADiskErrorCovered(t *testing.T) {
	t.Setenv("ARTIFACT_SYNC_BATCH_SYNC", "syncfs")
	f := newFixture(t, circlecitest.Options{})
	local, dir := localSink(t)
	dest := &failingFlush{Local: local, fails: 1}
	opts := pullOpts()
	opts.Concurrency = 2
	sum, err := f.pull(t, t.Context(), dest, ccsync.Selection{PipelineNumber: 1}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(dest.lost) == 0 {
		t.Skip("the destination did not batch, so no flush could fail")
	}
	suspectPath := filepath.Join(dir, filepath.FromSlash(ccsync.ManifestPrefix), "suspect.json")
	data, err := os.ReadFile(suspectPath)
	if err != nil {
		t.Fatalf("after a failed flush no list of what it covered: %v", err)
	}
	var list struct{ Keys []string }
	if err := json.Unmarshal(data, &list); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(list.Keys, slices.Sorted(slices.Values(dest.lost))) {
		t.Errorf("suspect.json names %q, want the keys the failed flush covered %q", list.Keys, dest.lost)
	}

	// A recorded file the disk zeroed, its removal lost with the disk:
	// named in the list, it is re-hashed and fetched again by a plain pull.
	var zeroed *circlecitest.Artifact
	for _, a := range f.arts {
		if a.Size() > 0 && !slices.Contains(dest.lost, defaultKey(a)) {
			zeroed = a
			break
		}
	}
	if zeroed == nil {
		t.Fatal("every artifact was lost")
	}
	if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(defaultKey(zeroed))), make([]byte, zeroed.Size()), 0o644); err != nil {
		t.Fatal(err)
	}
	list.Keys = append(list.Keys, defaultKey(zeroed))
	data, _ = json.Marshal(list)
	if err := os.WriteFile(suspectPath, data, 0o644); err != nil {
		t.Fatal(err)
	}
	again, err := sink.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	sum, err = f.pull(t, t.Context(), again, ccsync.Selection{PipelineNumber: 1}, pullOpts())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Failed != 0 || sum.Transferred != 1 || sum.Skipped != len(f.arts)-1 {
		t.Errorf("rerun: %d transferred, %d already done, %d failed; want the zeroed one fetched again, the %d written again found intact", sum.Transferred, sum.Skipped, sum.Failed, len(dest.lost))
	}
	checkTree(t, dir, f.arts)
	if _, err := os.Stat(suspectPath); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("suspect.json is still there after a run that repaired everything: %v", err)
	}
}

// A failing disk can damage more than what its failed flush covered (ext2
// hands a flushed file's blocks to a later one when a bitmap write fails),
// so after a run that saw a disk error the next run re-hashes every
// recorded file it selects, not only the keys the flush named; a run
// without a disk error then drops the list, and runs after it trust sizes
// again.
func TestNextRunRehashesEverythingAfterADiskError(t *testing.T) {
	t.Setenv("ARTIFACT_SYNC_BATCH_SYNC", "syncfs")
	f := newFixture(t, circlecitest.Options{})
	local, dir := localSink(t)
	dest := &failingFlush{Local: local, fails: 1}
	opts := pullOpts()
	opts.Concurrency = 2
	if _, err := f.pull(t, t.Context(), dest, ccsync.Selection{PipelineNumber: 1}, opts); err != nil {
		t.Fatal(err)
	}
	if len(dest.lost) == 0 {
		t.Skip("the destination did not batch, so no flush could fail")
	}
	var damaged *circlecitest.Artifact
	for _, a := range f.arts {
		if a.Size() > 0 && !slices.Contains(dest.lost, defaultKey(a)) {
			damaged = a
			break
		}
	}
	if damaged == nil {
		t.Fatal("every artifact was lost")
	}
	overwrite := func() {
		t.Helper()
		garbage := bytes.Repeat([]byte{0xa5}, int(damaged.Size()))
		if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(defaultKey(damaged))), garbage, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	overwrite() // not among the keys the failed flush named

	again, err := sink.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := f.pull(t, t.Context(), again, ccsync.Selection{PipelineNumber: 1}, pullOpts())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Failed != 0 || sum.Transferred != 1 {
		t.Errorf("run after the disk error: %d transferred, %d failed; want the overwritten file fetched again", sum.Transferred, sum.Failed)
	}
	checkTree(t, dir, f.arts)
	suspectPath := filepath.Join(dir, filepath.FromSlash(ccsync.ManifestPrefix), "suspect.json")
	if _, err := os.Stat(suspectPath); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("suspect.json is still there after a run without a disk error that re-hashed everything: %v", err)
	}

	overwrite()
	third, err := sink.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	sum, err = f.pull(t, t.Context(), third, ccsync.Selection{PipelineNumber: 1}, pullOpts())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Transferred != 0 {
		t.Errorf("a run after a clean one transferred %d: it re-hashed although no disk error was noted", sum.Transferred)
	}
}
