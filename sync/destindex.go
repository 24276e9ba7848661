package sync

import (
	"context"
	"fmt"
	"math"
	"strings"
	stdsync "sync"

	"github.com/artifact-sync/artifact-sync/sink"
)

// destIndex is what the destination holds, listed one top folder at a time
// as the run needs it: the folder of a key the manifest records for an
// artifact the run selects. So the check that puts back what the
// destination lost costs what the run selects, not what the mirror has
// gathered over the years. Each folder is listed once, however many
// artifacts ask; a key with no folder has the whole destination listed.
// On an object store (S3), so has a run that needs more than destFolders
// folders: past that, one listing of everything, a request per 1,000
// objects, costs less than a request per folder. A directory lists a folder
// with a few system calls, several at once, which beats one walk of
// everything, so it is always listed folder by folder.
type destIndex struct {
	dest sink.Sink
	how  sink.NameFolding
	sem  chan struct{} // bounds the listings in flight
	max  int           // folders listed one by one before everything is

	mu      stdsync.Mutex
	folders map[string]*destFolder
	sizes   map[string]int64 // key -> size
	folded  map[string]int64 // with folding, folded key -> size
	listed  int              // folders listed, for the debug log
}

type destFolder struct {
	done chan struct{} // closed when the listing has ended
	err  error
}

// destListings is how many folders are listed at once.
const destListings = 8

// destFolders is how many folders are listed one by one before the rest of
// the run takes one listing of the whole destination instead.
const destFolders = 1000

func newDestIndex(dest sink.Sink, how sink.NameFolding) *destIndex {
	d := &destIndex{dest: dest, how: how, sem: make(chan struct{}, destListings), max: destFolders,
		folders: map[string]*destFolder{}, sizes: map[string]int64{}, folded: map[string]int64{}}
	if _, ok := dest.(*sink.Local); ok {
		d.max = math.MaxInt
	}
	return d
}

// size returns the size of the object at key, and whether there is one,
// listing its top folder first if no one has.
func (d *destIndex) size(ctx context.Context, key string) (int64, bool, error) {
	folder := ""
	if first, _, ok := strings.Cut(key, "/"); ok {
		folder = first + "/"
	}
	if err := d.list(ctx, folder); err != nil {
		return 0, false, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	size, ok := d.sizes[key]
	if !ok && d.how.Folds() {
		size, ok = d.folded[d.how.Key(key)]
	}
	return size, ok, nil
}

// list lists folder (or everything, for "") unless it has been, or the
// whole destination has.
func (d *destIndex) list(ctx context.Context, folder string) error {
	d.mu.Lock()
	f, ok := d.folders[folder]
	if !ok && d.listed >= d.max {
		folder = ""
		f, ok = d.folders[folder]
	}
	if !ok {
		if all, ok := d.folders[""]; ok && folder != "" {
			f = all
		} else {
			f = &destFolder{done: make(chan struct{})}
			d.folders[folder] = f
			d.listed++
			d.mu.Unlock()
			f.err = d.fill(ctx, folder)
			close(f.done)
			return f.err
		}
	}
	d.mu.Unlock()
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (d *destIndex) fill(ctx context.Context, folder string) error {
	select {
	case d.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-d.sem }()
	for info, err := range d.dest.List(ctx, folder) {
		if err != nil {
			return fmt.Errorf("listing %s to check what is recorded there: %w", d.dest, err)
		}
		d.mu.Lock()
		d.sizes[info.Key] = info.Size
		if d.how.Folds() {
			d.folded[d.how.Key(info.Key)] = info.Size
		}
		d.mu.Unlock()
	}
	return nil
}
