package sink

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	stdsync "sync"
)

// How a batching Local makes what it placed durable (see Local.Batch).
const (
	batchOff    = "off"    // fsync each file and its folder as it is placed
	batchSyncfs = "syncfs" // one syncfs(2) of the destination's file system
	batchFsync  = "fsync"  // fsync of the batch's files, then of their folders
)

// batchMode is the default way of batching: syncfs where the platform has
// it. ARTIFACT_SYNC_BATCH_SYNC=off|syncfs|fsync overrides it (to measure
// them against each other, or to keep the per-file fsyncs).
func batchMode() string {
	switch m := os.Getenv("ARTIFACT_SYNC_BATCH_SYNC"); m {
	case batchOff, batchFsync:
		return m
	case batchSyncfs:
		if haveSyncfs {
			return m
		}
	}
	if haveSyncfs {
		return batchSyncfs
	}
	return batchOff
}

// batch is what a batching Local placed and has not yet made durable.
type batch struct {
	mode string
	// fs is a descriptor of the destination's file system, opened when
	// batching starts, before anything is written, and kept for the run:
	// syncfs(2) reports a writeback error only to descriptors that were
	// open when it happened (errseq), so one opened afresh for each Sync
	// would miss an error that an earlier one reported.
	fs *os.File

	mu      stdsync.Mutex
	placed  uint64     // objects and folders placed; bumped under mu
	synced  uint64     // placed as of the start of the last Sync that ended
	keys    []string   // objects placed since the last good Sync began, in order
	failed  uint64     // Syncs that failed in this run
	files   []*os.File // batchFsync: placed files, still open (the descriptors that wrote them)
	dirs    map[string]bool
	syncing stdsync.Mutex // one Sync at a time
}

// FlushError is a flush to disk (syncfs, or an fsync of a file or a
// folder) that failed. The kernel may already have dropped the pages it
// could not write and marked them clean, so trying again proves nothing:
// the objects at Keys, everything placed since the last flush that
// succeeded, must be taken as lost. They are not durable, whatever a later
// flush returns; the caller writes them again or reports them.
type FlushError struct {
	Dest string   // the destination, for messages
	Keys []string // the objects the failed flush covered
	Err  error
}

func (e *FlushError) Error() string {
	return fmt.Sprintf("the disk at %s failed to flush what was written to it (%v)", e.Dest, e.Err)
}

func (e *FlushError) Unwrap() error { return e.Err }

// Batch implements Batcher. A Local batches with one syncfs(2) per Sync
// on Linux, where a run of small files then costs a few flushes instead of
// two fsyncs per file. The descriptor Sync flushes through is opened here,
// before anything is written.
func (l *Local) Batch() bool {
	mode := batchMode()
	if mode == batchOff {
		return false
	}
	b := &batch{mode: mode, dirs: map[string]bool{}}
	if mode == batchSyncfs {
		d, err := l.root.Open(".")
		if err != nil {
			return false // fsync per file, as without batching
		}
		b.fs = d
	}
	l.batch = b
	return true
}

// unsynced notes that file f (nil for a folder alone) was placed at key in
// folder dir and awaits Sync. It reports false if l does not batch: the
// caller syncs.
//
// Once a Sync of this run has failed, the kernel may have dropped pages of
// files whose data was written before that failure but placed after it,
// which the failed Sync's keys do not name. So from then on each file is
// also fsynced through its own descriptor, which was open before its data
// was written and so sees any error of its pages; an error fails the write
// with a *FlushError.
func (l *Local) unsynced(f *os.File, key, dir string) (bool, error) {
	b := l.batch
	if b == nil {
		return false, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for checked := uint64(0); f != nil && b.failed > checked; {
		checked = b.failed
		b.mu.Unlock()
		err := f.Sync()
		b.mu.Lock()
		if err != nil {
			return true, &FlushError{Dest: l.dir, Keys: []string{key}, Err: err}
		}
		l.step("fsync", key)
	}
	b.placed++
	if f != nil {
		b.keys = append(b.keys, key)
	}
	if b.mode == batchFsync {
		if f != nil {
			b.files = append(b.files, f)
		}
		b.dirs[dir] = true
	}
	return true, nil
}

// Sync implements Batcher: everything placed before the call is durable
// when it returns nil.
//
// A Sync that fails returns a *FlushError naming every object placed
// since the last good Sync began, including those placed while it ran:
// they are dropped from the batch, never flushed again and trusted (a
// second fsync or syncfs after an error returns 0 even though the data is
// gone; see FlushError).
func (l *Local) Sync(ctx context.Context) error {
	b := l.batch
	if b == nil {
		return nil
	}
	b.syncing.Lock()
	defer b.syncing.Unlock()
	b.mu.Lock()
	placed, n := b.placed, len(b.keys)
	// Nothing placed since the last Sync may still leave folders to flush:
	// those a failed Sync kept. Returning without them would drop them
	// untried, and the names they hold would stay at the mercy of a power
	// cut while the files placed below them later are recorded.
	if placed == b.synced && len(b.dirs) == 0 {
		b.mu.Unlock()
		return nil
	}
	files, dirs := b.files, b.dirs
	if b.mode == batchFsync {
		b.files, b.dirs = nil, map[string]bool{}
	}
	b.mu.Unlock()
	var err error
	switch b.mode {
	case batchSyncfs:
		err = syncfs(b.fs)
	case batchFsync:
		err = l.fsyncAll(files, dirs)
	}
	if l.onSync != nil {
		err = l.onSync(err)
	}
	for _, f := range files {
		f.Close()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err != nil {
		keys := b.keys
		for _, f := range b.files {
			f.Close()
		}
		b.keys, b.files = nil, nil
		// The folders stay to be flushed by the next Sync, those this
		// one took and those placed meanwhile: files that go into them
		// later are recorded once their folders are durable, and they
		// are known to ensureDir, which will not place them again.
		for d := range dirs {
			b.dirs[d] = true
		}
		b.failed++
		b.synced = b.placed
		return &FlushError{Dest: l.dir, Keys: keys, Err: err}
	}
	b.keys = slices.Delete(b.keys, 0, n)
	b.synced = placed
	return nil
}

// fsyncAll fsyncs files, through the descriptors that wrote them, then the
// folders.
func (l *Local) fsyncAll(files []*os.File, dirs map[string]bool) error {
	for _, f := range files {
		if err := f.Sync(); err != nil {
			return err
		}
	}
	for _, d := range slices.Sorted(maps.Keys(dirs)) {
		if err := l.syncDir(d); err != nil {
			return err
		}
	}
	return nil
}
