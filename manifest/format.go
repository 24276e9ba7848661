package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// formatVersion is the newest format this package reads, and the one it
// writes. Readers refuse files with a larger number.
const formatVersion = 1

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

// record is one line of the log: an entry, or the removal of an ID when
// Removed is set.
type record struct {
	Entry
	Removed time.Time
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
}

func (r *recordJSON) record() record {
	return record{
		Entry: Entry{
			ID:  ID{Project: r.Project, JobNumber: r.JobNumber, NodeIndex: r.NodeIndex, Path: r.Path},
			Key: r.Key, Size: r.Size, SHA256: r.SHA256, ETag: r.ETag, LastModified: r.LastModified,
			Completed: r.Completed.UTC(), Run: r.Run,
		},
		Removed: r.Removed.UTC(),
	}
}

// newEncoder returns an encoder that keeps <, > and & readable.
func newEncoder(buf *bytes.Buffer) *json.Encoder {
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	return enc
}

// encodeSnapshot writes an indented JSON document with one entry per line,
// so that two snapshots diff line by line. entries must be sorted.
func encodeSnapshot(h snapshotHeader, entries []Entry) ([]byte, error) {
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
	if len(entries) == 0 {
		return append(b, ",\n  \"entries\": []\n}\n"...), nil
	}
	b = slices.Grow(b, 64+300*len(entries))
	b = append(b, ",\n  \"entries\": [\n"...)
	for i, e := range entries {
		b = append(b, "    "...)
		b = appendRecord(b, record{Entry: e})
		if i < len(entries)-1 {
			b = append(b, ',')
		}
		b = append(b, '\n')
	}
	return append(b, "  ]\n}\n"...), nil
}

// encodeJournal writes the header line and one line per record.
func encodeJournal(h journalHeader, recs []record) ([]byte, error) {
	var buf bytes.Buffer
	if err := newEncoder(&buf).Encode(h); err != nil {
		return nil, err // a clock outside years 0-9999
	}
	b := slices.Grow(buf.Bytes(), 300*len(recs))
	for _, r := range recs {
		b = appendRecord(b, r)
		b = append(b, '\n')
	}
	return b, nil
}

// decodeSnapshot parses and checks a snapshot file. loc names it in errors.
func decodeSnapshot(loc string, data []byte, destination string) (*snapshotHeader, []record, error) {
	h, recs, err := splitSnapshot(loc, data)
	if err != nil {
		return nil, nil, err
	}
	if err := checkHeader(loc, h.Format, h.Destination, destination); err != nil {
		return nil, nil, err
	}
	for i, r := range recs {
		if !r.Removed.IsZero() {
			return nil, nil, corruptError(loc, fmt.Sprintf("entry %d (%v) is a removal, which only journals hold", i+1, r.ID))
		}
		if p := checkEntry(r.Entry); p != "" {
			return nil, nil, corruptError(loc, fmt.Sprintf("entry %d: %s", i+1, p))
		}
	}
	return h, recs, nil
}

// splitSnapshot decodes a snapshot's JSON. When it has the layout
// encodeSnapshot writes, its lines are decoded on all CPUs, which is many
// times faster than decoding the document as a whole.
func splitSnapshot(loc string, data []byte) (*snapshotHeader, []record, error) {
	if header, lines, ok := fastSplitSnapshot(data); ok {
		var h snapshotHeader
		recs := make([]record, len(lines))
		if json.Unmarshal(header, &h) == nil && decodeLines(lines, recs) {
			return &h, recs, nil
		}
	}
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
	recs := make([]record, len(f.Entries))
	for i := range f.Entries {
		recs[i] = f.Entries[i].record()
	}
	return &f.snapshotHeader, recs, nil
}

// decodeLines decodes lines[i] into recs[i] in parallel, and reports
// whether all of them decoded.
func decodeLines(lines [][]byte, recs []record) bool {
	const minChunk = 4096
	workers := min(runtime.GOMAXPROCS(0), (len(lines)+minChunk-1)/minChunk)
	if workers <= 1 {
		for i, line := range lines {
			if decodeRecord(line, &recs[i]) != nil {
				return false
			}
		}
		return true
	}
	var (
		wg     sync.WaitGroup
		failed atomic.Bool
	)
	per := (len(lines) + workers - 1) / workers
	for start := 0; start < len(lines); start += per {
		end := min(start+per, len(lines))
		wg.Go(func() {
			for i := start; i < end && !failed.Load(); i++ {
				if decodeRecord(lines[i], &recs[i]) != nil {
					failed.Store(true)
				}
			}
		})
	}
	wg.Wait()
	return !failed.Load()
}

// decodeJournal parses and checks a journal file. A journal is written
// whole, but a store that is not atomic (or a disk that lies) may leave a
// prefix of it: an incomplete last line is dropped, and a file without a
// complete header line holds nothing. Every complete line must be valid.
func decodeJournal(loc string, data []byte, destination string) (*journalHeader, []record, error) {
	var (
		h    *journalHeader
		recs []record
	)
	for lineNo := 1; len(data) > 0; lineNo++ {
		var line []byte
		i := bytes.IndexByte(data, '\n')
		last := i < 0
		if last {
			line, data = data, nil
		} else {
			line, data = data[:i], data[i+1:]
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if h == nil {
			var hdr journalHeader
			if err := json.Unmarshal(line, &hdr); err != nil {
				if last {
					return nil, nil, nil // torn header: an empty journal
				}
				return nil, nil, corruptError(loc, fmt.Sprintf("line %d: header: %s", lineNo, jsonProblem(line, err)))
			}
			if err := checkHeader(loc, hdr.Format, hdr.Destination, destination); err != nil {
				return nil, nil, err
			}
			h = &hdr
			continue
		}
		var r record
		if err := decodeRecord(line, &r); err != nil {
			if last {
				break // torn tail
			}
			return nil, nil, corruptError(loc, fmt.Sprintf("line %d: %s", lineNo, jsonProblem(line, err)))
		}
		var p string
		if !r.Removed.IsZero() {
			p = checkID(r.ID)
		} else {
			p = checkEntry(r.Entry)
		}
		if p != "" {
			if last {
				break // a torn line can still parse, e.g. a number cut short
			}
			return nil, nil, corruptError(loc, fmt.Sprintf("line %d: %s", lineNo, p))
		}
		recs = append(recs, r)
	}
	return h, recs, nil
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
