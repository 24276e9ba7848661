package sink

import (
	"context"
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

	mu      stdsync.Mutex
	placed  uint64     // objects and folders placed; bumped under mu
	synced  uint64     // placed as of the start of the last good Sync
	files   []*os.File // batchFsync: placed files, still open
	dirs    map[string]bool
	syncing stdsync.Mutex // one Sync at a time
}

// Batch implements Batcher. A Local batches with one syncfs(2) per Sync
// on Linux, where a run of small files then costs a few flushes instead of
// two fsyncs per file.
func (l *Local) Batch() bool {
	mode := batchMode()
	if mode == batchOff {
		return false
	}
	l.batch = &batch{mode: mode, dirs: map[string]bool{}}
	return true
}

// unsynced notes that file f (nil for a folder alone) was placed in folder
// dir and awaits Sync. It reports false if l does not batch: the caller
// syncs.
func (l *Local) unsynced(f *os.File, dir string) bool {
	b := l.batch
	if b == nil {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.placed++
	if b.mode == batchFsync {
		if f != nil {
			b.files = append(b.files, f)
		}
		b.dirs[dir] = true
	}
	return true
}

// Sync implements Batcher: everything placed before the call is durable
// when it returns nil. On failure what was placed stays pending, for the
// next Sync.
func (l *Local) Sync(ctx context.Context) error {
	b := l.batch
	if b == nil {
		return nil
	}
	b.syncing.Lock()
	defer b.syncing.Unlock()
	b.mu.Lock()
	placed := b.placed
	files, dirs := b.files, b.dirs
	if b.mode == batchFsync {
		b.files, b.dirs = nil, map[string]bool{}
	}
	b.mu.Unlock()
	if placed == b.synced {
		return nil
	}
	var err error
	switch b.mode {
	case batchSyncfs:
		err = l.syncfs()
	case batchFsync:
		err = l.fsyncAll(files, dirs)
		if err != nil { // keep them for the next Sync
			b.mu.Lock()
			b.files = append(b.files, files...)
			for d := range dirs {
				b.dirs[d] = true
			}
			b.mu.Unlock()
		}
	}
	if err != nil {
		return localErr(err)
	}
	b.synced = placed
	return nil
}

// syncfs flushes the file system that holds the destination.
func (l *Local) syncfs() error {
	d, err := l.root.Open(".")
	if err != nil {
		return err
	}
	defer d.Close()
	return syncfs(d)
}

// fsyncAll fsyncs files, then the folders, and closes the files once all
// are synced.
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
	for _, f := range files {
		f.Close()
	}
	return nil
}
