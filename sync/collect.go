package sync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	stdsync "sync"

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
}

// Collect resolves sel in project slug and lists the artifacts of every
// selected job, calling found for each artifact that passes --include and
// --exclude. Jobs are listed concurrently (api bounds the requests in flight)
// and found is called from one goroutine at a time, as soon as each listing
// page arrives.
func Collect(ctx context.Context, api API, slug circleci.Slug, sel *Selection, log *slog.Logger, found func(Artifact)) ([]Skipped, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	var mu stdsync.Mutex
	skipped, err := Resolve(gctx, api, slug, sel, log, func(j Job) {
		g.Go(func() error {
			for a, err := range api.Artifacts(gctx, slug, j.JobNumber) {
				if err != nil {
					return fmt.Errorf("artifacts of job %d (%s): %w", j.JobNumber, j.JobName, err)
				}
				if !sel.keepsPath(a.Path) {
					continue
				}
				mu.Lock()
				found(Artifact{Job: j, NodeIndex: a.NodeIndex, Path: a.Path, URL: a.URL})
				mu.Unlock()
			}
			return nil
		})
	})
	if err != nil {
		cancel()
	}
	werr := g.Wait()
	if err == nil || (errors.Is(err, context.Canceled) && werr != nil && !errors.Is(werr, context.Canceled)) {
		err = werr
	}
	return skipped, err
}

// keepsPath applies --include and --exclude to an artifact path.
func (s *Selection) keepsPath(p string) bool {
	return s.matchPath(p)
}
