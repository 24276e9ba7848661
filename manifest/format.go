package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

// formatVersion is the newest format this package reads, and the one it
// writes. Readers refuse files with a larger number. Format 2 added done
// records (done.go); a format 1 file reads as one without them.
const formatVersion = 2

const (
	snapshotName  = "manifest.json"
	journalPrefix = "journal-"
	journalSuffix = ".jsonl"
)

// snapshotHeader is the snapshot's fields other than its entries, in the
// order they are written.
type snapshotHeader struct {
	Format      int       `json:"format"`
	Tool        string    `json:"tool"`
	Destination string    `json:"destination"`
	Created     time.Time `json:"created"`
	Updated     time.Time `json:"updated"`
	Run         string    `json:"run"`
	Generation  int64     `json:"generation"`
	Journals    []string  `json:"journals"`
}

type snapshotFile struct {
	snapshotHeader
	Entries []recordJSON `json:"entries"`
}

// journalHeader is the first line of a journal file.
type journalHeader struct {
	Format      int       `json:"format"`
	Tool        string    `json:"tool"`
	Destination string    `json:"destination"`
	Run         string    `json:"run"`
	Generation  int64     `json:"generation"`
	Seq         int64     `json:"seq"`
	Written     time.Time `json:"written"`
}

// record is one line of the log: an entry, the removal of an ID when
// Removed is set, or a done mark when Kind is set (Entry then holds its
// project, job number, completion time and run).
type record struct {
	Entry
	Removed time.Time

	Kind      string // "job" or "workflow" for a done record
	Workflow  string
	Selection string
	Artifacts int64
}

// recordJSON is the JSON form of a record; field order is the file's.
type recordJSON struct {
	Project      string    `json:"project"`
	JobNumber    int64     `json:"job_number"`
	NodeIndex    int64     `json:"node_index"`
	Path         string    `json:"path"`
	Removed      time.Time `json:"removed,omitzero"`
	Key          string    `json:"key,omitempty"`
	Size         int64     `json:"size"`
	SHA256       string    `json:"sha256,omitempty"`
	ETag         string    `json:"etag,omitempty"`
	LastModified string    `json:"last_modified,omitempty"`
	Completed    time.Time `json:"completed,omitzero"`
	Run          string    `json:"run,omitempty"`
	// A done record's fields (see Done).
	Done      string `json:"done,omitempty"`
	Workflow  string `json:"workflow,omitempty"`
	Selection string `json:"selection,omitempty"`
	Artifacts int64  `json:"artifacts,omitempty"`
}

func (r *recordJSON) record() record {
	return record{
		Entry: Entry{
			ID:  ID{Project: r.Project, JobNumber: r.JobNumber, NodeIndex: r.NodeIndex, Path: r.Path},
			Key: r.Key, Size: r.Size, SHA256: r.SHA256, ETag: r.ETag, LastModified: r.LastModified,
			Completed: r.Completed.UTC(), Run: r.Run,
		},
		Removed: r.Removed.UTC(),
		Kind:    r.Done, Workflow: r.Workflow, Selection: r.Selection, Artifacts: r.Artifacts,
	}
}

// newEncoder returns an encoder that keeps <, > and & readable.
func newEncoder(buf *bytes.Buffer) *json.Encoder {
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	return enc
}

// snapshotReader encodes a snapshot as it is read, a few entries at a
// time, so that writing one never holds it whole: an indented JSON
// document with one entry per line, so that two snapshots diff line by
// line.
type snapshotReader struct {
	next    func(b []byte) ([]byte, bool) // appends the next entry to b, if there is one
	buf     []byte
	off     int
	started bool // the first entry is written
	done    bool // the document is complete in buf
}

// snapshotChunk is about how many bytes snapshotReader encodes at a time.
const snapshotChunk = 64 << 10

// newSnapshotReader returns a reader of the snapshot of h whose entries,
// in order, next appends to a buffer one by one.
func newSnapshotReader(h snapshotHeader, next func(b []byte) ([]byte, bool)) (*snapshotReader, error) {
	if h.Journals == nil {
		h.Journals = []string{}
	}
	var buf bytes.Buffer
	enc := newEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(h); err != nil {
		return nil, err // a clock outside years 0-9999
	}
	// Reopen the header object ("...\n}\n") to append the entries.
	b := buf.Bytes()
	b = b[:len(b)-len("\n}\n")]
	return &snapshotReader{next: next, buf: b}, nil
}

