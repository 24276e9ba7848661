package sync

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	stdsync "sync"
	"text/tabwriter"

	"github.com/artifact-sync/artifact-sync/circleci"
)

// ListOptions configure List.
type ListOptions struct {
	JSON    bool      // one JSON object per artifact per line instead of a table
	Out     io.Writer // stdout
	Log     *slog.Logger
	Verbose bool
}

// listAhead is how many jobs List lists ahead of the one it prints: enough
// to keep the API's requests in flight (LimitAPI), few enough that the
// artifacts waiting to be printed stay a handful of jobs' worth.
const listAhead = 16

// List prints the artifacts sel selects: a table for people or JSON lines for
// scripts, sorted by pipeline (newest first), job number, node index and
// path. Jobs passed over because they are still running are reported on the
// log.
//
// It resolves the jobs first, then lists their artifacts a few jobs ahead of
// the one it prints, and prints each job's artifacts as soon as the jobs
// before it are printed: the JSON lines of a selection of any size stream
// out while it is listed, and only a few jobs' artifacts are held at once.
// A job whose listing fails is left out and named, after every other job's
// artifacts are printed, in the *ListingError returned.
func List(ctx context.Context, api API, slug circleci.Slug, sel *Selection, opts ListOptions) error {
	var jobs []Job
	if _, err := Resolve(ctx, api, slug, sel, opts.Log, func(j Job) { jobs = append(jobs, j) }); err != nil {
		return err
	}
	// Skipped jobs are reported on the log as they are found.
	slices.SortFunc(jobs, func(a, b Job) int {
		return cmp.Or(cmp.Compare(b.PipelineNumber, a.PipelineNumber), cmp.Compare(a.JobNumber, b.JobNumber))
	})

	var (
		enc   *json.Encoder
		tw    *tabwriter.Writer
		count int
	)
	if opts.JSON {
		enc = json.NewEncoder(opts.Out)
		enc.SetEscapeHTML(false)
	} else {
		// The table's columns fit its widest cells, so it is written at the
		// end; a table is for people, who do not read a hundred thousand
		// rows.
		tw = tabwriter.NewWriter(opts.Out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PIPELINE\tWORKFLOW\tJOB\tNAME\tNODE\tPATH")
	}
	err := listInOrder(ctx, api, slug, sel, jobs, func(arts []Artifact) error {
		count += len(arts)
		for i := range arts {
			a := &arts[i]
			if enc != nil {
				if err := enc.Encode(a); err != nil {
					return err
				}
				continue
			}
			fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%d\t%s\n", a.PipelineNumber, Printable(a.WorkflowName), a.JobNumber, Printable(a.JobName), a.NodeIndex, Printable(a.Path))
		}
		return nil
	})
	var listing *ListingError
	if err != nil && !errors.As(err, &listing) {
		return err
	}
	if tw != nil {
		if ferr := tw.Flush(); ferr != nil {
			return ferr
		}
	}
	for _, msg := range sel.UnmatchedGlobs() {
		opts.Log.Warn(msg)
	}
	if count == 0 && err == nil && opts.Log != nil {
		opts.Log.Info("no artifacts selected", "project", slug.String())
	}
	return err
}

// listInOrder lists the artifacts of jobs, at most listAhead jobs beyond
// the one print waits for, and calls print with each job's artifacts,
// sorted by node index and path, in the order of jobs. A job whose listing
// fails is skipped and returned in a *ListingError at the end; a rejected
// token, cancellation or a failure of print stops it.
func listInOrder(ctx context.Context, api API, slug circleci.Slug, sel *Selection, jobs []Job, print func([]Artifact) error) error {
	type listed struct {
		arts []Artifact
		err  error // the job's own failure
		stop error // what stops every listing
	}
	var wg stdsync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	done := make([]chan listed, len(jobs))
	for i := range done {
		done[i] = make(chan listed, 1)
	}
	window := make(chan struct{}, listAhead)
	wg.Go(func() {
		for i, j := range jobs {
			select {
			case window <- struct{}{}:
			case <-ctx.Done():
				return
			}
			wg.Go(func() {
				arts, err, stop := listJob(ctx, api, slug, sel, j)
				if stop != nil {
					cancel(stop)
				}
				done[i] <- listed{arts, err, stop}
			})
		}
	})

	var failed []JobFailure
	for i, j := range jobs {
		var l listed
		select {
		case l = <-done[i]:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		if l.stop != nil {
			return l.stop
		}
		if l.err != nil {
			failed = append(failed, JobFailure{Job: j, Err: l.err})
		} else {
			slices.SortFunc(l.arts, func(a, b Artifact) int {
				return cmp.Or(cmp.Compare(a.NodeIndex, b.NodeIndex), cmp.Compare(a.Path, b.Path))
			})
			if err := print(l.arts); err != nil {
				return err
			}
		}
		<-window // the next job may start
	}
	if len(failed) > 0 {
		return &ListingError{Jobs: failed}
	}
	return nil
}

// listJob lists the artifacts of j that sel keeps. It fails with err when
// the listing of j alone failed, and with stop when no listing can go on
// (a rejected token, cancellation).
func listJob(ctx context.Context, api API, slug circleci.Slug, sel *Selection, j Job) (arts []Artifact, err, stop error) {
	for a, err := range api.Artifacts(ctx, slug, j.JobNumber) {
		if err != nil {
			if ctx.Err() != nil {
				return nil, nil, context.Cause(ctx)
			}
			if errors.Is(err, circleci.ErrUnauthorized) {
				return nil, nil, fmt.Errorf("listing the artifacts of job %d (%s): %w", j.JobNumber, j.JobName, err)
			}
			return nil, err, nil
		}
		if sel.keepsPath(a.Path) {
			arts = append(arts, Artifact{Job: j, NodeIndex: a.NodeIndex, Path: a.Path, URL: a.URL})
		}
	}
	return arts, nil, nil
}

func compareArtifacts(a, b *Artifact) int {
	return cmp.Or(
		cmp.Compare(b.PipelineNumber, a.PipelineNumber),
		cmp.Compare(a.JobNumber, b.JobNumber),
		cmp.Compare(a.NodeIndex, b.NodeIndex),
		cmp.Compare(a.Path, b.Path),
	)
}
