package sync

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	stdsync "sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/artifact-sync/artifact-sync/circleci"
)

// Artifact is one file of one node of one selected job.
type Artifact struct {
	Job
	NodeIndex int64  `json:"node_index"`
	Path      string `json:"path"` // as the API returned it
	URL       string `json:"url"`

	CleanPath string `json:"-"` // Path checked and cleaned by CleanPath; empty if refused
	Key       string `json:"-"` // destination key from the layout; empty if refused

	noRanges bool // the server refused a range request for this artifact
	resumed  bool // the last attempt continued kept bytes

	// earlier is how many bytes kept before this transfer it continued,
	// once an attempt has looked; they count as downloaded by an earlier
	// run (see noteKept).
	earlier int64
	looked  bool
	// firstByte is how long the last attempt's request took to be
	// answered: about the round trip, which sizes range requests.
	firstByte time.Duration
}

// JobFailure is a job whose artifacts could not be listed.
type JobFailure struct {
	Job
	Err error
}

// ListingError is returned by Collect when the artifact listings of some
// jobs failed after retries: the artifacts of every other job were found.
type ListingError struct {
	Jobs []JobFailure
}

func (e *ListingError) Error() string {
	var b strings.Builder
	for i, f := range e.Jobs {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "listing the artifacts of job %d (%s): %v", f.JobNumber, f.JobName, f.Err)
	}
	return b.String()
}

// Collect resolves sel in project slug and lists the artifacts of every
// selected job, calling found for each artifact that passes --include and
// --exclude. Jobs are listed concurrently (api bounds the requests in flight)
// and found is called from one goroutine at a time, as soon as each listing
// page arrives. A job that resolution reaches twice is listed once.
//
// A job whose listing fails stays with that job: Collect goes on with the
// others and returns a *ListingError naming it. Only what makes every
// listing pointless stops it: a rejected token, resolution errors,
// cancellation.
func Collect(ctx context.Context, api API, slug circleci.Slug, sel *Selection, log *slog.Logger, found func(Artifact)) ([]Skipped, error) {
	return collect(ctx, api, slug, sel, log, found, nil)
}

// CollectJobs is Collect handing over each job's artifacts at once, as soon
// as that job's listing has ended (and never those of a job whose listing
// failed), from one goroutine at a time while other jobs are still being
// resolved and listed.
func CollectJobs(ctx context.Context, api API, slug circleci.Slug, sel *Selection, log *slog.Logger, listed func(Job, []Artifact)) ([]Skipped, error) {
	pending := map[int64][]Artifact{}
	return collect(ctx, api, slug, sel, log,
		func(a Artifact) { pending[a.JobNumber] = append(pending[a.JobNumber], a) },
		func(j Job, ok bool) {
			arts := pending[j.JobNumber]
			delete(pending, j.JobNumber)
			if ok {
				listed(j, arts)
			}
		})
}

// collect is Collect, calling jobEnd (if not nil) after the last found of
// each job, with ok false if its listing failed (then what it found of that
// job is no plan). found and jobEnd are called with one lock held.
func collect(ctx context.Context, api API, slug circleci.Slug, sel *Selection, log *slog.Logger, found func(Artifact), jobEnd func(j Job, ok bool)) ([]Skipped, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	var mu stdsync.Mutex
	var failed []JobFailure
	seen := map[int64]bool{} // jobs listed; Resolve emits one at a time
	skipped, err := Resolve(gctx, api, slug, sel, log, func(j Job) {
		if seen[j.JobNumber] {
			return // e.g. --job 7 --job 7, or a workflow given twice
		}
		seen[j.JobNumber] = true
		g.Go(func() error {
			for a, err := range api.Artifacts(gctx, slug, j.JobNumber) {
				if err != nil {
					if gctx.Err() != nil {
						return gctx.Err()
					}
					if errors.Is(err, circleci.ErrUnauthorized) {
						return fmt.Errorf("listing the artifacts of job %d (%s): %w", j.JobNumber, j.JobName, err)
					}
					mu.Lock()
					failed = append(failed, JobFailure{Job: j, Err: err})
					if jobEnd != nil {
						jobEnd(j, false)
					}
					mu.Unlock()
					return nil
				}
				if !sel.keepsPath(a.Path) {
					continue
				}
				mu.Lock()
				found(Artifact{Job: j, NodeIndex: a.NodeIndex, Path: a.Path, URL: a.URL})
				mu.Unlock()
			}
			if jobEnd != nil && gctx.Err() == nil {
				mu.Lock()
				jobEnd(j, true)
				mu.Unlock()
			}
			return nil
		})
	})
	if err != nil {
		cancel()
	}
	werr := g.Wait()
	// Each error keeps its own cause: resolution's first, else the first
	// listing's that stopped the group, else the jobs that failed alone.
	switch {
	case err != nil && !errors.Is(err, context.Canceled):
	case werr != nil && !errors.Is(werr, context.Canceled):
		err = werr
	case err == nil && werr != nil:
		err = werr
	}
	if err == nil && len(failed) > 0 {
		slices.SortFunc(failed, func(a, b JobFailure) int { return cmp.Compare(a.JobNumber, b.JobNumber) })
		err = &ListingError{Jobs: failed}
	}
	return skipped, err
}

// keepsPath applies --include and --exclude to an artifact path.
func (s *Selection) keepsPath(p string) bool {
	return s.matchPath(p)
}
