package sync_test

import (
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
type failingFlush struct {
	*sink.Local
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
	if err == nil && f.fails > 0 {
		f.fails--
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

// A flush that fails, then one that succeeds: nothing the failed one
// covered is ever recorded (not by the next journal, not by the final
// snapshot), each of those artifacts fails with a disk error, and the next
// run fetches them again, although their files are at their keys with the
// right size.
func TestFailedFlushIsNeverRecorded(t *testing.T) {
	for _, mode := range []string{"syncfs", "fsync"} {
		t.Run(mode, func(t *testing.T) {
			t.Setenv("ARTIFACT_SYNC_BATCH_SYNC", mode)
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
				t.Skipf("%s: the destination did not batch, so no flush could fail", mode)
			}
			if sum.Failed != len(dest.lost) || sum.Transferred+sum.Failed != len(f.arts) {
				t.Errorf("summary %d transferred, %d failed; want the %d files the failed flush covered failed: %+v", sum.Transferred, sum.Failed, len(dest.lost), sum.Failures)
			}
			for _, fl := range sum.Failures {
				if !strings.Contains(fl.Error, "failed to flush") || !strings.Contains(fl.Error, dir) {
					t.Errorf("failure %q does not say the disk at %s failed to flush", fl.Error, dir)
				}
			}
			m, err := manifest.Open(t.Context(), &ccsync.SinkStore{Sink: local, Prefix: ccsync.ManifestPrefix}, manifest.Options{Destination: manifest.SelfDestination})
			if err != nil {
				t.Fatal(err)
			}
			recorded := map[string]bool{}
			for e := range m.Entries() {
				recorded[e.Key] = true
			}
			for _, k := range dest.lost {
				if recorded[k] {
					t.Errorf("%s is recorded, although the flush that covered it failed", k)
				}
			}
			if len(recorded) != sum.Transferred {
				t.Errorf("the manifest records %d artifacts, the run says %d transferred", len(recorded), sum.Transferred)
			}

			// The files the failed flush covered are at their keys with
			// their size (the disk here did not really lose them): being
			// unrecorded, they are fetched again, never adopted.
			for _, k := range dest.lost {
				if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(k))); err != nil {
					t.Fatalf("lost file %s: %v", k, err)
				}
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
			if got := f.srv.DownloadTotals().Completed - before; sum.Failed != 0 || sum.Transferred != len(dest.lost) || got != len(dest.lost) {
				t.Errorf("rerun: %d transferred (%d downloads), %d failed; want the %d lost ones fetched again", sum.Transferred, got, sum.Failed, len(dest.lost))
			}
			checkTree(t, dir, f.arts)
		})
	}
}

// A destination whose flushes keep failing stops the run with an error
// naming it, and every artifact not transferred counts as failed.
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
	if sum.Transferred != 0 || sum.Failed != len(arts) {
		t.Errorf("summary %d transferred, %d failed, want all %d failed", sum.Transferred, sum.Failed, len(arts))
	}
}

// After a run that saw a disk error, the next run re-hashes on its own the
// files the error covered (named in .artifact-sync/manifest/suspect.json)
// and fetches again those that do not match, such as a file of zeros whose
// record a failing disk kept; once they are sound the list goes.
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
	if sum.Failed != 0 || sum.Transferred != len(dest.lost)+1 {
		t.Errorf("rerun: %d transferred, %d failed; want the %d lost and the zeroed one fetched again", sum.Transferred, sum.Failed, len(dest.lost))
	}
	checkTree(t, dir, f.arts)
	if _, err := os.Stat(suspectPath); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("suspect.json is still there after a run that repaired everything: %v", err)
	}
}
