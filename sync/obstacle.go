package sync

import (
	"context"
	"errors"
	"fmt"

	"github.com/artifact-sync/artifact-sync/sink"
)

// folderClash is the error of a plan in which file's key is a folder of
// inside's key ("a" and "a/b"): no destination can hold both, and the
// layout or the selection has to change.
func folderClash(file, inside *Artifact) error {
	return &explainedError{fmt.Sprintf("job %d node %d %q lands on %q and job %d node %d %q on %q, which needs %q as a folder: use a --layout that keeps them apart (with {job_number}, {node_index} and {path}), or leave one out with --exclude",
		file.JobNumber, file.NodeIndex, file.Path, file.Key, inside.JobNumber, inside.NodeIndex, inside.Path, inside.Key, file.Key), ErrCollision}
}

// unblocked returns the artifacts of todo whose way at the destination is
// clear, and fails the others without downloading them: those a file or a
// link where one of their folders goes, or a folder where their file goes,
// would make fail only once downloaded (one file in the way of a folder of
// 500 artifacts cost their whole download). Where the destination cannot
// tell (S3, where nothing is in a key's way), todo is returned as it is.
//
// Those artifacts fail, and the run goes on, rather than the run being
// refused: what is in the way is in DEST, not in what was given, and
// everything else of a nightly mirror is still worth having; the summary
// groups them under the one thing in their way, and a rerun once it is
// moved fetches them. Any other error of the check is left for the
// transfer to meet and report as it does.
func (e *engine) unblocked(ctx context.Context, todo []*Artifact) []*Artifact {
	pc, ok := e.dest.(sink.PathChecker)
	if !ok {
		return todo
	}
	clear := todo[:0]
	for _, a := range todo {
		if err := pc.CheckPath(ctx, a.Key); errors.Is(err, sink.ErrPathConflict) {
			e.fail(a, err)
			a.Key = ""
			continue
		}
		clear = append(clear, a)
	}
	return clear
}
