package sync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	stdsync "sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/artifact-sync/artifact-sync/manifest"
	"github.com/artifact-sync/artifact-sync/sink"
)

// maxFlushFailures is how many flushes of the destination may fail in a
// row before the run stops: a disk that keeps failing loses whatever is
// written to it.
const maxFlushFailures = 3

// suspectName is the file, beside the manifest's, that names the keys a
// failed flush covered (see disk.suspects).
const suspectName = "suspect.json"

// disk keeps the manifest from recording what a failed flush of the
// destination may have lost (see sink.FlushError).
//
// The sink names the objects a failed flush covered: everything placed
// since the last flush that succeeded. The manifest drops the entries the
// failed write took (manifest.Options.Durable); disk drops the others, the
// entries recorded since that write took its own, and refuses to record any
// of those keys later. Each such artifact fails with a disk error, for now:
// once the other transfers are done (see engine.writeAgain), unless the run
// was stopped, it is fetched and written once more, and recorded if the
// flush that covers that write succeeds. Those flushes see a new error of
// the disk, as the sink keeps one descriptor open for the run. What fails
// again stays failed (exit 1), and the next run, finding it unrecorded,
// fetches it again. A run that saw a flush fail exits 1 even if it wrote
// everything again: the disk is failing, and the user should hear of it.
// The keys are also written to suspectName in the manifest's store, so that
// the next run re-hashes what the manifest records at them (a removal that
// the failing disk did not keep, or a record written again) and fetches
// again what does not match.
type disk struct {
	e     *engine
	batch sink.Batcher // nil: the destination does not batch
	store manifest.Store
	stop  context.CancelCauseFunc

	mu       stdsync.Mutex
	lost     map[string]bool          // keys a failed flush covered in this run
	older    map[string]recordedAtKey // recorded before the flush under way began
	newer    map[string]recordedAtKey // recorded since
	failures int                      // flushes failed in a row
	stopErr  error                    // why the run was stopped
	warned   bool                     // said that the suspect file could not be written

	// again holds the artifacts that failed because a failed flush
	// covered their key, to be written again once. retried holds the keys
	// taken for that: true while the write again may be recorded, false
	// once a failed flush covered it too.
	again   map[string]*Artifact
	retried map[string]bool

	// What the suspect file named when the run began, and those of its
	// keys this run found intact or wrote again durably.
	suspects  map[string]bool
	confirmed map[string]bool
	// all: an earlier run saw the disk fail, so every recorded file
	// this run selects is re-hashed (see suspectFile.All).
	all bool
}

// recordedAtKey is an artifact recorded in this run, and its size.
type recordedAtKey struct {
	a    *Artifact
	size int64
}

// lostError is the failure of an artifact whose data the failed flush fe
// may have lost.
func (d *disk) lostError(fe *sink.FlushError) error {
	return &notDurable{fmt.Errorf("the disk at %s failed to flush it (%v); it is not recorded, and the next run fetches it again", d.e.dest, fe.Err)}
}

// notDurable marks the failure of an artifact whose key a failed flush
// covered: one the run writes again (see disk.lose).
type notDurable struct{ err error }

func (n *notDurable) Error() string { return n.err.Error() }
func (n *notDurable) Unwrap() error { return n.err }

// durable is manifest.Options.Durable for a batching destination.
func (d *disk) durable(ctx context.Context) error {
	d.mu.Lock()
	d.older, d.newer = merge(d.older, d.newer), map[string]recordedAtKey{}
	d.mu.Unlock()
	err := d.batch.Sync(ctx)
	var fe *sink.FlushError
	if errors.As(err, &fe) {
		d.flushFailed(fe)
		return err
	}
	if err == nil {
		d.mu.Lock()
		d.older = nil // all durable now
		d.failures = 0
		d.mu.Unlock()
	}
	return err
}

func merge(a, b map[string]recordedAtKey) map[string]recordedAtKey {
	if a == nil {
		return b
	}
	for k, v := range b {
		a[k] = v
	}
	return a
}