func (r *snapshotReader) Read(p []byte) (int, error) {
	for r.off == len(r.buf) {
		if r.done {
			return 0, io.EOF
		}
		r.buf, r.off = r.buf[:0], 0
		r.fill()
	}
	n := copy(p, r.buf[r.off:])
	r.off += n
	return n, nil
}

// fill appends entries to r.buf until it holds snapshotChunk bytes or the
// end of the document.
func (r *snapshotReader) fill() {
	b := r.buf
	if !r.started {
		var ok bool
		mark := len(b)
		if b, ok = r.next(append(b, snapshotEntriesStart+"    "...)); !ok {
			r.buf, r.done = append(b[:mark], ",\n  \"entries\": []\n}\n"...), true
			return
		}
		r.started = true
	}
	for len(b) < snapshotChunk {
		var ok bool
		mark := len(b)
		if b, ok = r.next(append(b, ",\n    "...)); !ok {
			b, r.done = append(b[:mark], snapshotEntriesEnd...), true
			break
		}
	}
	r.buf = b
}

// encodeJournalFunc writes a journal: the header line and n records, the i'th of
// which appendRec appends.
func encodeJournalFunc(h journalHeader, n int, appendRec func(b []byte, i int) []byte) ([]byte, error) {
	var buf bytes.Buffer
	if err := newEncoder(&buf).Encode(h); err != nil {
		return nil, err // a clock outside years 0-9999
	}
	b := slices.Grow(buf.Bytes(), 300*n)
	for i := range n {
		b = appendRec(b, i)
		b = append(b, '\n')
	}
	return b, nil
}

// decodeSnapshot parses and checks a snapshot file of any layout, as a
// whole; loc names it in errors. readSnapshot decodes the layout
// snapshotReader writes as a stream, and the manifest falls back to this
// for any other (a snapshot edited by hand, say).
func decodeSnapshot(loc string, data []byte, destination string) (*snapshotHeader, []record, error) {
	var f snapshotFile
	if err := json.Unmarshal(data, &f); err != nil {
		// A newer format may not fit this one's types; say so rather than
		// calling it corrupt.
		var probe struct{ Format int }
		if json.Unmarshal(data, &probe) == nil && probe.Format > formatVersion {
			return nil, nil, versionError(loc, probe.Format)
		}
		return nil, nil, corruptError(loc, jsonProblem(data, err))
	}
	if err := checkHeader(loc, f.Format, f.Destination, destination); err != nil {
		return nil, nil, err
	}
	recs := make([]record, len(f.Entries))
	for i := range f.Entries {
		recs[i] = f.Entries[i].record()
		if p := checkSnapshotEntry(i, &recs[i]); p != "" {
			return nil, nil, corruptError(loc, p)
		}
	}
	return &f.snapshotHeader, recs, nil
}

// checkSnapshotEntry returns what is wrong with r, the i'th entry of a
// snapshot (from 0), or "".
func checkSnapshotEntry(i int, r *record) string {
	if r.Kind != "" {
		if p := checkDoneRecord(r); p != "" {
			return fmt.Sprintf("entry %d: %s", i+1, p)
		}
		return ""
	}
	if !r.Removed.IsZero() {
		return fmt.Sprintf("entry %d (%v) is a removal, which only journals hold", i+1, r.ID)
	}
	if p := checkEntry(r.Entry); p != "" {
		return fmt.Sprintf("entry %d: %s", i+1, p)
	}
	return ""
}

