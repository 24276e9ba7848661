package sync

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
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

// List prints the artifacts sel selects: a table for people or JSON lines for
// scripts, sorted by job number, node index and path. Jobs passed over because
// they are still running are reported on the log.
func List(ctx context.Context, api API, slug circleci.Slug, sel *Selection, opts ListOptions) error {
	var arts []Artifact
	skipped, err := Collect(ctx, api, slug, sel, opts.Log, func(a Artifact) { arts = append(arts, a) })
	if err != nil {
		return err
	}
	sortArtifacts(arts)
	if opts.JSON {
		enc := json.NewEncoder(opts.Out)
		enc.SetEscapeHTML(false)
		for i := range arts {
			if err := enc.Encode(&arts[i]); err != nil {
				return err
			}
		}
	} else {
		tw := tabwriter.NewWriter(opts.Out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PIPELINE\tWORKFLOW\tJOB\tNAME\tNODE\tPATH")
		for _, a := range arts {
			fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%d\t%s\n", a.PipelineNumber, Printable(a.WorkflowName), a.JobNumber, Printable(a.JobName), a.NodeIndex, Printable(a.Path))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	for _, msg := range sel.UnmatchedGlobs() {
		opts.Log.Warn(msg)
	}
	if len(arts) == 0 && opts.Log != nil {
		opts.Log.Info("no artifacts selected", "project", slug.String())
	}
	_ = skipped // reported on the log as they are found
	return nil
}

func sortArtifacts(arts []Artifact) {
	slices.SortFunc(arts, func(a, b Artifact) int { return compareArtifacts(&a, &b) })
}

func compareArtifacts(a, b *Artifact) int {
	return cmp.Or(
		cmp.Compare(b.PipelineNumber, a.PipelineNumber),
		cmp.Compare(a.JobNumber, b.JobNumber),
		cmp.Compare(a.NodeIndex, b.NodeIndex),
		cmp.Compare(a.Path, b.Path),
	)
}