// flushFailed takes in a failed flush: its keys are lost, what was
// recorded at them is removed from the manifest and fails, the keys are
// noted as suspect, and a destination that keeps failing stops the run.
func (d *disk) flushFailed(fe *sink.FlushError) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.e.log.Warn("the disk failed to flush; what it covered is not recorded", "destination", d.e.dest.String(), "files", len(fe.Keys), "error", fe.Err)
	d.e.mu.Lock()
	d.e.sum.DiskErrors++
	d.e.mu.Unlock()
	for _, key := range fe.Keys {
		d.lost[key] = true
		again, retried := d.retried[key]
		if retried {
			d.retried[key] = false // lost twice: it stays failed
		}
		for _, m := range []map[string]recordedAtKey{d.older, d.newer} {
			r, ok := m[key]
			if !ok {
				continue
			}
			delete(m, key)
			d.e.man.Remove(manifestID(r.a))
			d.e.mu.Lock()
			d.e.sum.Transferred--
			d.e.sum.Bytes -= r.a.newBytes(r.size)
			if again {
				d.e.sum.WrittenAgain--
			}
			d.e.mu.Unlock()
			d.e.fail(r.a, d.lostError(fe))
			if !retried {
				d.again[key] = r.a
			}
		}
	}
	d.writeSuspects(context.Background())
	d.failures++
	if d.failures >= maxFlushFailures && d.stopErr == nil {
		d.stopErr = fmt.Errorf("the disk at %s failed to flush %d times in a row (last: %v): the run stopped; check the disk (dmesg, free space), then run the same command again", d.e.dest, d.failures, fe.Err)
		d.stop(d.stopErr)
	}
}

// record records the transfer of a, of size bytes, with rec (the
// manifest's Record) unless a failed flush covered its key since it was
// last taken to be written again: then a fails with a disk error.
func (d *disk) record(a *Artifact, size int64, rec func() error) error {
	if d == nil {
		return rec()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.lost[a.Key] && !d.retried[a.Key] {
		return &fatalArtifact{&notDurable{fmt.Errorf("the disk at %s failed to flush it; it is not recorded, and the next run fetches it again", d.e.dest)}}
	}
	if err := rec(); err != nil {
		return err
	}
	if d.retried[a.Key] {
		d.e.mu.Lock()
		d.e.sum.WrittenAgain++
		d.e.mu.Unlock()
	}
	if d.batch != nil {
		d.newer[a.Key] = recordedAtKey{a, size}
	} else {
		d.failures = 0 // its Put flushed it: the disk works again
	}
	if d.suspects[a.Key] {
		d.confirmed[a.Key] = true
	}
	return nil
}

// putFailed takes in a write that failed because its flush did, and
// returns the artifact's error.
func (d *disk) putFailed(fe *sink.FlushError) error {
	d.flushFailed(fe)
	return &fatalArtifact{d.lostError(fe)}
}

// lose notes that a failed because a failed flush covered its key: unless
// it was written again already, it is written again once.
func (d *disk) lose(a *Artifact) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.retried[a.Key]; !ok {
		d.again[a.Key] = a
	}
}

// takeAgain returns the artifacts to write again, each once in the run, and
// allows their records; none once the run was stopped.
func (d *disk) takeAgain() []*Artifact {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopErr != nil {
		return nil
	}
	arts := make([]*Artifact, 0, len(d.again))
	for key, a := range d.again {
		d.retried[key] = true
		arts = append(arts, a)
	}
	clear(d.again)
	sortPtrs(arts)
	return arts
}

// suspect reports whether the suspect file names key.
func (d *disk) suspect(key string) bool {
	if d == nil {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.all || d.suspects[key]
}

// intact notes that key, a suspect, was found intact.
func (d *disk) intact(key string) {
	if d == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.suspects[key] {
		d.confirmed[key] = true
	}
}

// suspectFile is what suspectName holds.
type suspectFile struct {
	// Keys a flush that failed covered, with the time it was noted.
	Keys    []string  `json:"keys"`
	Written time.Time `json:"written"`
	// All says that a run saw the disk fail to flush, so the next runs
	// re-hash every recorded file they select, until one ends without a
	// disk error: a failing disk can damage more than the files a failed
	// flush named. Without a journal (ext2), a metadata block whose write
	// failed is read again from the disk as it was, so a block of a file
	// flushed and recorded earlier can be handed to another file and
	// overwritten (seen in TestFailingDisk, seed 700030).
	All bool `json:"all,omitempty"`
}

// loadSuspects reads the suspect file of an earlier run.
func (d *disk) loadSuspects(ctx context.Context) {
	data, err := d.store.ReadFile(ctx, suspectName)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			d.e.log.Warn("reading the keys an earlier disk error covered; re-hash everything with pull --verify", "error", err)
		}
		return
	}
	var f suspectFile
	if err := json.Unmarshal(data, &f); err != nil {
		d.e.log.Warn("the list of keys an earlier disk error covered is unreadable; re-hash everything with pull --verify", "error", err)
		return
	}
	for _, k := range f.Keys {
		d.suspects[k] = true
	}
	d.all = f.All
	switch {
	case f.All:
		d.e.log.Info("an earlier run saw the disk fail to flush: re-hashing every recorded file this run selects")
	case len(f.Keys) > 0:
		d.e.log.Info("an earlier run saw the disk fail to flush: re-hashing what it covered", "files", len(f.Keys))
	}
}