// readJournal parses and checks the journal file that r yields, calling
// add with each record in order. A journal is written whole, but a store
// that is not atomic (or a disk that lies) may leave a prefix of it: an
// incomplete last line is dropped, and a file without a complete header
// line holds nothing (h is nil). A power cut on a file system that does
// not write a file's data before its size leaves blocks of NUL bytes
// instead, which no line this package writes holds (JSON escapes control
// characters): the journal ends at the first line holding one. Every other
// complete line must be valid.
func readJournal(loc string, r io.Reader, destination string, add func(*record)) (h *journalHeader, err error) {
	lr := newLineReader(r)
	for lineNo := 1; ; lineNo++ {
		line, complete, err := lr.next()
		if err == io.EOF {
			return h, nil
		}
		if err != nil {
			return nil, readError(loc, err)
		}
		last := !complete
		if bytes.IndexByte(line, 0) >= 0 {
			return h, nil // torn by a power cut from here on
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if h == nil {
			var hdr journalHeader
			if err := json.Unmarshal(line, &hdr); err != nil {
				if last {
					return nil, nil // torn header: an empty journal
				}
				return nil, corruptError(loc, fmt.Sprintf("line %d: header: %s", lineNo, jsonProblem(line, err)))
			}
			if err := checkHeader(loc, hdr.Format, hdr.Destination, destination); err != nil {
				return nil, err
			}
			h = &hdr
			continue
		}
		var rec record
		if err := decodeRecord(line, &rec); err != nil {
			if last {
				return h, nil // torn tail
			}
			return nil, corruptError(loc, fmt.Sprintf("line %d: %s", lineNo, jsonProblem(line, err)))
		}
		var p string
		if rec.Kind != "" {
			p = checkDoneRecord(&rec)
		} else if !rec.Removed.IsZero() {
			p = checkID(rec.ID)
		} else {
			p = checkEntry(rec.Entry)
		}
		if p != "" {
			if last {
				return h, nil // a torn line can still parse, e.g. a number cut short
			}
			return nil, corruptError(loc, fmt.Sprintf("line %d: %s", lineNo, p))
		}
		add(&rec)
	}
}

func readError(loc string, err error) error {
	return &Error{Location: loc, Problem: "cannot read: " + err.Error(), Err: err}
}

func checkHeader(loc string, format int, got, want string) error {
	switch {
	case format > formatVersion:
		return versionError(loc, format)
	case format < 1:
		return corruptError(loc, "no format version: not an artifact-sync manifest")
	case got != want && want != SelfDestination && got != SelfDestination:
		return &Error{
			Location: loc,
			Problem: fmt.Sprintf("records destination %q, not %q: "+
				"a manifest serves one destination; give this one a manifest location of its own", got, want),
			Err: ErrDestination,
		}
	}
	return nil
}

func versionError(loc string, format int) error {
	return &Error{
		Location: loc,
		Problem:  fmt.Sprintf("written by format %d, this artifact-sync reads up to %d: %s", format, formatVersion, hintVersion),
		Err:      ErrVersion,
	}
}

func corruptError(loc, problem string) error {
	return &Error{Location: loc, Problem: problem + ": " + hintCorrupt, Err: ErrCorrupt}
}

// jsonProblem describes a decoding error, with the line it happened on.
func jsonProblem(data []byte, err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var off int64 = -1
	switch {
	case errors.As(err, &syn):
		off = syn.Offset
	case errors.As(err, &typ):
		off = typ.Offset
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	if err.Error() == "unexpected end of JSON input" {
		msg = "truncated JSON"
	}
	if off < 0 || off > int64(len(data)) {
		return "invalid JSON: " + msg
	}
	line := 1 + bytes.Count(data[:off], []byte("\n"))
	return "invalid JSON at line " + strconv.Itoa(line) + ": " + msg
}

// journalName is the file name of a run's seq'th journal.
func journalName(run string, seq int64) string {
	return fmt.Sprintf("%s%s-%06d%s", journalPrefix, run, seq, journalSuffix)
}

// parseJournalName reports the run and sequence number in a journal's file
// name, and whether name is one.
func parseJournalName(name string) (run string, seq int64, ok bool) {
	s, ok := strings.CutPrefix(name, journalPrefix)
	if !ok {
		return "", 0, false
	}
	if s, ok = strings.CutSuffix(s, journalSuffix); !ok {
		return "", 0, false
	}
	i := strings.LastIndexByte(s, '-')
	if i <= 0 {
		return "", 0, false
	}
	seq, err := strconv.ParseInt(s[i+1:], 10, 64)
	if err != nil || seq < 0 {
		return "", 0, false
	}
	return s[:i], seq, true
}
