package manifest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// RebuildMode says what Open does with a snapshot that cannot be read at
// all: one that is not JSON (empty, NUL bytes, cut short, garbage), as a
// power cut leaves it on a file system that does not write a file's data
// before its size or name. A snapshot that is JSON but wrong (no format,
// a bad entry), of a newer format or for another destination is refused
// whatever the mode: no crash makes those.
type RebuildMode int

const (
	// RefuseUnreadable, the default, fails Open with an *Error matching
	// ErrCorrupt that says a pull rebuilds the manifest. Nothing is written,
	// so it suits a reader such as verify.
	RefuseUnreadable RebuildMode = iota
	// RebuildInMemory rebuilds the entries from what survives (see
	// RebuildAside) and writes nothing: for a dry run, which then shows
	// what a pull would fetch again. It suits only a Manifest that records
	// nothing: a compaction would replace the unreadable snapshot without
	// keeping a copy.
	RebuildInMemory
	// RebuildAside rebuilds the entries from what survives: the entries at
	// the snapshot's intact beginning, under the header it starts with, if
	// that much survived, then every journal it does not name, in log
	// order. Open first keeps a copy of the snapshot under a name that says
	// it was unreadable (manifest.json.unreadable-RUN, never removed), then
	// writes the rebuilt entries as a new snapshot over it. The caller must
	// hold the destination's lock, as for any write.
	RebuildAside
)

// unreadablePrefix starts the name a snapshot that could not be read is
// kept under; the run that found it ends the name.
const unreadablePrefix = snapshotName + ".unreadable-"

// Rebuilt reports a manifest that Open rebuilt because its snapshot could
// not be read. Artifacts it does not hold count as not transferred.
type Rebuilt struct {
	Snapshot string // the snapshot that could not be read
	Problem  string // what is wrong with it
	Aside    string // where it was kept; "" when left in place (RebuildInMemory)
	Salvaged int    // entries read from its intact beginning
	Journals int    // journals that held records, applied after them
	Entries  int    // entries the rebuilt manifest holds
}

// String is the warning to show: what was unreadable, where it went, what
// was rebuilt and that the rest is fetched again.
func (r *Rebuilt) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "the manifest %s could not be read (%s), as a power cut can leave it: ", r.Snapshot, r.Problem)
	if r.Aside != "" {
		fmt.Fprintf(&b, "kept it as %s and rebuilt ", r.Aside)
	} else {
		b.WriteString("a pull keeps it aside and rebuilds ")
	}
	fmt.Fprintf(&b, "%d %s from %d %s", r.Entries, plural(r.Entries, "entry", "entries"), r.Journals, plural(r.Journals, "journal", "journals"))
	if r.Salvaged > 0 {
		fmt.Fprintf(&b, " and the %d %s at its intact beginning", r.Salvaged, plural(r.Salvaged, "entry", "entries"))
	}
	b.WriteString("; artifacts not among them are fetched again")
	return b.String()
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// Rebuilt returns what Open rebuilt, or nil if the snapshot was read as it
// was.
func (m *Manifest) Rebuilt() *Rebuilt {
	return m.rebuilt
}

// unreadable reports whether a snapshot that failed to decode with err
// cannot be read at all, rather than being JSON that is wrong.
func unreadable(data []byte, err error) bool {
	return errors.Is(err, ErrCorrupt) && !json.Valid(data)
}

// unreadableProblem says what is wrong with an unreadable snapshot: err is
// decodeSnapshot's *Error for it.
func unreadableProblem(data []byte, err error) string {
	switch {
	case len(data) == 0:
		return "empty"
	case len(bytes.Trim(data, "\x00")) == 0:
		return "only NUL bytes"
	}
	var e *Error
	if errors.As(err, &e) {
		return strings.TrimSuffix(e.Problem, ": "+hintCorrupt)
	}
	return err.Error()
}

// rebuildSnapshot takes in a snapshot that cannot be read, data, according
// to Options.Rebuild: it refuses it, or puts the entries at its intact
// beginning into m.t and returns the header they came under (nil if that
// did not survive).
func (m *Manifest) rebuildSnapshot(loc string, data []byte, cause error) (*snapshotHeader, error) {
	problem := unreadableProblem(data, cause)
	if m.opts.Rebuild == RefuseUnreadable {
		return nil, &Error{
			Location: loc,
			Problem: "cannot be read (" + problem + "), as a power cut can leave it: " +
				"the next pull keeps it aside and rebuilds the manifest from what survives, fetching again what it no longer records",
			Err: ErrCorrupt,
		}
	}
	h, recs, err := salvageSnapshot(loc, data, m.opts.Destination)
	if err != nil {
		return nil, err
	}
	m.t, m.marks = newTable(), doneSet{}
	for i := range recs {
		m.loadRecord(&recs[i])
	}
	m.rebuilt = &Rebuilt{Snapshot: loc, Problem: problem, Salvaged: len(recs)}
	if m.opts.Rebuild == RebuildAside {
		m.unreadable = data
	}
	return h, nil
}

// salvageSnapshot returns what survives of a snapshot in the layout
// snapshotReader writes that cannot be read as a whole: its header, if
// every line of it is intact, and the entries from its first up to the
// first line that is not one intact entry. Nothing past damage is taken,
// so every entry returned is one the snapshot held, under the header that
// says which journals it includes. An intact header of a newer format or
// for another destination is refused as in a readable snapshot.
func salvageSnapshot(loc string, data []byte, destination string) (*snapshotHeader, []record, error) {
	end := bytes.Index(data, []byte(snapshotEntriesStart))
	if end < 0 {
		return nil, nil, nil
	}
	var h snapshotHeader
	header := append(bytes.Clone(data[:end]), "\n}"...)
	if !bytes.HasPrefix(header, []byte("{\n")) || json.Unmarshal(header, &h) != nil || h.Format < 1 {
		return nil, nil, nil
	}
	if err := checkHeader(loc, h.Format, h.Destination, destination); err != nil {
		return nil, nil, err
	}
	var recs []record
	rest := data[end+len(snapshotEntriesStart):]
	for {
		line, after, complete := bytes.Cut(rest, []byte("\n"))
		if !complete || !bytes.HasPrefix(line, []byte("    {")) {
			break
		}
		entry, _ := bytes.CutSuffix(line[4:], []byte(","))
		var r record
		if decodeRecord(entry, &r) != nil || checkSnapshotEntry(len(recs), &r) != "" {
			break
		}
		recs = append(recs, r)
		rest = after
	}
	return &h, recs, nil
}

// finishRebuild completes a rebuild once load has applied the journals js:
// it counts what was rebuilt and, for RebuildAside, keeps the unreadable
// snapshot aside and writes the rebuilt manifest as a new snapshot, so the
// next run (and verify) loads it as it is.
func (m *Manifest) finishRebuild(ctx context.Context, js []*loadedJournal) error {
	r := m.rebuilt
	for _, j := range js {
		if j.hdr != nil {
			r.Journals++
		}
	}
	r.Entries = m.t.live
	if m.unreadable == nil {
		return nil
	}
	aside := unreadablePrefix + m.opts.Run
	loc := location(m.st, aside)
	if err := m.st.WriteFile(ctx, aside, m.unreadable); err != nil {
		return &Error{Location: loc, Problem: "cannot keep the unreadable snapshot aside: " + err.Error(), Err: err}
	}
	m.unreadable = nil
	r.Aside = loc
	m.flushMu.Lock()
	defer m.flushMu.Unlock()
	return m.compact(ctx)
}