// writeSuspects replaces the suspect file with the keys still suspect:
// those of earlier runs not confirmed since, and those lost in this run.
// d.mu must be held. The store writes durably; if the failing disk refuses
// it, the run says so, and pull --verify does the same job.
func (d *disk) writeSuspects(ctx context.Context) error {
	var keys []string
	for k := range d.suspects {
		if !d.confirmed[k] {
			keys = append(keys, k)
		}
	}
	for k := range d.lost {
		if !d.suspects[k] {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	all := d.all || len(d.lost) > 0
	var err error
	if len(keys) == 0 && !all {
		err = d.store.Remove(ctx, suspectName)
	} else {
		data, _ := json.MarshalIndent(suspectFile{Keys: keys, Written: time.Now().UTC(), All: all}, "", "\t")
		err = d.store.WriteFile(ctx, suspectName, append(data, '\n'))
	}
	if err != nil && !d.warned {
		d.warned = true
		d.e.log.Warn("could not note which files the disk error covered; after fixing the disk run pull with --verify", "error", err)
	}
	return err
}

// finish rewrites the suspect file at the end of a run that could have
// changed it; saved says the manifest holds what the run recorded, so the
// suspects written again are no longer suspect.
func (d *disk) finish(ctx context.Context, saved bool) error {
	if d == nil {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if !saved {
		clear(d.confirmed)
	}
	if len(d.suspects) == 0 && len(d.lost) == 0 && !d.all {
		return nil
	}
	if saved && len(d.lost) == 0 {
		d.all = false // this run re-hashed what it selected, and saw no disk error
	}
	return d.writeSuspects(ctx)
}

// stopped is why the run was stopped, or nil.
func (d *disk) stopped() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stopErr
}

// recheck says what is wrong with the artifact recorded as ent, whose file
// has its recorded size: "" without --verify unless an earlier disk error
// covered its key; else the file is read again and hashed. A file that
// cannot be read does not match.
func (e *engine) recheck(ctx context.Context, ent manifest.Entry) string {
	if !e.opts.Verify && !e.disk.suspect(ent.Key) {
		return ""
	}
	problem, err := check(ctx, e.dest, ent, true)
	if err != nil {
		problem = err.Error()
	}
	if problem == "" {
		e.disk.intact(ent.Key)
	}
	return problem
}

// writeAgain transfers once more, after the other transfers of the run,
// the artifacts that failed because a failed flush covered their key (a
// flush after a failed one proves nothing of the data it covered: it is
// fetched and written again, as PostgreSQL replays its WAL). The records
// waiting are flushed first, so that a failure of that flush is known and
// its artifacts are in the pass too. A destination that does not batch
// takes part as well: a failed fsync of one Put loses that file alike. A
// run that was stopped or cancelled
// writes nothing again. Each artifact of the pass ends transferred or
// failed, once in the summary.
func (e *engine) writeAgain(ctx context.Context) error {
	if e.disk == nil || ctx.Err() != nil {
		return nil
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	_ = e.man.Flush(fctx) // a failure stays pending for Close, or is a failed flush taken in
	cancel()
	if ctx.Err() != nil {
		return nil
	}
	arts := e.disk.takeAgain()
	if len(arts) == 0 {
		return nil
	}
	e.log.Warn("writing again what the failed flush covered", "destination", e.dest.String(), "files", len(arts))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(e.opts.Concurrency)
	for _, a := range arts {
		lost := e.unfail(a)
		g.Go(func() error {
			err := e.transfer(gctx, a)
			var f *fatal
			switch {
			case err == nil:
				return nil
			case errors.As(err, &f):
				e.fail(a, errors.New(lost))
				return f.err
			case gctx.Err() != nil:
				e.fail(a, errors.New(lost))
				return gctx.Err()
			}
			e.fail(a, err)
			return nil
		})
	}
	return g.Wait()
}

// unfail removes the failure of artifact a from the summary and returns
// its error.
func (e *engine) unfail(a *Artifact) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, f := range e.sum.Failures {
		if f.Path != "" && f.JobNumber == a.JobNumber && f.NodeIndex == a.NodeIndex && f.Path == a.Path {
			e.sum.Failures = slices.Delete(e.sum.Failures, i, i+1)
			e.sum.Failed--
			return f.Error
		}
	}
	return ""
}
