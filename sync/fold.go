package sync

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	stdsync "sync"

	"github.com/artifact-sync/artifact-sync/manifest"
	"github.com/artifact-sync/artifact-sync/sink"
)

// folds is what the plan knows of a destination that takes different keys
// for one file (see sink.NameFolder): "Report.html" and "report.html" on
// macOS or Windows. There two artifacts would both be recorded as done
// while one overwrote the other, so the plan refuses them, as it refuses a
// file and a folder of one name.
type folds struct {
	how sink.NameFolding // the zero value: keys are compared byte for byte

	// recorded maps the folded key of every entry the manifest held when
	// the run's first plan was made to the artifact it records.
	recorded func() map[string]manifest.ID
}

// probeFolding asks the destination how it compares names, once, before
// the first plan. A dry run, which must create nothing, asks only a
// destination that a pull has written to (its manifest has entries, so its
// state folder exists) and takes any other as byte-exact.
func (e *engine) probeFolding(ctx context.Context) error {
	nf, ok := e.dest.(sink.NameFolder)
	if !ok || (e.opts.DryRun && e.man.Len() == 0) {
		return nil
	}
	how, err := nf.NameFolding(ctx)
	if err != nil {
		if e.opts.DryRun {
			e.log.Warn("could not find out whether the destination ignores case; the plan assumes it does not", "error", err)
			return nil
		}
		return err
	}
	e.log.Debug("destination names compared", "folding", how.String())
	e.fold.how = how
	e.fold.recorded = stdsync.OnceValue(func() map[string]manifest.ID {
		m := make(map[string]manifest.ID, e.man.Len())
		for ent := range e.man.Entries() {
			m[how.Key(ent.Key)] = ent.ID
		}
		return m
	})
	return nil
}

// nameFolding is how dest compares names, for Verify: a file listed under
// another spelling of its recorded key (its folder first made in another
// case) is the recorded file, not an unexpected one. A destination that
// cannot be probed is taken as byte-exact.
func nameFolding(ctx context.Context, dest sink.Sink, log *slog.Logger) sink.NameFolding {
	nf, ok := dest.(sink.NameFolder)
	if !ok {
		return sink.NameFolding{}
	}
	how, err := nf.NameFolding(ctx)
	if err != nil && log != nil {
		log.Debug("could not find out whether the destination ignores case", "error", err)
	}
	return how
}

// refuseFolded adds to refused the artifacts of a plan whose keys the
// destination takes for one although they differ (owner maps each key of
// the plan that no exact clash refused to its artifact): two such keys,
// a key and the folder of another, and a key and a key the manifest
// records for another artifact that is not in this plan. With a Disjoint
// layout two jobs' folders differ in digits, which no destination folds,
// so only keys of one job node can clash, and those of earlier runs.
func (e *engine) refuseFolded(arts []*Artifact, owner map[string]*Artifact, refused map[*Artifact]error) {
	how := e.fold.how
	if !how.Folds() {
		return
	}
	refuse := func(a *Artifact, err error) {
		if refused[a] == nil {
			refused[a] = err
		}
	}
	keys := make([]string, 0, len(owner))
	for key := range owner {
		keys = append(keys, key)
	}
	slices.Sort(keys)
	folded := make(map[string]*Artifact, len(keys))
	var order []string // folded keys, each once, in the order of keys
	for _, key := range keys {
		a := owner[key]
		fk := how.Key(key)
		if other, ok := folded[fk]; ok {
			refuse(a, e.oneFile(a, other))
			refuse(other, e.oneFile(other, a))
			continue
		}
		folded[fk] = a
		order = append(order, fk)
	}
	// Folding keeps every '/', so a folded key's folder of n elements is
	// the folder of n elements of the key itself.
	for _, fk := range order {
		a := folded[fk]
		for i := indexSlash(fk); i >= 0; i = nextSlash(fk, i) {
			other, ok := folded[fk[:i]]
			if !ok {
				continue
			}
			dir := leadingElems(a.Key, strings.Count(other.Key, "/")+1)
			why := how.Why(other.Key, dir)
			refuse(a, fmt.Errorf("refused: %q and job %d node %d %q would need %q as a folder and %q as a file at once on %s (%s)", a.Key, other.JobNumber, other.NodeIndex, other.Path, dir, other.Key, e.dest, why))
			refuse(other, fmt.Errorf("refused: %q and job %d node %d %q would need %q as a file and %q as a folder at once on %s (%s)", other.Key, a.JobNumber, a.NodeIndex, a.Path, other.Key, dir, e.dest, why))
		}
	}
	recorded := e.fold.recorded()
	if len(recorded) == 0 {
		return
	}
	inPlan := make(map[manifest.ID]bool, len(arts))
	for _, a := range arts {
		inPlan[manifestID(a)] = true
	}
	for _, fk := range order {
		a := folded[fk]
		id, ok := recorded[fk]
		if !ok || inPlan[id] {
			continue // an artifact of this plan is checked above, under its key of this run
		}
		ent, ok := e.man.Lookup(id)
		if !ok || ent.Key == a.Key {
			continue
		}
		refuse(a, fmt.Errorf("refused: %q and %q (job %d node %d %q, written by an earlier run) are one file on %s (%s): exclude this one with --exclude, or pull it to another destination", a.Key, ent.Key, id.JobNumber, id.NodeIndex, id.Path, e.dest, how.Why(a.Key, ent.Key)))
	}
}

// oneFile is the refusal of a, whose key the destination takes for
// other's.
func (e *engine) oneFile(a, other *Artifact) error {
	hint := "exclude one with --exclude"
	if a.JobNumber != other.JobNumber || a.NodeIndex != other.NodeIndex || a.Project != other.Project {
		hint += ", or use a --layout that puts them in different folders (such as " + DefaultLayout + ")"
	}
	return fmt.Errorf("refused: %q and %q (job %d node %d %q) are one file on %s (%s): %s", a.Key, other.Key, other.JobNumber, other.NodeIndex, other.Path, e.dest, e.fold.how.Why(a.Key, other.Key), hint)
}

// leadingElems is the first n elements of the slash path key.
func leadingElems(key string, n int) string {
	i := -1
	for ; n > 0; n-- {
		if i = nextSlash(key, i); i < 0 {
			return key
		}
	}
	return key[:i]
}

// indexSlash is the index of the first '/' in key, or -1.
func indexSlash(key string) int {
	return nextSlash(key, -1)
}
